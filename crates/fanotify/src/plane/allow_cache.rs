//! The allow cache: inode ignore marks for files every rule set allows without a report, so
//! the kernel stops asking about them. What may be cached is decided in `decide.rs`
//! (`cache::allowed_everywhere` and the daemon's veto); this file keeps the marks consistent
//! with rule swaps, which flush them from another thread.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::fanotify::Fanotify;

use super::stats::{inc, Counters};
use crate::sys;

/// Most (dev, ino) remembered as "not cacheable" before that memory is cleared.
const MAX_NEGATIVE: usize = 65536;

/// The group's inode ignore marks. [`Fanotify`] in the plane; tests use a fake.
pub(crate) trait InodeMarks {
    fn add_ignore(&self, fd: BorrowedFd<'_>, evictable: bool) -> Result<(), Errno>;
    /// Removes every inode ignore mark of the group.
    fn flush(&self) -> Result<(), Errno>;
}

impl InodeMarks for Fanotify {
    fn add_ignore(&self, fd: BorrowedFd<'_>, evictable: bool) -> Result<(), Errno> {
        sys::add_ignore_mark(self, fd, evictable)
    }

    fn flush(&self) -> Result<(), Errno> {
        sys::flush_inode_marks(self)
    }
}

pub(super) struct AllowCache {
    /// (dev, ino) found not cacheable in `negative_generation`.
    negative: HashMap<(u64, u64), ()>,
    negative_generation: u64,
    /// Marks added since the last flush, in `generation`.
    count: usize,
    generation: u64,
    capacity: usize,
    /// Whether to ask for `FAN_MARK_EVICTABLE` (dropped after the kernel refuses it once).
    evictable: bool,
}

impl AllowCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            negative: HashMap::new(),
            negative_generation: 0,
            count: 0,
            generation: 0,
            capacity: capacity.max(1),
            evictable: true,
        }
    }

    /// Whether the file was already found not cacheable under the rules of `generation`.
    pub fn known_uncacheable(&mut self, file: (u64, u64), generation: u64) -> bool {
        if self.negative_generation != generation {
            self.negative.clear();
            self.negative_generation = generation;
        }
        self.negative.contains_key(&file)
    }

    /// Remembers that the file is not cacheable (under the generation last asked about).
    pub fn remember_uncacheable(&mut self, file: (u64, u64)) {
        if self.negative.len() >= MAX_NEGATIVE {
            self.negative.clear();
        }
        self.negative.insert(file, ());
    }

    /// Adds the inode ignore mark for `fd`, an allow decided with the rules of generation
    /// `decided`, keeping the cache consistent with concurrent swaps (`current` is the
    /// plane's generation, bumped before every flush).
    pub fn add(
        &mut self,
        marks: &dyn InodeMarks,
        fd: BorrowedFd<'_>,
        decided: u64,
        current: &AtomicU64,
        counters: &Counters,
    ) {
        let now = current.load(Ordering::SeqCst);
        if now != decided {
            // New rules since the decision: it may be wrong under them. Whoever bumped the
            // generation flushed (or is about to flush) the marks of the old rules.
            inc(&counters.cache_stale);
            return;
        }
        if now != self.generation {
            // Whoever bumped the generation flushed the marks.
            self.generation = now;
            self.count = 0;
        }
        if self.count >= self.capacity {
            self.flush(marks, counters);
        }
        let mut r = marks.add_ignore(fd, self.evictable);
        if r == Err(Errno::EINVAL) && self.evictable {
            self.evictable = false;
            r = marks.add_ignore(fd, false);
        }
        match r {
            Ok(()) => {
                self.count += 1;
                inc(&counters.cache_marks);
            }
            Err(Errno::ENOSPC) => {
                // Out of marks for this user: start over.
                self.flush(marks, counters);
            }
            // Not cached (the event is answered already): nothing to do, and no log line from
            // the decision thread.
            Err(_) => {}
        }
        // A swap between the check above and the mark may have flushed before we added it:
        // the rules we decided with are then stale, so take the mark back out (all of them).
        if current.load(Ordering::SeqCst) != decided {
            self.flush(marks, counters);
        }
    }

    fn flush(&mut self, marks: &dyn InodeMarks, counters: &Counters) {
        if marks.flush().is_ok() {
            inc(&counters.cache_flushes);
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::cell::RefCell;
    use std::os::fd::AsFd;

    use super::*;

    /// Records calls; `on_add` runs inside `add_ignore` (a concurrent rule swap).
    #[derive(Default)]
    struct FakeMarks {
        added: RefCell<usize>,
        flushes: RefCell<usize>,
        refuse: RefCell<Option<Errno>>,
        evictable_seen: RefCell<Vec<bool>>,
        on_add: Option<Box<dyn Fn()>>,
    }

    impl InodeMarks for FakeMarks {
        fn add_ignore(&self, _fd: BorrowedFd<'_>, evictable: bool) -> Result<(), Errno> {
            self.evictable_seen.borrow_mut().push(evictable);
            if let Some(f) = &self.on_add {
                f();
            }
            match *self.refuse.borrow() {
                Some(Errno::EINVAL) if !evictable => {}
                Some(e) => return Err(e),
                None => {}
            }
            *self.added.borrow_mut() += 1;
            Ok(())
        }
        fn flush(&self) -> Result<(), Errno> {
            *self.flushes.borrow_mut() += 1;
            *self.added.borrow_mut() = 0;
            Ok(())
        }
    }

    fn null() -> std::fs::File {
        std::fs::File::open("/dev/null").unwrap()
    }

    #[test]
    fn negative_memory_is_per_generation() {
        let mut c = AllowCache::new(8);
        assert!(!c.known_uncacheable((1, 2), 5));
        c.remember_uncacheable((1, 2));
        assert!(c.known_uncacheable((1, 2), 5));
        assert!(!c.known_uncacheable((1, 2), 6), "new rules: decide again");
    }

    #[test]
    fn capacity_flushes_and_refills() {
        let (marks, counters, gen) = (FakeMarks::default(), Counters::default(), AtomicU64::new(1));
        let mut c = AllowCache::new(2);
        let f = null();
        for _ in 0..5 {
            c.add(&marks, f.as_fd(), 1, &gen, &counters);
        }
        assert_eq!(*marks.flushes.borrow(), 2);
        assert_eq!(*marks.added.borrow(), 1);
        assert_eq!(counters.cache_marks.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn kernel_without_evictable_marks_is_asked_once() {
        let (marks, counters, gen) = (FakeMarks::default(), Counters::default(), AtomicU64::new(1));
        *marks.refuse.borrow_mut() = Some(Errno::EINVAL);
        let mut c = AllowCache::new(8);
        let f = null();
        c.add(&marks, f.as_fd(), 1, &gen, &counters);
        c.add(&marks, f.as_fd(), 1, &gen, &counters);
        assert_eq!(*marks.evictable_seen.borrow(), [true, false, false]);
        assert_eq!(*marks.added.borrow(), 2);
    }

    #[test]
    fn out_of_marks_starts_over() {
        let (marks, counters, gen) = (FakeMarks::default(), Counters::default(), AtomicU64::new(1));
        *marks.refuse.borrow_mut() = Some(Errno::ENOSPC);
        let mut c = AllowCache::new(8);
        c.add(&marks, null().as_fd(), 1, &gen, &counters);
        assert_eq!(*marks.flushes.borrow(), 1);
        assert_eq!(counters.cache_marks.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn swap_during_the_mark_takes_it_back_out() {
        let gen = std::rc::Rc::new(AtomicU64::new(1));
        let g2 = gen.clone();
        let marks = FakeMarks {
            on_add: Some(Box::new(move || {
                g2.fetch_add(1, Ordering::SeqCst);
            })),
            ..Default::default()
        };
        let counters = Counters::default();
        let mut c = AllowCache::new(8);
        c.add(&marks, null().as_fd(), 1, &gen, &counters);
        assert_eq!(*marks.added.borrow(), 0, "the stale mark was flushed");
    }

    /// An allow decided under generation 1, marked after a swap to 2 (and its flush): the
    /// mark must not be added, whatever the cache saw before. (The cache used to compare
    /// with the generation current at mark time, so this mark survived the swap.)
    #[test]
    fn allow_decided_under_old_rules_is_not_cached_after_a_swap() {
        let (marks, counters) = (FakeMarks::default(), Counters::default());
        let gen = AtomicU64::new(1);
        let mut c = AllowCache::new(8);
        let f = null();
        c.add(&marks, f.as_fd(), 1, &gen, &counters);
        assert_eq!(*marks.added.borrow(), 1);
        gen.store(2, Ordering::SeqCst); // swap_rules: new snapshot, generation, flush
        marks.flush().unwrap();
        c.add(&marks, f.as_fd(), 1, &gen, &counters);
        assert_eq!(
            *marks.added.borrow(),
            0,
            "stale allow cached after the swap"
        );
        assert_eq!(counters.cache_stale.load(Ordering::Relaxed), 1);
        c.add(&marks, f.as_fd(), 2, &gen, &counters);
        assert_eq!(*marks.added.borrow(), 1);
    }
}
