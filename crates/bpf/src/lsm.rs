//! The BPF-LSM plane: process, file, protocol and capability rules decided in the kernel's
//! LSM hooks (lsm.bpf.c), per cgroup id, with every link and map pinned so enforcement
//! continues while the daemon is down. A restarted daemon adopts the pinned maps (the rules in
//! force) and pins fresh links over the old ones, so no moment has no program attached.
//!
//! Loads only where the kernel runs BPF-LSM programs: `CONFIG_BPF_LSM=y` and `bpf` in the
//! active LSMs (`/sys/kernel/security/lsm`); [`probe`] says whether and why not.

use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{HashMap, MapData, RingBuf};
use aya::programs::links::FdLink;
use aya::programs::Lsm;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::lsm_abi::{self, LsmEventRaw, LsmKey, LsmPathKey, LsmPathVal, LsmSubject};
use crate::lsm_table::{path_hash, LsmTable};
use crate::{objects, pin, BpfError};

/// Programs and the hooks they attach to.
const PROGRAMS: &[(&str, &str)] = &[
    ("ka_bprm_check", "bprm_check_security"),
    ("ka_mmap_file", "mmap_file"),
    ("ka_file_open", "file_open"),
    ("ka_file_permission", "file_permission"),
    ("ka_path_unlink", "path_unlink"),
    ("ka_path_rmdir", "path_rmdir"),
    ("ka_path_mkdir", "path_mkdir"),
    ("ka_path_mknod", "path_mknod"),
    ("ka_path_symlink", "path_symlink"),
    ("ka_path_rename", "path_rename"),
    ("ka_path_link", "path_link"),
    ("ka_path_chmod", "path_chmod"),
    ("ka_path_truncate", "path_truncate"),
    ("ka_socket_create", "socket_create"),
    ("ka_socket_connect", "socket_connect"),
    ("ka_socket_accept", "socket_accept"),
    ("ka_capable", "capable"),
    ("ka_task_kill", "task_kill"),
    ("ka_ptrace_access", "ptrace_access_check"),
    ("ka_file_truncate", "file_truncate"),
];

/// Hooks that only newer kernels have; skipped where the kernel lacks them (`file_truncate`,
/// 6.2+: older kernels truncate on open through `path_truncate`, which is attached).
const OPTIONAL_HOOKS: &[&str] = &["file_truncate"];

/// Whether BPF-LSM programs can run here, and if not, why (for the daemon's plane choice).
pub fn probe() -> Result<(), String> {
    let lsm = fs::read_to_string("/sys/kernel/security/lsm").map_err(|e| {
        format!("cannot read /sys/kernel/security/lsm ({e}); is securityfs mounted?")
    })?;
    if !lsm.split(',').any(|l| l.trim() == "bpf") {
        return Err(format!(
            "bpf is not among the active LSMs ({}); boot with lsm=...,bpf",
            lsm.trim()
        ));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into());
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct LsmPlaneConfig {
    /// bpffs folder for this plane's pins, e.g. `/sys/fs/bpf/kubearmor-rs/lsm`.
    pub pin_dir: PathBuf,
}

/// An operation the kernel denied or audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsmEvent {
    pub cgroup_id: u64,
    pub tid: u32,
    pub pid: u32,
    pub uid: u32,
    /// Owner uid of the file, when there is one.
    pub owner: Option<u32>,
    pub hook: u8,
    pub denied: bool,
    /// `abi::REASON_*` or `lsm_abi::REASON_SELF`.
    pub reason: u8,
    pub write: bool,
    pub tty: bool,
    /// Socket family / capability / signal.
    pub arg0: i32,
    /// Socket type / target pid.
    pub arg1: i32,
    /// Socket protocol.
    pub arg2: i32,
    pub comm: String,
    /// The file ("" for sockets, capabilities, signals).
    pub path: String,
    /// The running executable when the kernel built its path (a subject with fromSource rules).
    pub source: Option<String>,
}

