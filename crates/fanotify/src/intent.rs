//! Write intent and exec calls: what the blocked thread is doing, beyond what fanotify says.
//!
//! A permission event names the file, not the access mode: the event fd is always opened
//! read-only by the kernel. The mode comes from an [`OpenIntent`] keyed by thread id
//! (`FAN_REPORT_TID`). The plane ships two:
//! - [`NoIntent`]: knows nothing (every open is "unknown");
//! - [`ProcSyscallIntent`]: reads `/proc/<tid>/syscall` of the blocked thread (syscall number
//!   and arguments, stable while the thread waits for our answer) and, for `openat2` and
//!   exec calls, the thread's memory with `process_vm_readv`. No BPF needed, about 5 µs.
//!   The memory reads run on a helper with a deadline ([`MemReader`]): the memory is the
//!   task's, and its owner can make a read of it wait forever (a FUSE-backed page).
//!
//! The production source is the BPF tracepoint map `tid -> {open flags, cgroup id}` (lead's
//! `crates/bpf`); wrap it in an `OpenIntent` and fall back to `ProcSyscallIntent` on a miss.
//!
//! Unknown intent (io_uring opens, `open_by_handle_at` without a tracepoint, a failed read)
//! is decided as [`crate::UnknownIntent::decide_as`] says, default **read**, and by default
//! such a decision is never cached (see [`crate::UnknownIntent`]).

use crate::procfs;
use crate::user_mem::MemReader;

/// An `execve`/`execveat` in progress, as the calling thread passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCall {
    /// The filename argument, as passed (may be relative, may be empty for `fexecve`).
    pub filename: Vec<u8>,
    /// argv, when asked for and readable (at most 21 items: more never match
    /// `allowedArgs`, `truncated` says so).
    pub args: Option<Vec<String>>,
    /// argv had more items than were read.
    pub truncated: bool,
}

/// Where write intent (and exec arguments) come from.
pub trait OpenIntent: Send + Sync {
    /// The `open` flags of the open that thread `tid` is blocked in, or `None` if unknown.
    fn open_flags(&self, tid: u32) -> Option<i32>;

    /// The exec call that thread `tid` is blocked in, if known. `want_args`: also read argv.
    /// Used to tell the ELF interpreter (`ld.so`) of an exec from a new exec, and for
    /// `allowedArgs`. The default knows nothing.
    fn exec_call(&self, tid: u32, want_args: bool) -> Option<ExecCall> {
        let _ = (tid, want_args);
        None
    }
}

/// Knows nothing: every open has unknown intent, every exec unknown arguments.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIntent;

impl OpenIntent for NoIntent {
    fn open_flags(&self, _tid: u32) -> Option<i32> {
        None
    }
}

/// Reads the blocked thread's syscall from `/proc/<tid>/syscall` (x86_64 syscall numbers;
/// 32-bit compat calls other than `openat2` read as unknown), and the memory its arguments
/// point to through a [`MemReader`] (a read that misses the deadline is unknown).
#[derive(Debug, Clone, Default)]
pub struct ProcSyscallIntent {
    mem: MemReader,
}

impl ProcSyscallIntent {
    /// Memory reads through `mem` (shared helpers and deadline).
    pub fn new(mem: MemReader) -> Self {
        Self { mem }
    }

    pub fn mem_reader(&self) -> &MemReader {
        &self.mem
    }
}

/// The uid that owns thread `tid`'s memory (`u32::MAX` when unknown: one shared owner).
fn owner_of(tid: u32) -> u32 {
    procfs::status(tid).map_or(u32::MAX, |s| s.uid)
}

/// At most this many argv items are read (`allowedArgs` never matches more than 20 args).
pub const MAX_ARGS: usize = 21;
/// Longest argument or filename read from a process's memory.
pub const MAX_ARG_LEN: usize = 4096;

impl OpenIntent for ProcSyscallIntent {
    fn open_flags(&self, tid: u32) -> Option<i32> {
        let sc = procfs::syscall(tid).ok()??;
        flags_of(tid, &sc, &self.mem)
    }

    fn exec_call(&self, tid: u32, want_args: bool) -> Option<ExecCall> {
        let sc = procfs::syscall(tid).ok()??;
        let (name_ptr, argv_ptr) = match sc.nr {
            n if n == libc::SYS_execve => (sc.args[0], sc.args[1]),
            n if n == libc::SYS_execveat => (sc.args[1], sc.args[2]),
            _ => return None,
        };
        let read = move || {
            let filename = procfs::read_cstr(tid, name_ptr, MAX_ARG_LEN).ok()?;
            let (args, truncated) = if want_args && argv_ptr != 0 {
                match procfs::read_argv(tid, argv_ptr, MAX_ARGS, MAX_ARG_LEN) {
                    Ok((a, t)) => (Some(a), t),
                    Err(_) => (None, false),
                }
            } else {
                (None, false)
            };
            Some(ExecCall {
                filename,
                args,
                truncated,
            })
        };
        self.mem.run(owner_of(tid), read).flatten()
    }
}

/// Open flags of an open-family syscall, or `None`.
fn flags_of(tid: u32, sc: &procfs::SyscallInfo, mem: &MemReader) -> Option<i32> {
    let nr = sc.nr;
    #[cfg(target_arch = "x86_64")]
    {
        if nr == libc::SYS_open {
            return Some(sc.args[1] as i32);
        }
        if nr == libc::SYS_creat {
            return Some(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC);
        }
        if nr == libc::SYS_uselib {
            return Some(libc::O_RDONLY);
        }
    }
    if nr == libc::SYS_openat || nr == libc::SYS_open_by_handle_at {
        return Some(sc.args[2] as i32);
    }
    if nr == libc::SYS_openat2 {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }: flags first.
        let addr = sc.args[2];
        let read = move || {
            let mut b = [0u8; 8];
            let n = procfs::read_mem(tid, addr, &mut b).ok()?;
            (n == 8).then(|| u64::from_ne_bytes(b) as i32)
        };
        return mem.run(owner_of(tid), read).flatten();
    }
    if nr == libc::SYS_execve || nr == libc::SYS_execveat {
        // The kernel opens the binary (and its interpreter) read-only.
        return Some(libc::O_RDONLY);
    }
    None
}

/// Whether open flags may write: write-only, read-write, append, truncate or create.
pub fn flags_write(flags: i32) -> bool {
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_WRONLY
        || acc == libc::O_RDWR
        || flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_CREAT) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_flags() {
        assert!(!flags_write(libc::O_RDONLY | libc::O_CLOEXEC));
        assert!(flags_write(libc::O_WRONLY));
        assert!(flags_write(libc::O_RDWR));
        assert!(flags_write(libc::O_RDONLY | libc::O_TRUNC));
        assert!(flags_write(libc::O_RDONLY | libc::O_APPEND));
        assert!(flags_write(libc::O_RDONLY | libc::O_CREAT));
        // O_PATH never reaches a permission event, but must not read as a write either.
        assert!(!flags_write(libc::O_PATH));
    }

    #[test]
    fn no_intent_knows_nothing() {
        assert_eq!(NoIntent.open_flags(1), None);
        assert_eq!(NoIntent.exec_call(1, true), None);
    }

    #[test]
    fn proc_intent_on_a_running_thread_is_unknown() {
        // Our own thread is running (reading its own syscall file): no syscall to report.
        let me = nix::unistd::gettid().as_raw() as u32;
        assert_eq!(ProcSyscallIntent::default().open_flags(me), None);
    }
}
