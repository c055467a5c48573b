// SPDX-License-Identifier: GPL-2.0
/* BPF-LSM plane: process, file, protocol and capability rules decided in the kernel's LSM
 * hooks, per cgroup (0 = the host), from maps that userspace fills from the policy crate's
 * compiled rule sets (src/lsm_table.rs). The lookup order mirrors kubearmor_policy's
 * PathIndex::walk: source-scoped groups first (exact path, file name, directories deepest
 * first), then the same for every source; the first group with an Allow/Block rule decides,
 * and unmatched requests fall to the subject's posture in allow-list mode. Denials return
 * -EACCES. Userspace re-runs the full decision on each event for attribution.
 *
 * Paths are built from the dentry chain up to the root of the task's mount namespace (the
 * container's view). When that walk crossed a mount (a bind mount, say) and the file lives on
 * the namespace root's filesystem, the path from that filesystem's root is checked as well, so
 * a bind mount cannot rename a blocked file. Paths longer than KA_LSM_PATH_MAX or deeper than
 * KA_LSM_DEPTH are decided by the directories that fit (recursive rules) and the posture. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "abi.h"
#include "lsm_abi.h"
#include "lsm_types.h"

#define EACCES 13
#define MAY_WRITE 0x2
#define MAY_APPEND 0x8
#define PROT_EXEC 0x4
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define PMASK (KA_LSM_PATH_MAX - 1)
#define DMASK (KA_LSM_DEPTH - 1)

/* x & 3, computed where the verifier sees it (clang would drop a plain mask after a range
 * check, then reload the unmasked value). */
static __always_inline __u32 bound3(__u32 x)
{
	asm volatile("%0 &= 3" : "+r"(x));
	return x;
}

/* x & PMASK, likewise. */
static __always_inline __u32 bpos(__u32 x)
{
	asm volatile("%0 &= 255" : "+r"(x));
	return x;
}

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ka_lsm_path_key);
	__type(value, struct ka_lsm_path_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ka_lsm_key);
	__type(value, struct ka_net_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct ka_lsm_subject);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_subjects SEC(".maps");

/* Self-protection: processes (tgid) no one else may signal or trace... */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_protect SEC(".maps");

/* ...and paths (hash of a file, or of a directory covering everything below it) only they
 * may write, rename, unlink or chmod. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_selfpath SEC(".maps");

/* Paths (hash) whose reads a file allow-list does not put to the posture: the system's
 * shared libraries (filled by userspace from kubearmor_policy::SYSTEM_LIBRARY_*). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_implicit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ka_lsm_events SEC(".maps");

/* A built path: hashes of the whole path, of its last component and of each directory on the
 * way ("" for the root first). */
struct ka_pathinfo {
	__u64 full;
	__u64 base;
	__u64 dirs[KA_LSM_DEPTH];
	__u32 ndirs;
	__u32 len;       /* bytes in the buffer, 0 when nothing was built */
	__u32 truncated; /* too long or too deep: only dirs (as ancestors) are usable */
	__u32 crossed;   /* the walk crossed a mount */
};

struct ka_scratch {
	__u64 dentries[KA_LSM_DEPTH];
	char buf[4][KA_LSM_PATH_MAX * 2]; /* target, running executable, target from its fs root */
	struct ka_pathinfo info[4];     /* (4 so that an index masked with 3 is in bounds) */
};

#define P_TARGET 0
#define P_SOURCE 1
#define P_FSROOT 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ka_scratch);
} ka_lsm_scratch SEC(".maps");

static __always_inline struct ka_scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ka_lsm_scratch, &zero);
}

static __always_inline __u64 mount_of(__u64 vfsmnt)
{
	return vfsmnt - bpf_core_field_offset(struct mount, mnt);
}

/* The loops run under bpf_loop: the verifier checks each callback once instead of every
 * iteration and branch, which keeps the programs far below its instruction budget. */

/* Reads a kernel pointer at p + off (0 when unreadable). */
static __always_inline __u64 read_ptr(__u64 p, __u32 off)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)(p + off));
	return v;
}

/* Dentry walk, leaf to root: records components, crosses mounts (unless fs_only). */
struct walk_ctx {
	__u64 dentry;
	__u64 vfsmnt;
	__u64 mnt;
	__u64 ns_root;
	__u32 n;
	__u32 complete;
	__u32 crossed;
	__u32 fs_only;
	__u32 off_d_parent;
	__u32 off_mnt_root;
	__u32 off_mnt_parent;
	__u32 off_mountpoint;
	__u32 off_mnt;
};

