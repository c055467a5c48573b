//! The plane: the group, its marks, the rule snapshot, and the decision thread.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use kubearmor_policy::{Access, Decision, Matched, PathRequest, Report, RuleSet, Verdict};
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::fanotify::Fanotify;
use nix::sys::stat::FileStat;
use serde::Serialize;

use crate::cache::{self, Profile, Profiles};
use crate::elf;
use crate::event::{self, AccessMode, EventSink, ExecKind, Hook, Outcome, PlaneEvent};
use crate::intent::{flags_write, ExecCall, OpenIntent, ProcSyscallIntent};
use crate::procfs::{self, ProcError, Stat, Status};
use crate::subject::{Identity, ProcResolver, Rules, SubjectKey, SubjectResolver};
use crate::sys::{self, GroupInfo, InitWants, RawEvent, PERM_MASK};

/// What to answer for an event the plane cannot decide (the resolver failed, `/proc` of
/// the task is gone, the path cannot be read, the decision panicked). Either way the event
/// is answered and reported as [`Outcome::Undecided`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum FailMode {
    /// Allow (the default: the same side fanotify itself fails to when the listener dies).
    #[default]
    Open,
    /// Deny.
    Closed,
}

/// How an open of unknown access mode is decided (no [`OpenIntent`] answer: io_uring,
/// untraced syscalls, failed reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownIntent {
    /// The mode assumed for the decision. Default `Read`: a `readOnly` rule then lets an
    /// unknown-mode open through (an io_uring write would pass); `Write` denies it instead
    /// (an io_uring read of a readOnly file would fail).
    pub decide_as: Access,
    /// Whether an allow decided on an assumed mode may be cached. Default false. (The cache
    /// predicate itself checks both modes for every rule set, so enabling it is safe; the
    /// default keeps unknown-mode decisions out of the kernel altogether.)
    pub cache: bool,
}

impl Default for UnknownIntent {
    fn default() -> Self {
        Self {
            decide_as: Access::Read,
            cache: false,
        }
    }
}

/// Plane configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub fail_mode: FailMode,
    pub unknown_intent: UnknownIntent,
    /// Emit plain logs (unmatched accesses) too. Default false: visibility logs come from the
    /// monitor's tracepoints; the plane reports only alerts and undecided events.
    pub emit_logs: bool,
    /// Cache "allow for everyone, nothing to report" per inode in the kernel (ignore marks).
    pub allow_cache: bool,
    /// Most ignore marks kept before the cache is flushed and refilled. Without
    /// `FAN_UNLIMITED_MARKS` it is also kept below half of `max_user_marks`.
    pub cache_capacity: usize,
    /// Ask for `FAN_UNLIMITED_QUEUE` / `FAN_UNLIMITED_MARKS` (need `CAP_SYS_ADMIN`; the
    /// plane runs without them, see [`GroupInfo`]).
    pub want_unlimited_queue: bool,
    pub want_unlimited_marks: bool,
    /// Size of the buffer each `read` fills (24 bytes per event).
    pub read_buffer_bytes: usize,
    /// On shutdown, how long pending events are still decided before the group is closed
    /// (closing allows whatever is left).
    pub drain_timeout: Duration,
    /// Tell ELF interpreters from programs and check opens by a directly run ld.so against
    /// the process rules (docs/fanotify.md, "Exec events").
    pub exec_tracking: bool,
    /// If one event takes longer than this, the plane aborts (fail-open: the group is closed
    /// and the kernel allows everything). `None`: never.
    pub stall_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            fail_mode: FailMode::Open,
            unknown_intent: UnknownIntent::default(),
            emit_logs: false,
            allow_cache: true,
            cache_capacity: 4096,
            want_unlimited_queue: true,
            want_unlimited_marks: true,
            read_buffer_bytes: 256 * 1024,
            drain_timeout: Duration::from_secs(2),
            exec_tracking: true,
            stall_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Errors of the plane's API (the decision thread reports through [`Stats`] and events).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("fanotify_init: {0}")]
    Init(Errno),
    #[error("{path}: {errno}")]
    Stat { path: PathBuf, errno: Errno },
    #[error("fanotify_mark {path}: {errno}")]
    Mark { path: PathBuf, errno: Errno },
    #[error("{path}: refusing to mark a {fs} filesystem (the decision thread reads it)")]
    RefusedFilesystem { path: PathBuf, fs: &'static str },
    #[error("flushing the allow cache: {0}")]
    Flush(Errno),
    #[error("the plane is stopped")]
    Stopped,
    #[error("starting the plane: {0}")]
    Thread(std::io::Error),
    #[error("eventfd: {0}")]
    Wake(Errno),
}

