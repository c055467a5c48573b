//! What fanotify can do on this kernel, as data for the daemon's startup log and
//! `karmor probe`.

use std::path::Path;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, MarkFlags, MaskFlags};
use serde::Serialize;

use crate::plane::read_sysctl;
use crate::sys::{self, PERM_MASK};

/// One feature: whether it works, and the error if not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Feature {
    fn from(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => Self {
                ok: true,
                error: None,
            },
            Err(e) => Self {
                ok: false,
                error: Some(format!("{e} ({})", e.desc())),
            },
        }
    }

    fn skipped(why: &str) -> Self {
        Self {
            ok: false,
            error: Some(why.to_owned()),
        }
    }
}

/// The probe's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub kernel_release: String,
    /// `FAN_CLASS_CONTENT`: permission events at all.
    pub class_content: Feature,
    pub report_tid: Feature,
    /// Needs `CAP_SYS_ADMIN` (not `CAP_SYS_RESOURCE`).
    pub unlimited_queue: Feature,
    /// Needs `CAP_SYS_ADMIN` (not `CAP_SYS_RESOURCE`).
    pub unlimited_marks: Feature,
    /// `FAN_MARK_FILESYSTEM` with `FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM` on the probe path's
    /// filesystem (added and removed at once).
    pub filesystem_mark: Feature,
    /// `FAN_MARK_IGNORE_SURV` inode marks (the allow cache, Linux 6.0).
    pub ignore_surv: Feature,
    /// `FAN_MARK_EVICTABLE` on ignore marks (Linux 5.19).
    pub evictable: Feature,
    /// `/proc/1/syscall` is readable (ptrace read access to a process we did not start: needs
    /// `CAP_SYS_PTRACE`, and no LSM scoping such as a Landlock domain or Yama): write intent
    /// and exec calls without BPF (`ProcSyscallIntent`).
    pub proc_syscall: Feature,
    pub cap_sys_admin: bool,
    pub cap_sys_resource: bool,
    /// `/proc/sys/fs/fanotify/*` limits that apply without the unlimited flags.
    pub max_queued_events: Option<u64>,
    pub max_user_marks: Option<u64>,
    pub max_user_groups: Option<u64>,
    /// Whether the plane can enforce (class content + filesystem mark).
    pub enforcing: bool,
    /// Human-readable consequences.
    pub notes: Vec<String>,
}

/// Probes fanotify. With `mark_path`, a filesystem mark is added to the filesystem holding
/// it and removed again at once (opens there may wait a few microseconds, until the probe's
/// group closes). Without it, the filesystem mark is not tried.
pub fn probe(mark_path: Option<&Path>) -> ProbeReport {
    let ev = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
    let base = libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
    let class = sys::try_init(base, ev);
    let class_content = Feature::from(class.as_ref().map(|_| ()).map_err(|e| *e));
    let try_flag = |f: u32| Feature::from(sys::try_init(base | f, ev).map(|_| ()));
    let report_tid = try_flag(libc::FAN_REPORT_TID);
    let unlimited_queue = try_flag(libc::FAN_UNLIMITED_QUEUE);
    let unlimited_marks = try_flag(libc::FAN_UNLIMITED_MARKS);

    let (ignore_surv, evictable) = match &class {
        Ok(g) => probe_ignore(g),
        Err(_) => (
            Feature::skipped("no fanotify group"),
            Feature::skipped("no fanotify group"),
        ),
    };
    let filesystem_mark = match (mark_path, sys::try_init(base, ev)) {
        (Some(p), Ok(g)) => {
            let r = sys::mark_filesystem(&g, p, true);
            if r.is_ok() {
                let _ = sys::mark_filesystem(&g, p, false);
            }
            // `g` closes here: anything that raced into the mark is allowed.
            Feature::from(r)
        }
        (None, _) => Feature::skipped("no probe path given"),
        (_, Err(e)) => Feature::from(Err(e)),
    };
    let (cap_sys_admin, cap_sys_resource) = caps();
    let proc_syscall = match crate::procfs::read(1, "syscall") {
        Ok(_) => Feature::from(Ok(())),
        Err(e) => Feature::skipped(&e.to_string()),
    };
    let mut notes = Vec::new();
    if !unlimited_queue.ok {
        notes.push(format!(
            "queue limited to {} events: a permission event that does not fit is allowed by the kernel (counted as overflow)",
            read_sysctl("max_queued_events").map_or("max_queued_events".into(), |v| v.to_string())
        ));
    }
    if !unlimited_marks.ok {
        notes.push(format!(
            "marks limited to {} per user: the allow cache stays below half of that",
            read_sysctl("max_user_marks").map_or("max_user_marks".into(), |v| v.to_string())
        ));
    }
    if !ignore_surv.ok {
        notes.push("no allow cache: every open on a marked filesystem goes to the daemon".into());
    }
    if !proc_syscall.ok {
        notes.push("cannot read /proc/<pid>/syscall of other processes: without a BPF intent source, write intent is unknown (decided as configured) and ELF interpreters are not recognised".into());
    }
    if !report_tid.ok {
        notes.push("events carry process ids, not thread ids: write intent of multi-threaded openers may be misread".into());
    }
    let enforcing = class_content.ok && (filesystem_mark.ok || mark_path.is_none());
    ProbeReport {
        kernel_release: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        class_content,
        report_tid,
        unlimited_queue,
        unlimited_marks,
        filesystem_mark,
        ignore_surv,
        evictable,
        proc_syscall,
        cap_sys_admin,
        cap_sys_resource,
        max_queued_events: read_sysctl("max_queued_events"),
        max_user_marks: read_sysctl("max_user_marks"),
        max_user_groups: read_sysctl("max_user_groups"),
        enforcing,
        notes,
    }
}

/// Ignore marks are tried on our own executable through its path: a mark needs no open, and
/// a group without filesystem marks never holds anyone.
fn probe_ignore(g: &Fanotify) -> (Feature, Feature) {
    let mask = MaskFlags::from_bits_retain(PERM_MASK);
    let target = "/proc/self/exe";
    let surv = g.mark(
        MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORE_SURV,
        mask,
        nix::fcntl::AT_FDCWD,
        Some(target),
    );
    let _ = sys::flush_inode_marks(g);
    let evict = g.mark(
        MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORE_SURV | MarkFlags::FAN_MARK_EVICTABLE,
        mask,
        nix::fcntl::AT_FDCWD,
        Some(target),
    );
    let _ = sys::flush_inode_marks(g);
    (Feature::from(surv), Feature::from(evict))
}

fn caps() -> (bool, bool) {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return (false, false);
    };
    let eff = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    (
        eff & (1 << 21) != 0, // CAP_SYS_ADMIN
        eff & (1 << 24) != 0, // CAP_SYS_RESOURCE
    )
}
