//! The fanotify plane (kubearmor-fanotify): process and file rules, on the filesystems that hold
//! the host paths under policy and the rootfs of every container with process or file rules.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;

use kubearmor_fanotify::{
    CacheViews, Config, Hook, Outcome, PathAlias, PlaneEvent, Rules, SubjectKey,
};
use kubearmor_policy::{Family, PathTarget, RuleSet};
use kubearmor_proto::feeder::Alert;
use kubearmor_proto::values::event_type;

use super::{Enforcer, Plane, World};
use crate::pipeline::{Event, Pipeline};
use crate::planes::{Outage, PlaneStatus};

/// `Enforcer` value of this plane's events.
pub const ENFORCER: &str = "fanotify";

pub struct FanotifyPlane {
    plane: Arc<kubearmor_fanotify::Plane>,
    forwarder: Option<JoinHandle<()>>,
    /// Marked filesystems, by device number, with the path used to mark them.
    marks: BTreeMap<u64, PathBuf>,
    /// What a restart needs.
    config: Config,
    intent: Arc<BpfIntent>,
    enforcer: Weak<Enforcer>,
    pipeline: Pipeline,
    /// Set from the moment the plane is found stopped until a restarted one enforces again.
    down: Option<Outage>,
    /// Earliest time of the next restart attempt after a failed one.
    retry_at: Option<std::time::Instant>,
    /// Kills execs from unmarked filesystems for subjects under a process allow-list with
    /// block posture (`None` if it could not load: then listed as not covered).
    guard: Option<Arc<std::sync::Mutex<kubearmor_bpf::ExecGuard>>>,
    guard_reader: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Write intent from the BPF open-intent map (sys_enter_open* tracepoints, keyed by thread
/// id), falling back on `/proc/<tid>/syscall` when the map has no entry (io_uring, a
/// tracepoint that could not attach). Only the decision thread calls it: the lock never waits.
struct BpfIntent {
    tracker: Option<std::sync::Mutex<kubearmor_bpf::OpenIntentTracker>>,
    fallback: kubearmor_fanotify::ProcSyscallIntent,
}

impl kubearmor_fanotify::OpenIntent for BpfIntent {
    fn open_flags(&self, tid: u32) -> Option<i32> {
        let from_map = self
            .tracker
            .as_ref()
            .and_then(|t| t.lock().ok().and_then(|t| t.lookup(tid)))
            .map(|i| i.flags as i32);
        from_map.or_else(|| self.fallback.open_flags(tid))
    }

    fn exec_call(&self, tid: u32, want_args: bool) -> Option<kubearmor_fanotify::ExecCall> {
        self.fallback.exec_call(tid, want_args)
    }
}

impl FanotifyPlane {
    pub fn start(
        enforcer: Weak<Enforcer>,
        pipeline: Pipeline,
        settings: crate::config::FanotifyConfig,
    ) -> Result<Self, String> {
        let tracker = match kubearmor_bpf::OpenIntentTracker::load() {
            Ok(t) => Some(std::sync::Mutex::new(t)),
            Err(e) => {
                tracing::warn!("fanotify: open-intent tracepoints unavailable ({e}); write intent comes from /proc/<tid>/syscall");
                None
            }
        };
        let config = Config {
            fail_mode: if settings.fail_closed {
                kubearmor_fanotify::FailMode::Closed
            } else {
                kubearmor_fanotify::FailMode::Open
            },
            ..Config::default()
        };
        let intent = Arc::new(BpfIntent {
            tracker,
            fallback: kubearmor_fanotify::ProcSyscallIntent::default(),
        });
        let (plane, forwarder) = launch(&config, &intent, &enforcer, &pipeline)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = load_guard();
        let guard_reader = match &guard {
            Some(g) => {
                let (g, stop, pipeline) = (g.clone(), stop.clone(), pipeline.clone());
                Some(
                    std::thread::Builder::new()
                        .name("exec-guard".into())
                        .spawn(move || read_guard(&g, &stop, &pipeline))
                        .map_err(|e| e.to_string())?,
                )
            }
            None => None,
        };
        Ok(Self {
            plane,
            forwarder: Some(forwarder),
            marks: BTreeMap::new(),
            config,
            intent,
            enforcer,
            pipeline,
            down: None,
            retry_at: None,
            guard,
            guard_reader,
            stop,
        })
    }

    /// Arms the exec guard for every subject whose process rules are an allow-list with block
    /// posture: the filesystems it may run programs from are the marked ones.
    fn sync_guard(&self, world: &World) {
        let Some(guard) = &self.guard else {
            return;
        };
        let guarded_set = |r: &RuleSet| {
            r.allow_list(Family::Process) && r.postures().file == kubearmor_policy::Posture::Block
        };
        let mut guarded = std::collections::BTreeSet::new();
        let mut unguarded = std::collections::BTreeSet::new();
        if guarded_set(&world.host) {
            guarded.insert(0);
        }
        for (cg, c) in &world.containers {
            if guarded_set(&c.rules) {
                guarded.insert(*cg);
            } else {
                unguarded.insert(*cg);
            }
        }
        let mounts = kubearmor_bpf::MountDevs::read();
        let devs = self
            .marks
            .values()
            .filter_map(|p| kubearmor_bpf::execguard::kernel_dev_of(p, &mounts))
            .collect();
        if let Ok(mut g) = guard.lock() {
            if let Err(e) = g.sync(&guarded, &unguarded, &devs) {
                tracing::error!("fanotify exec guard not updated: {e}");
            }
        }
    }

    /// Closes the plane's group now (the kernel allows everything: fail-open), as the stall
    /// watchdog does. For tests of the supervision.
    pub fn abort_handle(&self) -> kubearmor_fanotify::AbortHandle {
        self.plane.abort_handle()
    }

    /// Notices a stopped plane (stalled and aborted, crashed), says so, and starts a new one
    /// with the world in force; says so again once it enforces.
    fn supervise_plane(&mut self, world: &World) {
        if self.down.is_none() {
            if self.plane.is_running() {
                return;
            }
            let why = self
                .plane
                .stats()
                .stopped_because
                .unwrap_or_else(|| "the decision thread stopped".to_string());
            let outage = Outage {
                since: std::time::SystemTime::now(),
                why,
            };
            let text = format!(
                "Process and File rules are NOT enforced: {}",
                outage.describe("fanotify")
            );
            tracing::error!("{text}");
            self.pipeline
                .emit(Event::new(gap_event(false, &outage.why, &text)));
            self.down = Some(outage);
            // Restart on the next round (one SUPERVISE period): probes and metrics read
            // meanwhile show the gap, which really is there.
            return;
        }
        if self.retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            return;
        }
        match launch(&self.config, &self.intent, &self.enforcer, &self.pipeline) {
            Ok((plane, forwarder)) => {
                // Marks and rules on the new group first, then let the old one go.
                let old = std::mem::replace(&mut self.plane, plane);
                self.marks.clear();
                self.apply_world(world);
                old.shutdown();
                // The old forwarder ends when the old decision thread drops its sink.
                drop(self.forwarder.replace(forwarder));
                let since = self.down.take().map(|o| o.since);
                self.retry_at = None;
                let text = format!(
                    "Process and File rules are enforced again by a new fanotify plane (not enforced since {})",
                    since.map(crate::planes::rfc3339).unwrap_or_default()
                );
                tracing::warn!("{text}");
                self.pipeline.emit(Event::new(gap_event(true, "", &text)));
            }
            Err(e) => {
                tracing::error!("fanotify plane restart failed: {e}; retrying in 5 s");
                self.retry_at = Some(std::time::Instant::now() + std::time::Duration::from_secs(5));
            }
        }
    }

    /// Marks exactly the filesystems `want` names (one path per filesystem).
    fn sync_marks(&mut self, want: BTreeMap<u64, PathBuf>) {
        for (dev, path) in &want {
            if self.marks.contains_key(dev) {
                continue;
            }
            match self.plane.mark_filesystem(path) {
                Ok(_) => {
                    tracing::info!(path = %path.display(), "fanotify: filesystem marked");
                    self.marks.insert(*dev, path.clone());
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), "fanotify: cannot mark: {e}; rules there are NOT enforced")
                }
            }
        }
        let stale: Vec<u64> = self
            .marks
            .keys()
            .filter(|d| !want.contains_key(d))
            .copied()
            .collect();
        for dev in stale {
            if let Some(path) = self.marks.remove(&dev) {
                if let Err(e) = self.plane.unmark_filesystem(&path) {
                    tracing::warn!(path = %path.display(), "fanotify: cannot unmark: {e}");
                }
            }
        }
    }
}

