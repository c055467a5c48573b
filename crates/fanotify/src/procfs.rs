//! What the decision thread reads about a task. Everything here is on procfs (or cgroupfs),
//! never on a filesystem the plane marks: the plane refuses to mark those (see
//! [`crate::Plane::mark_filesystem`]).
//!
//! Parsers are separate from the reads so that they can be tested on bad input.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

/// A /proc read that failed, with what and for which task.
#[derive(Debug, Clone, thiserror::Error)]
#[error("/proc/{tid}/{what}: {reason}")]
pub struct ProcError {
    pub tid: u32,
    pub what: &'static str,
    pub reason: String,
}

impl ProcError {
    pub(crate) fn new(tid: u32, what: &'static str, reason: impl ToString) -> Self {
        Self {
            tid,
            what,
            reason: reason.to_string(),
        }
    }
}

/// Fields of `/proc/<tid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub tgid: u32,
    pub ppid: u32,
    /// Real uid, as KubeArmor's `bpf_get_current_uid_gid()` (host view).
    pub uid: u32,
    /// How many pid namespaces the task is in (entries of `NSpid`; 1 = the initial one only,
    /// 0 when the kernel does not say).
    pub pid_ns_depth: u32,
}

/// Fields of `/proc/<tid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Controlling terminal device; 0 = none.
    pub tty_nr: i64,
    /// Start time in clock ticks after boot; with the pid it names a process for good.
    pub start_time: u64,
}

pub(crate) fn read(tid: u32, what: &'static str) -> Result<Vec<u8>, ProcError> {
    read_small(&format!("/proc/{tid}/{what}")).map_err(|e| ProcError::new(tid, what, e))
}

/// Reads a small procfs file in as few syscalls as possible (open, read, read, close:
/// `std::fs::read` adds a statx and starts with 32-byte reads because procfs sizes are 0).
pub(crate) fn read_small(path: &str) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if buf.len() >= 1 << 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
            }
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

pub(crate) fn status(tid: u32) -> Result<Status, ProcError> {
    let text = read(tid, "status")?;
    parse_status(&text).ok_or_else(|| ProcError::new(tid, "status", "unparsable"))
}

pub(crate) fn stat(tid: u32) -> Result<Stat, ProcError> {
    let text = read(tid, "stat")?;
    parse_stat(&text).ok_or_else(|| ProcError::new(tid, "stat", "unparsable"))
}

/// The executable of the task (`/proc/<tid>/exe`), in the task's own view, without a
/// trailing ` (deleted)`.
pub(crate) fn exe(tid: u32) -> Result<String, ProcError> {
    let link = std::fs::read_link(format!("/proc/{tid}/exe"))
        .map_err(|e| ProcError::new(tid, "exe", e))?;
    Ok(strip_deleted(&String::from_utf8_lossy(link.as_os_str().as_bytes())).to_owned())
}

/// The cgroup v2 path of the task (`0::<path>` line), if it has one.
pub(crate) fn cgroup_v2_path(tid: u32) -> Result<Option<String>, ProcError> {
    let text = read(tid, "cgroup")?;
    Ok(parse_cgroup_v2(&text))
}

/// The inode number of the task's pid namespace.
pub(crate) fn pid_ns(tid: u32) -> Result<u64, ProcError> {
    let link = std::fs::read_link(format!("/proc/{tid}/ns/pid"))
        .map_err(|e| ProcError::new(tid, "ns/pid", e))?;
    parse_ns_link(link.as_os_str()).ok_or_else(|| ProcError::new(tid, "ns/pid", "unparsable"))
}

/// Whether `tid` is a thread of this process: `tgkill(getpid(), tid, 0)` succeeds only for
/// a thread of our thread group (0.3 µs; a /proc/self/task lookup costs 4 µs).
pub(crate) fn is_own_thread(tid: u32, me: u32) -> bool {
    let me = me as libc::pid_t;
    if tid as libc::pid_t == me {
        return true;
    }
    // SAFETY: signal 0 only checks that the thread exists in our group; nothing is sent.
    unsafe { libc::syscall(libc::SYS_tgkill, me, tid as libc::pid_t, 0) == 0 }
}

