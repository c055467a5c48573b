// SPDX-License-Identifier: GPL-2.0
/* Network plane: protocol rules enforced at socket creation and connect, per cgroup, with
 * fromSource matched on the identity (inode, device) of the task's running executable.
 * The decision mirrors kubearmor_policy::RuleSet::decide_socket; userspace compiles the rules
 * into ka_net_rules and re-runs the full decision on every event for attribution. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "abi.h"
#include "kernel_types.h"

#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define AF_XDP 44
#define SOCK_RAW 3
#define SOCK_PACKET 10
#define SIGKILL 9
#define IPPROTO_MPTCP 262
#define IPPROTO_UDPLITE 136
/* Deepest cgroup level searched for a registered container above the task's own cgroup. */
#define KA_MAX_CGROUP_DEPTH 16
#define EACCES 13

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ka_net_key);
	__type(value, struct ka_net_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ka_net_subject);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_net_subjects SEC(".maps");

/* Executable files named by fromSource (by inode and device), to source ids. Filled by
 * userspace when rules load; a process's source is its mm->exe_file, read at decision time, so
 * there is no per-process state to evict, inherit or lose. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct ka_exe_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_source_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_net_events SEC(".maps");

static __always_inline __u8 lookup_flags(__u64 cg, __u32 src, __u8 kind, __s32 value, int valid)
{
	if (!valid)
		return 0;
	struct ka_net_key key = { .cgroup_id = cg, .source_id = src, .kind = kind, .value = (__u8)value };
	struct ka_net_val *v = bpf_map_lookup_elem(&ka_net_rules, &key);
	return v ? v->flags : 0;
}

static __always_inline int has_tty(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(t, signal, tty) != 0;
}

static __always_inline void emit(__u64 cg, __u32 src, int family, int type, int proto, __u8 hook,
				 __u8 denied, __u8 tty, __u8 reason)
{
	struct ka_net_event *e = bpf_ringbuf_reserve(&ka_net_events, sizeof(*e), 0);
	if (!e)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	e->cgroup_id = cg;
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->source_id = src;
	e->family = family;
	e->type = type;
	e->protocol = proto;
	e->hook = hook;
	e->denied = denied;
	e->tty = tty;
	e->reason = reason;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

/* The source id of the running executable (mm->exe_file), 0 when no rule names it. */
static __always_inline __u32 exe_source(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct inode *ino = BPF_CORE_READ(t, mm, exe_file, f_inode);
	if (!ino)
		return 0;
	struct ka_exe_key key = {
		.ino = BPF_CORE_READ(ino, i_ino),
		.dev = BPF_CORE_READ(ino, i_sb, s_dev),
	};
	__u32 *id = bpf_map_lookup_elem(&ka_source_inodes, &key);
	return id ? *id : 0;
}

/* The subject of the current task: the deepest registered container whose cgroup is the task's
 * or one of its ancestors (a child cgroup a container creates stays that container's), else
 * the host (entry 0). A registered container is never the host. */
static __always_inline struct ka_net_subject *find_subject(__u64 cg, __u64 *subject_cg)
{
	struct ka_net_subject *subj = bpf_map_lookup_elem(&ka_net_subjects, &cg);
	if (subj && cg) {
		*subject_cg = cg;
		return subj;
	}
	subj = 0;
#pragma unroll
	for (int level = 1; level <= KA_MAX_CGROUP_DEPTH; level++) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);
		if (!anc || anc == cg)
			break;
		struct ka_net_subject *s = bpf_map_lookup_elem(&ka_net_subjects, &anc);
		if (s) {
			subj = s;
			*subject_cg = anc;
		}
	}
	if (subj)
		return subj;
	*subject_cg = 0;
	return bpf_map_lookup_elem(&ka_net_subjects, subject_cg);
}

