/* Kernel structures the BPF-LSM programs read, declared with CO-RE relocations (field offsets
 * come from the running kernel's BTF at load time). Only the fields used are listed; aya
 * matches them by name, also inside the kernel's anonymous members (mm_struct). */
#ifndef KUBEARMOR_LSM_TYPES_H
#define KUBEARMOR_LSM_TYPES_H

#define PRESERVE __attribute__((preserve_access_index))

typedef struct {
	__u32 val;
} kuid_t;

struct qstr {
	const unsigned char *name;
} PRESERVE;

struct inode {
	unsigned short i_mode;
	kuid_t i_uid;
} PRESERVE;

struct super_block;

struct dentry {
	struct dentry *d_parent;
	struct super_block *d_sb;
	struct qstr d_name;
	struct inode *d_inode;
} PRESERVE;

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
} PRESERVE;

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} PRESERVE;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} PRESERVE;

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_mode;
} PRESERVE;

struct mnt_namespace {
	struct mount *root;
} PRESERVE;

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} PRESERVE;

struct fs_struct {
	struct path root;
} PRESERVE;

struct mm_struct {
	struct file *exe_file;
} PRESERVE;

struct tty_struct;

struct signal_struct {
	struct tty_struct *tty;
} PRESERVE;

struct task_struct {
	int pid;
	int tgid;
	struct signal_struct *signal;
	struct fs_struct *fs;
	struct mm_struct *mm;
	struct nsproxy *nsproxy;
} PRESERVE;

struct linux_binprm {
	struct file *file;
} PRESERVE;

struct sock_common {
	unsigned short skc_family;
} PRESERVE;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
	__u16 sk_protocol;
} PRESERVE;

struct socket {
	struct sock *sk;
} PRESERVE;

struct cred;
struct user_namespace;
struct kernel_siginfo;
struct sockaddr;

#endif