impl LsmEvent {
    /// The hook's name as KubeArmor reports the operation's syscall-ish resource.
    pub fn hook_name(&self) -> &'static str {
        match self.hook {
            lsm_abi::HOOK_EXEC => "bprm_check_security",
            lsm_abi::HOOK_OPEN => "file_open",
            lsm_abi::HOOK_WRITE => "file_permission",
            lsm_abi::HOOK_UNLINK => "path_unlink",
            lsm_abi::HOOK_RENAME => "path_rename",
            lsm_abi::HOOK_LINK => "path_link",
            lsm_abi::HOOK_CHMOD => "path_chmod",
            lsm_abi::HOOK_TRUNCATE => "path_truncate",
            lsm_abi::HOOK_MKDIR => "path_mkdir",
            lsm_abi::HOOK_MKNOD => "path_mknod",
            lsm_abi::HOOK_MMAP_EXEC => "mmap_file",
            lsm_abi::HOOK_SOCKET_CREATE => "socket_create",
            lsm_abi::HOOK_SOCKET_CONNECT => "socket_connect",
            lsm_abi::HOOK_SOCKET_ACCEPT => "socket_accept",
            lsm_abi::HOOK_CAPABLE => "capable",
            lsm_abi::HOOK_KILL => "task_kill",
            lsm_abi::HOOK_PTRACE => "ptrace_access_check",
            lsm_abi::HOOK_RMDIR => "path_rmdir",
            _ => "unknown",
        }
    }
}

pub struct LsmPlane {
    _bpf: Ebpf,
    paths: HashMap<MapData, LsmPathKey, LsmPathVal>,
    rules: HashMap<MapData, LsmKey, crate::abi::NetVal>,
    subjects: HashMap<MapData, u64, LsmSubject>,
    protect: HashMap<MapData, u32, u32>,
    selfpath: HashMap<MapData, u64, u32>,
    events: Option<RingBuf<MapData>>,
    pin_dir: PathBuf,
}

impl LsmPlane {
    /// Loads and attaches the programs, adopting maps already pinned under `pin_dir` (the
    /// rules in force while the daemon was down), and pins the links over any old ones.
    pub fn load(cfg: &LsmPlaneConfig) -> Result<Self, BpfError> {
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
            .load(objects::LSM)
            .map_err(|e| BpfError::Load {
                object: "lsm.bpf.o",
                source: Box::new(e),
            })?;
        // A restarted loader under adopted self-protection must be able to re-pin its links in
        // the protected pin folder: it joins the protected processes first (loading BPF is
        // root-with-CAP_BPF's privilege anyway; see docs/bpf-lsm.md).
        if let Some(m) = bpf.map_mut("ka_lsm_protect") {
            if let Ok(mut protect) = HashMap::<_, u32, u32>::try_from(m) {
                if protect.get(&0, 0).is_ok() {
                    let _ = protect.insert(std::process::id(), 1, 0);
                }
            }
        }
        for (name, hook) in PROGRAMS {
            let p: &mut Lsm = bpf
                .program_mut(name)
                .ok_or(BpfError::MissingProgram(name))?
                .try_into()
                .map_err(|e| BpfError::program(name, e))?;
            match p.load(hook, &btf) {
                Ok(()) => {}
                // The kernel's BTF has no bpf_lsm_<hook>: this kernel has no such hook.
                Err(aya::programs::ProgramError::Btf(_)) if OPTIONAL_HOOKS.contains(hook) => {
                    continue
                }
                Err(e) => return Err(BpfError::program(name, e)),
            }
            let id = p.attach().map_err(|e| BpfError::program(name, e))?;
            let link: FdLink = p
                .take_link(id)
                .map_err(|e| BpfError::program(name, e))?
                .into();
            pin::replace_link(link, &links_dir.join(name))?;
        }
        let paths = take_map(&mut bpf, "ka_lsm_paths")?;
        let rules = take_map(&mut bpf, "ka_lsm_rules")?;
        let subjects = take_map(&mut bpf, "ka_lsm_subjects")?;
        let protect = take_map(&mut bpf, "ka_lsm_protect")?;
        let selfpath = take_map(&mut bpf, "ka_lsm_selfpath")?;
        let mut implicit: HashMap<MapData, u64, u32> = take_map(&mut bpf, "ka_lsm_implicit")?;
        for (hash, kind) in crate::lsm_table::implicit_entries() {
            implicit
                .insert(hash, kind, 0)
                .map_err(|e| BpfError::map("ka_lsm_implicit", e))?;
        }
        let events = bpf
            .take_map("ka_lsm_events")
            .ok_or(BpfError::MissingMap("ka_lsm_events"))
            .and_then(|m| RingBuf::try_from(m).map_err(|e| BpfError::map("ka_lsm_events", e)))?;
        Ok(Self {
            _bpf: bpf,
            paths,
            rules,
            subjects,
            protect,
            selfpath,
            events: Some(events),
            pin_dir: cfg.pin_dir.clone(),
        })
    }

