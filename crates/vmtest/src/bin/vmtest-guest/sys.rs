//! Small system helpers for the guest scenarios: errno checks, cgroups, forked children.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub const EACCES: i32 = libc::EACCES;
pub const EPERM: i32 = libc::EPERM;

/// `Ok` when `r` failed with errno `want`.
pub fn errno<T>(what: &str, r: io::Result<T>, want: i32) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, want errno {want}")),
        Err(e) if e.raw_os_error() == Some(want) => Ok(()),
        Err(e) => Err(format!("{what}: {e}, want errno {want}")),
    }
}

pub fn ok<T>(what: &str, r: io::Result<T>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| format!("{what}: {e}"))
}

/// A child cgroup of the cgroup-v2 root; its inode number is the id BPF sees. Removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
    pub id: u64,
}

impl Cgroup {
    pub fn new(name: &str) -> io::Result<Self> {
        let path = PathBuf::from("/sys/fs/cgroup").join(name);
        fs::create_dir_all(&path)?;
        let id = fs::metadata(&path)?.ino();
        Ok(Self { path, id })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// Runs `f` in a forked child (joined to `cg` first, if given) and returns its exit code:
/// `f`'s return value, 128+signal if it was killed. The guest runner is single-threaded, so
/// forking is safe.
pub fn in_child(cg: Option<&Cgroup>, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork in a single-threaded process; the child only runs `f` and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match cg {
            Some(cg) => match fs::write(cg.path.join("cgroup.procs"), "0") {
                Ok(()) => f(),
                Err(_) => 125,
            },
            None => f(),
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

pub fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// The errno of an io::Result as a child's exit code (0 for success).
pub fn code<T>(r: io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(255),
    }
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// A raw syscall's result as io::Result.
pub fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub fn socket(family: i32, ty: i32, proto: i32) -> io::Result<()> {
    // SAFETY: plain syscall; the fd is closed at once.
    let fd = check(unsafe { libc::socket(family, ty, proto) })?;
    unsafe { libc::close(fd) };
    Ok(())
}

pub fn mount_bind(src: &str, dst: &str) -> io::Result<()> {
    let (s, d) = (cstr(src), cstr(dst));
    // SAFETY: valid C strings.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

pub fn umount(dst: &str) {
    let d = cstr(dst);
    // SAFETY: valid C string.
    unsafe { libc::umount2(d.as_ptr(), libc::MNT_DETACH) };
}
