//! The BPF-LSM plane (kubearmor-bpf `LsmPlane`): process, file, protocol and capability rules
//! decided in the kernel's LSM hooks for the host and every container, pinned so enforcement
//! continues while the daemon is down. It starts only where the kernel runs BPF-LSM programs;
//! where it does, the daemon uses it instead of fanotify and cgroup-BPF (docs/bpf-lsm.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use kubearmor_bpf::lsm_abi;
use kubearmor_bpf::{LsmEvent, LsmEvents, LsmPlane, LsmPlaneConfig, LsmTable};
use kubearmor_policy::{Access, NoResolve, PathRequest, SocketRequest};
use kubearmor_proto::values::operation;

use super::alert::{event_for, Operation};
use super::procinfo::Procfs;
use super::{Enforcer, Plane, World};
use crate::pipeline::{Event, Pipeline};
use crate::planes::PlaneStatus;

/// `Enforcer` value of this plane's events (as upstream).
pub const ENFORCER: &str = "BPFLSM";

/// What the plane does not reach within its families (docs/bpf-lsm.md, "Limits").
pub const OPEN: &[&str] = &[
    "Process/File: matchPatterns rules are not enforced in the kernel on this plane",
    "Process: Block rules with allowedArgs are not enforced in the kernel (the hooks do not see argv)",
    "Process/File: a copy of a blocked binary under another name runs (rules are by path)",
    "Process/File: paths longer than 255 bytes or deeper than 32 components match directory (recursive) rules and the posture only",
    "Process/File/Network/Capabilities: tasks in a child cgroup of a container's cgroup get the host's rules",
];

pub struct BpfLsmPlane {
    plane: LsmPlane,
    reader: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl BpfLsmPlane {
    /// Loads (or adopts) the programs under `<bpffs>/kubearmor-rs/lsm` and starts the event
    /// reader. Fails with the reason where the kernel does not run BPF-LSM programs. With
    /// `protect`, self-protection is on: only this process may signal or ptrace itself or
    /// write those paths (files, or directories and everything below them).
    pub fn start(
        bpffs: &Path,
        enforcer: Weak<Enforcer>,
        pipeline: Pipeline,
        protect: Option<&[String]>,
    ) -> Result<Self, String> {
        kubearmor_bpf::lsm::probe()?;
        kubearmor_bpf::ensure_bpffs(bpffs).map_err(|e| e.to_string())?;
        let cfg = LsmPlaneConfig {
            pin_dir: Self::pin_dir(bpffs),
        };
        let mut plane = LsmPlane::load(&cfg).map_err(|e| {
            format!(
                "{e}{}",
                std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            )
        })?;
        // Set (or cleared, when the key was turned off) before anything else runs.
        let paths: Vec<&str> = protect.unwrap_or(&[]).iter().map(String::as_str).collect();
        let me = [std::process::id()];
        let pids: &[u32] = if protect.is_some() { &me } else { &[] };
        plane
            .protect(pids, &paths)
            .map_err(|e| format!("self-protection: {e}"))?;
        let events = plane
            .take_events()
            .ok_or("event ring buffer already taken")?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let reader = std::thread::Builder::new()
            .name("lsm-events".into())
            .spawn(move || read_events(events, enforcer, pipeline, &s))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            plane,
            reader: Some(reader),
            stop,
        })
    }

    /// Where the pins live, for `--cleanup`.
    pub fn pin_dir(bpffs: &Path) -> PathBuf {
        bpffs.join("kubearmor-rs").join("lsm")
    }
}

/// The plane's maps for `world`. Every registered container is a subject of its own (even
/// without rules), so host rules never reach a container.
pub fn build_table(world: &World) -> LsmTable {
    let mut table = LsmTable::new();
    table.add_subject(0, &world.host, &NoResolve);
    for (cg, c) in &world.containers {
        table.add_container(*cg, &c.rules, &NoResolve);
    }
    table
}

impl Plane for BpfLsmPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "bpf-lsm",
            enforcer: ENFORCER,
            families: vec!["Process", "File", "Network", "Capabilities"],
            open: OPEN.to_vec(),
            // Pinned programs keep enforcing without the daemon; nothing here goes down.
            down: None,
        }
    }

    fn apply(&mut self, world: &World) {
        let table = build_table(world);
        for u in &table.unenforced {
            tracing::warn!(
                cgroup_id = u.cgroup_id,
                "BPF-LSM plane: {} is not enforced in the kernel: {}",
                u.what,
                u.why
            );
        }
        match self.plane.sync(&table) {
            Ok(()) => tracing::debug!(
                paths = table.paths.len(),
                rules = table.rules.len(),
                subjects = table.subjects.len(),
                "BPF-LSM plane synced"
            ),
            Err(e) => tracing::error!("BPF-LSM plane: rules not updated: {e}"),
        }
    }

    fn stop(&mut self) {
        // A clean stop lifts self-protection (a crash leaves it; the next start takes over).
        let _ = self.plane.protect(&[], &[]);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        // Links and maps stay pinned: enforcement continues until the next start adopts them.
    }
}

