// SPDX-License-Identifier: GPL-2.0
/* Network plane: protocol rules enforced at socket creation and connect, per cgroup, with
 * fromSource taken from an executable-path map that exec/fork/exit tracepoints keep current.
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

/* Executable paths named by fromSource, to small ids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ka_path);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_source_ids SEC(".maps");

/* Process (tgid) to the id of its executable, when that executable is named by a rule. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_task_source SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_net_events SEC(".maps");

/* Scratch space for a path (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ka_path);
} ka_scratch SEC(".maps");

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

/* Returns 1 to allow, 0 to deny. */
static __always_inline int decide(int family, int type, int proto, __u8 hook)
{
	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET)
		return 1;

	__u64 cg = bpf_get_current_cgroup_id();
	__u64 subject_cg = cg;
	struct ka_net_subject *subj = bpf_map_lookup_elem(&ka_net_subjects, &subject_cg);
	if (!subj) {
		subject_cg = 0;
		subj = bpf_map_lookup_elem(&ka_net_subjects, &subject_cg);
		if (!subj)
			return 1;
	}

	type &= 0xf;
	int ip = family == AF_INET || family == AF_INET6;
	int type_ok = type == 1 || type == 2 || type == 3 || type == 4 || type == 5 || type == 6 || type == 10;
	int p = -1;
	if (ip) {
		if (type == 1 && (proto == 0 || proto == 6))
			p = 6;
		else if (type == 2 && (proto == 0 || proto == 17))
			p = 17;
		else if ((type == 2 || type == 3) && (proto == 1 || proto == 58))
			p = proto;
		else if ((type == 1 || type == 5) && proto == 132)
			p = 132;
	}
	int proto_ok = p >= 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 src = 0;
	__u32 *sp = bpf_map_lookup_elem(&ka_task_source, &tgid);
	if (sp)
		src = *sp;

	/* Lookup order: (type, source), (protocol, source), (type, any), (protocol, any). */
	__u8 f[4];
	f[0] = lookup_flags(subject_cg, src, KA_NET_TYPE, type, type_ok && src);
	f[1] = lookup_flags(subject_cg, src, KA_NET_PROTO, p, proto_ok && src);
	f[2] = lookup_flags(subject_cg, 0, KA_NET_TYPE, type, type_ok);
	f[3] = lookup_flags(subject_cg, 0, KA_NET_PROTO, p, proto_ok);

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
			emit(cg, src, family, type, proto, hook, 1, tty, KA_REASON_RULE_DENY);
			return 0;
		}
		if (audit)
			emit(cg, src, family, type, proto, hook, 0, tty, KA_REASON_AUDIT);
		return 1;
	}
	if (subj->allow_list) {
		if (subj->posture_block) {
			emit(cg, src, family, type, proto, hook, 1, tty, KA_REASON_POSTURE_DENY);
			return 0;
		}
		emit(cg, src, family, type, proto, hook, 0, tty, audit ? KA_REASON_AUDIT : KA_REASON_POSTURE_AUDIT);
		return 1;
	}
	if (audit)
		emit(cg, src, family, type, proto, hook, 0, tty, KA_REASON_AUDIT);
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

/* Records the executable of every process whose path a rule names. bprm->filename is the path
 * given to execve (usually absolute); userspace also registers each source's resolved form. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(ka_on_exec, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct ka_path *buf = bpf_map_lookup_elem(&ka_scratch, &zero);
	if (!buf)
		return 0;
	__u64 *w = (__u64 *)buf->path;
#pragma unroll
	for (int i = 0; i < KA_PATH_MAX / 8; i++)
		w[i] = 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	bpf_probe_read_kernel_str(buf->path, KA_PATH_MAX, filename);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u32 *id = bpf_map_lookup_elem(&ka_source_ids, buf);
	if (id)
		bpf_map_update_elem(&ka_task_source, &tgid, id, BPF_ANY);
	else
		bpf_map_delete_elem(&ka_task_source, &tgid);
	return 0;
}

/* A forked process runs its parent's executable until it execs. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(ka_on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_pid != child_tgid)
		return 0; /* a thread */
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 *id = bpf_map_lookup_elem(&ka_task_source, &parent_tgid);
	if (id)
		bpf_map_update_elem(&ka_task_source, &child_tgid, id, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ka_on_exit, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (pid == tgid)
		bpf_map_delete_elem(&ka_task_source, &tgid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
