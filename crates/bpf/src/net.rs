//! The network plane: cgroup-BPF programs attached once at the cgroup-v2 root, deciding by
//! cgroup id, with every link and map pinned so enforcement continues while the daemon is down.
//! A restarted daemon adopts the pinned maps and swaps in fresh links.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aya::maps::{HashMap, MapData, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::abi::{ExeKey, NetEventRaw, NetKey, NetSubject, NetVal};
use crate::net_table::NetTable;
use crate::{objects, pin, BpfError};

#[derive(Debug, Clone)]
pub struct NetPlaneConfig {
    /// bpffs folder for this plane's pins, e.g. `/sys/fs/bpf/kubearmor-rs/net`.
    pub pin_dir: PathBuf,
    /// The cgroup-v2 root the programs attach to (see [`cgroup2_root`]).
    pub cgroup_root: PathBuf,
}

/// A socket operation the kernel denied or audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    pub cgroup_id: u64,
    pub tid: u32,
    pub pid: u32,
    pub uid: u32,
    /// The executable, when a rule names it (else read it from /proc): a path of the file
    /// the kernel identified, as the rule spelled it.
    pub source: Option<String>,
    /// The executable is a dynamic loader run as a program (`ld.so /usr/bin/curl`): it was
    /// held to the Block and Audit rules of every program the subject's rules name.
    pub loader: bool,
    pub family: i32,
    pub sock_type: i32,
    pub protocol: i32,
    /// `SOCKET_CREATE` or `SOCKET_CONNECT`.
    pub hook: &'static str,
    /// A packet socket the cgroup hooks cannot refuse: the process was killed (SIGKILL).
    pub killed: bool,
    pub denied: bool,
    pub tty: bool,
    pub reason: u8,
    pub comm: String,
}

const PROGRAMS_CGROUP_SOCK: &[&str] = &["ka_sock_create"];
const PROGRAMS_SOCK_ADDR: &[&str] = &["ka_connect4", "ka_connect6"];
/// Tracepoints, with their `syscalls` event.
const PROGRAMS_TRACEPOINT: &[(&str, &str)] = &[("ka_socket_enter", "sys_enter_socket")];
/// Pins this version of the plane owns; others under the pin folder are left over from
/// earlier versions (an exec-path tracker, its maps) and removed at load.
const MAPS: &[&str] = &[
    "ka_net_rules",
    "ka_net_subjects",
    "ka_source_inodes",
    "ka_net_events",
];

type SourceNames = Arc<RwLock<BTreeMap<u32, String>>>;

pub struct NetPlane {
    _bpf: Ebpf,
    rules: HashMap<MapData, NetKey, NetVal>,
    subjects: HashMap<MapData, u64, NetSubject>,
    source_inodes: HashMap<MapData, ExeKey, u32>,
    events: Option<RingBuf<MapData>>,
    names: SourceNames,
    pin_dir: PathBuf,
}

impl NetPlane {
    /// Loads the programs, adopting maps already pinned under `pin_dir` (the rules in force
    /// while the daemon was down), attaches them at the cgroup root and pins the links.
    pub fn load(cfg: &NetPlaneConfig) -> Result<Self, BpfError> {
        let maps_dir = cfg.pin_dir.join("maps");
        let links_dir = cfg.pin_dir.join("links");
        for d in [&maps_dir, &links_dir] {
            fs::create_dir_all(d).map_err(|source| BpfError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let btf = Btf::from_sys_fs().map_err(|e| BpfError::Btf(e.to_string()))?;
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .default_map_pin_directory(&maps_dir)
            .load(objects::NET)
            .map_err(|e| BpfError::Load {
                object: "net.bpf.o",
                source: Box::new(e),
            })?;

        let cgroup = File::open(&cfg.cgroup_root).map_err(|source| BpfError::Io {
            path: cfg.cgroup_root.clone(),
            source,
        })?;
        // CgroupSock and CgroupSockAddr share no trait in aya; the steps are the same.
        macro_rules! attach_at_root {
            ($ty:ty, $names:expr) => {
                for name in $names {
                    let p: &mut $ty = program(&mut bpf, name)?;
                    p.load().map_err(|e| BpfError::program(name, e))?;
                    let id = p
                        .attach(cgroup.as_fd(), CgroupAttachMode::Single)
                        .map_err(|e| BpfError::program(name, e))?;
                    let link = p.take_link(id).map_err(|e| BpfError::program(name, e))?;
                    let link = FdLink::try_from(link).map_err(|e| BpfError::Pin {
                        path: links_dir.join(name),
                        message: e.to_string(),
                    })?;
                    pin::replace_link(link, &links_dir.join(name))?;
                }
            };
        }
        attach_at_root!(CgroupSock, PROGRAMS_CGROUP_SOCK);
        attach_at_root!(CgroupSockAddr, PROGRAMS_SOCK_ADDR);
        crate::pin::ensure_tracefs()?;
        for (name, event) in PROGRAMS_TRACEPOINT {
            let p: &mut TracePoint = program(&mut bpf, name)?;
            p.load().map_err(|e| BpfError::program(name, e))?;
            let id = p
                .attach("syscalls", event)
                .map_err(|e| BpfError::program(name, e))?;
            let link = p.take_link(id).map_err(|e| BpfError::program(name, e))?;
            let link = FdLink::try_from(link).map_err(|e| BpfError::Pin {
                path: links_dir.join(name),
                message: e.to_string(),
            })?;
            pin::replace_link(link, &links_dir.join(name))?;
        }
        remove_stale_pins(&maps_dir, MAPS)?;
        let programs: Vec<&str> = PROGRAMS_CGROUP_SOCK
            .iter()
            .chain(PROGRAMS_SOCK_ADDR)
            .copied()
            .chain(PROGRAMS_TRACEPOINT.iter().map(|(n, _)| *n))
            .collect();
        remove_stale_pins(&links_dir, &programs)?;

        let rules = take_map(&mut bpf, "ka_net_rules")?;
        let subjects = take_map(&mut bpf, "ka_net_subjects")?;
        let source_inodes = take_map(&mut bpf, "ka_source_inodes")?;
        let events = bpf
            .take_map("ka_net_events")
            .ok_or(BpfError::MissingMap("ka_net_events"))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| BpfError::map("ka_net_events", e)))?;

        Ok(Self {
            _bpf: bpf,
            rules,
            subjects,
            source_inodes,
            events: Some(events),
            // Names come with the first sync; events before it carry no source name.
            names: Arc::new(RwLock::new(BTreeMap::new())),
            pin_dir: cfg.pin_dir.clone(),
        })
    }