/// The path of an open fd of this process (`readlink /proc/self/fd/N`), as bytes.
pub(crate) fn fd_path(fd: i32) -> io::Result<Vec<u8>> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.into_os_string().into_vec())
}

use std::os::unix::ffi::OsStringExt;

/// The syscall a blocked task is in (`/proc/<tid>/syscall`): number and six arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallInfo {
    pub nr: i64,
    pub args: [u64; 6],
}

pub(crate) fn syscall(tid: u32) -> Result<Option<SyscallInfo>, ProcError> {
    let text = read(tid, "syscall")?;
    Ok(parse_syscall(&text))
}

/// Reads `buf.len()` bytes of the task's memory at `addr` (process_vm_readv). Returns how
/// many bytes were read; short at an unmapped page.
pub(crate) fn read_mem(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: both iovecs describe valid memory for the call: `local` is our buffer, and the
    // kernel checks `remote` against the other process's address space.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads a NUL-terminated string of at most `max` bytes from the task's memory, one page
/// piece at a time so that a string ending just before an unmapped page is still read.
pub(crate) fn read_cstr(pid: u32, addr: u64, max: usize) -> io::Result<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let to_page_end = (PAGE - (at % PAGE)) as usize;
        let want = to_page_end.min(max - out.len()).min(PAGE as usize);
        let mut chunk = vec![0u8; want];
        let n = read_mem(pid, at, &mut chunk)?;
        if n == 0 {
            break;
        }
        if let Some(end) = chunk[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
        at = at.saturating_add(n as u64);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "string too long or unterminated",
    ))
}

/// Reads a NULL-terminated array of string pointers (argv), at most `max_items` items.
/// Returns `None` in the list position's place when the array is longer than that.
pub(crate) fn read_argv(
    pid: u32,
    addr: u64,
    max_items: usize,
    max_len: usize,
) -> io::Result<(Vec<String>, bool)> {
    let mut args = Vec::new();
    for i in 0..=max_items {
        let mut ptr = [0u8; 8];
        let n = read_mem(pid, addr.saturating_add(8 * i as u64), &mut ptr)?;
        if n != 8 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "argv"));
        }
        let p = u64::from_ne_bytes(ptr);
        if p == 0 {
            return Ok((args, false));
        }
        if i == max_items {
            return Ok((args, true));
        }
        let s = read_cstr(pid, p, max_len)?;
        args.push(String::from_utf8_lossy(&s).into_owned());
    }
    Ok((args, true))
}

pub(crate) fn strip_deleted(path: &str) -> &str {
    path.strip_suffix(" (deleted)").unwrap_or(path)
}

pub(crate) fn parse_status(text: &[u8]) -> Option<Status> {
    let text = std::str::from_utf8(text).ok()?;
    let mut tgid = None;
    let mut ppid = None;
    let mut uid = None;
    let mut pid_ns_depth = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let first = || value.split_whitespace().next()?.parse::<u32>().ok();
        match key {
            "Tgid" => tgid = first(),
            "PPid" => ppid = first(),
            "Uid" => uid = first(),
            "NSpid" => pid_ns_depth = value.split_whitespace().count() as u32,
            _ => {}
        }
    }
    Some(Status {
        tgid: tgid?,
        ppid: ppid?,
        uid: uid?,
        pid_ns_depth,
    })
}

/// Whether `tid` is the container runtime at work inside a container before the workload's
/// first exec (`runc init` joining a container for `runc exec` reads /etc/passwd there): its
/// parent lives in an ancestor pid namespace (a process started inside a container always
/// has its parent inside: the kernel reparents within the namespace), and it runs one of the
/// runtime binaries (same device and inode; `runtimes` are host paths). The workload cannot
/// run the host's runtime binary, which is not in its mount namespace; once `runc init` runs
/// the workload's program it is the workload. Only stat(2) through the `exe` link and on the
/// runtime paths: nothing is opened on a marked filesystem.
pub(crate) fn is_runtime_entering(
    tid: u32,
    runtimes: &[std::path::PathBuf],
) -> Result<bool, ProcError> {
    let task = status(tid)?;
    if task.pid_ns_depth < 2 {
        return Ok(false);
    }
    let parent = status(task.ppid)?;
    if parent.pid_ns_depth == 0 || parent.pid_ns_depth >= task.pid_ns_depth {
        return Ok(false);
    }
    let exe = nix::sys::stat::stat(format!("/proc/{tid}/exe").as_str())
        .map_err(|e| ProcError::new(tid, "exe", e))?;
    Ok(runtimes.iter().any(|r| {
        nix::sys::stat::stat(r.as_path())
            .is_ok_and(|st| (st.st_dev, st.st_ino) == (exe.st_dev, exe.st_ino))
    }))
}

