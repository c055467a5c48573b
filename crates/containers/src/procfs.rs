//! What `/proc` says about a process: its cgroup-v2 path and id, its pid and mount namespace
//! ids, its start time. Parsing is pure (tested with fixture text); file access sits behind
//! [`ProcSource`] so the registry and the rescan can be tested without root.
//!
//! The cgroup id of a container is the inode of its cgroup-v2 directory, which is what
//! `bpf_get_current_cgroup_id()` returns for its tasks. The path comes from the `0::` line of
//! `/proc/PID/cgroup`; the directory is that path under the cgroup2 mount (found in
//! `/proc/self/mountinfo`: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
//! hybrid ones). A process that is only in v1 hierarchies has no `0::` line; we report that
//! as an error instead of guessing (its BPF cgroup id would be the root's).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Errors reading or parsing `/proc` data.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
}

impl ProcError {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        ProcError::Io {
            what: what.into(),
            source,
        }
    }
    fn parse(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ProcError::Parse {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether the process (or its cgroup) is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ProcError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound
            || source.raw_os_error() == Some(3 /* ESRCH */))
    }
}

/// The cgroup-v2 path of a process: the path of the `0::` line of `/proc/PID/cgroup`.
pub fn parse_cgroup_v2_path(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("0::")?;
        rest.starts_with('/').then(|| rest.trim_end().to_string())
    })
}

/// One line of `/proc/PID/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Device number of the filesystem (`major:minor`, field 3).
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (field 4, unescaped).
    pub root: String,
    /// Where it is mounted (field 5, unescaped).
    pub mount_point: PathBuf,
    /// The filesystem type (first field after ` - `).
    pub fs_type: String,
}

/// Parses mountinfo text; lines that do not parse are skipped.
pub fn parse_mountinfo(mountinfo: &str) -> Vec<MountInfo> {
    mountinfo.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    let (left, right) = line.split_once(" - ")?;
    let fs_type = right.split_whitespace().next()?.to_string();
    let fields: Vec<&str> = left.split_whitespace().collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    Some(MountInfo {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape_mountinfo(fields.get(3)?),
        mount_point: PathBuf::from(unescape_mountinfo(fields.get(4)?)),
        fs_type,
    })
}

/// The mount point of the cgroup2 filesystem, from mountinfo text. Prefers a mount of the
/// hierarchy root (`/`), which is what the host sees.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for m in parse_mountinfo(mountinfo) {
        if m.fs_type != "cgroup2" {
            continue;
        }
        if m.root == "/" {
            return Some(m.mount_point);
        }
        fallback.get_or_insert(m.mount_point);
    }
    fallback
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The inode number in a namespace link such as `pid:[4026532456]`.
pub fn parse_ns_link(link: &str, kind: &str) -> Option<u32> {
    link.trim()
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Field 22 (`starttime`, clock ticks since boot) of `/proc/PID/stat`. The command name (field
/// 2) may contain spaces and parentheses, so we count from the last `)`.
pub fn parse_stat_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // after ")" come fields 3.. ; starttime is field 22, i.e. index 19 here
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Access to `/proc` and the cgroup filesystem.
pub trait ProcSource: Send + Sync {
    /// Contents of `/proc/PID/cgroup`.
    fn cgroup_file(&self, pid: u32) -> Result<String, ProcError>;
    /// Target of `/proc/PID/ns/<kind>`.
    fn ns_link(&self, pid: u32, kind: &str) -> Result<String, ProcError>;
    /// Contents of `/proc/PID/stat`.
    fn stat_file(&self, pid: u32) -> Result<String, ProcError>;
    /// Inode of the cgroup-v2 directory for a cgroup path (`/foo/bar`).
    fn cgroup_inode(&self, cgroup_path: &str) -> Result<u64, ProcError>;
}

/// The real `/proc` (or `procfsMount`) and cgroup2 mount.
#[derive(Debug)]
pub struct HostProc {
    proc_root: PathBuf,
    cgroup2: OnceLock<Option<PathBuf>>,
}

impl Default for HostProc {
    fn default() -> Self {
        HostProc::new("/proc")
    }
}

impl HostProc {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        HostProc {
            proc_root: proc_root.into(),
            cgroup2: OnceLock::new(),
        }
    }

    /// Use this cgroup2 mount point instead of looking it up in mountinfo.
    pub fn with_cgroup2_mount(self, mount: impl Into<PathBuf>) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(Some(mount.into()));
        HostProc {
            proc_root: self.proc_root,
            cgroup2: cell,
        }
    }

    /// The cgroup2 mount point, looked up once in `<proc>/self/mountinfo`.
    pub fn cgroup2_mount(&self) -> Option<&Path> {
        self.cgroup2
            .get_or_init(|| {
                std::fs::read_to_string(self.proc_root.join("self/mountinfo"))
                    .ok()
                    .and_then(|t| parse_cgroup2_mount(&t))
            })
            .as_deref()
    }

    fn pid_path(&self, pid: u32, rest: &str) -> PathBuf {
        self.proc_root.join(pid.to_string()).join(rest)
    }
}

