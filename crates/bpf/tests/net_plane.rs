//! The network plane in the real kernel: programs attached at the cgroup-v2 root, rules for a
//! cgroup this test creates, real socket() calls from processes placed in it.
//!
//! Needs root. Rules are only ever installed for the test's own cgroup, so nothing else on the
//! machine is affected; pins live in a folder of the test's own and are removed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubearmor_bpf::net::cgroup2_root;
use kubearmor_bpf::{NetPlane, NetPlaneConfig, NetTable};
use kubearmor_policy::{parse_policies, NoResolve, Posture, Postures, RuleSet};

fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the network plane tests need root (they attach cgroup BPF programs); run them as root"
    );
}

/// A cgroup, a pin folder and a scratch folder owned by one test; all removed on drop.
struct Sandbox {
    cgroup: PathBuf,
    cgroup_id: u64,
    /// A private bpffs instance mounted for this test.
    bpffs: PathBuf,
    pins: PathBuf,
    scratch: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Self {
        require_root();
        let root = cgroup2_root()
            .expect("no cgroup2 mount (mount -t cgroup2 none /sys/fs/cgroup/unified)");
        let tag = format!("ka-test-{name}-{}", std::process::id());
        let cgroup = root.join(&tag);
        let _ = fs::remove_dir(&cgroup);
        fs::create_dir(&cgroup).unwrap();
        let cgroup_id = fs::metadata(&cgroup).unwrap().ino();
        let scratch = std::env::temp_dir().join(&tag);
        fs::create_dir_all(&scratch).unwrap();
        let bpffs = scratch.join("bpffs");
        kubearmor_bpf::ensure_bpffs(&bpffs).unwrap();
        let pins = bpffs.join("kubearmor-rs");
        Sandbox {
            cgroup,
            cgroup_id,
            bpffs,
            pins,
            scratch,
        }
    }

    fn config(&self) -> NetPlaneConfig {
        NetPlaneConfig {
            pin_dir: self.pins.clone(),
            cgroup_root: cgroup2_root().unwrap(),
        }
    }

    /// Runs `perl` (or a copy of it) in this cgroup, opening one socket; returns its errno.
    fn socket(&self, perl: &Path, family: &str, ty: &str, proto: u32) -> i32 {
        let procs = CString::new(self.cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
        let script =
            format!("use Socket; socket(my $s, {family}, {ty}, {proto}) or exit($!+0); exit 0");
        let mut cmd = Command::new(perl);
        cmd.args(["-e", &script]);
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
        cmd.status().unwrap().code().unwrap()
    }

    /// Runs perl outside the test cgroup (in the test's own cgroup).
    /// Starts `perl` in this cgroup; it opens one socket once a line arrives on its stdin and
    /// exits with the errno.
    fn socket_later(&self, perl: &Path, family: &str, ty: &str, proto: u32) -> std::process::Child {
        let procs = CString::new(self.cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
        let script = format!(
            "use Socket; <STDIN>; socket(my $s, {family}, {ty}, {proto}) or exit($!+0); exit 0"
        );
        let mut cmd = Command::new(perl);
        cmd.args(["-e", &script])
            .stdin(std::process::Stdio::piped());
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
        cmd.spawn().unwrap()
    }

    fn socket_outside(&self, family: &str, ty: &str, proto: u32) -> i32 {
        let script =
            format!("use Socket; socket(my $s, {family}, {ty}, {proto}) or exit($!+0); exit 0");
        Command::new("/usr/bin/perl")
            .args(["-e", &script])
            .status()
            .unwrap()
            .code()
            .unwrap()
    }

    fn copy_perl(&self, name: &str) -> PathBuf {
        let p = self.scratch.join(name);
        fs::copy("/usr/bin/perl", &p).unwrap();
        p
    }

    fn table(&self, body: &str, network: Posture) -> NetTable {
        let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: net-test\n  namespace: t\nspec:\n  selector:\n    matchLabels:\n      app: t\n{body}");
        let policies = parse_policies(&yaml, "test").unwrap().policies;
        let postures = Postures {
            network,
            ..Default::default()
        };
        let set = RuleSet::compile(&policies, postures, &NoResolve);
        let mut t = NetTable::new();
        t.add_subject(self.cgroup_id, &set, &NoResolve);
        t
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = NetPlane::remove_pins(&self.pins);
        let c = CString::new(self.bpffs.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        // Processes in the cgroup have exited (status() waited for them).
        let _ = fs::remove_dir(&self.cgroup);
        let _ = fs::remove_dir_all(&self.scratch);
    }
}

const EACCES: i32 = 13;

#[test]
fn raw_sockets_blocked_only_in_the_selected_cgroup() {
    let sb = Sandbox::new("raw");
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    let mut events = plane.take_events().unwrap();
    plane
        .sync(&sb.table(
            "  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n",
            Posture::Audit,
        ))
        .unwrap();

    let perl = Path::new("/usr/bin/perl");
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_RAW", 1),
        EACCES,
        "raw ICMP socket in the cgroup"
    );
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0),
        0,
        "UDP in the cgroup"
    );
    assert_eq!(
        sb.socket(perl, "PF_UNIX", "SOCK_STREAM", 0),
        0,
        "Unix sockets are not network sockets"
    );
    assert_eq!(
        sb.socket_outside("PF_INET", "SOCK_RAW", 1),
        0,
        "raw socket outside the cgroup"
    );