static long walk_step(__u32 i, struct walk_ctx *c)
{
	struct ka_scratch *s = scratch();
	if (!s)
		return 1;
	__u64 dentry = c->dentry;
	__u64 mnt_root = read_ptr(c->vfsmnt, c->off_mnt_root);
	__u64 parent = read_ptr(dentry, c->off_d_parent);
	if (c->fs_only) {
		if (dentry == parent) {
			c->complete = 1;
			return 1;
		}
	} else if (dentry == mnt_root || dentry == parent) {
		__u64 mp = read_ptr(c->mnt, c->off_mnt_parent);
		if (mp == c->mnt || c->mnt == c->ns_root) {
			c->complete = 1;
			return 1;
		}
		c->dentry = read_ptr(c->mnt, c->off_mountpoint);
		c->mnt = mp;
		c->vfsmnt = mp + c->off_mnt;
		c->crossed = 1;
		return 0;
	}
	/* Keep the shallowest KA_LSM_DEPTH components: a ring indexed by n. */
	s->dentries[c->n & DMASK] = dentry;
	c->n++;
	c->dentry = parent;
	return 0;
}

/* Names, root first, into the slot's buffer. */
struct name_ctx {
	__u32 which;
	__s32 n;
	__s32 start;
	__u32 pos;
	__u32 fail;
	__u32 truncated;
	__u32 off_name;
};

static long name_step(__u32 j, struct name_ctx *c)
{
	struct ka_scratch *s = scratch();
	if (!s || c->which > 2) {
		c->fail = 1;
		return 1;
	}
	__s32 i = c->n - 1 - (__s32)j;
	if (i < c->start)
		return 1;
	__u32 pos = c->pos;
	if (pos >= KA_LSM_PATH_MAX - 1) {
		c->truncated = 1;
		return 1;
	}
	char *buf = s->buf[bound3(c->which)];
	__u64 name = read_ptr(s->dentries[i & DMASK], c->off_name);
	buf[bpos(pos)] = '/';
	pos++;
	long r = bpf_probe_read_kernel_str(&buf[bpos(pos)], KA_LSM_PATH_MAX, (void *)name);
	if (r <= 0) {
		c->fail = 1;
		return 1;
	}
	c->pos = pos + r - 1;
	return 0;
}

/* FNV-1a over the path; the hash before each '/' is a directory's. */
struct hash_ctx {
	__u64 h;
	__u64 hb;
	__u32 which;
	__u32 nd;
	__u32 len;
};

static long hash_step(__u32 i, struct hash_ctx *c)
{
	if (i >= c->len || c->which > 2)
		return 1;
	struct ka_scratch *s = scratch();
	if (!s)
		return 1;
	__u8 ch = s->buf[bound3(c->which)][bpos(i)];
	if (ch == '/') {
		if (c->nd < KA_LSM_DEPTH) {
			s->info[bound3(c->which)].dirs[c->nd & DMASK] = c->h;
			c->nd++;
		}
		c->hb = FNV_BASIS;
	} else {
		c->hb = (c->hb ^ ch) * FNV_PRIME;
	}
	c->h = (c->h ^ ch) * FNV_PRIME;
	return 0;
}

/* Builds the path of `dentry` (on mount `vfsmnt`) into slot `which`. With fs_only, follows
 * only d_parent up to the filesystem root (no mount crossing), and only for files on the same
 * filesystem as the namespace root. Returns 1 when something usable was built. A global
 * function: verified once. */