    /// Makes the kernel maps hold exactly `table`. Every entry is replaced in one map update;
    /// new and changed entries go in before stale ones come out, so a policy change never has
    /// a moment with neither the old nor the new rule (for an instant both may apply).
    pub fn sync(&mut self, table: &LsmTable) -> Result<(), BpfError> {
        for (k, v) in &table.paths {
            self.paths
                .insert(k, v, 0)
                .map_err(|e| BpfError::map("ka_lsm_paths", e))?;
        }
        for (k, flags) in &table.rules {
            let v = crate::abi::NetVal {
                flags: *flags,
                pad: [0; 7],
            };
            self.rules
                .insert(k, v, 0)
                .map_err(|e| BpfError::map("ka_lsm_rules", e))?;
        }
        for (cg, s) in &table.subjects {
            self.subjects
                .insert(cg, s, 0)
                .map_err(|e| BpfError::map("ka_lsm_subjects", e))?;
        }
        let stale: Vec<u64> = self
            .subjects
            .keys()
            .flatten()
            .filter(|k| !table.subjects.contains_key(k))
            .collect();
        for k in stale {
            let _ = self.subjects.remove(&k);
        }
        let stale: Vec<LsmPathKey> = self
            .paths
            .keys()
            .flatten()
            .filter(|k| !table.paths.contains_key(k))
            .collect();
        for k in stale {
            let _ = self.paths.remove(&k);
        }
        let stale: Vec<LsmKey> = self
            .rules
            .keys()
            .flatten()
            .filter(|k| !table.rules.contains_key(k))
            .collect();
        for k in stale {
            let _ = self.rules.remove(&k);
        }
        Ok(())
    }

    /// Number of path groups, protocol/capability keys and subjects in the kernel maps.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.paths.keys().count(),
            self.rules.keys().count(),
            self.subjects.keys().count(),
        )
    }

    /// Self-protection: from now on only the processes in `pids` may signal or ptrace each
    /// other, and only they may write, rename, unlink, chmod or truncate `paths` (files, or
    /// directories and everything below them). Replaces the previous set; an empty `pids`
    /// turns it off.
    pub fn protect(&mut self, pids: &[u32], paths: &[&str]) -> Result<(), BpfError> {
        let map_err = |e| BpfError::map("ka_lsm_protect", e);
        let wanted: BTreeSet<u32> = if pids.is_empty() {
            BTreeSet::new()
        } else {
            // Key 0 is the switch the programs test first (no real process has tgid 0).
            pids.iter().copied().chain([0]).collect()
        };
        for p in &wanted {
            self.protect.insert(p, 1, 0).map_err(map_err)?;
        }
        let stale: Vec<u32> = self
            .protect
            .keys()
            .flatten()
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            let _ = self.protect.remove(&k);
        }
        let hashes: BTreeSet<u64> = paths
            .iter()
            .map(|p| path_hash(p.trim_end_matches('/')))
            .collect();
        for h in &hashes {
            self.selfpath
                .insert(h, 1, 0)
                .map_err(|e| BpfError::map("ka_lsm_selfpath", e))?;
        }
        let stale: Vec<u64> = self
            .selfpath
            .keys()
            .flatten()
            .filter(|k| !hashes.contains(k))
            .collect();
        for k in stale {
            let _ = self.selfpath.remove(&k);
        }
        Ok(())
    }

    /// The event reader; it can move to its own thread. Only one exists.
    pub fn take_events(&mut self) -> Option<LsmEvents> {
        self.events.take().map(|ring| LsmEvents { ring })
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
pub struct LsmEvents {
    ring: RingBuf<MapData>,
}

impl LsmEvents {
    /// Waits up to `timeout` for events and returns those available.
    pub fn read(&mut self, timeout: Duration) -> Vec<LsmEvent> {
        let mut fds = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, ms) };
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<LsmEventRaw>() {
                continue;
            }
            // SAFETY: the kernel wrote an LsmEventRaw (size checked); read unaligned.
            let raw = unsafe { std::ptr::read_unaligned::<LsmEventRaw>(item.as_ptr().cast()) };
            out.push(convert(&raw));
        }
        out
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn convert(raw: &LsmEventRaw) -> LsmEvent {
    let source = cstr(&raw.source);
    LsmEvent {
        cgroup_id: raw.cgroup_id,
        tid: raw.pid,
        pid: raw.tgid,
        uid: raw.uid,
        owner: (raw.owner != u32::MAX).then_some(raw.owner),
        hook: raw.hook,
        denied: raw.denied != 0,
        reason: raw.reason,
        write: raw.write != 0,
        tty: raw.tty != 0,
        arg0: raw.arg0,
        arg1: raw.arg1,
        arg2: raw.arg2,
        comm: cstr(&raw.comm),
        path: cstr(&raw.path),
        source: (!source.is_empty()).then_some(source),
    }
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    bpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, BpfError> {
    let m = bpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    HashMap::try_from(m).map_err(|e| BpfError::map(name, e))
}