/// A new plane (no marks, no rules yet) and the thread that forwards its events.
fn launch(
    config: &Config,
    intent: &Arc<BpfIntent>,
    enforcer: &Weak<Enforcer>,
    pipeline: &Pipeline,
) -> Result<(Arc<kubearmor_fanotify::Plane>, JoinHandle<()>), String> {
    let (tx, rx) = kubearmor_fanotify::channel(4096);
    let plane = kubearmor_fanotify::Plane::builder(config.clone())
        .intent(intent.clone())
        .sink(tx)
        .start()
        .map_err(|e| e.to_string())?;
    let info = plane.group_info();
    tracing::info!(?info, "fanotify plane started");
    let (enforcer, pipeline) = (enforcer.clone(), pipeline.clone());
    let forwarder = std::thread::Builder::new()
        .name("fanotify-events".into())
        .spawn(move || forward(rx, enforcer, pipeline))
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(plane), forwarder))
}

/// The `SystemEvent` alert for an enforcement gap (`restored`: its end). Operation
/// `EnforcementGap`, Resource the families, Result `Failed` while down and `Passed` after.
pub fn gap_event(restored: bool, why: &str, text: &str) -> Alert {
    Alert {
        r#type: event_type::SYSTEM_EVENT.to_string(),
        operation: "EnforcementGap".to_string(),
        resource: "Process,File".to_string(),
        enforcer: ENFORCER.to_string(),
        result: if restored { "Passed" } else { "Failed" }.to_string(),
        data: if restored {
            "enforced=true".to_string()
        } else {
            format!("enforced=false reason={why}")
        },
        message: text.to_string(),
        ..Default::default()
    }
}