__noinline int build_path(__u64 dentry, __u64 vfsmnt, int which, int fs_only)
{
	struct ka_scratch *s = scratch();
	if (!s || which < 0 || which > 2)
		return 0;
	struct ka_pathinfo *info = &s->info[bound3(which)];
	info->len = 0;
	info->truncated = 0;
	info->crossed = 0;
	info->ndirs = 0;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 ns_root = (__u64)BPF_CORE_READ(task, nsproxy, mnt_ns, root);
	if (fs_only) {
		struct super_block *root_sb =
			BPF_CORE_READ((struct mount *)ns_root, mnt.mnt_sb);
		if (BPF_CORE_READ((struct dentry *)dentry, d_sb) != root_sb)
			return 0;
	}

	/* Field offsets from CO-RE, taken here and handed to the loop callbacks: aya 0.14
	 * mis-applies CO-RE relocations inside bpf_loop callbacks. */
	struct walk_ctx w = {
		.dentry = dentry, .vfsmnt = vfsmnt, .mnt = mount_of(vfsmnt), .ns_root = ns_root,
		.fs_only = fs_only,
		.off_d_parent = bpf_core_field_offset(struct dentry, d_parent),
		.off_mnt_root = bpf_core_field_offset(struct vfsmount, mnt_root),
		.off_mnt_parent = bpf_core_field_offset(struct mount, mnt_parent),
		.off_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint),
		.off_mnt = bpf_core_field_offset(struct mount, mnt),
	};
	bpf_loop(KA_LSM_DEPTH * 4, walk_step, &w, 0);
	if (!w.complete)
		return 0;
	info->crossed = w.crossed;
	__s32 n = w.n;
	struct name_ctx nc = {
		.which = which, .n = n,
		.off_name = bpf_core_field_offset(struct dentry, d_name) +
			    bpf_core_field_offset(struct qstr, name),
	};
	if (n > KA_LSM_DEPTH) {
		nc.start = n - KA_LSM_DEPTH;
		info->truncated = 1;
	}
	bpf_loop(KA_LSM_DEPTH, name_step, &nc, 0);
	if (nc.fail)
		return 0;
	if (nc.truncated)
		info->truncated = 1;
	__u32 pos = nc.pos;
	char *buf = s->buf[bound3(which)];
	if (pos >= KA_LSM_PATH_MAX) {
		info->truncated = 1;
		pos = KA_LSM_PATH_MAX - 1;
	}
	if (n == 0) {
		buf[0] = '/';
		pos = 1;
	}
	buf[bpos(pos)] = 0;

	struct hash_ctx hc = { .h = FNV_BASIS, .hb = FNV_BASIS, .which = which, .len = pos };
	bpf_loop(KA_LSM_PATH_MAX, hash_step, &hc, 0);
	__u32 nd = hc.nd;
	if (n == 0)
		nd = 1; /* "/" itself: the root directory is its parent */
	info->full = hc.h;
	info->base = hc.hb;
	info->ndirs = nd;
	/* A truncated path's last "directory" may be a partial name: drop it. */
	if (info->truncated && nd > 0)
		info->ndirs = nd - 1;
	info->len = pos;
	return 1;
}

/* The subject's switches: its own entry, else the host's (cgroup id 0). */
static __always_inline struct ka_lsm_subject *subject(__u64 *cg)
{
	struct ka_lsm_subject *s = bpf_map_lookup_elem(&ka_lsm_subjects, cg);
	if (s)
		return s;
	*cg = 0;
	return bpf_map_lookup_elem(&ka_lsm_subjects, cg);
}

static __always_inline int has_tty(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(t, signal, tty) != 0;
}

/* Hash of the running executable's path (0 when unknown: kernel threads, too long). */
static __always_inline __u64 source_hash(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(t, mm, exe_file);
	if (!exe)
		return 0;
	__u64 d = (__u64)BPF_CORE_READ(exe, f_path.dentry);
	__u64 m = (__u64)BPF_CORE_READ(exe, f_path.mnt);
	if (!build_path(d, m, P_SOURCE, 0))
		return 0;
	struct ka_scratch *s = scratch();
	if (!s || s->info[P_SOURCE].truncated)
		return 0;
	return s->info[P_SOURCE].full;
}

/* Lookup state of one path decision. */
struct walk {
	__u8 enforce;
	__u8 deny;
	__u8 audit;
	__u8 posture; /* an Allow rule's flags refuse: the posture decides */
};

static __always_inline void visit(struct walk *w, __u64 cg, __u64 src, __u8 family, __u8 kind,
				  __u64 hash, __u8 req)
{
	struct ka_lsm_path_key k = {
		.cgroup_id = cg, .path_hash = hash, .source_hash = src, .family = family, .kind = kind,
	};
	struct ka_lsm_path_val *v = bpf_map_lookup_elem(&ka_lsm_paths, &k);
	if (!v)
		return;
	if (!w->enforce && v->enforce) {
		w->enforce = 1;
		w->deny = (v->deny_mask >> req) & 1;
		w->posture = (v->posture_mask >> req) & 1;
	}
	if (!w->audit && ((v->audit_mask >> req) & 1))
		w->audit = 1;
}

/* Directories, deepest first: the parent's direct and recursive rules, then the recursive
 * rules of the ancestors. */