pub(crate) fn parse_stat(text: &[u8]) -> Option<Stat> {
    // comm may hold spaces and parentheses: fields start after the last ')'.
    let close = text.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, tty_nr 7, starttime 22.
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        tty_nr: f.get(4)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

pub(crate) fn parse_cgroup_v2(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_owned())
}

pub(crate) fn parse_ns_link(link: &OsStr) -> Option<u64> {
    let s = link.to_str()?;
    let inner = s.split_once(":[")?.1.strip_suffix(']')?;
    inner.parse().ok()
}

pub(crate) fn parse_syscall(text: &[u8]) -> Option<SyscallInfo> {
    let text = std::str::from_utf8(text).ok()?;
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let s = it.next()?;
        *a = u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()?;
    }
    Some(SyscallInfo { nr, args })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = b"Name:\tcat\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t120\nNgid:\t0\nPid:\t121\nPPid:\t7\nTracerPid:\t0\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(
            parse_status(s),
            Some(Status {
                tgid: 120,
                ppid: 7,
                uid: 1000,
                pid_ns_depth: 0,
            })
        );
        let nested = b"Tgid:\t9\nPPid:\t3\nUid:\t0\t0\t0\t0\nNSpid:\t9\t1\n";
        assert_eq!(parse_status(nested).map(|s| s.pid_ns_depth), Some(2));
        assert_eq!(parse_status(b"Tgid:\tx\n"), None);
        assert_eq!(parse_status(&[0xff, 0xfe]), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn stat_fields_survive_odd_comm() {
        let s = b"4242 (a) b (c)) S 17 4242 4242 34816 4242 4194304 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                ppid: 17,
                tty_nr: 34816,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat(b"12 (x) S 1"), None);
        assert_eq!(parse_stat(b"no paren"), None);
    }

    #[test]
    fn cgroup_and_ns() {
        assert_eq!(
            parse_cgroup_v2(b"12:cpu:/x\n0::/feasctr\n"),
            Some("/feasctr".to_owned())
        );
        assert_eq!(parse_cgroup_v2(b"12:cpu:/x\n"), None);
        assert_eq!(
            parse_ns_link(OsStr::new("pid:[4026531836]")),
            Some(4026531836)
        );
        assert_eq!(parse_ns_link(OsStr::new("pid:[x]")), None);
        assert_eq!(parse_ns_link(OsStr::new("garbage")), None);
    }

    #[test]
    fn syscall_line() {
        let s = b"257 0xffffff9c 0x7ffd5c0 0x241 0x1b6 0x0 0x0 0x7ffd5b0 0x7f00\n";
        assert_eq!(
            parse_syscall(s),
            Some(SyscallInfo {
                nr: 257,
                args: [0xffffff9c, 0x7ffd5c0, 0x241, 0x1b6, 0, 0]
            })
        );
        assert_eq!(parse_syscall(b"running\n"), None);
        assert_eq!(parse_syscall(b"-1 0x7ffd 0x7f00\n"), None);
        assert_eq!(parse_syscall(b"257 0x1 0x2\n"), None);
    }

    #[test]
    fn own_process_and_memory() {
        assert!(is_own_thread(std::process::id(), std::process::id()));
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _ = tx.send(nix::unistd::gettid().as_raw() as u32);
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
        let tid = rx.recv().unwrap_or(0);
        assert!(is_own_thread(tid, std::process::id()));
        let _ = t.join();
        assert!(!is_own_thread(1, std::process::id()));
        let s = std::ffi::CString::new("hello").unwrap_or_default();
        let got = read_cstr(std::process::id(), s.as_ptr() as u64, 100);
        assert_eq!(got.ok(), Some(b"hello".to_vec()));
        assert_eq!(strip_deleted("/x (deleted)"), "/x");
    }
}
