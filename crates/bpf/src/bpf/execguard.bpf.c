// SPDX-License-Identifier: GPL-2.0
/* Exec guard for the fanotify plane: fanotify sees only the filesystems the daemon marks, so a
 * process allow-list could be stepped around by running a program from any other filesystem (a
 * tmpfs mounted in a private mount namespace, FUSE, a mount made after the rules loaded). For
 * subjects whose process rules are an allow-list with block posture, an exec whose file lies on
 * a filesystem outside ka_guard_devs is killed (SIGKILL) before its first instruction: such an
 * exec could never have been allowed, because the plane cannot see it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "abi.h"
#include "kernel_types.h"

#define SIGKILL 9
#define KA_MAX_CGROUP_DEPTH 16

/* Guarded subjects by cgroup id (0: the host), as the network plane keys subjects. The value
 * is 1 for a guarded subject, 0 for a registered container that is not guarded. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} ka_guard_subjects SEC(".maps");

/* Superblock device numbers (MAJOR << 20 | MINOR) of the marked filesystems. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} ka_guard_devs SEC(".maps");

/* Container runtime binaries (runc, crun) by identity: `runc init` runs from the host's
 * filesystem inside the container's cgroup before the workload's first exec. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct ka_exe_key);
	__type(value, __u8);
} ka_guard_runtimes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} ka_guard_events SEC(".maps");

static __always_inline __u8 *guard_of(__u64 cg)
{
	__u8 *g = bpf_map_lookup_elem(&ka_guard_subjects, &cg);
	if (g)
		return g;
#pragma unroll
	for (int level = 1; level <= KA_MAX_CGROUP_DEPTH; level++) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);
		if (!anc || anc == cg)
			break;
		__u8 *s = bpf_map_lookup_elem(&ka_guard_subjects, &anc);
		if (s)
			g = s;
	}
	if (g)
		return g;
	__u64 host = 0;
	return bpf_map_lookup_elem(&ka_guard_subjects, &host);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ka_guard_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u8 *g = guard_of(cg);
	if (!g || !*g)
		return 0;
	struct inode *ino = BPF_CORE_READ(bprm, file, f_inode);
	__u32 dev = BPF_CORE_READ(ino, i_sb, s_dev);
	if (bpf_map_lookup_elem(&ka_guard_devs, &dev))
		return 0;
	struct ka_exe_key key = { .ino = BPF_CORE_READ(ino, i_ino), .dev = dev };
	if (bpf_map_lookup_elem(&ka_guard_runtimes, &key))
		return 0;
	bpf_send_signal(SIGKILL);
	struct ka_guard_event *e = bpf_ringbuf_reserve(&ka_guard_events, sizeof(*e), 0);
	if (e) {
		e->cgroup_id = cg;
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->dev = dev;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
