/* The few kernel structures the programs read, declared with CO-RE relocations instead of a
 * generated vmlinux.h: field offsets are fixed up at load time from the running kernel's BTF. */
#ifndef KUBEARMOR_KERNEL_TYPES_H
#define KUBEARMOR_KERNEL_TYPES_H

struct tty_struct;

struct signal_struct {
	struct tty_struct *tty;
} __attribute__((preserve_access_index));

struct super_block {
	unsigned int s_dev; /* dev_t */
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct signal_struct *signal;
	struct mm_struct *mm;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
	struct file *file;
} __attribute__((preserve_access_index));

/* Raw record of the syscalls:sys_enter_* tracepoints. */
struct ka_sys_enter {
	__u64 common;
	long id;
	unsigned long args[6];
};

struct ka_sys_exit {
	__u64 common;
	long id;
	long ret;
};

#endif
