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
use kubearmor_bpf::{MountDevs, NetPlane, NetPlaneConfig, NetTable, RootedIdentity};
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
    extra_cgroups: std::cell::RefCell<Vec<PathBuf>>,
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
            extra_cgroups: Default::default(),
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
        t.add_container(self.cgroup_id, &set, &host_files());
        t
    }
}

/// File identities as the host sees them (the test's "container" shares the host's root).
fn host_files() -> RootedIdentity {
    RootedIdentity::new(Path::new("/"), MountDevs::read())
}

impl Sandbox {
    /// Another cgroup of this test, not registered as a container (removed on drop).
    fn scratch_cgroup(&self, name: &str) -> PathBuf {
        let p = self.cgroup.parent().unwrap().join(format!(
            "{}-{name}",
            self.cgroup.file_name().unwrap().to_str().unwrap()
        ));
        let _ = fs::remove_dir(&p);
        fs::create_dir(&p).unwrap();
        self.extra_cgroups.borrow_mut().push(p.clone());
        p
    }

    fn policies(kind: &str, body: &str) -> Vec<kubearmor_policy::Policy> {
        let sel = if kind == "KubeArmorHostPolicy" {
            "  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n"
        } else {
            "  selector:\n    matchLabels:\n      app: t\n"
        };
        let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: {kind}\nmetadata:\n  name: net-test\n  namespace: t\nspec:\n{sel}{body}");
        if body.is_empty() {
            return Vec::new();
        }
        parse_policies(&yaml, "test").unwrap().policies
    }

