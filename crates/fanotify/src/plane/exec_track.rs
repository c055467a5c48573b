//! Exec tracking: telling an ELF interpreter's exec event from a program's, and remembering
//! processes that run a loader (ld.so, a static-pie program) directly, so that their opens
//! are checked against the process rules (docs/fanotify.md, "Exec events").
//!
//! No decision here: the tracker only answers "is this event the interpreter of the last
//! program exec of this thread?" and "is this task a tracked loader process?". Task facts
//! come through [`TaskFacts`], so the window, pid reuse and eviction are unit-tested without
//! root.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::event::ExecKind;
use crate::intent::ExecCall;
use crate::procfs::{self, ProcError};

/// Most threads (pending execs) and loader processes tracked at once.
pub(super) const MAX_TRACKED: usize = 4096;
/// How long after a program's exec event its interpreter's event may come.
pub(super) const INTERP_WINDOW: Duration = Duration::from_secs(2);

/// What the tracker needs to know about tasks. [`ProcFacts`] reads procfs; tests use a fake.
pub(crate) trait TaskFacts: Send {
    /// The thread group (process id) of thread `tid`.
    fn tgid(&self, tid: u32) -> Result<u32, ProcError>;
    /// The start time of process `pid` (with the pid, it names the process for good).
    fn start_time(&self, pid: u32) -> Option<u64>;
    /// Whether thread `tid` belongs to thread group `tgid`.
    fn same_thread_group(&self, tgid: u32, tid: u32) -> bool;
}

/// [`TaskFacts`] from procfs and `tgkill(tgid, tid, 0)`.
pub(crate) struct ProcFacts;

impl TaskFacts for ProcFacts {
    fn tgid(&self, tid: u32) -> Result<u32, ProcError> {
        procfs::status(tid).map(|s| s.tgid)
    }

    fn start_time(&self, pid: u32) -> Option<u64> {
        procfs::stat(pid).ok().map(|s| s.start_time)
    }

    fn same_thread_group(&self, tgid: u32, tid: u32) -> bool {
        // SAFETY: signal 0 sends nothing; it only checks tid is in group tgid.
        unsafe { libc::syscall(libc::SYS_tgkill, tgid as libc::pid_t, tid as libc::pid_t, 0) == 0 }
    }
}

/// The file an exec event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What the ELF header of an allowed program says (see `crate::elf`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProgramKind {
    /// It names an interpreter (PT_INTERP): its interpreter's exec event follows.
    pub has_interp: bool,
    /// It is a loader or a static-pie program run directly: its opens are loads.
    pub loader_like: bool,
}

/// The last exec of a thread, kept to recognise its ELF interpreter.
struct PendingExec {
    filename: Vec<u8>,
    file: FileId,
    at: Instant,
}

pub(super) struct ExecTracker {
    facts: Box<dyn TaskFacts>,
    /// tid -> its last allowed program exec.
    pending: HashMap<u32, PendingExec>,
    /// tgid -> start time, for processes that run ld.so (or a static-pie program) directly.
    loaders: HashMap<u32, u64>,
}

impl ExecTracker {
    pub fn new(facts: Box<dyn TaskFacts>) -> Self {
        Self {
            facts,
            pending: HashMap::new(),
            loaders: HashMap::new(),
        }
    }

    /// An exec event of a thread whose previous allowed program exec is the same exec call
    /// (same filename argument, within [`INTERP_WINDOW`]) on another file is that program's
    /// ELF interpreter.
    pub fn classify(
        &mut self,
        tid: u32,
        call: Option<&ExecCall>,
        file: FileId,
        now: Instant,
    ) -> ExecKind {
        match (self.pending.remove(&tid), call) {
            (Some(p), Some(call))
                if now.saturating_duration_since(p.at) < INTERP_WINDOW
                    && p.file != file
                    && p.filename == call.filename =>
            {
                ExecKind::ElfInterpreter
            }
            _ => ExecKind::Program,
        }
    }