struct dir_ctx {
	struct walk w;
	__u8 family;
	__u8 req;
	__u8 truncated;
	__u8 which;
	__u32 nd;
	__u64 cg;
	__u64 src;
};

static long dir_step(__u32 k, struct dir_ctx *c)
{
	if (k >= c->nd || (c->w.enforce && c->w.audit) || c->which > 2)
		return 1;
	struct ka_scratch *s = scratch();
	if (!s)
		return 1;
	__u32 idx = c->nd - 1 - k;
	__u8 kind = (k == 0 && !c->truncated) ? KA_LSM_DIR_NEAR : KA_LSM_DIR_FAR;
	visit(&c->w, c->cg, c->src, c->family, kind, s->info[bound3(c->which)].dirs[idx & DMASK], c->req);
	return 0;
}

#define WALK(family, req, which) ((family) | ((req) << 8) | ((which) << 16))
#define W_ENFORCE 1
#define W_DENY 2
#define W_AUDIT 4
#define W_POSTURE 8

/* Walks the groups for the path in slot `which`, most specific first; returns W_* bits.
 * A global function: verified once. */
__noinline int walk_path(__u64 cg, __u64 src, __u32 how)
{
	__u8 family = how & 0xff, req = (how >> 8) & 0xff;
	__u32 which = (how >> 16) & 0xff;
	struct ka_scratch *s = scratch();
	if (!s || which > 2)
		return 0;
	struct ka_pathinfo *p = &s->info[bound3(which)];
	if (!p->len)
		return 0;
	struct dir_ctx c = {
		.family = family, .req = req, .truncated = p->truncated ? 1 : 0, .which = which,
		.nd = p->ndirs > KA_LSM_DEPTH ? KA_LSM_DEPTH : p->ndirs, .cg = cg,
	};
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0 && !src)
			continue;
		c.src = pass == 0 ? src : 0;
		if (!p->truncated) {
			visit(&c.w, cg, c.src, family, KA_LSM_EXACT, p->full, req);
			if (family == KA_LSM_PROCESS)
				visit(&c.w, cg, c.src, family, KA_LSM_EXECNAME, p->base, req);
			/* The path as a directory (a directory rule governs the directory itself). */
			if (p->len > 1)
				visit(&c.w, cg, c.src, family, KA_LSM_DIR_NEAR, p->full, req);
		}
		bpf_loop(KA_LSM_DEPTH, dir_step, &c, 0);
		if (c.w.enforce && c.w.audit)
			break;
	}
	return (c.w.enforce ? W_ENFORCE : 0) | (c.w.deny ? W_DENY : 0) | (c.w.audit ? W_AUDIT : 0) |
	       (c.w.posture ? W_POSTURE : 0);
}

/* Is the target a read the file allow-list leaves alone: "/" itself, a system library file,
 * or anything below a system library directory? */
struct implicit_ctx {
	__u32 nd;
	__u32 found;
};

static long implicit_step(__u32 k, struct implicit_ctx *c)
{
	if (k >= c->nd)
		return 1;
	struct ka_scratch *s = scratch();
	if (!s)
		return 1;
	__u64 h = s->info[P_TARGET].dirs[k & DMASK];
	__u32 *v = bpf_map_lookup_elem(&ka_lsm_implicit, &h);
	if (k > 0 && v && *v == KA_LSM_IMPLICIT_DIR) {
		c->found = 1;
		return 1;
	}
	return 0;
}

static __always_inline int implicitly_readable(void)
{
	struct ka_scratch *s = scratch();
	if (!s || !s->info[P_TARGET].len)
		return 0;
	struct ka_pathinfo *p = &s->info[P_TARGET];
	if (p->len == 1)
		return 1;
	__u64 full = p->full;
	__u32 *v = bpf_map_lookup_elem(&ka_lsm_implicit, &full);
	if (!p->truncated && v && *v == KA_LSM_IMPLICIT_FILE)
		return 1;
	struct implicit_ctx c = { .nd = p->ndirs > KA_LSM_DEPTH ? KA_LSM_DEPTH : p->ndirs };
	bpf_loop(KA_LSM_DEPTH, implicit_step, &c, 0);
	return c.found;
}

struct verdict {
	__u8 deny;
	__u8 emit;
	__u8 reason;
};