fn has_path_rules(r: &RuleSet) -> bool {
    r.has_rules(Family::Process) || r.has_rules(Family::File)
}

/// The filesystems that back the paths host rules name: the nearest existing ancestor of each.
fn host_filesystems(rules: &RuleSet, out: &mut BTreeMap<u64, PathBuf>) {
    for r in rules.path_rules() {
        let path = match &r.target {
            PathTarget::Path(p) => PathBuf::from(p),
            PathTarget::Dir { dir, .. } if dir.is_empty() => PathBuf::from("/"),
            PathTarget::Dir { dir, .. } => PathBuf::from(dir),
            PathTarget::Pattern(g) => PathBuf::from(if g.literal_dir().is_empty() {
                "/".to_string()
            } else {
                g.literal_dir()
            }),
            // An execname can be anywhere: every filesystem with executables; the root is
            // the one that matters on a plain host.
            PathTarget::ExecName(_) => PathBuf::from("/"),
        };
        add_filesystem(&path, out);
    }
}

fn add_filesystem(path: &Path, out: &mut BTreeMap<u64, PathBuf>) {
    let mut p = path;
    loop {
        if let Ok(m) = std::fs::metadata(p) {
            out.entry(m.dev()).or_insert_with(|| p.to_path_buf());
            return;
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return,
        }
    }
}

/// What process and file rules do not reach on this plane (docs/fanotify.md, "What stays
/// open"). fanotify sees opens and execs only.
pub const OPEN: &[&str] = &[
    "File: readOnly and Block do not cover truncate(2), unlink, rename, chmod/chown, link, mkdir and other path operations (not open events)",
    "File, Process: opens and execs on filesystems that are not marked are not seen (marked: the filesystems of host rule paths and of container root filesystems; not marked: other tmpfs such as /dev/shm or a container's /dev, volumes on other filesystems, FUSE, filesystems mounted later, in any mount namespace)",
    "Process: under a process allow-list with block posture, an exec from an unmarked filesystem is killed (SIGKILL) by the exec guard instead of failing with EPERM, an allowed program there included",
    "File: under a file allow-list, opens on unmarked filesystems are not denied",
    "Process: a script passed to its interpreter (sh script) is only opened for reading; its exec rules do not apply",
    "Process: a copy of a binary (cp, memfd_create + fexecve) is another file; path rules do not name it",
    "File, Process: directory and pattern rules match by path: a bind mount of a ruled directory gives its files unruled names (exact-path rules follow the file by identity)",
];