    let got = events.read(Duration::from_secs(2));
    let denied: Vec<_> = got.iter().filter(|e| e.cgroup_id == sb.cgroup_id).collect();
    assert_eq!(denied.len(), 1, "one denial event: {got:?}");
    assert!(denied[0].denied);
    assert_eq!(
        (denied[0].family, denied[0].sock_type, denied[0].protocol),
        (2, 3, 1)
    );
    assert_eq!(denied[0].hook, "SOCKET_CREATE");
    assert_eq!(denied[0].comm, "perl");
}

#[test]
fn allow_list_with_from_source_and_block_posture() {
    let sb = Sandbox::new("allow");
    let allowed = sb.copy_perl("perl-allowed");
    let other = sb.copy_perl("perl-other");
    let body = format!(
        "  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        allowed.display()
    );
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    plane.sync(&sb.table(&body, Posture::Block)).unwrap();

    assert_eq!(
        sb.socket(&allowed, "PF_INET", "SOCK_STREAM", 0),
        0,
        "tcp from the allowed binary"
    );
    assert_eq!(
        sb.socket(&other, "PF_INET", "SOCK_STREAM", 0),
        EACCES,
        "tcp from another binary"
    );
    assert_eq!(
        sb.socket(&allowed, "PF_INET", "SOCK_DGRAM", 0),
        EACCES,
        "udp falls to the block posture"
    );

    // Audit posture: unmatched sockets pass.
    plane.sync(&sb.table(&body, Posture::Audit)).unwrap();
    assert_eq!(sb.socket(&other, "PF_INET", "SOCK_STREAM", 0), 0);
}

#[test]
fn enforcement_survives_the_loader_and_is_adopted() {
    let sb = Sandbox::new("pins");
    let perl = Path::new("/usr/bin/perl");
    {
        let mut plane = NetPlane::load(&sb.config()).unwrap();
        plane
            .sync(&sb.table(
                "  action: Block\n  network:\n    matchProtocols:\n    - protocol: udp\n",
                Posture::Audit,
            ))
            .unwrap();
        assert_eq!(sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0), EACCES);
    } // every file descriptor of the loader is closed here, as when a daemon is killed

    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0),
        EACCES,
        "still enforced with no loader"
    );

    // A new loader adopts the pinned rules, and its sync replaces them.
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0),
        EACCES,
        "adopted rules still apply"
    );
    plane
        .sync(&sb.table(
            "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n",
            Posture::Audit,
        ))
        .unwrap();
    assert_eq!(sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0), 0);
    assert_eq!(sb.socket(perl, "PF_INET", "SOCK_STREAM", 0), EACCES);

    // Removing the pins detaches everything.
    drop(plane);
    NetPlane::remove_pins(&sb.pins).unwrap();
    assert_eq!(sb.socket(perl, "PF_INET", "SOCK_STREAM", 0), 0);
}

#[test]
fn a_newly_named_source_tags_processes_already_running_it() {
    let sb = Sandbox::new("late");
    let late = sb.copy_perl("perl-late");
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    plane
        .sync(&sb.table(
            "  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n",
            Posture::Audit,
        ))
        .unwrap();

    // Started (spawn returns once it has exec'd) before any rule names its executable.
    let mut child = sb.socket_later(&late, "PF_INET", "SOCK_STREAM", 0);
    let body = format!(
        "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        late.display()
    );
    plane.sync(&sb.table(&body, Posture::Audit)).unwrap();
    // The same sources again: the tag stays.
    plane.sync(&sb.table(&body, Posture::Block)).unwrap();

    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(
        child.wait().unwrap().code().unwrap(),
        EACCES,
        "tcp from a process that was running before its executable was named"
    );
}