static __always_inline void emit_event(__u8 hook, __u8 denied, __u8 reason, __u8 write, __u8 tty,
				       __u32 owner, __u64 cg, int a0, int a1, int a2, int with_path)
{
	struct ka_lsm_event *e = bpf_ringbuf_reserve(&ka_lsm_events, sizeof(*e), 0);
	if (!e)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->owner = owner;
	e->hook = hook;
	e->denied = denied;
	e->reason = reason;
	e->write = write;
	e->tty = tty;
	e->arg0 = a0;
	e->arg1 = a1;
	e->arg2 = a2;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = 0;
	e->source[0] = 0;
	struct ka_scratch *s = scratch();
	if (s) {
		if (with_path && s->info[P_TARGET].len)
			bpf_probe_read_kernel_str(e->path, sizeof(e->path), s->buf[P_TARGET]);
		if (s->info[P_SOURCE].len)
			bpf_probe_read_kernel_str(e->source, sizeof(e->source), s->buf[P_SOURCE]);
	}
	bpf_ringbuf_submit(e, 0);
}

/* Self-protection: a write to a protected path by anyone but a protected process. */
static __always_inline int self_path_denied(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&ka_lsm_protect, &tgid))
		return 0;
	struct ka_scratch *s = scratch();
	if (!s || !s->info[P_TARGET].len)
		return 0;
	struct ka_pathinfo *p = &s->info[P_TARGET];
	__u64 full = p->full;
	if (!p->truncated && bpf_map_lookup_elem(&ka_lsm_selfpath, &full))
		return 1;
	__u32 nd = p->ndirs;
	for (int k = 0; k < KA_LSM_DEPTH; k++) {
		if (k >= nd)
			break;
		__u64 h = p->dirs[k & DMASK];
		if (k > 0 && bpf_map_lookup_elem(&ka_lsm_selfpath, &h))
			return 1;
	}
	return 0;
}

/* Is anything protected? (the map is empty unless self-protection is on) */
static __always_inline int self_protection_on(void)
{
	__u32 zero_key = 0;
	/* Entry 0 is the switch; real tgids are never 0. */
	return bpf_map_lookup_elem(&ka_lsm_protect, &zero_key) != 0;
}

/* Decides a path operation; returns 0 or -EACCES. `mmap_exec`: only explicit Block/Allow
 * denials count (libraries mapped executable are not execs under the posture). */
#define OP(family, write, hook, mmap_exec) \
	((family) | ((write) << 8) | ((hook) << 16) | ((mmap_exec) << 24))

__noinline int check_path(__u64 dentry, __u64 vfsmnt, __u32 op)
{
	__u8 family = op & 0xff, write = (op >> 8) & 0xff, hook = (op >> 16) & 0xff;
	int mmap_exec = (op >> 24) & 0xff;
	if (!dentry || !vfsmnt)
		return 0;
	int protect = write && self_protection_on();
	__u64 cg = bpf_get_current_cgroup_id();
	struct ka_lsm_subject *subj = subject(&cg);
	int has_rules = subj && (family == KA_LSM_PROCESS ? subj->process_rules : subj->file_rules);
	if (!has_rules && !protect)
		return 0;
	struct ka_scratch *s = scratch();
	if (!s)
		return 0;
	s->info[P_SOURCE].len = 0;
	if (!build_path(dentry, vfsmnt, P_TARGET, 0))
		return 0;
	__u8 tty = has_tty();
	struct inode *ino = BPF_CORE_READ((struct dentry *)dentry, d_inode);
	__u32 owner = ino ? BPF_CORE_READ(ino, i_uid.val) : (__u32)-1;
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	if (protect && self_path_denied()) {
		emit_event(hook, 1, KA_LSM_REASON_SELF, write, tty, owner, cg, 0, 0, 0, 1);
		return -EACCES;
	}
	if (!has_rules || !subj)
		return 0;
	__u8 allow_list = family == KA_LSM_PROCESS ? subj->process_allow_list : subj->file_allow_list;
	__u8 posture_block = subj->file_posture_block;
	__u64 src = subj->source_rules ? source_hash() : 0;
	__u8 req = (write ? KA_LSM_REQ_WRITE : 0) | (owner == uid ? KA_LSM_REQ_OWNER : 0) |
		   (tty ? KA_LSM_REQ_TTY : 0);

	int w = walk_path(cg, src, WALK(family, req, P_TARGET));
	__u8 deny = 0, emit = 0, reason = 0;
	if (family == KA_LSM_FILE && allow_list && !write && !(w & W_ENFORCE) && implicitly_readable())
		allow_list = 0;
	if ((w & W_ENFORCE) && (w & W_DENY)) {
		deny = 1;
		emit = 1;
		reason = KA_REASON_RULE_DENY;
	} else if ((w & W_ENFORCE) && !(w & W_POSTURE)) {
		if (w & W_AUDIT) {
			emit = 1;
			reason = KA_REASON_AUDIT;
		}
	} else if ((allow_list || (w & W_POSTURE)) && !mmap_exec) {
		/* Unmatched in allow-list mode, or refused by an Allow rule's flags: the posture. */
		emit = 1;
		if (posture_block) {
			deny = 1;
			reason = KA_REASON_POSTURE_DENY;
		} else {
			reason = (w & W_AUDIT) ? KA_REASON_AUDIT : KA_REASON_POSTURE_AUDIT;
		}
	} else if ((w & W_AUDIT) && !mmap_exec) {
		emit = 1;
		reason = KA_REASON_AUDIT;
	}
	/* The same file by its path from the filesystem root: closes bind-mount renames. */
	if (!deny && s->info[P_TARGET].crossed && build_path(dentry, vfsmnt, P_FSROOT, 1)) {
		int w2 = walk_path(cg, src, WALK(family, req, P_FSROOT));
		if ((w2 & W_ENFORCE) && (w2 & W_DENY)) {
			deny = 1;
			emit = 1;
			reason = KA_REASON_RULE_DENY;
		}
	}
	if (emit)
		emit_event(hook, deny, reason, write, tty, owner, cg, 0, 0, 0, 1);
	return deny ? -EACCES : 0;
}

