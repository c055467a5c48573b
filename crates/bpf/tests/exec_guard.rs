//! The exec guard in the real kernel: a process allow-list cannot be stepped around by running a
//! program from a filesystem the fanotify plane does not mark.
//!
//! Needs root. The guard is armed only for a cgroup this test creates; the two tmpfs are the
//! test's own and nothing is marked with fanotify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubearmor_bpf::execguard::kernel_dev_of;
use kubearmor_bpf::net::cgroup2_root;
use kubearmor_bpf::{ExecGuard, MountDevs};

struct Scratch {
    cgroup: PathBuf,
    cgroup_id: u64,
    dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Scratch {
    fn new() -> Self {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the exec guard test needs root (BPF, tmpfs mounts, cgroups); run it as root"
        );
        let root = cgroup2_root().expect("no cgroup2 mount");
        let tag = format!("ka-test-guard-{}", std::process::id());
        let cgroup = root.join(&tag);
        let _ = fs::remove_dir(&cgroup);
        fs::create_dir(&cgroup).unwrap();
        let cgroup_id = fs::metadata(&cgroup).unwrap().ino();
        let dir = std::env::temp_dir().join(&tag);
        fs::create_dir_all(&dir).unwrap();
        Scratch {
            cgroup,
            cgroup_id,
            dir,
            mounts: Vec::new(),
        }
    }

    /// A fresh tmpfs holding a copy of /bin/true; returns the copy.
    fn tmpfs_with_true(&mut self, name: &str) -> PathBuf {
        let m = self.dir.join(name);
        fs::create_dir_all(&m).unwrap();
        nix_mount(&m);
        self.mounts.push(m.clone());
        let t = m.join("true");
        fs::copy("/bin/true", &t).unwrap();
        t
    }

    fn run_in_cgroup(&self, program: &Path) -> std::process::ExitStatus {
        let procs = CString::new(self.cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
        let mut cmd = Command::new(program);
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if n != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.status().unwrap()
    }
}

fn nix_mount(at: &Path) {
    let target = CString::new(at.to_str().unwrap()).unwrap();
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=16m".as_ptr().cast(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount tmpfs at {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in &self.mounts {
            let c = CString::new(m.to_str().unwrap()).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_dir(&self.cgroup);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// Filesystems: under a process allow-list, an exec from a filesystem the plane does not see
// (here a tmpfs mounted after the rules loaded) must not run.
#[test]
fn exec_from_an_unmarked_filesystem_is_killed_under_a_process_allow_list() {
    let mut s = Scratch::new();
    let marked = s.tmpfs_with_true("marked");
    let unmarked = s.tmpfs_with_true("unmarked");

    // Without the guard (the fanotify plane alone, which only sees marked filesystems), the
    // program on the unmarked tmpfs runs: the bypass.
    assert_eq!(
        s.run_in_cgroup(&unmarked).code(),
        Some(0),
        "bypass without the guard"
    );

    let mut guard = ExecGuard::load().unwrap();
    let dev = kernel_dev_of(marked.parent().unwrap(), &MountDevs::read()).unwrap();
    guard
        .sync(
            &BTreeSet::from([s.cgroup_id]),
            &BTreeSet::new(),
            &BTreeSet::from([dev]),
        )
        .unwrap();
    assert_eq!(
        s.run_in_cgroup(&marked).code(),
        Some(0),
        "marked filesystem"
    );
    let st = s.run_in_cgroup(&unmarked);
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "unmarked filesystem: {st:?}"
    );
    assert_eq!(
        Command::new(&unmarked).status().unwrap().code(),
        Some(0),
        "outside the guarded cgroup"
    );
    let evs = guard.read(Duration::from_secs(2));
    assert!(
        evs.iter()
            .any(|e| e.cgroup_id == s.cgroup_id && e.comm == "true"),
        "a kill event: {evs:?}"
    );

    // Unguarded again: runs.
    guard
        .sync(
            &BTreeSet::new(),
            &BTreeSet::from([s.cgroup_id]),
            &BTreeSet::from([dev]),
        )
        .unwrap();
    assert_eq!(s.run_in_cgroup(&unmarked).code(), Some(0));
}