    /// Records an allowed program exec of `tid`.
    pub fn track(
        &mut self,
        tid: u32,
        call: Option<ExecCall>,
        file: FileId,
        kind: ProgramKind,
        now: Instant,
    ) {
        if let (true, Some(call)) = (kind.has_interp, call) {
            if self.pending.len() >= MAX_TRACKED {
                self.pending
                    .retain(|_, p| now.saturating_duration_since(p.at) < INTERP_WINDOW);
            }
            self.pending.insert(
                tid,
                PendingExec {
                    filename: call.filename,
                    file,
                    at: now,
                },
            );
        }
        // A new program replaces a loader run directly.
        if let Some(tgid) = self.loader_of(tid) {
            self.loaders.remove(&tgid);
        }
        if kind.loader_like {
            let Ok(tgid) = self.facts.tgid(tid) else {
                return;
            };
            // The process keeps its leader's start time across exec (de_thread copies it).
            if let Some(start) = self.facts.start_time(tgid) {
                if self.loaders.len() >= MAX_TRACKED {
                    let facts = &self.facts;
                    self.loaders
                        .retain(|pid, start| facts.start_time(*pid) == Some(*start));
                }
                self.loaders.insert(tgid, start);
            }
        }
    }

    /// The tracked loader process `tid` belongs to, if any. `same_thread_group` tests
    /// membership without a /proc read while few loaders are tracked.
    fn loader_of(&self, tid: u32) -> Option<u32> {
        if self.loaders.is_empty() {
            return None;
        }
        if self.loaders.len() <= 32 {
            return self
                .loaders
                .keys()
                .copied()
                .find(|&tgid| self.facts.same_thread_group(tgid, tid));
        }
        let tgid = self.facts.tgid(tid).ok()?;
        self.loaders.contains_key(&tgid).then_some(tgid)
    }