impl ProcSource for HostProc {
    fn cgroup_file(&self, pid: u32) -> Result<String, ProcError> {
        let p = self.pid_path(pid, "cgroup");
        std::fs::read_to_string(&p).map_err(|e| ProcError::io(p.display().to_string(), e))
    }

    fn ns_link(&self, pid: u32, kind: &str) -> Result<String, ProcError> {
        let p = self.pid_path(pid, &format!("ns/{kind}"));
        std::fs::read_link(&p)
            .map(|t| t.to_string_lossy().into_owned())
            .map_err(|e| ProcError::io(p.display().to_string(), e))
    }

    fn stat_file(&self, pid: u32) -> Result<String, ProcError> {
        let p = self.pid_path(pid, "stat");
        std::fs::read_to_string(&p).map_err(|e| ProcError::io(p.display().to_string(), e))
    }

    fn cgroup_inode(&self, cgroup_path: &str) -> Result<u64, ProcError> {
        let mount = self.cgroup2_mount().ok_or_else(|| {
            ProcError::parse(
                self.proc_root.join("self/mountinfo").display().to_string(),
                "no cgroup2 mount (cgroup v2 is required to identify containers)",
            )
        })?;
        let dir = mount.join(cgroup_path.trim_start_matches('/'));
        std::fs::metadata(&dir)
            .map(|m| m.ino())
            .map_err(|e| ProcError::io(dir.display().to_string(), e))
    }
}

/// What we learn about a container's init process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcInfo {
    pub pid: u32,
    pub pidns: u32,
    pub mntns: u32,
    pub cgroup_path: String,
    pub cgroup_id: u64,
    /// `starttime` from `/proc/PID/stat` (guards against pid reuse).
    pub start_time: u64,
}

/// The cgroup path and id of a process.
pub fn cgroup_of(proc: &dyn ProcSource, pid: u32) -> Result<(String, u64), ProcError> {
    let text = proc.cgroup_file(pid)?;
    let path = parse_cgroup_v2_path(&text).ok_or_else(|| {
        ProcError::parse(
            format!("/proc/{pid}/cgroup"),
            "no cgroup-v2 (0::) entry; the process is only in v1 hierarchies",
        )
    })?;
    let id = proc.cgroup_inode(&path)?;
    Ok((path, id))
}

/// The namespace id of a process for `kind` (`pid` or `mnt`).
pub fn ns_of(proc: &dyn ProcSource, pid: u32, kind: &str) -> Result<u32, ProcError> {
    let link = proc.ns_link(pid, kind)?;
    parse_ns_link(&link, kind).ok_or_else(|| {
        ProcError::parse(
            format!("/proc/{pid}/ns/{kind}"),
            format!("unexpected link {link:?}"),
        )
    })
}

/// The start time of a process.
pub fn start_time_of(proc: &dyn ProcSource, pid: u32) -> Result<u64, ProcError> {
    let stat = proc.stat_file(pid)?;
    parse_stat_start_time(&stat)
        .ok_or_else(|| ProcError::parse(format!("/proc/{pid}/stat"), "no starttime field"))
}