/* Global functions return an unknown scalar as far as the verifier knows; 6.12 wants an LSM
 * program's return value provably in [-4095, 0]. */
static __always_inline int verdict(int r)
{
	return r ? -EACCES : 0;
}

static __always_inline int check_file(struct file *f, __u8 family, __u8 write, __u8 hook, int mmap_exec)
{
	__u64 d = (__u64)BPF_CORE_READ(f, f_path.dentry);
	__u64 m = (__u64)BPF_CORE_READ(f, f_path.mnt);
	return verdict(check_path(d, m, OP(family, write, hook, mmap_exec)));
}

static __always_inline int check_dir_entry(const struct path *dir, struct dentry *dentry, __u8 hook)
{
	__u64 m = (__u64)BPF_CORE_READ(dir, mnt);
	/* Global functions take scalars: copy the BTF pointer out as a plain value. */
	__u64 d = 0;
	bpf_probe_read_kernel(&d, sizeof(d), &dentry);
	return verdict(check_path(d, m, OP(KA_LSM_FILE, 1, hook, 0)));
}

SEC("lsm/bprm_check_security")
int BPF_PROG(ka_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return check_file(BPF_CORE_READ(bprm, file), KA_LSM_PROCESS, 0, KA_LSM_HOOK_EXEC, 0);
}

/* ld.so /bin/blocked maps the binary executable without an exec of it. */
SEC("lsm/mmap_file")
int BPF_PROG(ka_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return check_file(file, KA_LSM_PROCESS, 0, KA_LSM_HOOK_MMAP_EXEC, 1);
}

/* Opens are decided as reads; writes are decided when they happen (file_permission), so a
 * readOnly rule lets O_RDWR readers work, as upstream. */
SEC("lsm/file_open")
int BPF_PROG(ka_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	return check_file(file, KA_LSM_FILE, 0, KA_LSM_HOOK_OPEN, 0);
}

SEC("lsm/file_permission")
int BPF_PROG(ka_file_permission, struct file *file, int mask, int ret)
{
	if (ret)
		return ret;
	if (!(mask & (MAY_WRITE | MAY_APPEND)))
		return 0;
	return check_file(file, KA_LSM_FILE, 1, KA_LSM_HOOK_WRITE, 0);
}

SEC("lsm/path_unlink")
int BPF_PROG(ka_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check_dir_entry(dir, dentry, KA_LSM_HOOK_UNLINK);
}

SEC("lsm/path_rmdir")
int BPF_PROG(ka_path_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return check_dir_entry(dir, dentry, KA_LSM_HOOK_RMDIR);
}

SEC("lsm/path_mkdir")
int BPF_PROG(ka_path_mkdir, const struct path *dir, struct dentry *dentry, unsigned short mode, int ret)
{
	if (ret)
		return ret;
	return check_dir_entry(dir, dentry, KA_LSM_HOOK_MKDIR);
}

