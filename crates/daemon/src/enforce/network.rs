//! The network plane: cgroup-BPF programs (kubearmor-bpf) enforcing protocol rules for the
//! host and every container, pinned so enforcement continues while the daemon is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kubearmor_bpf::net::cgroup2_root;
use kubearmor_bpf::{NetEvent, NetEvents, NetPlane, NetPlaneConfig, NetTable};
use kubearmor_policy::names::sock;
use kubearmor_policy::SocketRequest;

use super::alert::{event_for, Operation};
use super::procinfo::Procfs;
use super::rootfs::RootfsResolver;
use super::{Enforcer, Plane, World};
use crate::pipeline::{Event, Pipeline};
use crate::planes::PlaneStatus;

/// `Enforcer` value of this plane's events.
pub const ENFORCER: &str = "CgroupBPF";

pub struct NetworkPlane {
    plane: NetPlane,
    reader: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl NetworkPlane {
    /// Loads (or adopts) the programs under `<bpffs>/kubearmor-rs/net` and starts the event
    /// reader, which attributes every event through `enforcer`'s current world.
    pub fn start(
        bpffs: &std::path::Path,
        enforcer: std::sync::Weak<Enforcer>,
        pipeline: Pipeline,
    ) -> Result<Self, String> {
        kubearmor_bpf::ensure_bpffs(bpffs).map_err(|e| e.to_string())?;
        let cgroup_root = cgroup2_root().ok_or("no cgroup2 mount found in /proc/self/mountinfo")?;
        let cfg = NetPlaneConfig {
            pin_dir: bpffs.join("kubearmor-rs").join("net"),
            cgroup_root,
        };
        let mut plane = NetPlane::load(&cfg).map_err(|e| e.to_string())?;
        let events = plane
            .take_events()
            .ok_or("event ring buffer already taken")?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let reader = std::thread::Builder::new()
            .name("net-events".into())
            .spawn(move || read_events(events, enforcer, pipeline, &s))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            plane,
            reader: Some(reader),
            stop,
        })
    }

    /// Where the pins live, for `--cleanup`.
    pub fn pin_dir(bpffs: &std::path::Path) -> PathBuf {
        bpffs.join("kubearmor-rs").join("net")
    }
}

impl Plane for NetworkPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "cgroup-bpf",
            enforcer: ENFORCER,
            families: vec!["Network"],
        }
    }

    fn apply(&mut self, world: &World) {
        let mut table = NetTable::new();
        table.add_subject(0, &world.host, &HostResolver);
        for (cg, c) in &world.containers {
            table.add_subject(*cg, &c.rules, &RootfsResolver::new(&c.record.rootfs));
        }
        for s in &table.unenforceable {
            tracing::warn!("network plane: fromSource {s:?} is longer than 255 bytes; its rules are not enforced in the kernel");
        }
        match self.plane.sync(&table) {
            Ok(()) => tracing::debug!(
                rules = table.rules.len(),
                subjects = table.subjects.len(),
                "network plane synced"
            ),
            Err(e) => tracing::error!("network plane: rules not updated: {e}"),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        // The links and maps stay pinned: enforcement continues until the next start adopts
        // them (or `kubearmor --cleanup` removes them).
    }
}

struct HostResolver;

impl kubearmor_policy::PathResolver for HostResolver {
    fn resolve(&self, path: &str) -> Option<String> {
        let r = std::fs::canonicalize(path).ok()?;
        let r = r.to_str()?;
        (r != path).then(|| r.to_string())
    }
}

fn read_events(
    mut events: NetEvents,
    enforcer: std::sync::Weak<Enforcer>,
    pipeline: Pipeline,
    stop: &std::sync::atomic::AtomicBool,
) {
    let procfs = Procfs::default();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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
    ev: &NetEvent,
    world: &World,
    procfs: &Procfs,
) -> Option<kubearmor_proto::feeder::Alert> {
    let (rules, container) = world.subject(ev.cgroup_id);
    // The process may be gone already: fall back on what the kernel recorded.
    let mut info = procfs.process(ev.pid);
    info.host_pid = ev.pid;
    info.uid = ev.uid;
    if info.exe.is_empty() {
        info.exe = ev.source.clone().unwrap_or_else(|| ev.comm.clone());
    }
    let decision = rules.decide_socket(&SocketRequest {
        family: ev.family,
        sock_type: ev.sock_type,
        protocol: ev.protocol,
        source: ev.source.as_deref(),
        tty: ev.tty,
    });
    let resource = resource(ev.family, ev.sock_type, ev.protocol);
    let source = if info.cmdline.is_empty() {
        ev.comm.clone()
    } else {
        info.cmdline.clone()
    };
    event_for(
        &decision,
        Operation {
            operation: kubearmor_proto::values::operation::NETWORK,
            data: format!("hook={} {resource}", ev.hook),
            resource,
            enforcer: ENFORCER,
            denied: ev.denied,
        },
        &info,
        container,
        &source,
    )
}

/// KubeArmor's network resource: `protocol=TCP type=SOCK_STREAM`, or `type=SOCK_RAW` when only
/// the socket type is known.
fn resource(family: i32, ty: i32, proto: i32) -> String {
    let t = sock::type_name(ty & 0xf).unwrap_or("SOCK_UNKNOWN");
    let fam = match family {
        2 => "AF_INET",
        10 => "AF_INET6",
        17 => "AF_PACKET",
        _ => "AF_UNKNOWN",
    };
    let p = match (ty & 0xf, proto) {
        (1, 0 | 6) => Some("TCP"),
        (2, 0 | 17) => Some("UDP"),
        (_, 1) => Some("ICMP"),
        (_, 58) => Some("IPv6-ICMP"),
        (_, 132) => Some("SCTP"),
        _ => None,
    };
    match p {
        Some(p) if family != 17 => format!("domain={fam} protocol={p} type={t}"),
        _ => format!("domain={fam} type={t}"),
    }
}