/// Everything about `pid` at once.
pub fn inspect(proc: &dyn ProcSource, pid: u32) -> Result<ProcInfo, ProcError> {
    if pid == 0 {
        return Err(ProcError::parse("pid", "pid 0 is not a container process"));
    }
    let (cgroup_path, cgroup_id) = cgroup_of(proc, pid)?;
    Ok(ProcInfo {
        pid,
        pidns: ns_of(proc, pid, "pid")?,
        mntns: ns_of(proc, pid, "mnt")?,
        cgroup_path,
        cgroup_id,
        start_time: start_time_of(proc, pid)?,
    })
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory [`ProcSource`] for tests.
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default, Clone)]
    pub struct FakeProcess {
        pub cgroup_path: String,
        pub pidns: u32,
        pub mntns: u32,
        pub start_time: u64,
    }

    #[derive(Debug, Default)]
    pub struct FakeProc {
        pub procs: Mutex<HashMap<u32, FakeProcess>>,
        pub cgroups: Mutex<HashMap<String, u64>>,
    }

    impl FakeProc {
        pub fn add(&self, pid: u32, cgroup_path: &str, cgroup_id: u64, pidns: u32, mntns: u32) {
            if let Ok(mut p) = self.procs.lock() {
                p.insert(
                    pid,
                    FakeProcess {
                        cgroup_path: cgroup_path.to_string(),
                        pidns,
                        mntns,
                        start_time: u64::from(pid) * 10,
                    },
                );
            }
            if let Ok(mut c) = self.cgroups.lock() {
                c.insert(cgroup_path.to_string(), cgroup_id);
            }
        }

        pub fn kill(&self, pid: u32) {
            if let Ok(mut p) = self.procs.lock() {
                p.remove(&pid);
            }
        }

        fn get(&self, pid: u32) -> Result<FakeProcess, ProcError> {
            self.procs
                .lock()
                .ok()
                .and_then(|p| p.get(&pid).cloned())
                .ok_or_else(|| {
                    ProcError::io(
                        format!("/proc/{pid}"),
                        io::Error::from(io::ErrorKind::NotFound),
                    )
                })
        }
    }

    impl ProcSource for FakeProc {
        fn cgroup_file(&self, pid: u32) -> Result<String, ProcError> {
            let p = self.get(pid)?;
            Ok(format!(
                "4:memory:/x{}\n0::{}\n",
                p.cgroup_path, p.cgroup_path
            ))
        }
        fn ns_link(&self, pid: u32, kind: &str) -> Result<String, ProcError> {
            let p = self.get(pid)?;
            let id = if kind == "pid" { p.pidns } else { p.mntns };
            Ok(format!("{kind}:[{id}]"))
        }
        fn stat_file(&self, pid: u32) -> Result<String, ProcError> {
            let p = self.get(pid)?;
            Ok(format!(
                "{pid} (sle ep) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 {} 2240512 200",
                p.start_time
            ))
        }
        fn cgroup_inode(&self, cgroup_path: &str) -> Result<u64, ProcError> {
            self.cgroups
                .lock()
                .ok()
                .and_then(|c| c.get(cgroup_path).copied())
                .ok_or_else(|| {
                    ProcError::io(
                        cgroup_path.to_string(),
                        io::Error::from(io::ErrorKind::NotFound),
                    )
                })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/karx1\n8:pids:/karx1\n\
4:memory:/process_api/80493567f17bf0e2e1776b994a85d15e/karx1\n1:cpu:/karx1\n0::/karx1\n";
    const UNIFIED_CGROUP: &str =
        "0::/system.slice/containerd.service/kubepods-burstable-pod1.slice:cri-containerd:abc\n";
    const V1_ONLY: &str = "4:memory:/docker/abc\n1:name=systemd:/docker/abc\n";

    #[test]
    fn cgroup_v2_path() {
        assert_eq!(
            parse_cgroup_v2_path(HYBRID_CGROUP).as_deref(),
            Some("/karx1")
        );
        assert_eq!(
            parse_cgroup_v2_path(UNIFIED_CGROUP).as_deref(),
            Some(
                "/system.slice/containerd.service/kubepods-burstable-pod1.slice:cri-containerd:abc"
            )
        );
        assert_eq!(parse_cgroup_v2_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_cgroup_v2_path(V1_ONLY), None);
        assert_eq!(parse_cgroup_v2_path(""), None);
        assert_eq!(parse_cgroup_v2_path("0::garbage\n"), None);
    }

    #[test]
    fn cgroup2_mount_from_mountinfo() {
        let hybrid = "\
25 31 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 35 0:39 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // a non-root bind of the hierarchy is only a fallback
        let nested = "\
50 24 0:26 /kubepods /mnt/cg rw - cgroup2 cgroup2 rw
51 24 0:26 / /mnt/my\\040cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            parse_cgroup2_mount(nested),
            Some(PathBuf::from("/mnt/my cgroup"))
        );
        assert_eq!(
            parse_cgroup2_mount("50 24 0:26 /kubepods /mnt/cg rw - cgroup2 cgroup2 rw\n"),
            Some(PathBuf::from("/mnt/cg"))
        );
        assert_eq!(parse_cgroup2_mount("garbage\n\n1 2 3\n"), None);
    }

    #[test]
    fn mountinfo_lines() {
        let text = "\
36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue
bad line without separator
37 35 x:1 / /bad rw - tmpfs tmpfs rw
38 35 0:45 / /tmp/t\\134x rw shared:2 - tmpfs tmpfs rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0],
            MountInfo {
                major: 98,
                minor: 0,
                root: "/mnt1".into(),
                mount_point: PathBuf::from("/mnt/a b"),
                fs_type: "ext3".into(),
            }
        );
        assert_eq!(m[1].mount_point, PathBuf::from("/tmp/t\\x"));
        assert_eq!((m[1].major, m[1].minor), (0, 45));
    }

    #[test]
    fn ns_links() {
        assert_eq!(parse_ns_link("pid:[4026532456]", "pid"), Some(4026532456));
        assert_eq!(parse_ns_link("mnt:[4026532455]\n", "mnt"), Some(4026532455));
        assert_eq!(parse_ns_link("mnt:[4026532455]", "pid"), None);
        assert_eq!(parse_ns_link("pid:[x]", "pid"), None);
        assert_eq!(parse_ns_link("pid:[99999999999]", "pid"), None);
    }

    #[test]
    fn stat_start_time() {
        let stat = "16685 (sleep) S 16673 16685 16685 0 -1 4194560 104 0 0 0 0 0 0 0 20 0 1 0 100619 2240512 212 18446744073709551615";
        assert_eq!(parse_stat_start_time(stat), Some(100619));
        let tricky =
            "42 (a) b) (c) S 1 42 42 0 -1 4194560 104 0 0 0 0 0 0 0 20 0 1 0 777 2240512 212";
        assert_eq!(parse_stat_start_time(tricky), Some(777));
        assert_eq!(parse_stat_start_time("42 (x) S 1"), None);
    }

    #[test]
    fn inspect_with_fake_proc() {
        let p = fake::FakeProc::default();
        p.add(100, "/ctr", 82, 4026532180, 4026532177);
        let info = inspect(&p, 100).unwrap();
        assert_eq!(
            info,
            ProcInfo {
                pid: 100,
                pidns: 4026532180,
                mntns: 4026532177,
                cgroup_path: "/ctr".into(),
                cgroup_id: 82,
                start_time: 1000,
            }
        );
        let err = inspect(&p, 101).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(inspect(&p, 0).is_err());
    }

    #[test]
    fn host_proc_reads_this_process() {
        // No root needed: our own /proc entries.
        let host = HostProc::default();
        let me = std::process::id();
        assert!(ns_of(&host, me, "pid").unwrap() > 0);
        assert!(ns_of(&host, me, "mnt").unwrap() > 0);
        assert!(start_time_of(&host, me).unwrap() > 0);
        if let (Some(_), Ok((path, id))) = (host.cgroup2_mount(), cgroup_of(&host, me)) {
            assert!(path.starts_with('/'));
            assert!(id > 0);
        }
    }
}
