//! Reads of a blocked task's memory (exec filename, argv, `open_how`), off the decision
//! thread and with a hard deadline.
//!
//! The memory belongs to the task, so the task's owner decides how long a read takes: a
//! pointer into a FUSE-backed mapping whose server never answers (or a page behind a stuck
//! userfaultfd, or an mmap lock held by a thread waiting on such a page) blocks
//! `process_vm_readv` for as long as the owner likes. Such a read runs on a helper thread;
//! the caller waits at most the deadline and then decides without it (unknown argv, unknown
//! exec filename). A helper stuck on one owner's memory is not reused, and while an owner
//! has a stuck read, that owner's further reads are refused at once, so one user costs the
//! decision thread at most one deadline per stall, and other users keep their helpers.
//! At most [`MAX_HELPERS`] helpers exist; when all are stuck, reads are refused at once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most helper threads (each stuck one holds one until its read returns).
pub const MAX_HELPERS: usize = 16;

/// Default deadline of one read (docs/fanotify.md, "What a user can stall").
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(25);

/// A read; what it returns delivers the result (run after the helper is marked idle, so a
/// caller that got its result can hand the same helper the next read at once).
type Job = Box<dyn FnOnce() -> Deliver + Send>;
type Deliver = Box<dyn FnOnce() + Send>;

struct Helper {
    jobs: SyncSender<Job>,
    busy: Arc<AtomicBool>,
    owner: Arc<AtomicU32>,
}

/// Counters of [`MemReader`].
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    timeouts: AtomicU64,
    refused: AtomicU64,
}

/// Runs memory reads on helper threads with a deadline. Cheap to clone (shared pool).
#[derive(Clone)]
pub struct MemReader {
    deadline: Duration,
    // Held only to pick or add a helper: never across a read.
    helpers: Arc<Mutex<Vec<Helper>>>,
    counts: Arc<Counts>,
}

impl Default for MemReader {
    fn default() -> Self {
        Self::new(DEFAULT_DEADLINE)
    }
}

impl std::fmt::Debug for MemReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemReader")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// What [`MemReader`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemReaderStats {
    pub reads: u64,
    /// Reads that missed the deadline (the decision went on without them).
    pub timeouts: u64,
    /// Reads refused at once: the owner already had a stuck read, or every helper was stuck.
    pub refused: u64,
    /// Helpers stuck in a read right now.
    pub stuck: u64,
}

impl MemReader {
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            helpers: Arc::new(Mutex::new(Vec::new())),
            counts: Arc::new(Counts::default()),
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn stats(&self) -> MemReaderStats {
        let stuck = lock(&self.helpers)
            .iter()
            .filter(|h| h.busy.load(Ordering::SeqCst))
            .count() as u64;
        MemReaderStats {
            reads: self.counts.reads.load(Ordering::Relaxed),
            timeouts: self.counts.timeouts.load(Ordering::Relaxed),
            refused: self.counts.refused.load(Ordering::Relaxed),
            stuck,
        }
    }

