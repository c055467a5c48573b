/* Types shared between the BPF programs and userspace (mirrored in src/abi.rs).
 * Every struct has a fixed size checked on both sides; change them together. */
#ifndef KUBEARMOR_ABI_H
#define KUBEARMOR_ABI_H

#define KA_PATH_MAX 256

/* Network rule key: one per (subject, socket key, source). cgroup_id 0 is the host. */
struct ka_net_key {
	__u64 cgroup_id;
	__u32 source_id;      /* 0: the rule applies to every executable */
	__u8 kind;            /* KA_NET_TYPE or KA_NET_PROTO */
	__u8 value;           /* socket type or IP protocol number */
	__u16 pad;
};

#define KA_NET_TYPE 0
#define KA_NET_PROTO 1

/* What the rules stored at one key say (combined by userspace: a Block beats an Allow). */
struct ka_net_val {
	__u8 flags;
	__u8 pad[7];
};

#define KA_ENFORCE 1    /* an Allow or Block rule is here: the lookup stops at this key */
#define KA_DENY 2       /* deny */
#define KA_DENY_TTY 4   /* deny when the process has a controlling terminal (pts: false) */
#define KA_AUDIT 8      /* an Audit rule fires */
#define KA_AUDIT_TTY 16 /* an Audit rule fires from a terminal */

/* Per-subject switches. The host entry has cgroup_id 0; every registered container has an
 * entry (without rules, it allows everything), so host rules never reach a container. */
struct ka_net_subject {
	__u8 allow_list;    /* an Allow rule exists: unmatched sockets fall to the posture */
	__u8 posture_block;
	__u8 pad[6];
};

/* An executable file as the kernel knows it: the inode number and the device number of its
 * superblock (MAJOR << 20 | MINOR, as /proc/self/mountinfo prints it). fromSource is matched on
 * this identity of the task's mm->exe_file, never on an exec path string. */
struct ka_exe_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};
_Static_assert(sizeof(struct ka_exe_key) == 16, "see ExeKey in abi.rs");

/* Source id of a dynamic loader (ld.so) run as a program: it stands for every program it could
 * load, so it carries the Block rules of every fromSource of the subject. */
#define KA_SOURCE_LOADER 0xffffffffu

/* Why an event was emitted. */
#define KA_REASON_RULE_DENY 0
#define KA_REASON_POSTURE_DENY 1
#define KA_REASON_AUDIT 2
#define KA_REASON_POSTURE_AUDIT 3

#define KA_HOOK_SOCK_CREATE 1
#define KA_HOOK_CONNECT 2
#define KA_HOOK_SOCKET_KILL 3 /* socket() tracepoint: a denial kills the process */

struct ka_net_event {
	__u64 cgroup_id;  /* the subject: a registered container's cgroup id, 0 for the host */
	__u32 pid;        /* thread id */
	__u32 tgid;
	__u32 uid;
	__u32 source_id;
	__s32 family;
	__s32 type;
	__s32 protocol;
	__u8 hook;
	__u8 denied;
	__u8 tty;
	__u8 reason;
	char comm[16];
};

/* An exec the exec guard killed: its file is on a filesystem the fanotify plane does not see. */
struct ka_guard_event {
	__u64 cgroup_id;
	__u32 pid;
	__u32 dev;
	char comm[16];
};
_Static_assert(sizeof(struct ka_guard_event) == 32, "see GuardEventRaw in abi.rs");

/* Open intent, keyed by thread id while the thread is inside an open syscall. */
struct ka_open_intent {
	__u64 cgroup_id;
	__u32 flags;
	__u32 syscall;
};

struct ka_path {
	char path[KA_PATH_MAX];
};

#endif