    /// Makes the kernel maps hold exactly `table`. New entries go in before stale ones come
    /// out, so a rule change never opens a window with no rule.
    pub fn sync(&mut self, table: &NetTable) -> Result<(), BpfError> {
        for (k, id) in &table.sources {
            self.source_inodes
                .insert(k, id, 0)
                .map_err(|e| BpfError::map("ka_source_inodes", e))?;
        }
        for (k, flags) in &table.rules {
            let v = NetVal {
                flags: *flags,
                pad: [0; 7],
            };
            self.rules
                .insert(k, v, 0)
                .map_err(|e| BpfError::map("ka_net_rules", e))?;
        }
        for (cg, s) in &table.subjects {
            self.subjects
                .insert(cg, s, 0)
                .map_err(|e| BpfError::map("ka_net_subjects", e))?;
        }
        let stale_subjects: Vec<u64> = self
            .subjects
            .keys()
            .flatten()
            .filter(|k| !table.subjects.contains_key(k))
            .collect();
        for k in stale_subjects {
            let _ = self.subjects.remove(&k);
        }
        let stale_rules: Vec<NetKey> = self
            .rules
            .keys()
            .flatten()
            .filter(|k| !table.rules.contains_key(k))
            .collect();
        for k in stale_rules {
            let _ = self.rules.remove(&k);
        }
        let stale_sources: Vec<ExeKey> = self
            .source_inodes
            .keys()
            .flatten()
            .filter(|k| !table.sources.contains_key(k))
            .collect();
        for k in stale_sources {
            let _ = self.source_inodes.remove(&k);
        }
        if let Ok(mut names) = self.names.write() {
            *names = table.names.clone();
        }
        Ok(())
    }

    /// The event reader; it can move to its own thread. Only one exists.
    pub fn take_events(&mut self) -> Option<NetEvents> {
        self.events.take().map(|ring| NetEvents {
            ring,
            names: self.names.clone(),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Detaches the plane for good: removes every pin under `pin_dir`. Without this, the
    /// programs stay attached after the daemon exits (by design).
    pub fn remove_pins(pin_dir: &Path) -> Result<(), BpfError> {
        pin::remove_all(pin_dir)
    }
}

/// Reads denial and audit events from the plane's ring buffer.
pub struct NetEvents {
    ring: RingBuf<MapData>,
    names: SourceNames,
}

impl NetEvents {
    /// Waits up to `timeout` for events and returns those available.
    pub fn read(&mut self, timeout: Duration) -> Vec<NetEvent> {
        let mut fds = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, ms) };
        let mut raws = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<NetEventRaw>() {
                continue;
            }
            // SAFETY: the kernel wrote a NetEventRaw (size checked); read unaligned.
            raws.push(unsafe { std::ptr::read_unaligned::<NetEventRaw>(item.as_ptr().cast()) });
        }
        raws.iter().map(|r| self.convert(r)).collect()
    }

    fn convert(&self, raw: &NetEventRaw) -> NetEvent {
        let source = (raw.source_id != 0)
            .then(|| {
                self.names
                    .read()
                    .ok()
                    .and_then(|n| n.get(&raw.source_id).cloned())
            })
            .flatten();
        let comm_len = raw
            .comm
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(raw.comm.len());
        NetEvent {
            loader: raw.source_id == crate::abi::SOURCE_LOADER,
            cgroup_id: raw.cgroup_id,
            tid: raw.pid,
            pid: raw.tgid,
            uid: raw.uid,
            source,
            family: raw.family,
            sock_type: raw.sock_type,
            protocol: raw.protocol,
            hook: if raw.hook == crate::abi::HOOK_CONNECT {
                "SOCKET_CONNECT"
            } else {
                "SOCKET_CREATE"
            },
            killed: raw.hook == crate::abi::HOOK_SOCKET_KILL && raw.denied != 0,
            denied: raw.denied != 0,
            tty: raw.tty != 0,
            reason: raw.reason,
            comm: String::from_utf8_lossy(&raw.comm[..comm_len]).into_owned(),
        }
    }
}

/// The cgroup-v2 mount point, from /proc/self/mountinfo (`/sys/fs/cgroup/unified` on hybrid
/// hosts, `/sys/fs/cgroup` on pure v2 ones).
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// Removes pins in `dir` whose names are not in `keep`.
fn remove_stale_pins(dir: &Path, keep: &[&str]) -> Result<(), BpfError> {
    let entries = fs::read_dir(dir).map_err(|source| BpfError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let name = e.file_name();
        if !keep.iter().any(|k| name.to_str() == Some(*k)) {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(())
}

fn program<'a, T>(bpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, BpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = bpf
        .program_mut(name)
        .ok_or(BpfError::MissingProgram(name))?;
    p.try_into().map_err(|e| BpfError::program(name, e))
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    bpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, BpfError> {
    let m = bpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    HashMap::try_from(m).map_err(|e| BpfError::map(name, e))
}