/* Also O_CREAT of a file that does not exist yet. */
SEC("lsm/path_mknod")
int BPF_PROG(ka_path_mknod, const struct path *dir, struct dentry *dentry, unsigned short mode,
	     unsigned int dev, int ret)
{
	if (ret)
		return ret;
	return check_dir_entry(dir, dentry, KA_LSM_HOOK_MKNOD);
}

SEC("lsm/path_symlink")
int BPF_PROG(ka_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name,
	     int ret)
{
	if (ret)
		return ret;
	return check_dir_entry(dir, dentry, KA_LSM_HOOK_LINK);
}

/* Both names: moving a protected file away is a write to it. */
SEC("lsm/path_rename")
int BPF_PROG(ka_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	int r = check_dir_entry(old_dir, old_dentry, KA_LSM_HOOK_RENAME);
	if (r)
		return r;
	return check_dir_entry(new_dir, new_dentry, KA_LSM_HOOK_RENAME);
}

/* Both names: a hard link to a protected file is a second name for it. */
SEC("lsm/path_link")
int BPF_PROG(ka_path_link, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	int r = check_dir_entry(new_dir, old_dentry, KA_LSM_HOOK_LINK);
	if (r)
		return r;
	return check_dir_entry(new_dir, new_dentry, KA_LSM_HOOK_LINK);
}

SEC("lsm/path_chmod")
int BPF_PROG(ka_path_chmod, const struct path *path, unsigned short mode, int ret)
{
	if (ret)
		return ret;
	return verdict(check_path((__u64)BPF_CORE_READ(path, dentry), (__u64)BPF_CORE_READ(path, mnt),
				  OP(KA_LSM_FILE, 1, KA_LSM_HOOK_CHMOD, 0)));
}

SEC("lsm/path_truncate")
int BPF_PROG(ka_path_truncate, const struct path *path, int ret)
{
	if (ret)
		return ret;
	return verdict(check_path((__u64)BPF_CORE_READ(path, dentry), (__u64)BPF_CORE_READ(path, mnt),
				  OP(KA_LSM_FILE, 1, KA_LSM_HOOK_TRUNCATE, 0)));
}

/* open(O_TRUNC) on 6.2 and later (6.1 truncates through path_truncate). */
SEC("lsm/file_truncate")
int BPF_PROG(ka_file_truncate, struct file *file, int ret)
{
	if (ret)
		return ret;
	return check_file(file, KA_LSM_FILE, 1, KA_LSM_HOOK_TRUNCATE, 0);
}

/* Protocol and capability rules: flags as the network plane's (abi.h). */
static __always_inline __u8 rule_flags(__u64 cg, __u64 src, __u8 kind, int value, int valid)
{
	if (!valid || value < 0 || value > 255)
		return 0;
	struct ka_lsm_key k = { .cgroup_id = cg, .source_hash = src, .kind = kind, .value = (__u8)value };
	struct ka_net_val *v = bpf_map_lookup_elem(&ka_lsm_rules, &k);
	return v ? v->flags : 0;
}

/* Folds up to four groups (most specific first) with the posture; returns deny. */
static __always_inline int fold(__u8 *f, int n, int tty, __u8 allow_list, __u8 posture_block,
				struct verdict *out)
{
	int matched = 0, deny = 0, audit = 0;
	for (int i = 0; i < 4; i++) {
		if (i >= n)
			break;
		if (!matched && (f[i] & KA_ENFORCE)) {
			matched = 1;
			deny = (f[i] & KA_DENY) || ((f[i] & KA_DENY_TTY) && tty);
		}
		if (!audit && ((f[i] & KA_AUDIT) || ((f[i] & KA_AUDIT_TTY) && tty)))
			audit = 1;
	}
	out->deny = 0;
	out->emit = 0;
	if (matched) {
		out->deny = deny;
		out->emit = deny || audit;
		out->reason = deny ? KA_REASON_RULE_DENY : KA_REASON_AUDIT;
	} else if (allow_list) {
		out->emit = 1;
		out->deny = posture_block;
		out->reason = posture_block ? KA_REASON_POSTURE_DENY
				: (audit ? KA_REASON_AUDIT : KA_REASON_POSTURE_AUDIT);
	} else if (audit) {
		out->emit = 1;
		out->reason = KA_REASON_AUDIT;
	}
	return out->deny;
}