/// A filesystem the plane watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkedFs {
    pub dev: u64,
    /// Paths the daemon marked it through (the reference count is their number).
    pub paths: Vec<PathBuf>,
    pub fs_type: String,
}

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
    pub cache_marks: u64,
    pub cache_flushes: u64,
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
struct Counters {
    events: AtomicU64,
    exec_events: AtomicU64,
    open_events: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    undecided: AtomicU64,
    own_process: AtomicU64,
    overflows: AtomicU64,
    elf_interpreter_events: AtomicU64,
    loader_denials: AtomicU64,
    cache_marks: AtomicU64,
    cache_flushes: AtomicU64,
    emitted: AtomicU64,
    dropped: AtomicU64,
    response_errors: AtomicU64,
    read_errors: AtomicU64,
    panics: AtomicU64,
    decision_ns: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Snapshot {
    rules: Rules,
    profiles: Arc<Profiles>,
    generation: u64,
}

struct Shared {
    snapshot: ArcSwap<Snapshot>,
    generation: AtomicU64,
    stop: AtomicBool,
    running: AtomicBool,
    aborted: AtomicBool,
    wake: EventFd,
    counters: Counters,
    /// Nanoseconds since `epoch` at which the current event started; 0 = idle.
    busy_since: AtomicU64,
    epoch: Instant,
    /// Written once by the thread when it stops on its own; read by `stats()`.
    stopped_because: Mutex<Option<String>>,
    /// /dev/null, opened at start, for `abort`.
    null: std::fs::File,
}

/// Vetoes caching a file the conservative predicate would cache (daemon knowledge, e.g.
/// "this path is a volume with unknown other names"). Called on the decision thread.
pub type CacheVeto = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Builds and starts a [`Plane`].
pub struct PlaneBuilder {
    config: Config,
    resolver: Option<Arc<dyn SubjectResolver>>,
    intent: Option<Arc<dyn OpenIntent>>,
    sink: Option<Box<dyn EventSink>>,
    veto: Option<CacheVeto>,
    rules: Rules,
}

impl PlaneBuilder {
    /// Default [`ProcResolver`].
    pub fn resolver(mut self, r: Arc<dyn SubjectResolver>) -> Self {
        self.resolver = Some(r);
        self
    }

    /// Default [`ProcSyscallIntent`]; [`crate::NoIntent`] knows nothing.
    pub fn intent(mut self, i: Arc<dyn OpenIntent>) -> Self {
        self.intent = Some(i);
        self
    }

    /// Default: events are discarded.
    pub fn sink(mut self, s: impl EventSink) -> Self {
        self.sink = Some(Box::new(s));
        self
    }

    pub fn cache_veto(mut self, v: CacheVeto) -> Self {
        self.veto = Some(v);
        self
    }

    /// The rules in force from the first event on (default: none).
    pub fn rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Creates the group and starts the decision thread. Nothing is marked yet.
    pub fn start(self) -> Result<Plane, Error> {
        let nofile = raise_nofile_limit();
        let (group, info) = sys::init_group(InitWants {
            unlimited_queue: self.config.want_unlimited_queue,
            unlimited_marks: self.config.want_unlimited_marks,
        })
        .map_err(Error::Init)?;
        for f in &info.fallbacks {
            tracing::warn!(fallback = %f, "fanotify plane runs without a wanted flag");
        }
        let wake = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(Error::Wake)?;
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot {
                profiles: Arc::new(Profiles::build(&self.rules)),
                rules: self.rules,
                generation: 1,
            }),
            generation: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            running: AtomicBool::new(true),
            aborted: AtomicBool::new(false),
            wake,
            counters: Counters::default(),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
            stopped_because: Mutex::new(None),
            null: std::fs::File::open("/dev/null").map_err(Error::Thread)?,
        });
        let group = Arc::new(group);
        let weak = Arc::downgrade(&group);
        let mut capacity = self.config.cache_capacity.max(1);
        if !info.unlimited_marks {
            if let Some(max) = read_sysctl("max_user_marks") {
                capacity = capacity.min((max / 2).max(1) as usize);
            }
        }
        let worker = Worker {
            shared: shared.clone(),
            group,
            buf: vec![0u8; read_buffer_len(self.config.read_buffer_bytes, nofile)],
            config: self.config.clone(),
            resolver: self
                .resolver
                .unwrap_or_else(|| Arc::new(ProcResolver::new())),
            intent: self.intent.unwrap_or_else(|| Arc::new(ProcSyscallIntent)),
            sink: self.sink.unwrap_or_else(|| Box::new(event::DiscardSink)),
            veto: self.veto,
            pending: HashMap::new(),
            loaders: HashMap::new(),
            negative: HashMap::new(),
            negative_generation: 0,
            cache_count: 0,
            cache_generation: 0,
            cache_capacity: capacity,
            evictable: true,
            pid: std::process::id(),
        };
        let thread = std::thread::Builder::new()
            .name("fanotify-decide".into())
            .spawn(move || worker.run())
            .map_err(Error::Thread)?;
        let watchdog = self.config.stall_timeout.map(|limit| {
            let shared = shared.clone();
            let group = weak.clone();
            std::thread::Builder::new()
                .name("fanotify-watchdog".into())
                .spawn(move || watchdog(shared, group, limit))
        });
        let watchdog = match watchdog {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "fanotify stall watchdog not started");
                None
            }
            None => None,
        };
        Ok(Plane {
            shared,
            group: weak,
            info,
            marks: Mutex::new(BTreeMap::new()),
            swap_lock: Mutex::new(()),
            threads: Mutex::new(vec![Some(thread), watchdog].into_iter().flatten().collect()),
            drain_timeout: self.config.drain_timeout,
        })
    }
}

