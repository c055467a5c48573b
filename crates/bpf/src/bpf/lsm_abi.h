/* Types shared between the BPF-LSM programs (lsm.bpf.c) and userspace (src/lsm_abi.rs).
 * Sizes and every field offset are asserted on both sides with the same numbers; change the
 * two files together. */
#ifndef KUBEARMOR_LSM_ABI_H
#define KUBEARMOR_LSM_ABI_H

#define KA_LSM_PATH_MAX 256 /* longest path matched in the kernel, with its NUL (power of 2) */
#define KA_LSM_DEPTH 32     /* deepest path (components) matched in the kernel */

/* Rule families of a path key. */
#define KA_LSM_PROCESS 0
#define KA_LSM_FILE 1

/* What a path key's hash is of. */
#define KA_LSM_EXACT 0    /* the whole path */
#define KA_LSM_EXECNAME 1 /* the last component (process rules naming a file name) */
#define KA_LSM_DIR_NEAR 2 /* a directory, for the path itself or a file directly in it:
			     the directory's direct and recursive rules */
#define KA_LSM_DIR_FAR 3  /* a directory, for paths deeper below it: its recursive rules */

/* One group of process or file rules. cgroup_id 0 is the host; source_hash 0 is "any
 * executable". Hashes are FNV-1a 64 of the path bytes (the root directory is ""). */
struct ka_lsm_path_key {
	__u64 cgroup_id;
	__u64 path_hash;
	__u64 source_hash;
	__u8 family;
	__u8 kind;
	__u8 pad[6];
};

/* The rules of one group, folded per request shape: bit (write | owner << 1 | tty << 2) of
 * deny_mask is set when a Block rule in the group denies such a request, of posture_mask when
 * an Allow rule's flags refuse it (the posture then decides), of audit_mask when an Audit rule
 * reports it. enforce says an Allow/Block rule is here (the enforced lookup stops at this
 * group); audit that an Audit rule is. */
struct ka_lsm_path_val {
	__u8 deny_mask;
	__u8 audit_mask;
	__u8 enforce;
	__u8 audit;
	__u8 posture_mask;
	__u8 pad[3];
};

/* ka_lsm_implicit values: reads the file allow-list does not judge (system libraries). */
#define KA_LSM_IMPLICIT_FILE 1
#define KA_LSM_IMPLICIT_DIR 2

#define KA_LSM_REQ_WRITE 1
#define KA_LSM_REQ_OWNER 2
#define KA_LSM_REQ_TTY 4

/* Protocol and capability rules: flags as in abi.h (KA_ENFORCE, KA_DENY, KA_DENY_TTY,
 * KA_AUDIT, KA_AUDIT_TTY). kind: KA_NET_TYPE / KA_NET_PROTO (abi.h) or KA_LSM_CAP. */
#define KA_LSM_CAP 2
struct ka_lsm_key {
	__u64 cgroup_id;
	__u64 source_hash;
	__u8 kind;
	__u8 value;
	__u8 pad[6];
};

/* Per-subject switches (cgroup id 0 is the host). Process rules use the file posture. */
struct ka_lsm_subject {
	__u8 process_allow_list;
	__u8 file_allow_list;
	__u8 file_posture_block;
	__u8 net_allow_list;
	__u8 net_posture_block;
	__u8 cap_allow_list;
	__u8 cap_posture_block;
	__u8 source_rules; /* a rule names fromSource: hash the running executable */
	__u8 process_rules;
	__u8 file_rules;
	__u8 net_rules;
	__u8 cap_rules;
	__u8 pad[4];
};

/* Hooks, as reported in events. */
#define KA_LSM_HOOK_EXEC 1
#define KA_LSM_HOOK_OPEN 2
#define KA_LSM_HOOK_WRITE 3     /* file_permission with MAY_WRITE */
#define KA_LSM_HOOK_UNLINK 4
#define KA_LSM_HOOK_RENAME 5
#define KA_LSM_HOOK_LINK 6
#define KA_LSM_HOOK_CHMOD 7
#define KA_LSM_HOOK_TRUNCATE 8
#define KA_LSM_HOOK_MKDIR 9
#define KA_LSM_HOOK_MKNOD 10    /* also O_CREAT of a new file */
#define KA_LSM_HOOK_MMAP_EXEC 11
#define KA_LSM_HOOK_SOCKET_CREATE 12
#define KA_LSM_HOOK_SOCKET_CONNECT 13
#define KA_LSM_HOOK_SOCKET_ACCEPT 14
#define KA_LSM_HOOK_CAPABLE 15
#define KA_LSM_HOOK_KILL 16     /* self-protection */
#define KA_LSM_HOOK_PTRACE 17   /* self-protection */
#define KA_LSM_HOOK_RMDIR 18

/* Why (reasons shared with abi.h: KA_REASON_RULE_DENY, _POSTURE_DENY, _AUDIT, _POSTURE_AUDIT). */
#define KA_LSM_REASON_SELF 4 /* self-protection */

struct ka_lsm_event {
	__u64 cgroup_id;
	__u32 pid;   /* thread id */
	__u32 tgid;
	__u32 uid;
	__u32 owner; /* owner uid of the file, or (u32)-1 */
	__u8 hook;
	__u8 denied;
	__u8 reason;
	__u8 write;
	__u8 tty;
	__u8 pad[3];
	__s32 arg0;  /* socket family / capability / signal */
	__s32 arg1;  /* socket type / target tgid */
	__s32 arg2;  /* socket protocol */
	__u32 pad2;
	char comm[16];
	char path[KA_LSM_PATH_MAX];   /* the file, "" for socket and capability hooks */
	char source[KA_LSM_PATH_MAX]; /* the running executable when the kernel built it, else "" */
};

_Static_assert(sizeof(struct ka_lsm_path_key) == 32, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_key, path_hash) == 8, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_key, source_hash) == 16, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_key, family) == 24, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_key, kind) == 25, "see lsm_abi.rs");
_Static_assert(sizeof(struct ka_lsm_path_val) == 8, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_val, audit_mask) == 1, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_val, enforce) == 2, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_val, audit) == 3, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_path_val, posture_mask) == 4, "see lsm_abi.rs");
_Static_assert(sizeof(struct ka_lsm_key) == 24, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_key, source_hash) == 8, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_key, kind) == 16, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_key, value) == 17, "see lsm_abi.rs");
_Static_assert(sizeof(struct ka_lsm_subject) == 16, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_subject, cap_posture_block) == 6, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_subject, source_rules) == 7, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_subject, cap_rules) == 11, "see lsm_abi.rs");
_Static_assert(sizeof(struct ka_lsm_event) == 576, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, uid) == 16, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, owner) == 20, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, hook) == 24, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, denied) == 25, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, reason) == 26, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, write) == 27, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, tty) == 28, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, arg0) == 32, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, arg1) == 36, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, arg2) == 40, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, comm) == 48, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, path) == 64, "see lsm_abi.rs");
_Static_assert(__builtin_offsetof(struct ka_lsm_event, source) == 320, "see lsm_abi.rs");

#endif
