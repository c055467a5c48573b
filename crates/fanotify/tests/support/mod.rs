//! Test scaffolding: a private tmpfs, policies from YAML, time-boxed children, a watchdog.
//!
//! Safety rules for every test: mark ONLY a tmpfs the test mounted itself; unmount it in
//! Drop even on failure; run every syscall-making side as a child with a timeout; arm a
//! watchdog that aborts the plane (the kernel then allows everything) if the test hangs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubearmor_fanotify::{AbortHandle, PlaneEvent, Rules};
use kubearmor_policy::{parse_policies, NoResolve, Posture, Postures, RuleSet};

pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "kubearmor-fanotify integration tests need root (fanotify permission events, tmpfs \
             mounts): run them as root, e.g. `sudo -E cargo test -p kubearmor-fanotify`"
        );
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A tmpfs mounted under the temp dir, unmounted (lazily) and removed on drop.
pub struct TmpFs {
    pub root: PathBuf,
}

impl TmpFs {
    pub fn new() -> Self {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ka-fan-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create mount point");
        let dir = dir.canonicalize().expect("canonicalize mount point");
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755,size=64m"),
        )
        .expect("mount tmpfs");
        let fs = TmpFs { root: dir };
        std::fs::create_dir_all(fs.path("bin")).expect("bin dir");
        std::fs::create_dir_all(fs.path("lib")).expect("lib dir");
        fs
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, text).expect("write test file");
        p
    }

    /// Copies a host binary into the tmpfs (executable).
    pub fn copy_bin(&self, from: &str, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::copy(from, &p).expect("copy binary");
        p
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Aborts the plane after `limit` (fail-open: children continue), then exits the whole test
/// process after a grace period, unmounting the tmpfs first. Disarmed on drop.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(name: &str, limit: Duration, abort: AbortHandle, mount: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            if rx.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!("WATCHDOG: test {name} hung for {limit:?}: aborting its fanotify plane");
            abort.abort("test watchdog");
            if rx.recv_timeout(Duration::from_secs(20)) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!("WATCHDOG: test {name} still hung: unmounting and exiting");
            let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
            std::process::exit(101);
        });
        Watchdog {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn host_policy(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}"
    )
}

pub const AUDIT: Postures = Postures {
    file: Posture::Audit,
    network: Posture::Audit,
    capabilities: Posture::Audit,
    device: Posture::Audit,
};

pub const BLOCK: Postures = Postures {
    file: Posture::Block,
    network: Posture::Block,
    capabilities: Posture::Block,
    device: Posture::Block,
};

/// Host rules from policy YAML (parse_policies + RuleSet::compile).
pub fn host_rules(yaml: &str, postures: Postures) -> Rules {
    let parsed = match parse_policies(yaml, "test.yaml") {
        Ok(p) => p,
        Err(e) => panic!("test policy does not parse:\n{e}\n---\n{yaml}"),
    };
    let set = Arc::new(RuleSet::compile(&parsed.policies, postures, &NoResolve));
    let mut rules = Rules {
        host: Some(set.clone()),
        ..Default::default()
    };
    rules.add_rule_files(kubearmor_fanotify::SubjectKey::Host, &set, |p| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
    });
    rules
}

/// How a time-boxed child ended.
#[derive(Debug)]
pub struct Ran {
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Waits for `child` at most `limit`, killing it on timeout.
pub fn wait_child(mut child: Child, limit: Duration) -> Ran {
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ran {
        status: if timed_out { None } else { status },
        timed_out,
        stdout,
        stderr,
    }
}

/// Spawns `cmd` (stdout/stderr captured) and waits at most `limit`. A spawn error (e.g. the
/// exec itself denied) is returned as Err.
pub fn run(cmd: &mut Command, limit: Duration) -> std::io::Result<Ran> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    Ok(wait_child(child, limit))
}

pub const LIMIT: Duration = Duration::from_secs(20);

/// This test binary, re-run as a helper child doing one thing (see `child_helper`).
pub fn helper(action: &str, args: &[(&str, &str)]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("current exe"));
    c.args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env("KA_FAN_CHILD", action);
    for (k, v) in args {
        c.env(k, v);
    }
    c
}

/// Result of an open by the helper: Ok(()) or the errno.
pub fn helper_open(path: &Path, mode: &str) -> Result<(), i32> {
    helper_open_with(path, mode, |_| {})
}