/// The fanotify permission plane. See the crate documentation.
pub struct Plane {
    shared: Arc<Shared>,
    /// The decision thread holds the only strong reference, so its exit closes the group.
    group: Weak<Fanotify>,
    info: GroupInfo,
    marks: Mutex<BTreeMap<u64, MarkedFs>>,
    swap_lock: Mutex<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    drain_timeout: Duration,
}

/// Closes the plane's group from anywhere, at once: the kernel then allows every pending and
/// future event (fail-open). For watchdogs.
#[derive(Clone)]
pub struct AbortHandle {
    shared: Arc<Shared>,
    group: Weak<Fanotify>,
}

impl AbortHandle {
    pub fn abort(&self, why: &str) {
        abort(&self.shared, &self.group, why);
    }
}

impl Plane {
    pub fn builder(config: Config) -> PlaneBuilder {
        PlaneBuilder {
            config,
            resolver: None,
            intent: None,
            sink: None,
            veto: None,
            rules: Rules::default(),
        }
    }

    /// Which init flags the kernel granted.
    pub fn group_info(&self) -> &GroupInfo {
        &self.info
    }

    /// Watches every open and exec on the filesystem that holds `path`
    /// (`FAN_MARK_FILESYSTEM`, `FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM`). Marks are counted per
    /// filesystem: marking two paths of one filesystem needs two unmarks. Refuses procfs,
    /// sysfs and cgroup filesystems, which the decision thread reads.
    pub fn mark_filesystem(&self, path: impl AsRef<Path>) -> Result<MarkedFs, Error> {
        let path = path.as_ref();
        let st = nix::sys::stat::stat(path).map_err(|errno| Error::Stat {
            path: path.into(),
            errno,
        })?;
        let fs_type = fs_type_of(path)?;
        if let Some(fs) = refused_fs(fs_type) {
            return Err(Error::RefusedFilesystem {
                path: path.into(),
                fs,
            });
        }
        let mut marks = lock(&self.marks);
        if let Some(m) = marks.get_mut(&st.st_dev) {
            m.paths.push(path.into());
            return Ok(m.clone());
        }
        let group = self.group.upgrade().ok_or(Error::Stopped)?;
        sys::mark_filesystem(&group, path, true).map_err(|errno| Error::Mark {
            path: path.into(),
            errno,
        })?;
        let m = MarkedFs {
            dev: st.st_dev,
            paths: vec![path.into()],
            fs_type: fs_type_name(fs_type),
        };
        marks.insert(st.st_dev, m.clone());
        tracing::info!(path = %path.display(), dev = st.st_dev, "fanotify: filesystem marked");
        Ok(m)
    }

    /// Drops one reference taken by [`Plane::mark_filesystem`] with this path (or, if the
    /// path is gone, any path of the same filesystem given by `dev`); removes the mark with
    /// the last one. Returns whether the mark was removed.
    pub fn unmark_filesystem(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        let path = path.as_ref();
        let mut marks = lock(&self.marks);
        let dev = match nix::sys::stat::stat(path) {
            Ok(st) => Some(st.st_dev),
            Err(_) => marks
                .iter()
                .find(|(_, m)| m.paths.iter().any(|p| p == path))
                .map(|(d, _)| *d),
        };
        let Some(dev) = dev else {
            return Ok(false);
        };
        let Some(m) = marks.get_mut(&dev) else {
            return Ok(false);
        };
        if let Some(i) = m.paths.iter().position(|p| p == path) {
            m.paths.remove(i);
        } else {
            m.paths.pop();
        }
        if !m.paths.is_empty() {
            return Ok(false);
        }
        let group = self.group.upgrade().ok_or(Error::Stopped)?;
        let mut last = Errno::ENOENT;
        let mut done = false;
        // The path may be gone (a removed container rootfs) while its filesystem is not:
        // fall back to a mount point of the same device.
        for p in std::iter::once(path.to_path_buf()).chain(mount_points_of(dev)) {
            match sys::mark_filesystem(&group, &p, false) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        marks.remove(&dev);
        // ENOENT: the filesystem went away with its mark (unmounted container rootfs).
        if !done && last != Errno::ENOENT {
            return Err(Error::Mark {
                path: path.into(),
                errno: last,
            });
        }
        tracing::info!(path = %path.display(), dev, "fanotify: filesystem unmarked");
        Ok(true)
    }

    /// The filesystems being watched.
    pub fn marked_filesystems(&self) -> Vec<MarkedFs> {
        lock(&self.marks).values().cloned().collect()
    }

    /// Puts new rules in force at once and empties the allow cache. The decision thread
    /// never waits for this (it picks up the new snapshot with its next event).
    pub fn swap_rules(&self, rules: Rules) -> Result<(), Error> {
        let profiles = Arc::new(Profiles::build(&rules));
        self.publish(rules, profiles)
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.shared.snapshot.load().rules.clone()
    }

    /// Empties the allow cache (every inode ignore mark). Call on any change that can make a
    /// cached "allowed for everyone" wrong without a rule swap (a container registered with
    /// existing rules, new path aliases...). [`Plane::swap_rules`] does it itself.
    pub fn flush_cache(&self) -> Result<(), Error> {
        let cur = self.shared.snapshot.load_full();
        self.publish(cur.rules.clone(), cur.profiles.clone())
    }

    fn publish(&self, rules: Rules, profiles: Arc<Profiles>) -> Result<(), Error> {
        let _g = lock(&self.swap_lock);
        let generation = self.shared.generation.load(Ordering::SeqCst) + 1;
        self.shared.snapshot.store(Arc::new(Snapshot {
            rules,
            profiles,
            generation,
        }));
        // Order matters: snapshot, then generation, then flush (see Worker::cache).
        self.shared.generation.store(generation, Ordering::SeqCst);
        let Some(group) = self.group.upgrade() else {
            return Err(Error::Stopped);
        };
        sys::flush_inode_marks(&group).map_err(Error::Flush)?;
        inc(&self.shared.counters.cache_flushes);
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            events: g(&c.events),
            exec_events: g(&c.exec_events),
            open_events: g(&c.open_events),
            allowed: g(&c.allowed),
            denied: g(&c.denied),
            undecided: g(&c.undecided),
            own_process: g(&c.own_process),
            overflows: g(&c.overflows),
            elf_interpreter_events: g(&c.elf_interpreter_events),
            loader_denials: g(&c.loader_denials),
            cache_marks: g(&c.cache_marks),
            cache_flushes: g(&c.cache_flushes),
            emitted: g(&c.emitted),
            dropped: g(&c.dropped),
            response_errors: g(&c.response_errors),
            read_errors: g(&c.read_errors),
            panics: g(&c.panics),
            decision_ns: g(&c.decision_ns),
            generation: self.shared.generation.load(Ordering::SeqCst),
            running: self.is_running(),
            stopped_because: lock(&self.shared.stopped_because).clone(),
        }
    }

