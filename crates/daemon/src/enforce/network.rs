//! The network plane: cgroup-BPF programs (kubearmor-bpf) enforcing protocol rules for the
//! host and every container, pinned so enforcement continues while the daemon is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kubearmor_bpf::net::cgroup2_root;
use kubearmor_bpf::{
    MountDevs, NetEvent, NetEvents, NetPlane, NetPlaneConfig, NetTable, RootedIdentity,
};
use kubearmor_policy::names::sock;
use kubearmor_policy::SocketRequest;

use super::alert::{event_for, Operation};
use super::procinfo::Procfs;
use super::{Enforcer, Plane, World};
use crate::pipeline::{Event, Pipeline};
use crate::planes::PlaneStatus;

/// What protocol rules do not reach on this plane (docs/compatibility.md, "What stays open").
pub const OPEN: &[&str] = &[
    "Network: AF_VSOCK sockets (and Unix, netlink and other non-IP families) are not subject to protocol rules",
    "Network: packet sockets (AF_PACKET of any type, AF_XDP) never reach cgroup/sock_create; a denied one kills its process (SIGKILL) from the socket() tracepoint instead of failing with EACCES",
    "Network: packet sockets created through io_uring (IORING_OP_SOCKET) are not seen",
    "Network: fromSource is the running executable file: a copy of a binary (cp, memfd) is another file; a script runs as its interpreter",
    "Network: a process in its own user namespace that unmaps its executable can re-point its exe at another file (prctl PR_SET_MM_MAP) and take that file's fromSource rules",
    "Network: a fromSource file replaced or created after a sync is matched from the next sync (at most 10 s later)",
];

/// `Enforcer` value of this plane's events.
pub const ENFORCER: &str = "CgroupBPF";

pub struct NetworkPlane {
    plane: NetPlane,
    reader: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The table last synced, to skip a tick's sync when nothing changed.
    last: Option<NetTable>,
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
            last: None,
        })
    }

    /// Where the pins live, for `--cleanup`.
    pub fn pin_dir(bpffs: &std::path::Path) -> PathBuf {
        bpffs.join("kubearmor-rs").join("net")
    }
}

impl NetworkPlane {
    fn sync(&mut self, table: NetTable) {
        for s in &table.unresolved {
            tracing::warn!("network plane: fromSource {s:?} names no file yet; its rules apply once a sync finds it (every {} s)", super::TICK.as_secs());
        }
        match self.plane.sync(&table) {
            Ok(()) => {
                tracing::debug!(
                    rules = table.rules.len(),
                    subjects = table.subjects.len(),
                    "network plane synced"
                );
                self.last = Some(table);
            }
            Err(e) => {
                tracing::error!("network plane: rules not updated: {e}");
                self.last = None;
            }
        }
    }
}

/// The plane's maps for `world`: fromSource paths become file identities (inode, device)
/// inside each subject's root, since the kernel matches the running executable, not the exec
/// spelling. Every registered container is a subject, so host rules never reach one.
fn build_table(world: &World) -> NetTable {
    let mounts = MountDevs::read();
    let mut table = NetTable::new();
    table.add_host(
        &world.host,
        &RootedIdentity::new(std::path::Path::new("/"), mounts.clone()),
    );
    for (cg, c) in &world.containers {
        let ids = RootedIdentity::new(std::path::Path::new(&c.record.rootfs), mounts.clone());
        table.add_container(*cg, &c.rules, &ids);
    }
    table
}

impl Plane for NetworkPlane {
    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            name: "cgroup-bpf",
            enforcer: ENFORCER,
            families: vec!["Network"],
            open: OPEN.to_vec(),
            down: None,
        }
    }

    fn apply(&mut self, world: &World) {
        let table = build_table(world);
        self.sync(table);
    }

    /// `fromSource` files are identified by inode: a binary replaced since the last sync (a
    /// package upgrade writes a new inode) or created after it is picked up here.
    fn tick(&mut self, world: &World) {
        let table = build_table(world);
        if self.last.as_ref() != Some(&table) {
            tracing::info!("network plane: fromSource files changed on disk; re-syncing");
            self.sync(table);
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
    let request = |source| SocketRequest {
        family: ev.family,
        sock_type: ev.sock_type,
        protocol: ev.protocol,
        source,
        tty: ev.tty,
    };
    let mut decision = rules.decide_socket(&request(ev.source.as_deref()));
    if ev.loader && ev.denied {
        // ld.so run as a program answers to the Block rules of every named program: name the
        // first that denies.
        if let Some(d) = rules
            .protocol_rules()
            .iter()
            .filter_map(|r| r.source.as_deref())
            .map(|s| rules.decide_socket(&request(Some(s))))
            .find(|d| d.is_denied())
        {
            decision = d;
        }
    }
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
            killed: ev.killed,
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