    /// Whether `tid` belongs to a process that runs a loader directly (and is still the
    /// process that did: a reused pid is forgotten).
    pub fn is_loader(&mut self, tid: u32) -> bool {
        let Some(tgid) = self.loader_of(tid) else {
            return false;
        };
        let Some(start) = self.loaders.get(&tgid).copied() else {
            return false;
        };
        if self.facts.start_time(tgid) == Some(start) {
            return true;
        }
        // The loader process is gone and its pid reused.
        self.loaders.remove(&tgid);
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Threads (tid -> tgid) and processes (pid -> start time), changed by the test.
    type Tasks = (HashMap<u32, u32>, HashMap<u32, u64>);
    #[derive(Clone, Default)]
    struct FakeFacts(Arc<Mutex<Tasks>>);

    impl FakeFacts {
        fn process(&self, pid: u32, start: u64, threads: &[u32]) {
            let mut g = self.0.lock().unwrap();
            g.1.insert(pid, start);
            for t in threads {
                g.0.insert(*t, pid);
            }
        }
        fn exit(&self, pid: u32) {
            let mut g = self.0.lock().unwrap();
            g.1.remove(&pid);
            g.0.retain(|_, tgid| *tgid != pid);
        }
    }

    impl TaskFacts for FakeFacts {
        fn tgid(&self, tid: u32) -> Result<u32, ProcError> {
            self.0.lock().unwrap().0.get(&tid).copied().ok_or_else(|| {
                ProcError::new(tid, "status", "No such file or directory (os error 2)")
            })
        }
        fn start_time(&self, pid: u32) -> Option<u64> {
            self.0.lock().unwrap().1.get(&pid).copied()
        }
        fn same_thread_group(&self, tgid: u32, tid: u32) -> bool {
            self.0.lock().unwrap().0.get(&tid) == Some(&tgid)
        }
    }

    fn call(name: &str) -> ExecCall {
        ExecCall {
            filename: name.into(),
            args: None,
            truncated: false,
        }
    }

    const PROG: FileId = FileId { dev: 1, ino: 10 };
    const LDSO: FileId = FileId { dev: 1, ino: 20 };
    const DYNAMIC: ProgramKind = ProgramKind {
        has_interp: true,
        loader_like: false,
    };
    const LOADER: ProgramKind = ProgramKind {
        has_interp: false,
        loader_like: true,
    };

    fn tracker() -> (ExecTracker, FakeFacts) {
        let facts = FakeFacts::default();
        (ExecTracker::new(Box::new(facts.clone())), facts)
    }

    #[test]
    fn interpreter_follows_its_program_within_the_window() {
        let (mut t, _) = tracker();
        let t0 = Instant::now();
        let c = call("./prog");
        assert_eq!(t.classify(7, Some(&c), PROG, t0), ExecKind::Program);
        t.track(7, Some(c.clone()), PROG, DYNAMIC, t0);
        // Same exec call, another file, 1s later: the interpreter.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(t.classify(7, Some(&c), LDSO, t1), ExecKind::ElfInterpreter);
        // Consumed: the next exec of the same file is a program again.
        assert_eq!(t.classify(7, Some(&c), LDSO, t1), ExecKind::Program);
    }

    #[test]
    fn interpreter_needs_same_call_other_file_same_thread_and_the_window() {
        let (mut t, _) = tracker();
        let t0 = Instant::now();
        let c = call("./prog");
        let cases: [(u32, &str, FileId, Duration); 4] = [
            (8, "./prog", LDSO, Duration::ZERO),    // another thread
            (7, "./other", LDSO, Duration::ZERO),   // another exec call
            (7, "./prog", PROG, Duration::ZERO),    // the same file again
            (7, "./prog", LDSO, INTERP_WINDOW * 2), // too late
        ];
        for (tid, name, file, after) in cases {
            t.track(7, Some(c.clone()), PROG, DYNAMIC, t0);
            assert_eq!(
                t.classify(tid, Some(&call(name)), file, t0 + after),
                ExecKind::Program,
                "tid {tid} {name} {file:?} +{after:?}"
            );
            t.pending.clear();
        }
        // Without the exec call (unknown filename) nothing is an interpreter.
        t.track(7, Some(c.clone()), PROG, DYNAMIC, t0);
        assert_eq!(t.classify(7, None, LDSO, t0), ExecKind::Program);
        // A static program (no PT_INTERP) leaves nothing pending.
        t.track(7, Some(c.clone()), PROG, ProgramKind::default(), t0);
        assert_eq!(t.classify(7, Some(&c), LDSO, t0), ExecKind::Program);
    }

    #[test]
    fn pending_execs_are_bounded_and_stale_ones_evicted_first() {
        let (mut t, _) = tracker();
        let t0 = Instant::now();
        for tid in 0..MAX_TRACKED as u32 {
            t.track(tid, Some(call("./p")), PROG, DYNAMIC, t0);
        }
        assert_eq!(t.pending.len(), MAX_TRACKED);
        // Full and all stale: the next insert evicts them all.
        let later = t0 + INTERP_WINDOW * 2;
        t.track(99_999, Some(call("./p")), PROG, DYNAMIC, later);
        assert_eq!(t.pending.len(), 1);
        assert_eq!(
            t.classify(99_999, Some(&call("./p")), LDSO, later),
            ExecKind::ElfInterpreter
        );
    }

    #[test]
    fn loader_process_is_tracked_for_all_its_threads_until_it_execs_again() {
        let (mut t, facts) = tracker();
        facts.process(100, 5000, &[100, 101]);
        facts.process(200, 6000, &[200]);
        let now = Instant::now();
        t.track(100, None, LDSO, LOADER, now);
        assert!(t.is_loader(100));
        assert!(t.is_loader(101), "another thread of the loader process");
        assert!(!t.is_loader(200));
        // The process execs a normal program: no longer a loader.
        t.track(101, None, PROG, ProgramKind::default(), now);
        assert!(!t.is_loader(100));
    }

    #[test]
    fn reused_pid_of_a_loader_is_forgotten() {
        let (mut t, facts) = tracker();
        facts.process(100, 5000, &[100]);
        t.track(100, None, LDSO, LOADER, Instant::now());
        assert!(t.is_loader(100));
        facts.exit(100);
        facts.process(100, 9000, &[100]); // same pid, another process
        assert!(!t.is_loader(100));
        assert!(t.loaders.is_empty());
    }

    #[test]
    fn many_loaders_use_the_tgid_and_dead_ones_are_evicted_when_full() {
        let (mut t, facts) = tracker();
        let now = Instant::now();
        for pid in 1..=MAX_TRACKED as u32 {
            facts.process(pid, u64::from(pid), &[pid]);
            t.track(pid, None, LDSO, LOADER, now);
        }
        assert_eq!(t.loaders.len(), MAX_TRACKED);
        assert!(t.is_loader(77), "found through the tgid with >32 loaders");
        // Half of them exit; the next loader evicts the dead ones.
        for pid in 1..=(MAX_TRACKED / 2) as u32 {
            facts.exit(pid);
        }
        let new = MAX_TRACKED as u32 + 1;
        facts.process(new, 1, &[new]);
        t.track(new, None, LDSO, LOADER, now);
        assert_eq!(t.loaders.len(), MAX_TRACKED / 2 + 1);
        assert!(t.is_loader(new));
        // A loader whose /proc is unreadable is not tracked (nothing to check reuse with).
        t.track(424_242, None, LDSO, LOADER, now);
        assert!(!t.loaders.contains_key(&424_242));
    }
}