impl Plane for FanotifyPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "fanotify",
            enforcer: ENFORCER,
            families: vec!["Process", "File"],
            open: OPEN.to_vec(),
            down: self.down.clone(),
        }
    }

    fn apply(&mut self, world: &World) {
        self.apply_world(world);
    }

    fn supervise(&mut self, world: &World) {
        self.supervise_plane(world);
    }

    fn stop(&mut self) {
        let stats = self.plane.shutdown();
        tracing::info!(?stats, "fanotify plane stopped (pending events drained)");
        if let Some(f) = self.forwarder.take() {
            let _ = f.join();
        }
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.guard_reader.take() {
            let _ = r.join();
        }
    }
}

impl FanotifyPlane {
    fn apply_world(&mut self, world: &World) {
        let mut marks = BTreeMap::new();
        let host = has_path_rules(&world.host).then(|| {
            host_filesystems(&world.host, &mut marks);
            world.host.clone()
        });
        let mut containers = HashMap::new();
        let mut aliases = Vec::new();
        for (cg, c) in &world.containers {
            if !has_path_rules(&c.rules) {
                continue;
            }
            if !c.record.rootfs.is_empty() {
                add_filesystem(Path::new(&c.record.rootfs), &mut marks);
                aliases.push(PathAlias {
                    from: c.record.rootfs.clone(),
                    to: "/".to_string(),
                });
            }
            containers.insert(*cg, c.rules.clone());
        }
        // Add the new marks before the rules that need them; drop stale ones after.
        self.sync_marks(marks);
        let mut rules = Rules {
            host,
            containers,
            aliases,
            cache_views: CacheViews::AliasesOnly,
            ..Default::default()
        };
        // Files that exact-path rules name, by identity: another name of one (hard link, bind
        // mount, another mount namespace's view) is decided under the rule's name too.
        let mounts = kubearmor_bpf::MountDevs::default();
        if let Some(set) = rules.host.clone() {
            let root = kubearmor_bpf::RootedIdentity::new(Path::new("/"), mounts.clone());
            rules.add_rule_files(SubjectKey::Host, &set, |p| root.file_key(p));
        }
        for (cg, set) in rules.containers.clone() {
            let Some(c) = world.containers.get(&cg) else {
                continue;
            };
            let root =
                kubearmor_bpf::RootedIdentity::new(Path::new(&c.record.rootfs), mounts.clone());
            rules.add_rule_files(SubjectKey::Container(cg), &set, |p| root.file_key(p));
        }
        if let Err(e) = self.plane.swap_rules(rules) {
            tracing::error!("fanotify: rules not swapped: {e}");
        }
        self.sync_guard(world);
    }
}

/// The exec guard, with the container runtimes exempt; `None` (logged) if BPF cannot load it.
fn load_guard() -> Option<Arc<std::sync::Mutex<kubearmor_bpf::ExecGuard>>> {
    use kubearmor_bpf::ExeIdentity;
    match kubearmor_bpf::ExecGuard::load() {
        Ok(mut g) => {
            let root = kubearmor_bpf::RootedIdentity::new(Path::new("/"), Default::default());
            let runtimes: Vec<_> = kubearmor_fanotify::DEFAULT_RUNTIME_BINARIES
                .iter()
                .filter_map(|p| root.identify(p))
                .collect();
            if let Err(e) = g.allow_runtimes(&runtimes) {
                tracing::warn!("fanotify exec guard: {e}");
            }
            Some(Arc::new(std::sync::Mutex::new(g)))
        }
        Err(e) => {
            tracing::warn!("fanotify exec guard unavailable ({e}): under a process allow-list, programs on filesystems that are not marked are NOT denied");
            None
        }
    }
}

