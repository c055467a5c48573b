// SPDX-License-Identifier: GPL-2.0
/* Open intent for the fanotify plane: while a thread is inside open/openat/openat2/creat, its
 * open flags and cgroup id sit in ka_open_intent under its thread id. sys_enter runs before
 * fanotify's permission check and the thread stays in the syscall until the daemon answers,
 * so the entry is present and fresh when the permission event is read. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "kernel_types.h"

#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct ka_open_intent);
} ka_open_intent SEC(".maps");

static __always_inline int record(__u32 flags, __u32 syscall)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct ka_open_intent v = { .cgroup_id = bpf_get_current_cgroup_id(), .flags = flags, .syscall = syscall };
	bpf_map_update_elem(&ka_open_intent, &tid, &v, BPF_ANY);
	return 0;
}

static __always_inline int forget(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&ka_open_intent, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int ka_enter_open(struct ka_sys_enter *ctx) { return record((__u32)ctx->args[1], 2); }

SEC("tracepoint/syscalls/sys_enter_openat")
int ka_enter_openat(struct ka_sys_enter *ctx) { return record((__u32)ctx->args[2], 257); }

SEC("tracepoint/syscalls/sys_enter_creat")
int ka_enter_creat(struct ka_sys_enter *ctx) { return record(O_WRONLY | O_CREAT | O_TRUNC, 85); }

SEC("tracepoint/syscalls/sys_enter_openat2")
int ka_enter_openat2(struct ka_sys_enter *ctx)
{
	__u64 flags = 0;
	bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[2]);
	return record((__u32)flags, 437);
}

SEC("tracepoint/syscalls/sys_exit_open")
int ka_exit_open(struct ka_sys_exit *ctx) { return forget(); }

SEC("tracepoint/syscalls/sys_exit_openat")
int ka_exit_openat(struct ka_sys_exit *ctx) { return forget(); }

SEC("tracepoint/syscalls/sys_exit_creat")
int ka_exit_creat(struct ka_sys_exit *ctx) { return forget(); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int ka_exit_openat2(struct ka_sys_exit *ctx) { return forget(); }

char LICENSE[] SEC("license") = "GPL";
