//! The decision thread's loop: read events, have each one decided, answer, count.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::fanotify::Fanotify;

use super::allow_cache::AllowCache;
use super::decide::hook_of;
use super::exec_track::{ExecTracker, FileId};
use super::log::{Level, LogRelay};
use super::stats::inc;
use super::{lock, CacheVeto, Config, Shared};
use crate::event::{EventSink, PlaneEvent};
use crate::intent::OpenIntent;
use crate::subject::SubjectResolver;
use crate::sys::{self, RawEvent, PERM_MASK};

/// What one event came to.
pub(super) struct Decided {
    pub allow: bool,
    /// Cache the allow: it was decided with the rules of this generation.
    pub cache: Option<u64>,
    pub event: Option<PlaneEvent>,
}

/// The decision thread.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) group: Arc<Fanotify>,
    pub(super) buf: Vec<u8>,
    pub(super) config: Config,
    pub(super) resolver: Arc<dyn SubjectResolver>,
    pub(super) intent: Arc<dyn OpenIntent>,
    pub(super) sink: Box<dyn EventSink>,
    pub(super) veto: Option<CacheVeto>,
    pub(super) exec: ExecTracker,
    /// tid -> the file its allowed exec event was for: the thread's next event is the kernel's
    /// own open of that file for the exec (fsnotify sends `FAN_OPEN_EXEC_PERM`, then
    /// `FAN_OPEN_PERM`, from the same call while the thread waits for our answers).
    pub(super) exec_opens: HashMap<u32, FileId>,
    pub(super) cache: AllowCache,
    /// Never log from this thread directly (see `log.rs`).
    pub(super) log: Option<LogRelay>,
    /// Our process id, taken when the thread starts.
    pub(super) pid: u32,
}

impl Worker {
    /// Logs through the relay (see `log.rs`), never on this thread.
    pub(super) fn log_line(&self, level: Level, line: impl FnOnce() -> String) {
        if let Some(log) = &self.log {
            log.send(level, &self.shared.counters.log_dropped, line);
        }
    }

    pub fn run(mut self) {
        let why = self.serve();
        // Stop answering: whatever is left is allowed by the kernel once the group closes.
        self.shared.running.store(false, Ordering::SeqCst);
        if let Some(why) = why {
            let line = format!("fanotify decision thread stopped: {why}");
            self.log_line(Level::Error, || line);
            let mut s = lock(&self.shared.stopped_because);
            if s.is_none() {
                *s = Some(why);
            }
        }
        // `self.group` drops here: the group closes unless a daemon call holds it for a
        // moment (then it closes when that call returns).
    }

    /// Serves until stopped; returns why it stopped on its own.
    fn serve(&mut self) -> Option<String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return self.drain();
            }
            let ready = {
                let mut fds = [
                    PollFd::new(self.group.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.shared.wake.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::from(1000u16)) {
                    Ok(_) => {
                        let _ = self.shared.wake.read();
                        fds[0].revents().is_some_and(|r| !r.is_empty())
                    }
                    Err(Errno::EINTR) => false,
                    Err(e) => return Some(format!("poll: {e}")),
                }
            };
            if ready {
                match self.read_batch() {
                    Ok(_) => {}
                    Err(why) => return Some(why),
                }
            }
        }
    }

    /// Reads and answers everything queued. Ok(n): events handled (0 = nothing queued).
    fn read_batch(&mut self) -> Result<usize, String> {
        let mut handled = 0;
        loop {
            let n = match sys::read_group(&self.group, &mut self.buf) {
                Ok(0) => {
                    if self.shared.aborted.load(Ordering::SeqCst) {
                        return Err("aborted".into());
                    }
                    return Err("the fanotify group returned end of file".into());
                }
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Ok(handled),
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOMEM: the kernel could not give us an fd for an event
                    // and denied that event itself. Keep serving the rest.
                    inc(&self.shared.counters.read_errors);
                    self.log_line(Level::Warn, || format!("fanotify read failed: {e}"));
                    if e == Errno::EBADF || e == Errno::EINVAL {
                        return Err(format!("read: {e}"));
                    }
                    // Do not spin while fds or memory are short.
                    std::thread::sleep(Duration::from_millis(1));
                    return Ok(handled);
                }
            };
            let mut events = Vec::new();
            let parsed = sys::parse_events(&self.buf[..n], &mut events);
            for ev in events {
                handled += 1;
                self.handle(ev);
            }
            if let Err(stop) = parsed {
                return Err(format!("unreadable fanotify event: {stop:?}"));
            }
        }
    }

    /// Stop sequence: no new events, decide what is queued, then let the group close.
    fn drain(&mut self) -> Option<String> {
        if self.shared.aborted.load(Ordering::SeqCst) {
            return None;
        }
        if let Err(e) = sys::flush_filesystem_marks(&self.group) {
            self.log_line(Level::Warn, || {
                format!("fanotify: removing filesystem marks on shutdown: {e}")
            });
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        while Instant::now() < deadline {
            match self.read_batch() {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        None
    }

    fn handle(&mut self, ev: RawEvent) {
        let c = &self.shared.counters;
        let Some(fd) = ev.fd.as_ref() else {
            if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                inc(&c.overflows);
                self.log_line(Level::Warn, || {
                    "fanotify queue overflow: the kernel allowed events that did not fit".into()
                });
            }
            return;
        };
        if ev.mask & PERM_MASK == 0 {
            return;
        }
        inc(&c.events);
        let now = self.shared.epoch.elapsed().as_nanos() as u64;
        self.shared.busy_since.store(now.max(1), Ordering::SeqCst);
        let fd = fd.as_fd();
        let decided = match std::panic::catch_unwind(AssertUnwindSafe(|| self.decide(&ev, fd))) {
            Ok(d) => d,
            Err(_) => {
                inc(&self.shared.counters.panics);
                let hook = hook_of(ev.mask);
                self.fail(
                    hook,
                    ev.pid.max(0) as u32,
                    None,
                    "the decision panicked".into(),
                )
            }
        };
        let c = &self.shared.counters;
        match sys::respond(self.group.as_fd(), fd.as_raw_fd(), decided.allow) {
            Ok(()) => {}
            // The task was killed while waiting: the kernel dropped the event.
            Err(Errno::ENOENT) => {}
            Err(e) => {
                inc(&c.response_errors);
                self.log_line(Level::Warn, || format!("fanotify response failed: {e}"));
            }
        }
        if decided.allow {
            inc(&c.allowed);
        } else {
            inc(&c.denied);
        }
        if let Some(generation) = decided.cache {
            self.cache.add(
                &*self.group,
                fd,
                generation,
                &self.shared.generation,
                &self.shared.counters,
            );
        }
        self.shared.busy_since.store(0, Ordering::SeqCst);
        drop(ev);
        let spent = self.shared.epoch.elapsed().as_nanos() as u64 - now;
        self.shared
            .counters
            .decision_ns
            .fetch_add(spent, Ordering::Relaxed);
        if let Some(e) = decided.event {
            if self.sink.offer(e) {
                inc(&self.shared.counters.emitted);
            } else {
                inc(&self.shared.counters.dropped);
            }
        }
    }
}