/// Reports the execs the guard killed.
fn read_guard(
    guard: &std::sync::Mutex<kubearmor_bpf::ExecGuard>,
    stop: &std::sync::atomic::AtomicBool,
    pipeline: &Pipeline,
) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let batch = match guard.lock() {
            Ok(mut g) => g.read(std::time::Duration::from_millis(200)),
            Err(_) => return,
        };
        if batch.is_empty() {
            // Let sync_guard take the lock between polls.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for e in batch {
            tracing::warn!(pid = e.pid, comm = %e.comm, dev = e.dev, "fanotify exec guard: killed a program run from a filesystem the plane does not see, under a process allow-list");
            let a = Alert {
                operation: "Process".into(),
                resource: e.comm.clone(),
                data: format!(
                    "exec from an unmarked filesystem (dev {}:{})",
                    e.dev >> 20,
                    e.dev & 0xf_ffff
                ),
                result: super::alert::KILLED.into(),
                enforcer: ENFORCER.into(),
                action: "Block".into(),
                host_pid: e.pid as i32,
                r#type: event_type::MATCHED_POLICY.into(),
                policy_name: "DefaultPosture".into(),
                ..Default::default()
            };
            pipeline.emit(Event::new(a));
        }
    }
}

fn forward(rx: mpsc::Receiver<PlaneEvent>, enforcer: Weak<Enforcer>, pipeline: Pipeline) {
    while let Ok(ev) = rx.recv() {
        let Some(e) = enforcer.upgrade() else {
            return;
        };
        if let Some(a) = to_alert(&ev, &e.world()) {
            pipeline.emit(Event::new(a));
        }
    }
}

/// A plane event as a KubeArmor event. The plane already ran the decision function; this only
/// shapes the record.
pub fn to_alert(ev: &PlaneEvent, world: &World) -> Option<Alert> {
    let container = match ev.subject {
        SubjectKey::Container(cg) => world.containers.get(&cg).map(|c| c.record.clone()),
        _ => None,
    };
    let exec = ev.hook == Hook::OpenExecPerm;
    let source = ev.source.clone().unwrap_or_default();
    let mut resource = ev.path.clone();
    if let (true, Some(args)) = (exec, &ev.args) {
        for a in args.iter().skip(1) {
            resource.push(' ');
            resource.push_str(a);
        }
    }
    let mut a = Alert {
        operation: ev.operation().to_string(),
        resource,
        data: ev.data(),
        result: ev.result().to_string(),
        host_pid: ev.pid as i32,
        pid: ev.pid as i32,
        host_ppid: ev.ppid as i32,
        ppid: ev.ppid as i32,
        uid: ev.uid as i32,
        process_name: if exec {
            ev.path.clone()
        } else {
            source.clone()
        },
        parent_process_name: source.clone(),
        source,
        cwd: "/".to_string(),
        ..Default::default()
    };
    if let Some(c) = &container {
        super::alert::fill_container(&mut a, c);
    }
    let matched = if container.is_some() {
        event_type::MATCHED_POLICY
    } else {
        event_type::MATCHED_HOST_POLICY
    };
    match &ev.outcome {
        Outcome::Log => {
            a.r#type = if container.is_some() {
                event_type::CONTAINER_LOG
            } else {
                event_type::HOST_LOG
            }
            .to_string();
        }
        Outcome::Alert {
            action,
            policy,
            policy_name,
        } => {
            a.r#type = matched.to_string();
            a.action = action.to_string();
            a.enforcer = ENFORCER.to_string();
            a.policy_name = policy_name.clone();
            if let Some(m) = policy {
                if m.severity > 0 {
                    a.severity = m.severity.to_string();
                }
                a.tags = m.tags.join(",");
                a.message = m.message.clone();
            }
        }
        Outcome::Undecided { reason } => {
            // The fail mode answered: say so, attributed to no policy.
            a.r#type = matched.to_string();
            a.action = if ev.allowed { "Audit" } else { "Block" }.to_string();
            a.enforcer = ENFORCER.to_string();
            a.policy_name = kubearmor_proto::values::DEFAULT_POSTURE.to_string();
            a.message = format!("undecided ({reason}); fail mode applied");
        }
    }
    Some(a)
}
