//! The exec guard (`execguard.bpf.c`): for subjects whose process rules are an allow-list with
//! block posture, an exec from a filesystem the fanotify plane has not marked is killed before
//! its first instruction. Not pinned: it belongs to the fanotify plane, which fails open when the
//! daemon dies, and dies with it.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{HashMap, MapData, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::abi::{ExeKey, GuardEventRaw};
use crate::{objects, BpfError};

/// An exec the guard killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEvent {
    /// The task's own cgroup id.
    pub cgroup_id: u64,
    pub pid: u32,
    /// Kernel device number (`MAJOR << 20 | MINOR`) of the unmarked filesystem.
    pub dev: u32,
    pub comm: String,
}

pub struct ExecGuard {
    _bpf: Ebpf,
    subjects: HashMap<MapData, u64, u8>,
    devs: HashMap<MapData, u32, u8>,
    runtimes: HashMap<MapData, ExeKey, u8>,
    events: RingBuf<MapData>,
}

impl ExecGuard {
    pub fn load() -> Result<Self, BpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| BpfError::Btf(e.to_string()))?;
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(objects::EXECGUARD)
            .map_err(|e| BpfError::Load {
                object: "execguard.bpf.o",
                source: Box::new(e),
            })?;
        let name = "ka_guard_exec";
        let p: &mut BtfTracePoint = bpf
            .program_mut(name)
            .ok_or(BpfError::MissingProgram(name))?
            .try_into()
            .map_err(|e| BpfError::program(name, e))?;
        p.load("sched_process_exec", &btf)
            .map_err(|e| BpfError::program(name, e))?;
        p.attach().map_err(|e| BpfError::program(name, e))?;
        let map = |bpf: &mut Ebpf, n: &'static str| bpf.take_map(n).ok_or(BpfError::MissingMap(n));
        let subjects = HashMap::try_from(map(&mut bpf, "ka_guard_subjects")?)
            .map_err(|e| BpfError::map("ka_guard_subjects", e))?;
        let devs = HashMap::try_from(map(&mut bpf, "ka_guard_devs")?)
            .map_err(|e| BpfError::map("ka_guard_devs", e))?;
        let runtimes = HashMap::try_from(map(&mut bpf, "ka_guard_runtimes")?)
            .map_err(|e| BpfError::map("ka_guard_runtimes", e))?;
        let events = RingBuf::try_from(map(&mut bpf, "ka_guard_events")?)
            .map_err(|e| BpfError::map("ka_guard_events", e))?;
        Ok(Self {
            _bpf: bpf,
            subjects,
            devs,
            runtimes,
            events,
        })
    }

    /// Container runtime binaries whose exec is never killed (`runc init` enters a container
    /// from the host's filesystem).
    pub fn allow_runtimes(&mut self, keys: &[ExeKey]) -> Result<(), BpfError> {
        for k in keys {
            self.runtimes
                .insert(k, 1, 0)
                .map_err(|e| BpfError::map("ka_guard_runtimes", e))?;
        }
        Ok(())
    }

    /// Makes the maps hold exactly: `guarded` subjects (cgroup id, 0 for the host), the other
    /// registered containers `unguarded` (so a guarded host does not reach them), and the
    /// marked filesystems `devs`. New entries go in before stale ones come out.
    pub fn sync(
        &mut self,
        guarded: &BTreeSet<u64>,
        unguarded: &BTreeSet<u64>,
        devs: &BTreeSet<u32>,
    ) -> Result<(), BpfError> {
        for d in devs {
            self.devs
                .insert(d, 1, 0)
                .map_err(|e| BpfError::map("ka_guard_devs", e))?;
        }
        for cg in unguarded {
            self.subjects
                .insert(cg, 0, 0)
                .map_err(|e| BpfError::map("ka_guard_subjects", e))?;
        }
        for cg in guarded {
            self.subjects
                .insert(cg, 1, 0)
                .map_err(|e| BpfError::map("ka_guard_subjects", e))?;
        }
        let stale: Vec<u64> = self
            .subjects
            .keys()
            .flatten()
            .filter(|k| !guarded.contains(k) && !unguarded.contains(k))
            .collect();
        for k in stale {
            let _ = self.subjects.remove(&k);
        }
        let stale: Vec<u32> = self
            .devs
            .keys()
            .flatten()
            .filter(|k| !devs.contains(k))
            .collect();
        for k in stale {
            let _ = self.devs.remove(&k);
        }
        Ok(())
    }

    /// Waits up to `timeout` for kills and returns those reported.
    pub fn read(&mut self, timeout: Duration) -> Vec<GuardEvent> {
        let mut fds = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, ms) };
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() < std::mem::size_of::<GuardEventRaw>() {
                continue;
            }
            // SAFETY: the kernel wrote a GuardEventRaw (size checked); read unaligned.
            let raw = unsafe { std::ptr::read_unaligned::<GuardEventRaw>(item.as_ptr().cast()) };
            let end = raw.comm.iter().position(|b| *b == 0).unwrap_or(16);
            out.push(GuardEvent {
                cgroup_id: raw.cgroup_id,
                pid: raw.pid,
                dev: raw.dev,
                comm: String::from_utf8_lossy(&raw.comm[..end]).into_owned(),
            });
        }
        out
    }
}

/// The kernel device number of the filesystem holding `path` (`MAJOR << 20 | MINOR`, what the
/// guard compares), from the mount `statx` reports and `/proc/self/mountinfo`.
pub fn kernel_dev_of(path: &std::path::Path, mounts: &crate::MountDevs) -> Option<u32> {
    crate::exe_identity::kernel_dev_of(path, mounts)
}