/* Returns 1 to allow, 0 to deny. */
static __always_inline int decide(int family, int type, int proto, __u8 hook)
{
	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET && family != AF_XDP)
		return 1;

	__u64 cg = bpf_get_current_cgroup_id();
	__u64 subject_cg = 0;
	struct ka_net_subject *subj = find_subject(cg, &subject_cg);
	if (!subj)
		return 1;

	/* Mirrors socket_keys() in kubearmor-policy: a type key, then a second key that is the
	 * IP protocol (variants folded in: MPTCP is tcp, UDP-Lite is udp) or, for every packet
	 * socket (AF_PACKET of any type, AF_XDP), the `raw` type. */
	type &= 0xf;
	int ip = family == AF_INET || family == AF_INET6;
	int type_ok = type == 1 || type == 2 || type == 3 || type == 4 || type == 5 || type == 6 || type == 10;
	__u8 kind2 = KA_NET_PROTO;
	int p = -1;
	if (ip) {
		if (type == 1 && (proto == 0 || proto == 6 || proto == IPPROTO_MPTCP))
			p = 6;
		else if (type == 2 && (proto == 0 || proto == 17 || proto == IPPROTO_UDPLITE))
			p = 17;
		else if ((type == 2 || type == 3) && (proto == 1 || proto == 58))
			p = proto;
		else if ((type == 1 && proto == 132) || (type == 5 && (proto == 0 || proto == 132)))
			p = 132;
	} else if (type != SOCK_RAW) {
		kind2 = KA_NET_TYPE;
		p = SOCK_RAW;
	}
	int proto_ok = p >= 0;

	__u32 src = exe_source();

	/* Lookup order: (type, source), (second, source), (type, any), (second, any). */
	__u8 f[4];
	f[0] = lookup_flags(subject_cg, src, KA_NET_TYPE, type, type_ok && src);
	f[1] = lookup_flags(subject_cg, src, kind2, p, proto_ok && src);
	f[2] = lookup_flags(subject_cg, 0, KA_NET_TYPE, type, type_ok);
	f[3] = lookup_flags(subject_cg, 0, kind2, p, proto_ok);

	int tty = has_tty();
	int matched = 0, deny = 0, audit = 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (!matched && (f[i] & KA_ENFORCE)) {
			matched = 1;
			deny = (f[i] & KA_DENY) || ((f[i] & KA_DENY_TTY) && tty);
		}
	}
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (!audit && ((f[i] & KA_AUDIT) || ((f[i] & KA_AUDIT_TTY) && tty)))
			audit = 1;
	}

	if (matched) {
		if (deny) {
			emit(subject_cg, src, family, type, proto, hook, 1, tty, KA_REASON_RULE_DENY);
			return 0;
		}
		if (audit)
			emit(subject_cg, src, family, type, proto, hook, 0, tty, KA_REASON_AUDIT);
		return 1;
	}
	if (subj->allow_list) {
		if (subj->posture_block) {
			emit(subject_cg, src, family, type, proto, hook, 1, tty, KA_REASON_POSTURE_DENY);
			return 0;
		}
		emit(subject_cg, src, family, type, proto, hook, 0, tty, audit ? KA_REASON_AUDIT : KA_REASON_POSTURE_AUDIT);
		return 1;
	}
	if (audit)
		emit(subject_cg, src, family, type, proto, hook, 0, tty, KA_REASON_AUDIT);
	return 1;
}

SEC("cgroup/sock_create")
int ka_sock_create(struct bpf_sock *sk)
{
	if (decide(sk->family, sk->type, sk->protocol, KA_HOOK_SOCK_CREATE))
		return 1;
	bpf_set_retval(-EACCES);
	return 0;
}

SEC("cgroup/connect4")
int ka_connect4(struct bpf_sock_addr *ctx)
{
	if (decide(ctx->user_family, ctx->type, ctx->protocol, KA_HOOK_CONNECT))
		return 1;
	bpf_set_retval(-EACCES);
	return 0;
}

SEC("cgroup/connect6")
int ka_connect6(struct bpf_sock_addr *ctx)
{
	if (decide(ctx->user_family, ctx->type, ctx->protocol, KA_HOOK_CONNECT))
		return 1;
	bpf_set_retval(-EACCES);
	return 0;
}

/* Packet sockets (AF_PACKET of every type, AF_XDP, and AF_INET + SOCK_PACKET, which the kernel
 * turns into AF_PACKET) never reach cgroup/sock_create: that hook runs only in inet_create. The
 * socket() syscall tracepoint sees them; it cannot refuse the call, so a denied packet socket
 * kills its process (SIGKILL, delivered before the call returns to user space). io_uring's
 * IORING_OP_SOCKET does not pass this tracepoint. */
SEC("tracepoint/syscalls/sys_enter_socket")
int ka_socket_enter(struct ka_sys_enter *ctx)
{
	int family = (int)ctx->args[0];
	int type = (int)ctx->args[1];
	int proto = (int)ctx->args[2];
	if (family == AF_INET && (type & 0xf) == SOCK_PACKET)
		family = AF_PACKET;
	if (family != AF_PACKET && family != AF_XDP)
		return 0;
	if (!decide(family, type, proto, KA_HOOK_SOCKET_KILL))
		bpf_send_signal(SIGKILL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