/* Mirrors RuleSet::decide_socket (and net.bpf.c). */
__noinline int check_socket(int family, int type, int proto, int hook)
{
	if (family != AF_INET && family != AF_INET6 && family != AF_PACKET)
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	struct ka_lsm_subject *subj = subject(&cg);
	if (!subj || !subj->net_rules)
		return 0;
	struct ka_scratch *s = scratch();
	if (!s)
		return 0;
	s->info[P_SOURCE].len = 0;
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
	__u64 src = subj->source_rules ? source_hash() : 0;
	__u8 f[4];
	f[0] = rule_flags(cg, src, KA_NET_TYPE, type, type_ok && src);
	f[1] = rule_flags(cg, src, KA_NET_PROTO, p, p >= 0 && src);
	f[2] = rule_flags(cg, 0, KA_NET_TYPE, type, type_ok);
	f[3] = rule_flags(cg, 0, KA_NET_PROTO, p, p >= 0);
	int tty = has_tty();
	struct verdict v = {};
	fold(f, 4, tty, subj->net_allow_list, subj->net_posture_block, &v);
	if (v.emit)
		emit_event(hook, v.deny, v.reason, 0, tty, (__u32)-1, cg, family, type, proto, 0);
	return v.deny ? -EACCES : 0;
}

SEC("lsm/socket_create")
int BPF_PROG(ka_socket_create, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return ret;
	if (kern)
		return 0;
	return verdict(check_socket(family, type, protocol, KA_LSM_HOOK_SOCKET_CREATE));
}

static __always_inline int check_sock(struct socket *sock, __u8 hook)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	int family = BPF_CORE_READ(sk, __sk_common.skc_family);
	int type = BPF_CORE_READ(sk, sk_type);
	int proto = BPF_CORE_READ(sk, sk_protocol);
	return verdict(check_socket(family, type, proto, hook));
}

SEC("lsm/socket_connect")
int BPF_PROG(ka_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return check_sock(sock, KA_LSM_HOOK_SOCKET_CONNECT);
}

SEC("lsm/socket_accept")
int BPF_PROG(ka_socket_accept, struct socket *sock, struct socket *newsock, int ret)
{
	if (ret)
		return ret;
	return check_sock(sock, KA_LSM_HOOK_SOCKET_ACCEPT);
}

/* Mirrors RuleSet::decide_capability. */
SEC("lsm/capable")
int BPF_PROG(ka_capable, const struct cred *cred, struct user_namespace *ns, int cap,
	     unsigned int opts, int ret)
{
	if (ret)
		return ret;
	__u64 cg = bpf_get_current_cgroup_id();
	struct ka_lsm_subject *subj = subject(&cg);
	if (!subj || !subj->cap_rules)
		return 0;
	struct ka_scratch *s = scratch();
	if (!s)
		return 0;
	s->info[P_SOURCE].len = 0;
	__u64 src = subj->source_rules ? source_hash() : 0;
	__u8 f[2];
	f[0] = rule_flags(cg, src, KA_LSM_CAP, cap, src != 0);
	f[1] = rule_flags(cg, 0, KA_LSM_CAP, cap, 1);
	struct verdict v = {};
	fold(f, 2, 0, subj->cap_allow_list, subj->cap_posture_block, &v);
	if (v.emit)
		emit_event(KA_LSM_HOOK_CAPABLE, v.deny, v.reason, 0, 0, (__u32)-1, cg, cap, 0, 0, 0);
	return v.deny ? -EACCES : 0;
}

/* Self-protection: only protected processes may signal or trace protected ones. Signal 0
 * (an existence probe) stays allowed. */
static __always_inline int guard_task(struct task_struct *p, int sig, __u8 hook)
{
	__u32 target = BPF_CORE_READ(p, tgid);
	if (!bpf_map_lookup_elem(&ka_lsm_protect, &target))
		return 0;
	__u32 me = bpf_get_current_pid_tgid() >> 32;
	if (me == target || bpf_map_lookup_elem(&ka_lsm_protect, &me))
		return 0;
	struct ka_scratch *s = scratch();
	if (s) {
		s->info[P_SOURCE].len = 0;
		s->info[P_TARGET].len = 0;
	}
	emit_event(hook, 1, KA_LSM_REASON_SELF, 0, 0, (__u32)-1, 0, sig, target, 0, 0);
	return -EACCES;
}

SEC("lsm/task_kill")
int BPF_PROG(ka_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	if (sig == 0)
		return 0;
	return guard_task(p, sig, KA_LSM_HOOK_KILL);
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(ka_ptrace_access, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return guard_task(child, 0, KA_LSM_HOOK_PTRACE);
}

char LICENSE[] SEC("license") = "GPL";
