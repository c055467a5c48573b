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

pub use event::{channel, AccessMode, DiscardSink, EventSink, ExecKind, Hook, Outcome, PlaneEvent};
pub use intent::{flags_write, ExecCall, NoIntent, OpenIntent, ProcSyscallIntent, MAX_ARGS};
pub use plane::{
    AbortHandle, CacheVeto, Config, Error, FailMode, MarkedFs, Plane, PlaneBuilder, Stats,
    UnknownIntent,
};
pub use probe::{probe, Feature, ProbeReport};
pub use procfs::ProcError;
pub use subject::{
    CacheViews, Identity, PathAlias, ProcResolver, ResolveError, Rules, SubjectKey,
    SubjectResolver, Want,
};
pub use sys::GroupInfo;