fn read_events(
    mut events: LsmEvents,
    enforcer: Weak<Enforcer>,
    pipeline: Pipeline,
    stop: &AtomicBool,
) {
    let procfs = Procfs::default();
    while !stop.load(Ordering::Relaxed) {
        let batch = events.read(Duration::from_millis(200));
        let Some(enforcer) = enforcer.upgrade() else {
            return;
        };
        let world = enforcer.world();
        for ev in batch {
            if let Some(alert) = attribute(&ev, &world, &procfs) {
                pipeline.emit(Event::new(alert));
            }
        }
    }
}

/// Re-runs the decision for a kernel event to say which policy it was.
fn attribute(
    ev: &LsmEvent,
    world: &World,
    procfs: &Procfs,
) -> Option<kubearmor_proto::feeder::Alert> {
    let (rules, container) = world.subject(ev.cgroup_id);
    let mut info = procfs.process(ev.pid);
    info.host_pid = ev.pid;
    info.uid = ev.uid;
    if info.exe.is_empty() {
        info.exe = ev.source.clone().unwrap_or_else(|| ev.comm.clone());
    }
    let source_path = ev
        .source
        .clone()
        .or_else(|| (!info.exe.is_empty()).then(|| info.exe.clone()));
    let (op, decision, resource) = match ev.hook {
        lsm_abi::HOOK_SOCKET_CREATE
        | lsm_abi::HOOK_SOCKET_CONNECT
        | lsm_abi::HOOK_SOCKET_ACCEPT => {
            let d = rules.decide_socket(&SocketRequest {
                family: ev.arg0,
                sock_type: ev.arg1,
                protocol: ev.arg2,
                source: source_path.as_deref(),
                tty: ev.tty,
            });
            (
                operation::NETWORK,
                d,
                format!("domain={} type={} protocol={}", ev.arg0, ev.arg1, ev.arg2),
            )
        }
        lsm_abi::HOOK_CAPABLE => {
            let cap = u8::try_from(ev.arg0).unwrap_or(u8::MAX);
            let d = rules.decide_capability(cap, source_path.as_deref());
            let name = kubearmor_policy::names::capability_name(cap)
                .unwrap_or_else(|| ev.arg0.to_string());
            (operation::CAPABILITIES, d, name)
        }
        lsm_abi::HOOK_KILL | lsm_abi::HOOK_PTRACE => {
            // Self-protection: no policy; an alert that names the daemon's guard.
            let d = kubearmor_policy::Decision {
                verdict: kubearmor_policy::Verdict::Deny,
                report: kubearmor_policy::Report::Log,
            };
            let what = format!("{} signal={} target={}", ev.hook_name(), ev.arg0, ev.arg1);
            (operation::PROCESS, d, what)
        }
        hook => {
            let req = PathRequest {
                access: if ev.write {
                    Access::Write
                } else {
                    Access::Read
                },
                source: source_path.as_deref(),
                uid: ev.uid,
                owner: ev.owner,
                tty: ev.tty,
                ..PathRequest::new(&ev.path)
            };
            if hook == lsm_abi::HOOK_EXEC || hook == lsm_abi::HOOK_MMAP_EXEC {
                (operation::PROCESS, rules.decide_exec(&req), ev.path.clone())
            } else {
                (operation::FILE, rules.decide_open(&req), ev.path.clone())
            }
        }
    };
    let self_protection = matches!(ev.hook, lsm_abi::HOOK_KILL | lsm_abi::HOOK_PTRACE)
        || ev.reason == lsm_abi::REASON_SELF;
    let source = if info.cmdline.is_empty() {
        ev.comm.clone()
    } else {
        info.cmdline.clone()
    };
    event_for(
        &decision,
        Operation {
            operation: op,
            data: format!("lsm={}", ev.hook_name()),
            resource,
            enforcer: ENFORCER,
            denied: ev.denied,
            killed: false,
        },
        &info,
        container,
        &source,
    )
    .map(|mut a| {
        if self_protection {
            // Not a policy: the daemon's own guard (selfProtection).
            a.policy_name = SELF_PROTECTION.to_string();
        }
        a
    })
}

/// `PolicyName` of alerts from self-protection.
pub const SELF_PROTECTION: &str = "KubeArmorSelfProtection";