    /// Whether the decision thread is answering events.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst) && !self.shared.aborted.load(Ordering::SeqCst)
    }

    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle {
            shared: self.shared.clone(),
            group: self.group.clone(),
        }
    }

    /// Stops: removes the filesystem marks (no new events), decides what is still queued for
    /// up to [`Config::drain_timeout`], then closes the group (the kernel allows anything
    /// left). Idempotent; also run on drop.
    ///
    /// If the decision thread does not finish in time (stuck in a resolver, say), the group
    /// is aborted (fail-open) and the thread is left behind rather than waited for.
    pub fn shutdown(&self) -> Stats {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.shared.wake.write(1);
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in &threads {
            t.thread().unpark();
        }
        let deadline = Instant::now() + self.drain_timeout + Duration::from_secs(1);
        let mut aborted = false;
        for t in threads {
            while !t.is_finished() {
                if Instant::now() >= deadline && !aborted {
                    abort(&self.shared, &self.group, "shutdown timed out");
                    aborted = true;
                }
                if aborted && Instant::now() >= deadline + Duration::from_secs(1) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if !t.is_finished() {
                tracing::error!("fanotify plane thread stuck: left behind (group aborted)");
                continue;
            }
            if t.join().is_err() {
                tracing::error!("fanotify plane thread panicked");
            }
        }
        lock(&self.marks).clear();
        self.stats()
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replaces the group fd with /dev/null: the group's last file reference goes away (unless a
/// syscall on it is in flight, until it returns), so the kernel allows every pending and
/// future event. The decision thread then reads EOF and exits.
fn abort(shared: &Shared, group: &Weak<Fanotify>, why: &str) {
    let Some(g) = group.upgrade() else {
        return;
    };
    if shared.aborted.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::error!(reason = why, "fanotify plane aborted: failing open");
    {
        let mut s = lock(&shared.stopped_because);
        if s.is_none() {
            *s = Some(format!("aborted: {why}"));
        }
    }
    // /dev/null was opened at start: an open here could wait on the stuck thread itself.
    // SAFETY: both fds are open and owned (`g` keeps the group's fd number ours).
    let r = unsafe { libc::dup3(shared.null.as_raw_fd(), sys::raw(&g), libc::O_CLOEXEC) };
    if r < 0 {
        tracing::error!(error = %Errno::last(), "fanotify abort: dup3 failed");
    }
    shared.stop.store(true, Ordering::SeqCst);
    let _ = shared.wake.write(1);
}

fn watchdog(shared: Arc<Shared>, group: Weak<Fanotify>, limit: Duration) {
    let tick = (limit / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    loop {
        std::thread::park_timeout(tick);
        if !shared.running.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let since = shared.busy_since.load(Ordering::SeqCst);
        if since != 0 {
            let now = shared.epoch.elapsed().as_nanos() as u64;
            if now.saturating_sub(since) > limit.as_nanos() as u64 {
                abort(
                    &shared,
                    &group,
                    "an event took longer than the stall timeout",
                );
                return;
            }
        }
    }
}

/// Mount points of the filesystem with device number `dev` (from /proc/self/mountinfo).
fn mount_points_of(dev: u64) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let want = format!(
        "{}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&want.as_str()))
                .then(|| f.get(4).map(|m| PathBuf::from(unescape_mount(m))))
                .flatten()
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Raises the soft fd limit to the hard one and returns the soft limit in force. Every event
/// read holds an fd until answered; without fds the kernel denies events.
fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// A read buffer that never asks for more events at once than half the free fds.
fn read_buffer_len(wanted: usize, nofile: u64) -> usize {
    let event = std::mem::size_of::<libc::fanotify_event_metadata>();
    let by_fds = (nofile.saturating_sub(64) / 2).max(16) as usize * event;
    wanted.min(by_fds).max(4096)
}

pub(crate) fn read_sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/fs/fanotify/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[allow(clippy::unnecessary_cast)] // fs_type_t is c_long: i64 here, i32 elsewhere
fn fs_type_of(path: &Path) -> Result<i64, Error> {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 as i64)
        .map_err(|errno| Error::Stat {
            path: path.into(),
            errno,
        })
}

fn refused_fs(t: i64) -> Option<&'static str> {
    Some(match t {
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x0027_e0eb => "cgroup",
        0x6367_7270 => "cgroup2",
        _ => return None,
    })
}

fn fs_type_name(t: i64) -> String {
    match t {
        0x0102_1994 => "tmpfs".into(),
        0xef53 => "ext4".into(),
        0x794c_7630 => "overlay".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683e => "btrfs".into(),
        other => format!("{other:#x}"),
    }
}

/// The last exec of a thread, kept to recognise its ELF interpreter.
struct PendingExec {
    filename: Vec<u8>,
    dev: u64,
    ino: u64,
    at: Instant,
}

/// What one event came to.
struct Decided {
    allow: bool,
    cache: bool,
    event: Option<PlaneEvent>,
}

/// Task facts, read once and only when needed.
struct Task {
    tid: u32,
    status: Option<Result<Status, ProcError>>,
    stat: Option<Result<Stat, ProcError>>,
    exe: Option<Result<String, ProcError>>,
}

impl Task {
    fn new(tid: u32) -> Self {
        Self {
            tid,
            status: None,
            stat: None,
            exe: None,
        }
    }
    fn status(&mut self) -> Result<Status, ProcError> {
        let tid = self.tid;
        self.status
            .get_or_insert_with(|| procfs::status(tid))
            .clone()
    }
    fn stat(&mut self) -> Result<Stat, ProcError> {
        let tid = self.tid;
        self.stat.get_or_insert_with(|| procfs::stat(tid)).clone()
    }
    fn exe(&mut self) -> Result<String, ProcError> {
        let tid = self.tid;
        self.exe.get_or_insert_with(|| procfs::exe(tid)).clone()
    }
}

/// The decision thread.
struct Worker {
    shared: Arc<Shared>,
    group: Arc<Fanotify>,
    buf: Vec<u8>,
    config: Config,
    resolver: Arc<dyn SubjectResolver>,
    intent: Arc<dyn OpenIntent>,
    sink: Box<dyn EventSink>,
    veto: Option<CacheVeto>,
    /// tid -> its last allowed program exec.
    pending: HashMap<u32, PendingExec>,
    /// tgid -> start time, for processes that run ld.so (or a static-pie program) directly.
    loaders: HashMap<u32, u64>,
    /// (dev, ino) found not cacheable in `negative_generation`.
    negative: HashMap<(u64, u64), ()>,
    negative_generation: u64,
    cache_count: usize,
    cache_generation: u64,
    cache_capacity: usize,
    evictable: bool,
    /// Our process id, taken when the thread starts.
    pid: u32,
}

const MAX_TRACKED: usize = 4096;
const MAX_NEGATIVE: usize = 65536;
const INTERP_WINDOW: Duration = Duration::from_secs(2);

impl Worker {
    fn run(mut self) {
        let why = self.serve();
        // Stop answering: whatever is left is allowed by the kernel once the group closes.
        self.shared.running.store(false, Ordering::SeqCst);
        if let Some(why) = why {
            tracing::error!(reason = %why, "fanotify decision thread stopped");
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
                    tracing::warn!(error = %e, "fanotify read failed");
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
            tracing::warn!(error = %e, "fanotify: removing filesystem marks on shutdown");
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
                tracing::warn!(
                    "fanotify queue overflow: the kernel allowed events that did not fit"
                );
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
                tracing::warn!(error = %e, "fanotify response failed");
            }
        }
        if decided.allow {
            inc(&c.allowed);
        } else {
            inc(&c.denied);
        }
        if decided.cache {
            self.cache(fd);
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

    /// Adds the inode ignore mark, keeping the cache consistent with concurrent flushes.
    fn cache(&mut self, fd: BorrowedFd<'_>) {
        let current = self.shared.generation.load(Ordering::SeqCst);
        if current != self.cache_generation {
            // Whoever bumped the generation flushed the marks.
            self.cache_generation = current;
            self.cache_count = 0;
        }
        if self.cache_count >= self.cache_capacity {
            self.flush_own();
        }
        let mut r = sys::add_ignore_mark(&self.group, fd, self.evictable);
        if r == Err(Errno::EINVAL) && self.evictable {
            self.evictable = false;
            r = sys::add_ignore_mark(&self.group, fd, false);
        }
        match r {
            Ok(()) => {
                self.cache_count += 1;
                inc(&self.shared.counters.cache_marks);
            }
            Err(Errno::ENOSPC) => {
                // Out of marks for this user: start over.
                self.flush_own();
            }
            Err(e) => tracing::debug!(error = %e, "fanotify: ignore mark not added"),
        }
        // A swap between our decision and the mark may have flushed before we added it: the
        // snapshot we decided with is then stale, so take the mark back out (all of them).
        if self.shared.generation.load(Ordering::SeqCst) != self.cache_generation {
            self.flush_own();
        }
    }

    fn flush_own(&mut self) {
        if sys::flush_inode_marks(&self.group).is_ok() {
            inc(&self.shared.counters.cache_flushes);
        }
        self.cache_count = 0;
    }

    fn fail(&self, hook: Hook, tid: u32, path: Option<String>, reason: String) -> Decided {
        inc(&self.shared.counters.undecided);
        let allow = self.config.fail_mode == FailMode::Open;
        tracing::debug!(tid, reason = %reason, allow, "fanotify: undecided event");
        let mut task = Task::new(tid);
        let status = if tid > 0 { task.status().ok() } else { None };
        Decided {
            allow,
            cache: false,
            event: Some(PlaneEvent {
                timestamp: SystemTime::now(),
                hook,
                exec_kind: None,
                loader_check: false,
                path: path.unwrap_or_default(),
                pid: status.map_or(0, |s| s.tgid),
                tid,
                ppid: status.map_or(0, |s| s.ppid),
                uid: status.map_or(0, |s| s.uid),
                owner: None,
                source: if tid > 0 { task.exe().ok() } else { None },
                args: None,
                subject: SubjectKey::Unmanaged,
                cgroup_id: None,
                access: None,
                allowed: allow,
                outcome: Outcome::Undecided { reason },
            }),
        }
    }

    fn decide(&mut self, ev: &RawEvent, fd: BorrowedFd<'_>) -> Decided {
        let hook = hook_of(ev.mask);
        let c = &self.shared.counters;
        match hook {
            Hook::OpenExecPerm => inc(&c.exec_events),
            Hook::OpenPerm => inc(&c.open_events),
        }
        if ev.pid <= 0 {
            return self.fail(
                hook,
                0,
                None,
                "the task is not visible in the plane's pid namespace".into(),
            );
        }
        let tid = ev.pid as u32;
        if procfs::is_own_thread(tid, self.pid) {
            inc(&c.own_process);
            return Decided {
                allow: true,
                cache: false,
                event: None,
            };
        }
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            Err(e) => return self.fail(hook, tid, None, format!("fstat of the event fd: {e}")),
        };
        let raw = match procfs::fd_path(fd.as_raw_fd()) {
            Ok(p) => p,
            Err(e) => return self.fail(hook, tid, None, format!("path of the event fd: {e}")),
        };
        let utf8 = std::str::from_utf8(&raw).is_ok();
        let mut path = String::from_utf8_lossy(&raw).into_owned();
        if st.st_nlink == 0 {
            path = procfs::strip_deleted(&path).to_owned();
        }
        if !path.starts_with('/') {
            return self.fail(
                hook,
                tid,
                Some(path),
                "the file has no reachable path".into(),
            );
        }
        let snap = self.shared.snapshot.load_full();
        let identity = if snap.profiles.any_path_rules() {
            match self.resolver.resolve(tid, snap.rules.want()) {
                Ok(i) => i,
                Err(e) => return self.fail(hook, tid, Some(path), format!("subject: {e}")),
            }
        } else {
            Identity::default()
        };
        let subject = snap.rules.subject(&identity);
        let set = snap.rules.rule_set(subject).cloned();
        let profile = set.as_ref().and_then(|s| snap.profiles.get(s));
        let mut task = Task::new(tid);
        let ctx = Ctx {
            hook,
            path: &path,
            st: &st,
        };
        let result = match (&set, profile) {
            (Some(set), Some(profile)) => self.decide_with(&ctx, set, profile, &mut task, fd),
            _ => Ok(Step {
                verdict: Verdict::Allow,
                outcome: self.config.emit_logs.then_some(Outcome::Log),
                kind: (hook == Hook::OpenExecPerm).then_some(ExecKind::Program),
                loader_check: false,
                access: None,
                source: None,
                args: None,
                intent_unknown: false,
            }),
        };
        let step = match result {
            Ok(s) => s,
            Err(e) => return self.fail(hook, tid, Some(path), e.to_string()),
        };
        let allow = step.verdict == Verdict::Allow;
        let cache = allow
            && step.outcome.is_none()
            && (!step.intent_unknown || self.config.unknown_intent.cache)
            && utf8
            && self.cacheable(&path, &st, &snap, fd);
        let intent = &self.intent;
        let event = step.outcome.map(|outcome| {
            let status = task.status().ok();
            let source = step.source.or_else(|| task.exe().ok());
            // Process alerts carry the command line (KubeArmor's Resource), read only now.
            let args = match (hook, step.args) {
                (Hook::OpenExecPerm, None) => intent.exec_call(tid, true).and_then(|c| c.args),
                (_, a) => a,
            };
            PlaneEvent {
                timestamp: SystemTime::now(),
                hook,
                exec_kind: step.kind,
                loader_check: step.loader_check,
                path: path.clone(),
                pid: status.map_or(0, |s| s.tgid),
                tid,
                ppid: status.map_or(0, |s| s.ppid),
                uid: status.map_or(0, |s| s.uid),
                owner: Some(st.st_uid),
                source,
                args,
                subject,
                cgroup_id: identity.cgroup_id,
                access: step.access,
                allowed: allow,
                outcome,
            }
        });
        Decided {
            allow,
            cache,
            event,
        }
    }

    fn decide_with(
        &mut self,
        ctx: &Ctx<'_>,
        set: &Arc<RuleSet>,
        p: &Profile,
        task: &mut Task,
        fd: BorrowedFd<'_>,
    ) -> Result<Step, ProcError> {
        let source = if p.needs_source {
            Some(task.exe()?)
        } else {
            None
        };
        let uid = if p.needs_owner { task.status()?.uid } else { 0 };
        let tty = if p.needs_tty {
            task.stat()?.tty_nr != 0
        } else {
            false
        };
        let emit_logs = self.config.emit_logs;
        let base = PathRequest {
            path: ctx.path,
            access: Access::Read,
            source: source.as_deref(),
            uid,
            owner: Some(ctx.st.st_uid),
            tty,
            args: None,
        };
        match ctx.hook {
            Hook::OpenExecPerm => {
                let track = self.config.exec_tracking && p.process_rules;
                let call = if track || p.needs_args {
                    self.intent.exec_call(task.tid, p.needs_args)
                } else {
                    None
                };
                let kind = self.classify(task.tid, call.as_ref(), ctx.st);
                let args: Option<Vec<String>> = call
                    .as_ref()
                    .filter(|c| !c.truncated)
                    .and_then(|c| c.args.clone());
                let req = PathRequest {
                    args: args.as_deref(),
                    ..base
                };
                let d = set.decide_exec(&req);
                let (verdict, outcome) = if kind == ExecKind::ElfInterpreter {
                    inc(&self.shared.counters.elf_interpreter_events);
                    explicit_only(&d, emit_logs)
                } else {
                    (d.verdict, event::outcome_of(&d, emit_logs))
                };
                if track && verdict == Verdict::Allow && kind == ExecKind::Program {
                    self.track_exec(task, call, ctx.st, fd);
                }
                Ok(Step {
                    verdict,
                    outcome,
                    kind: Some(kind),
                    loader_check: false,
                    access: None,
                    source,
                    args,
                    intent_unknown: false,
                })
            }
            Hook::OpenPerm => {
                let (write, known) = if p.needs_access {
                    match self.intent.open_flags(task.tid) {
                        Some(f) => (flags_write(f), true),
                        None => (self.config.unknown_intent.decide_as == Access::Write, false),
                    }
                } else {
                    (false, true)
                };
                let req = PathRequest {
                    access: if write { Access::Write } else { Access::Read },
                    ..base
                };
                let d = set.decide_open(&req);
                let mut verdict = d.verdict;
                let mut outcome = event::outcome_of(&d, emit_logs);
                let mut loader_check = false;
                if verdict == Verdict::Allow && p.process_rules && self.is_loader(task) {
                    loader_check = true;
                    let e = set.decide_exec(&req);
                    let (v, o) = explicit_only(&e, emit_logs);
                    if v == Verdict::Deny {
                        inc(&self.shared.counters.loader_denials);
                        verdict = v;
                        outcome = o;
                    }
                }
                Ok(Step {
                    verdict,
                    outcome,
                    kind: None,
                    loader_check,
                    access: Some(AccessMode { write, known }),
                    source,
                    args: None,
                    intent_unknown: !known,
                })
            }
        }
    }

    /// An exec event of a thread whose previous allowed program exec is the same exec call
    /// (same filename argument, within a short window) on another file is that program's
    /// ELF interpreter.
    fn classify(&mut self, tid: u32, call: Option<&ExecCall>, st: &FileStat) -> ExecKind {
        match (self.pending.remove(&tid), call) {
            (Some(p), Some(call))
                if p.at.elapsed() < INTERP_WINDOW
                    && (p.dev, p.ino) != (st.st_dev, st.st_ino)
                    && p.filename == call.filename =>
            {
                ExecKind::ElfInterpreter
            }
            _ => ExecKind::Program,
        }
    }

    fn track_exec(
        &mut self,
        task: &mut Task,
        call: Option<ExecCall>,
        st: &FileStat,
        fd: BorrowedFd<'_>,
    ) {
        let info = elf::inspect(fd).unwrap_or_default();
        if let (Some(_), Some(call)) = (&info.interp, call) {
            if self.pending.len() >= MAX_TRACKED {
                self.pending.retain(|_, p| p.at.elapsed() < INTERP_WINDOW);
            }
            self.pending.insert(
                task.tid,
                PendingExec {
                    filename: call.filename,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    at: Instant::now(),
                },
            );
        }
        // A new program replaces a loader run directly.
        if let Some(tgid) = self.loader_of(task) {
            self.loaders.remove(&tgid);
        }
        if info.loader_like {
            let Ok(status) = task.status() else {
                return;
            };
            // The process keeps its leader's start time across exec (de_thread copies it).
            if let Ok(s) = procfs::stat(status.tgid) {
                if self.loaders.len() >= MAX_TRACKED {
                    self.loaders.retain(|pid, start| {
                        procfs::stat(*pid).is_ok_and(|s| s.start_time == *start)
                    });
                }
                self.loaders.insert(status.tgid, s.start_time);
            }
        }
    }

    /// The tracked loader process `task` belongs to, if any. `tgkill(tgid, tid, 0)` tests
    /// membership without a /proc read while few loaders are tracked.
    fn loader_of(&self, task: &mut Task) -> Option<u32> {
        if self.loaders.is_empty() {
            return None;
        }
        if self.loaders.len() <= 32 {
            return self.loaders.keys().copied().find(|&tgid| {
                // SAFETY: signal 0 sends nothing; it only checks tid is in group tgid.
                unsafe {
                    libc::syscall(
                        libc::SYS_tgkill,
                        tgid as libc::pid_t,
                        task.tid as libc::pid_t,
                        0,
                    ) == 0
                }
            });
        }
        let tgid = task.status().ok()?.tgid;
        self.loaders.contains_key(&tgid).then_some(tgid)
    }

    fn is_loader(&mut self, task: &mut Task) -> bool {
        let Some(tgid) = self.loader_of(task) else {
            return false;
        };
        let Some(start) = self.loaders.get(&tgid).copied() else {
            return false;
        };
        if procfs::stat(tgid).is_ok_and(|s| s.start_time == start) {
            return true;
        }
        // The loader process is gone and its pid reused.
        self.loaders.remove(&tgid);
        false
    }

    fn cacheable(
        &mut self,
        path: &str,
        st: &FileStat,
        snap: &Snapshot,
        fd: BorrowedFd<'_>,
    ) -> bool {
        if !self.config.allow_cache
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_nlink != 1
        {
            return false;
        }
        // Exec tracking needs to see some executables every time: a loader run directly
        // (else `ld.so /blocked` escapes the loader check), and, under a process allow-list,
        // programs with an ELF interpreter (else their interpreter's event looks like a new
        // program and falls to the posture).
        if self.config.exec_tracking && st.st_mode & 0o111 != 0 && snap.profiles.any_process_rules()
        {
            if let Some(info) = elf::inspect(fd) {
                if info.loader_like
                    || (info.interp.is_some() && snap.profiles.any_process_allow_list())
                {
                    return false;
                }
            }
        }
        if self.negative_generation != snap.generation {
            self.negative.clear();
            self.negative_generation = snap.generation;
        }
        let key = (st.st_dev, st.st_ino);
        if self.negative.contains_key(&key) {
            return false;
        }
        let ok =
            cache::allowed_everywhere(path, &snap.rules, &snap.profiles, self.config.emit_logs)
                && self.veto.as_ref().is_none_or(|v| v(path));
        if !ok {
            if self.negative.len() >= MAX_NEGATIVE {
                self.negative.clear();
            }
            self.negative.insert(key, ());
        }
        // The snapshot may already be stale; `cache()` checks the generation again.
        ok && snap.generation == self.shared.generation.load(Ordering::SeqCst)
    }
}

struct Ctx<'a> {
    hook: Hook,
    path: &'a str,
    st: &'a FileStat,
}

struct Step {
    verdict: Verdict,
    outcome: Option<Outcome>,
    kind: Option<ExecKind>,
    loader_check: bool,
    access: Option<AccessMode>,
    source: Option<String>,
    args: Option<Vec<String>>,
    intent_unknown: bool,
}

fn hook_of(mask: u64) -> Hook {
    if mask & libc::FAN_OPEN_EXEC_PERM != 0 {
        Hook::OpenExecPerm
    } else {
        Hook::OpenPerm
    }
}

/// Only explicit rules count: a default-posture outcome (deny or audit) becomes a silent
/// allow. For ELF interpreters and loader checks, which KubeArmor never puts to the posture.
fn explicit_only(d: &Decision<'_>, emit_logs: bool) -> (Verdict, Option<Outcome>) {
    match d.report {
        Report::Alert {
            matched: Matched::DefaultPosture,
            ..
        } => (Verdict::Allow, None),
        _ => (d.verdict, event::outcome_of(d, emit_logs)),
    }
}