    /// Host rules (cgroup id 0) and this test's cgroup as a registered container.
    fn host_and_container(&self, host: &str, container: &str) -> NetTable {
        let host = RuleSet::compile(
            &Self::policies("KubeArmorHostPolicy", host),
            Postures::default(),
            &NoResolve,
        );
        let ctr = RuleSet::compile(
            &Self::policies("KubeArmorPolicy", container),
            Postures::default(),
            &NoResolve,
        );
        let mut t = NetTable::new();
        t.add_host(&host, &host_files());
        t.add_container(self.cgroup_id, &ctr, &host_files());
        t
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = NetPlane::remove_pins(&self.pins);
        let c = CString::new(self.bpffs.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        // Processes in the cgroup have exited (status() waited for them).
        for c in self.extra_cgroups.borrow().iter() {
            let _ = fs::remove_dir(c);
        }
        let _ = fs::remove_dir(self.cgroup.join("child"));
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

// ---------------------------------------------------------------------------------------------
// Issue 10: bypass classes. Each test names the class; the same assertions failed before the
// fix (see the commit that added them).

const SOCKET_SCRIPT: &str =
    "use Socket; socket(my $s, PF_INET, SOCK_STREAM, 0) or exit($!+0); exit 0";

/// Runs `cmd` with its first instruction already in `cgroup`; returns its exit code.
fn run_in(cgroup: &Path, cmd: Command) -> i32 {
    let st = run_in_status(cgroup, cmd);
    st.code().unwrap_or_else(|| panic!("killed: {st:?}"))
}

/// Like [`run_in`], returning the exit status (for processes the plane kills).
fn run_in_status(cgroup: &Path, mut cmd: Command) -> std::process::ExitStatus {
    let procs = CString::new(cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
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

/// This test binary, re-run as a helper (see `helper`).
fn helper_cmd(mode: &str, args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "helper",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ])
    .env("KA_NET_HELPER", mode)
    .env("KA_NET_HELPER_ARGS", args.join("\u{1f}"));
    c
}

/// Helper modes, run in a child process (does nothing in a normal test run):
/// `fexecve PATH ARGS..` execs PATH through an fd (execveat with AT_EMPTY_PATH);
/// `memfd PATH ARGS..` copies PATH into a memfd and execs that;
/// `leader-exit`: forks a child whose thread-group leader exits first while another thread
/// opens a TCP socket; exits with that socket's errno.
#[test]
fn helper() {
    let Ok(mode) = std::env::var("KA_NET_HELPER") else {
        return;
    };
    let args = std::env::var("KA_NET_HELPER_ARGS").unwrap();
    let args: Vec<CString> = args
        .split('\u{1f}')
        .map(|a| CString::new(a).unwrap())
        .collect();
    // args[0] is the file; the rest is argv.
    let mut argv: Vec<*const libc::c_char> = args.iter().skip(1).map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    unsafe {
        match mode.as_str() {
            "fexecve" | "memfd" => {
                let fd = if mode == "fexecve" {
                    libc::open(args[0].as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
                } else {
                    let bytes = fs::read(args[0].to_str().unwrap()).unwrap();
                    let fd = libc::memfd_create(c"copy".as_ptr(), libc::MFD_CLOEXEC);
                    assert_eq!(
                        libc::write(fd, bytes.as_ptr().cast(), bytes.len()),
                        bytes.len() as isize
                    );
                    fd
                };
                assert!(fd >= 0);
                libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
                panic!("fexecve: {}", std::io::Error::last_os_error());
            }
            "leader-exit" => {
                let mut pipe = [0i32; 2];
                assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
                let pid = libc::fork();
                if pid == 0 {
                    let w = pipe[1];
                    std::thread::spawn(move || {
                        // Let the leader exit first.
                        std::thread::sleep(Duration::from_millis(300));
                        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                        let errno: u8 = if fd < 0 {
                            std::io::Error::last_os_error()
                                .raw_os_error()
                                .unwrap_or(255) as u8
                        } else {
                            0
                        };
                        libc::write(w, [errno].as_ptr().cast(), 1);
                        libc::_exit(0);
                    });
                    libc::syscall(libc::SYS_exit, 0);
                }
                libc::close(pipe[1]);
                let mut b = [255u8];
                libc::read(pipe[0], b.as_mut_ptr().cast(), 1);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
                libc::_exit(i32::from(b[0]));
            }
            other => panic!("unknown helper mode {other}"),
        }
    }
}

fn perl_cmd(program: &str, cwd: &Path) -> Command {
    let mut c = Command::new(program);
    c.current_dir(cwd).args(["-e", SOCKET_SCRIPT]);
    c
}

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

fn require_loader() {
    assert!(
        Path::new(LOADER).exists(),
        "these tests run a program through the x86-64 dynamic loader {LOADER}, which is missing"
    );
}

// fromSource identity: a Block rule for one binary holds however it is exec'd.
#[test]
fn from_source_is_the_running_file_not_the_exec_spelling() {
    require_loader();
    let sb = Sandbox::new("spell");
    let blocked = sb.copy_perl("perl-blocked");
    let other = sb.copy_perl("perl-other");
    std::os::unix::fs::symlink(&blocked, sb.scratch.join("link")).unwrap();
    fs::hard_link(&blocked, sb.scratch.join("hardlink")).unwrap();
    let body = format!(
        "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        blocked.display()
    );
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    plane.sync(&sb.table(&body, Posture::Audit)).unwrap();

    let dir = &sb.scratch;
    let abs = blocked.to_str().unwrap();
    let doubled = format!("/{}", abs.replace('/', "//"));
    let mut routes: Vec<(&str, Command)> = vec![
        ("absolute path", perl_cmd(abs, dir)),
        ("./perl-blocked", perl_cmd("./perl-blocked", dir)),
        (
            "symlink",
            perl_cmd(sb.scratch.join("link").to_str().unwrap(), dir),
        ),
        ("hard link", perl_cmd("./hardlink", dir)),
        ("doubled slashes", perl_cmd(&doubled, dir)),
    ];
    let mut devfd = Command::new("/bin/sh");
    devfd.args([
        "-c",
        "exec 3<\"$0\"; exec /dev/fd/3 \"$@\"",
        abs,
        "-e",
        SOCKET_SCRIPT,
    ]);
    routes.push(("/dev/fd/3", devfd));
    routes.push((
        "execveat (fexecve)",
        helper_cmd("fexecve", &[abs, "perl", "-e", SOCKET_SCRIPT]),
    ));
    let mut ld = Command::new(LOADER);
    ld.args([abs, "-e", SOCKET_SCRIPT]);
    routes.push(("ld.so", ld));
    for (route, cmd) in routes {
        assert_eq!(
            run_in(&sb.cgroup, cmd),
            EACCES,
            "tcp from the blocked binary via {route}"
        );
    }
    assert_eq!(
        run_in(&sb.cgroup, perl_cmd(other.to_str().unwrap(), dir)),
        0,
        "tcp from another binary"
    );
}

// fromSource identity under an allow-list: only the allowed file itself gets through; a loader
// or a memfd copy is not that file.
#[test]
fn allowed_source_cannot_be_borrowed() {
    require_loader();
    let sb = Sandbox::new("borrow");
    let allowed = sb.copy_perl("perl-allowed");
    let body = format!(
        "  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        allowed.display()
    );
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    plane.sync(&sb.table(&body, Posture::Block)).unwrap();
    let abs = allowed.to_str().unwrap();
    assert_eq!(
        run_in(&sb.cgroup, perl_cmd("./perl-allowed", &sb.scratch)),
        0,
        "the allowed file"
    );
    let mut ld = Command::new(LOADER);
    ld.args([abs, "-e", SOCKET_SCRIPT]);
    assert_eq!(
        run_in(&sb.cgroup, ld),
        EACCES,
        "ld.so running the allowed file"
    );
    assert_eq!(
        run_in(
            &sb.cgroup,
            helper_cmd("memfd", &[abs, "perl", "-e", SOCKET_SCRIPT])
        ),
        EACCES,
        "a memfd copy of the allowed file"
    );
}

// Exec tags: a process's source must not be lost when its thread-group leader exits first.
#[test]
fn source_survives_the_leader_exiting_first() {
    let sb = Sandbox::new("leader");
    let me = std::env::current_exe().unwrap();
    let body = format!(
        "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        me.display()
    );
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    plane.sync(&sb.table(&body, Posture::Audit)).unwrap();
    assert_eq!(
        run_in(&sb.cgroup, helper_cmd("leader-exit", &[])),
        EACCES,
        "tcp from a thread whose leader has exited"
    );
}

// Protocols: `tcp` covers MPTCP; `raw` covers every packet socket type.
#[test]
fn protocol_variants_are_covered() {
    let mptcp = fs::read_to_string("/proc/sys/net/mptcp/enabled").unwrap_or_default();
    assert_eq!(
        mptcp.trim(),
        "1",
        "this test needs MPTCP (sysctl net.mptcp.enabled=1)"
    );
    let sb = Sandbox::new("proto");
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    let perl = Path::new("/usr/bin/perl");
    plane
        .sync(&sb.table(
            "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n",
            Posture::Audit,
        ))
        .unwrap();
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_STREAM", 262),
        EACCES,
        "MPTCP over IPv4 is tcp"
    );
    assert_eq!(
        sb.socket(perl, "PF_INET6", "SOCK_STREAM", 262),
        EACCES,
        "MPTCP over IPv6 is tcp"
    );
    plane
        .sync(&sb.table(
            "  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n",
            Posture::Audit,
        ))
        .unwrap();
    // Packet sockets never reach cgroup/sock_create; the socket() tracepoint kills the caller.
    let killed = |family: &str, ty: &str| {
        let script = format!("use Socket; socket(my $s, {family}, {ty}, 0); exit 0");
        let mut c = Command::new(perl);
        c.args(["-e", &script]);
        run_in_status(&sb.cgroup, c)
    };
    use std::os::unix::process::ExitStatusExt;
    for (family, ty) in [
        ("17", "SOCK_RAW"),
        ("17", "SOCK_DGRAM"),
        ("17", "10"),
        ("PF_INET", "10"),
        ("44", "SOCK_RAW"),
    ] {
        let st = killed(family, ty);
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "family {family} type {ty} is raw: {st:?}"
        );
    }
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_DGRAM", 0),
        0,
        "udp is not raw"
    );
    assert_eq!(
        sb.socket(perl, "PF_INET", "SOCK_RAW", 1),
        EACCES,
        "raw IP: refused with EACCES"
    );
    // Outside the cgroup nothing is killed.
    let st = Command::new(perl)
        .args(["-e", "use Socket; socket(my $s, 17, SOCK_DGRAM, 0); exit 0"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(0));
}

// Host vs container: host rules never reach a registered container (with or without rules
// of its own), a container's child cgroup stays the container, an unregistered cgroup is the
// host.
#[test]
fn host_rules_stay_on_the_host_and_containers_keep_their_children() {
    let sb = Sandbox::new("subj");
    let host_only = sb.copy_perl("perl-host");
    let host_body = format!(
        "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: {}\n",
        host_only.display()
    );
    let child = sb.cgroup.join("child");
    fs::create_dir(&child).unwrap();
    let unregistered = sb.scratch_cgroup("unregistered");
    let mut plane = NetPlane::load(&sb.config()).unwrap();
    let dir = &sb.scratch;
    let prog = host_only.to_str().unwrap();

    // The container has no protocol rules of its own.
    plane.sync(&sb.host_and_container(&host_body, "")).unwrap();
    assert_eq!(
        run_in(&sb.cgroup, perl_cmd(prog, dir)),
        0,
        "host rule in a registered container"
    );
    assert_eq!(
        run_in(&unregistered, perl_cmd(prog, dir)),
        EACCES,
        "unregistered cgroup is the host"
    );
    assert_eq!(
        run_in(&sb.cgroup, perl_cmd(prog, dir)),
        0,
        "still not the host"
    );

    // The container has rules: they also hold in a cgroup it creates below its own.
    let ctr = "  action: Block\n  network:\n    matchProtocols:\n    - protocol: udp\n";
    plane.sync(&sb.host_and_container(&host_body, ctr)).unwrap();
    let perl = "/usr/bin/perl";
    let udp = "use Socket; socket(my $s, PF_INET, SOCK_DGRAM, 0) or exit($!+0); exit 0";
    let mut c = Command::new(perl);
    c.args(["-e", udp]);
    assert_eq!(
        run_in(&child, c),
        EACCES,
        "udp in the container's child cgroup"
    );
    assert_eq!(
        run_in(&child, perl_cmd(prog, dir)),
        0,
        "host rule in the container's child cgroup"
    );
    let _ = fs::remove_dir(&child);
}