pub fn helper_open_with(path: &Path, mode: &str, f: impl FnOnce(&mut Command)) -> Result<(), i32> {
    let mut cmd = helper(
        "open",
        &[
            ("KA_FAN_PATH", &path.to_string_lossy()),
            ("KA_FAN_MODE", mode),
        ],
    );
    f(&mut cmd);
    let ran = run(&mut cmd, LIMIT).expect("spawn helper");
    assert!(
        !ran.timed_out,
        "helper open of {} timed out",
        path.display()
    );
    match ran.code() {
        Some(0) => Ok(()),
        Some(c) if c >= 100 => Err(c - 100),
        other => panic!(
            "helper open failed oddly: {other:?}\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        ),
    }
}

/// Performs the helper action in the child and exits. Returns only when not a helper.
pub fn child_main() {
    let Ok(action) = std::env::var("KA_FAN_CHILD") else {
        return;
    };
    let code = match action.as_str() {
        "open" => child_open(),
        "open-loop" => child_open_loop(),
        "stall-exec" => child_stall_exec(),
        "plane" => crate::child_plane(),
        _ => 99,
    };
    std::process::exit(code);
}

fn child_open() -> i32 {
    use std::ffi::CString;
    let path = std::env::var("KA_FAN_PATH").unwrap_or_default();
    let mode = std::env::var("KA_FAN_MODE").unwrap_or_default();
    let c = CString::new(path).unwrap_or_default();
    let fd = match mode.as_str() {
        "r" => unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        "w" => unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) },
        "a" => unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_APPEND) },
        "rw" => unsafe { libc::openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDWR) },
        "c" => unsafe { libc::creat(c.as_ptr(), 0o644) },
        "2r" | "2w" => {
            #[repr(C)]
            struct OpenHow {
                flags: u64,
                mode: u64,
                resolve: u64,
            }
            let how = OpenHow {
                flags: if mode == "2w" {
                    libc::O_WRONLY as u64
                } else {
                    libc::O_RDONLY as u64
                },
                mode: 0,
                resolve: 0,
            };
            unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                ) as i32
            }
        }
        _ => return 99,
    };
    if fd < 0 {
        100 + std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

/// Opens KA_FAN_PATH read-only again and again for KA_FAN_MS milliseconds; prints
/// `opens=N max_us=M p50_us=P failures=F` (the latency of each open, as this process saw it).
fn child_open_loop() -> i32 {
    use std::ffi::CString;
    let path = std::env::var("KA_FAN_PATH").unwrap_or_default();
    let ms: u64 = std::env::var("KA_FAN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let c = CString::new(path).unwrap_or_default();
    let end = Instant::now() + Duration::from_millis(ms);
    let mut lat = Vec::new();
    let mut failures = 0;
    while Instant::now() < end {
        let t = Instant::now();
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        lat.push(t.elapsed().as_micros() as u64);
        if fd < 0 {
            failures += 1;
        } else {
            unsafe { libc::close(fd) };
        }
    }
    lat.sort_unstable();
    let max = lat.last().copied().unwrap_or(0);
    let p50 = lat.get(lat.len() / 2).copied().unwrap_or(0);
    println!(
        "opens={} max_us={max} p50_us={p50} failures={failures}",
        lat.len()
    );
    0
}

/// Maps KA_FAN_FUSE (a file whose reads stall) and execs KA_FAN_PATH with argv[1] pointing
/// into the mapping: whoever reads that argv before the kernel does waits on the FUSE server.
/// Exits 100+errno when the exec fails.
fn child_stall_exec() -> i32 {
    use std::ffi::CString;
    let fuse = CString::new(std::env::var("KA_FAN_FUSE").unwrap_or_default()).unwrap_or_default();
    let prog = CString::new(std::env::var("KA_FAN_PATH").unwrap_or_default()).unwrap_or_default();
    let fd = unsafe { libc::open(fuse.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        eprintln!("open fuse file: {}", std::io::Error::last_os_error());
        return 98;
    }
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            fd,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        eprintln!("mmap fuse file: {}", std::io::Error::last_os_error());
        return 98;
    }
    // argv[1] lives in the FUSE page (not faulted in: nothing here touches it).
    let argv: [*const libc::c_char; 3] = [prog.as_ptr(), map.cast(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // Said with one write of a stack buffer and nothing else: while a reader is stuck in our
    // memory, anything that needs our mmap lock (an allocation, exit) waits for it.
    let mut line = *b"exec-errno=000\n";
    line[11] = b'0' + (errno / 100 % 10) as u8;
    line[12] = b'0' + (errno / 10 % 10) as u8;
    line[13] = b'0' + (errno % 10) as u8;
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    100 + errno
}

/// Collects the events received so far (waits briefly for stragglers).
pub fn events(rx: &mpsc::Receiver<PlaneEvent>) -> Vec<PlaneEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.recv_timeout(Duration::from_millis(200)) {
        out.push(e);
    }
    out
}
