//! The plane: the group, its marks, the rule snapshot, and the decision thread.
//!
//! One type per concern, split the way `crates/usb` splits engine and handler:
//! - this file: [`Plane`] (the daemon's handle: marks, rule swaps, stats, shutdown), its
//!   builder, [`AbortHandle`] and the stall watchdog;
//! - `worker.rs`: the decision thread's loop (read, answer, count);
//! - `decide.rs`: what one event comes to;
//! - `exec_track.rs`: interpreter and loader tracking ([`exec_track::ExecTracker`]);
//! - `allow_cache.rs`: the inode ignore marks ([`allow_cache::AllowCache`]);
//! - `stats.rs`: counters.

mod allow_cache;
mod decide;
mod exec_track;
mod log;
mod stats;
mod worker;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use kubearmor_policy::Access;
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::fanotify::Fanotify;
use serde::Serialize;

use crate::cache::Profiles;
use crate::event::{self, EventSink};
use crate::intent::{OpenIntent, ProcSyscallIntent};
use crate::subject::{ProcResolver, Rules, SubjectResolver};
use crate::sys::{self, GroupInfo, InitWants};

use allow_cache::AllowCache;
use exec_track::{ExecTracker, ProcFacts};
pub use stats::Stats;
use stats::{inc, Counters};
use worker::Worker;

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
    /// Container runtime binaries (host paths). A process that entered a container from
    /// outside and still runs one of them is the runtime at work, not the workload: its opens
    /// are not judged (`procfs::is_runtime_entering`).
    pub runtime_binaries: Vec<std::path::PathBuf>,
}

/// Where runc and crun are installed by distributions and by hand.
pub const DEFAULT_RUNTIME_BINARIES: &[&str] = &[
    "/usr/sbin/runc",
    "/usr/bin/runc",
    "/usr/local/sbin/runc",
    "/usr/local/bin/runc",
    "/usr/bin/crun",
    "/usr/local/bin/crun",
];

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
            runtime_binaries: DEFAULT_RUNTIME_BINARIES
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
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
    #[error("{path}: refusing to mark a {fs} filesystem ({why})")]
    RefusedFilesystem {
        path: PathBuf,
        fs: &'static str,
        why: &'static str,
    },
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
            intent: self
                .intent
                .unwrap_or_else(|| Arc::new(ProcSyscallIntent::default())),
            sink: self.sink.unwrap_or_else(|| Box::new(event::DiscardSink)),
            veto: self.veto,
            exec: ExecTracker::new(Box::new(ProcFacts)),
            exec_opens: std::collections::HashMap::new(),
            cache: AllowCache::new(capacity),
            log: log::LogRelay::start(),
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
        if let Some((fs, why)) = refused_fs(fs_type) {
            return Err(Error::RefusedFilesystem {
                path: path.into(),
                fs,
                why,
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
        self.shared.counters.snapshot(
            self.shared.generation.load(Ordering::SeqCst),
            self.is_running(),
            lock(&self.shared.stopped_because).clone(),
        )
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
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    kubearmor_containers::procfs::parse_mountinfo(&text)
        .into_iter()
        .filter(|m| u64::from(m.major) == major && u64::from(m.minor) == minor)
        .map(|m| m.mount_point)
        .collect()
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

/// Filesystems the plane never marks, and why.
/// - The decision thread reads procfs, sysfs and cgroupfs: an event there would wait on us.
/// - For every event the kernel opens the file for us inside `read()` of the group (the
///   event fd), and the decision reads it (`fstat`, the ELF header). On FUSE (and virtiofs)
///   that open is a request to a server any user can run; on a network filesystem it waits on
///   a remote server. Either would stall the event read itself, and with it every open on
///   every marked filesystem. Rules for files there are NOT enforced by this plane (the
///   daemon logs it when the mark is refused; docs/fanotify.md lists it).
pub(crate) fn refused_fs(t: i64) -> Option<(&'static str, &'static str)> {
    const READ_BY_US: &str = "the decision thread reads it";
    const SERVED: &str =
        "opening its files for an event waits on a server a user or a remote host controls";
    Some(match t {
        0x9fa0 => ("proc", READ_BY_US),
        0x6265_6572 => ("sysfs", READ_BY_US),
        0x0027_e0eb => ("cgroup", READ_BY_US),
        0x6367_7270 => ("cgroup2", READ_BY_US),
        0x6573_5546 => ("fuse", SERVED),
        0x6969 => ("nfs", SERVED),
        0xff53_4d42 => ("cifs", SERVED),
        0xfe53_4d42 => ("smb2", SERVED),
        0x517b => ("smb", SERVED),
        0x0102_1997 => ("9p", SERVED),
        0x00c3_6400 => ("ceph", SERVED),
        0x5346_414f | 0x6b41_4653 => ("afs", SERVED),
        0x7375_7245 => ("coda", SERVED),
        0x2003_0528 => ("orangefs", SERVED),
        0x0bd0_0bd0 => ("lustre", SERVED),
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