    /// Runs `read` (a read of memory that `owner`, a uid, controls) on a helper and returns
    /// its result if it comes within the deadline.
    pub fn run<T: Send + 'static>(
        &self,
        owner: u32,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel::<T>(1);
        let job: Job = Box::new(move || {
            let v = read();
            Box::new(move || {
                let _ = tx.send(v);
            })
        });
        if !self.dispatch(owner, job) {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match rx.recv_timeout(self.deadline) {
            Ok(v) => Some(v),
            Err(_) => {
                self.counts.timeouts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Hands `job` to an idle helper (starting one if needed). False: refused.
    fn dispatch(&self, owner: u32, job: Job) -> bool {
        let mut helpers = lock(&self.helpers);
        // Every busy helper is stuck: callers wait for their reads, so none is in progress.
        if helpers
            .iter()
            .any(|h| h.busy.load(Ordering::SeqCst) && h.owner.load(Ordering::SeqCst) == owner)
        {
            return false;
        }
        let idle = helpers.iter().position(|h| !h.busy.load(Ordering::SeqCst));
        let i = match idle {
            Some(i) => i,
            None if helpers.len() < MAX_HELPERS => match spawn_helper() {
                Some(h) => {
                    helpers.push(h);
                    helpers.len() - 1
                }
                None => return false,
            },
            None => return false,
        };
        let h = &helpers[i];
        h.owner.store(owner, Ordering::SeqCst);
        h.busy.store(true, Ordering::SeqCst);
        if h.jobs.try_send(job).is_err() {
            // The helper died (it never does: jobs do not panic across this boundary).
            h.busy.store(false, Ordering::SeqCst);
            helpers.remove(i);
            return false;
        }
        true
    }
}

fn spawn_helper() -> Option<Helper> {
    let (tx, rx) = mpsc::sync_channel::<Job>(1);
    let busy = Arc::new(AtomicBool::new(false));
    let owner = Arc::new(AtomicU32::new(0));
    let b = busy.clone();
    std::thread::Builder::new()
        .name("fanotify-memread".into())
        .spawn(move || serve(rx, b))
        .ok()?;
    Some(Helper {
        jobs: tx,
        busy,
        owner,
    })
}

fn serve(jobs: Receiver<Job>, busy: Arc<AtomicBool>) {
    for job in jobs {
        let deliver = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        busy.store(false, Ordering::SeqCst);
        if let Ok(deliver) = deliver {
            deliver();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Instant;

    use super::*;

    /// A read that blocks until the test opens the gate (a FUSE page whose server waits).
    fn gate() -> (SyncSender<()>, Arc<Mutex<Receiver<()>>>) {
        let (tx, rx) = mpsc::sync_channel(1);
        (tx, Arc::new(Mutex::new(rx)))
    }

    #[test]
    fn fast_reads_come_back() {
        let r = MemReader::new(Duration::from_secs(5));
        assert_eq!(r.run(1000, || 7), Some(7));
        assert_eq!(r.run(1000, || 8), Some(8));
        assert_eq!(r.stats().stuck, 0);
        assert_eq!(lock(&r.helpers).len(), 1, "an idle helper is reused");
    }

    #[test]
    fn a_stuck_read_costs_one_deadline_and_only_its_owner() {
        let r = MemReader::new(Duration::from_millis(50));
        let (open, wait) = gate();
        let t = Instant::now();
        let w = wait.clone();
        assert_eq!(r.run(1000, move || w.lock().unwrap().recv().is_ok()), None);
        let first = t.elapsed();
        assert!(first >= Duration::from_millis(50), "{first:?}");
        // The same owner is refused at once while its read is stuck...
        let t = Instant::now();
        assert_eq!(r.run(1000, || 1), None);
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        // ...another owner is served by another helper.
        assert_eq!(r.run(2000, || 2), Some(2));
        let s = r.stats();
        assert_eq!((s.timeouts, s.refused, s.stuck), (1, 1, 1));
        // The stall ends: the owner is served again.
        open.send(()).unwrap();
        let t = Instant::now();
        while r.stats().stuck > 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(r.run(1000, || 3), Some(3));
    }

    #[test]
    fn helpers_are_bounded() {
        let r = MemReader::new(Duration::from_millis(5));
        let (open, wait) = gate();
        for owner in 0..MAX_HELPERS as u32 {
            let w = wait.clone();
            assert_eq!(r.run(owner, move || w.lock().unwrap().recv().is_ok()), None);
        }
        assert_eq!(r.stats().stuck, MAX_HELPERS as u64);
        let t = Instant::now();
        assert_eq!(r.run(9999, || 1), None, "all helpers stuck: refused");
        assert!(t.elapsed() < Duration::from_millis(5));
        assert_eq!(lock(&r.helpers).len(), MAX_HELPERS);
        drop(open);
    }
}
