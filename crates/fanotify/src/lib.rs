//! The fanotify permission plane of kubearmor-rs: process (exec) and file (open) enforcement
//! on kernels without BPF-LSM.
//!
//! A fanotify group (`FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_REPORT_TID`, plus
//! `FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS` when the kernel grants them) puts
//! `FAN_MARK_FILESYSTEM` marks with `FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM` on the filesystems the
//! daemon names. Every open and exec there waits until one plain thread decides it with the
//! policy crate's decision function (`decide_exec` for exec events, `decide_open` for opens)
//! and answers `FAN_ALLOW` or `FAN_DENY` (the caller gets `EPERM`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use kubearmor_fanotify::{channel, Config, Plane, Rules};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (tx, rx) = channel(4096);
//! let plane = Plane::builder(Config::default()).sink(tx).start()?;
//! plane.mark_filesystem("/")?;                       // host paths under policy
//! plane.swap_rules(Rules { host: None, ..Default::default() })?;
//! for event in rx.try_iter() { println!("{} {} {}", event.operation(), event.path, event.result()); }
//! plane.shutdown();
//! # Ok(()) }
//! ```
//!
//! Guarantees (docs/fanotify.md has the details and the measured costs):
//! - every permission event is answered: decided, or by the [`FailMode`] when it cannot be
//!   decided, or (shutdown, abort, crash) by the kernel, which allows what a closed group
//!   leaves; fanotify has no timeout, so a dead listener fails **open**;
//! - the decision thread never opens a file on a marked filesystem (paths come from
//!   `readlink /proc/self/fd/N`, owners from `fstat` of the event fd, task facts from
//!   procfs, which cannot be marked), never waits for a lock held across I/O (rules are an
//!   `ArcSwap` snapshot), and never blocks on its output (a bounded sink; full = drop+count);
//! - the allow cache (inode ignore marks) only holds files that every rule set allows, for
//!   every request attribute, without a report, and is flushed on every rule swap.

mod cache;
mod elf;
mod event;
mod intent;
mod plane;
mod probe;
mod procfs;
mod subject;
mod sys;
mod user_mem;

pub use event::{channel, AccessMode, DiscardSink, EventSink, ExecKind, Hook, Outcome, PlaneEvent};
pub use intent::{flags_write, ExecCall, NoIntent, OpenIntent, ProcSyscallIntent, MAX_ARGS};
pub use plane::{
    AbortHandle, CacheVeto, Config, Error, FailMode, MarkedFs, Plane, PlaneBuilder, Stats,
    UnknownIntent, DEFAULT_RUNTIME_BINARIES,
};
pub use probe::{probe, Feature, ProbeReport};
pub use procfs::ProcError;
pub use subject::{
    CacheViews, FileKey, Identity, PathAlias, ProcResolver, ResolveError, Rules, SubjectKey,
    SubjectResolver, Want,
};
pub use sys::GroupInfo;
pub use user_mem::{
    MemReader, MemReaderStats, DEFAULT_DEADLINE as MEM_READ_DEADLINE,
    MAX_HELPERS as MEM_READ_HELPERS,
};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<crate::Plane>();
        shareable::<crate::AbortHandle>();
        shareable::<crate::Rules>();
        fn sendable<T: Send>() {}
        sendable::<crate::PlaneEvent>();
    }

    // Everything read from /proc, from an ELF file or from the event buffer is outside input:
    // no input may panic a parser.
    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = crate::procfs::parse_status(&bytes);
            let _ = crate::procfs::parse_stat(&bytes);
            let _ = crate::procfs::parse_cgroup_v2(&bytes);
            let _ = crate::procfs::parse_syscall(&bytes);
            let head = &bytes[..bytes.len().min(64)];
            let _ = crate::elf::parse(head, |buf, off| {
                let off = usize::try_from(off).ok()?;
                let avail = bytes.get(off..)?;
                let n = buf.len().min(avail.len());
                buf[..n].copy_from_slice(&avail[..n]);
                Some(n)
            });
            let mut out = Vec::new();
            // parse_events takes ownership of the fds it finds: with the top bit of every byte
            // set, every i32 it can read (at any offset) is negative, i.e. no fd.
            let safe: Vec<u8> = bytes.iter().map(|b| b | 0x80).collect();
            let _ = crate::sys::parse_events(&safe, &mut out);
            assert!(out.iter().all(|e| e.fd.is_none()));
        }

        #[test]
        fn elf_with_valid_magic_never_panics(rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 60..400)) {
            let mut file = b"\x7fELF".to_vec();
            file.extend(rest);
            let _ = crate::elf::parse(&file[..64], |buf, off| {
                let off = usize::try_from(off).ok()?;
                let avail = file.get(off..)?;
                let n = buf.len().min(avail.len());
                buf[..n].copy_from_slice(&avail[..n]);
                Some(n)
            });
        }
    }
}
