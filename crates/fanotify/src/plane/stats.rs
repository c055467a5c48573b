//! The plane's counters: atomics the decision thread bumps, and the [`Stats`] snapshot that
//! logs, `/metrics` and `karmor probe` read.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters, for logs, `/metrics` and `karmor probe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub events: u64,
    pub exec_events: u64,
    pub open_events: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Decided by the fail mode.
    pub undecided: u64,
    /// Events of the plane's own process (allowed unseen).
    pub own_process: u64,
    /// `FAN_Q_OVERFLOW` seen: the kernel allowed permission events that did not fit.
    pub overflows: u64,
    pub elf_interpreter_events: u64,
    /// Opens by a directly run ld.so denied by a process rule.
    pub loader_denials: u64,
    /// The kernel's opens of a file it was allowed to execute (the `FAN_OPEN_PERM` that follows
    /// an allowed `FAN_OPEN_EXEC_PERM`): part of the exec, so not judged as File accesses.
    pub exec_opens: u64,
    /// Opens by the container runtime inside a container before the workload's first exec
    /// (`runc init` reading /etc/passwd): not judged as the workload's.
    pub runtime_opens: u64,
    pub cache_marks: u64,
    pub cache_flushes: u64,
    /// Cacheable allows not cached because the rules changed after the decision.
    pub cache_stale: u64,
    /// Log lines of the decision thread dropped because the log thread was behind.
    pub log_dropped: u64,
    pub emitted: u64,
    /// Events the sink had no room for.
    pub dropped: u64,
    pub response_errors: u64,
    pub read_errors: u64,
    pub panics: u64,
    /// Wall time the decision thread spent on events (read to answer, cache mark, close),
    /// in nanoseconds; divide by `events` for the cost per event.
    pub decision_ns: u64,
    /// Snapshot generation (bumped by every swap and flush).
    pub generation: u64,
    pub running: bool,
    /// Why the decision thread stopped, if it stopped on its own.
    pub stopped_because: Option<String>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) events: AtomicU64,
    pub(crate) exec_events: AtomicU64,
    pub(crate) open_events: AtomicU64,
    pub(crate) allowed: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) undecided: AtomicU64,
    pub(crate) own_process: AtomicU64,
    pub(crate) overflows: AtomicU64,
    pub(crate) elf_interpreter_events: AtomicU64,
    pub(crate) loader_denials: AtomicU64,
    pub(crate) exec_opens: AtomicU64,
    pub(crate) runtime_opens: AtomicU64,
    pub(crate) cache_marks: AtomicU64,
    pub(crate) cache_flushes: AtomicU64,
    pub(crate) cache_stale: AtomicU64,
    pub(crate) log_dropped: AtomicU64,
    pub(crate) emitted: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) response_errors: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) decision_ns: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The counters now, with the plane state that is not a counter.
    pub(crate) fn snapshot(
        &self,
        generation: u64,
        running: bool,
        stopped_because: Option<String>,
    ) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            events: g(&self.events),
            exec_events: g(&self.exec_events),
            open_events: g(&self.open_events),
            allowed: g(&self.allowed),
            denied: g(&self.denied),
            undecided: g(&self.undecided),
            own_process: g(&self.own_process),
            overflows: g(&self.overflows),
            elf_interpreter_events: g(&self.elf_interpreter_events),
            loader_denials: g(&self.loader_denials),
            exec_opens: g(&self.exec_opens),
            runtime_opens: g(&self.runtime_opens),
            cache_marks: g(&self.cache_marks),
            cache_flushes: g(&self.cache_flushes),
            cache_stale: g(&self.cache_stale),
            log_dropped: g(&self.log_dropped),
            emitted: g(&self.emitted),
            dropped: g(&self.dropped),
            response_errors: g(&self.response_errors),
            read_errors: g(&self.read_errors),
            panics: g(&self.panics),
            decision_ns: g(&self.decision_ns),
            generation,
            running,
            stopped_because,
        }
    }
}
