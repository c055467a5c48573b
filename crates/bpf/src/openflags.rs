//! Open intent: the flags of the open a thread is making, for the fanotify plane's readOnly
//! decisions (fanotify reports that a file is being opened, not how).

use aya::maps::{HashMap, MapData};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::abi::OpenIntentRaw;
use crate::{objects, BpfError};

const TRACEPOINTS: &[(&str, &str)] = &[
    ("ka_enter_open", "sys_enter_open"),
    ("ka_enter_openat", "sys_enter_openat"),
    ("ka_enter_creat", "sys_enter_creat"),
    ("ka_enter_openat2", "sys_enter_openat2"),
    ("ka_exit_open", "sys_exit_open"),
    ("ka_exit_openat", "sys_exit_openat"),
    ("ka_exit_creat", "sys_exit_creat"),
    ("ka_exit_openat2", "sys_exit_openat2"),
];

/// What a thread inside an open syscall asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenIntent {
    pub flags: u32,
    pub cgroup_id: u64,
}

impl OpenIntent {
    /// Whether the open may write: write-only, read-write, truncate or create.
    pub fn may_write(&self) -> bool {
        let acc = self.flags & libc::O_ACCMODE as u32;
        acc == libc::O_WRONLY as u32
            || acc == libc::O_RDWR as u32
            || self.flags & (libc::O_TRUNC | libc::O_CREAT | libc::O_APPEND) as u32 != 0
    }
}

/// The tracepoints stay attached while this lives (not pinned: the fanotify plane that uses
/// them dies with the daemon anyway).
pub struct OpenIntentTracker {
    _bpf: Ebpf,
    /// An LRU hash; aya's HashMap handles both kinds.
    map: HashMap<MapData, u32, OpenIntentRaw>,
}

impl OpenIntentTracker {
    /// Loads and attaches the tracepoints (mounting tracefs if it is not mounted).
    pub fn load() -> Result<Self, BpfError> {
        crate::pin::ensure_tracefs()?;
        let mut bpf = EbpfLoader::new()
            .load(objects::OPENFLAGS)
            .map_err(|e| BpfError::Load {
                object: "openflags.bpf.o",
                source: Box::new(e),
            })?;
        for (name, tp) in TRACEPOINTS {
            let p: &mut TracePoint = bpf
                .program_mut(name)
                .ok_or(BpfError::MissingProgram(name))?
                .try_into()
                .map_err(|e| BpfError::program(name, e))?;
            p.load().map_err(|e| BpfError::program(name, e))?;
            p.attach("syscalls", tp)
                .map_err(|e| BpfError::program(name, e))?;
        }
        let m = bpf
            .take_map("ka_open_intent")
            .ok_or(BpfError::MissingMap("ka_open_intent"))?;
        let map = HashMap::try_from(m).map_err(|e| BpfError::map("ka_open_intent", e))?;
        Ok(Self { _bpf: bpf, map })
    }

    /// The open thread `tid` is making right now, if it is inside open/openat/openat2/creat.
    /// `None` for execs, io_uring opens and other paths: the mode is unknown.
    pub fn lookup(&self, tid: u32) -> Option<OpenIntent> {
        self.map.get(&tid, 0).ok().map(|raw| OpenIntent {
            flags: raw.flags,
            cgroup_id: raw.cgroup_id,
        })
    }
}
