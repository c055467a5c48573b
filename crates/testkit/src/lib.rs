//! Test-only helpers for running **real** runc containers in integration tests (dev-dependency
//! only; never published).
//!
//! * [`require_prerequisites`]: root, runc, a static busybox and a cgroup2 mount, or a failing
//!   test that says what to install (tests never skip silently).
//! * [`rootfs`]: a read-only busybox rootfs, built once and cached outside the repository.
//! * [`Runc`]: runc with a private `--root`, so a test sees and touches only its own containers.
//! * [`ContainerGuard`]: kills and deletes a container, and removes its cgroup, on drop (pass or
//!   fail).
//! * [`make_bundle`]: a bundle whose `config.json` runs a command, optionally with
//!   `kubearmor-hook` (any binary path) at `createRuntime` and `poststop`; [`Gate`] adds a
//!   second `createRuntime` hook that holds the container before its first instruction until
//!   the test releases it.
//! * [`wait_until`], [`cgroup_inode`], [`ns_id`], [`comm`], [`sibling_binary`]...
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failing test

pub mod fuse;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kubearmor_containers::procfs::HostProc;

/// Applets linked into the test rootfs.
pub const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "touch", "cat", "echo", "ls", "test", "date", "env", "id",
];

/// Fail (never skip) when something the runc tests need is missing.
pub fn require_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "the runc integration tests need root (run `cargo test` as root, e.g. with sudo -E)"
    );
    let runc = Command::new("runc").arg("--version").output();
    assert!(
        runc.as_ref().is_ok_and(|o| o.status.success()),
        "runc is required: apt-get install runc (scripts/setup.sh installs it)"
    );
    assert!(
        Path::new("/bin/busybox").is_file(),
        "a static busybox is required for the test rootfs: apt-get install busybox-static \
         (scripts/setup.sh installs it)"
    );
    assert!(
        HostProc::default().cgroup2_mount().is_some(),
        "a cgroup2 mount is required (containers are identified by their cgroup-v2 id)"
    );
}

/// A binary built into the same directory as `bin` (e.g. `kubearmor-hook` next to
/// `env!("CARGO_BIN_EXE_kubearmor")`). Panics with what to run when it is missing: cargo only
/// builds the binaries of the packages under test.
pub fn sibling_binary(bin: &str, name: &str) -> PathBuf {
    let path = Path::new(bin)
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    assert!(
        path.is_file(),
        "{} is missing: these tests run the real {name}; build it first with \
         `cargo build --workspace` (or test with `-p kubearmor-hook` too)",
        path.display()
    );
    path
}

/// Where fixtures are cached: `$KUBEARMOR_RS_CACHE`, else `$XDG_CACHE_HOME/kubearmor-rs`, else
/// `~/.cache/kubearmor-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KUBEARMOR_RS_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kubearmor-rs")
}

/// A read-only busybox rootfs, built once and cached.
pub fn rootfs() -> PathBuf {
    let busybox = std::fs::metadata("/bin/busybox").expect("/bin/busybox");
    let dir = cache_dir().join(format!("busybox-rootfs-{}", busybox.size()));
    if dir.join("bin/sh").exists() {
        return dir;
    }
    std::fs::create_dir_all(cache_dir()).unwrap();
    let tmp = cache_dir().join(format!(
        "busybox-rootfs.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    for d in ["bin", "proc", "dev", "sys", "tmp", "out", "etc", "run"] {
        std::fs::create_dir_all(tmp.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tmp.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", tmp.join("bin").join(a)).unwrap();
    }
    std::fs::write(tmp.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    if std::fs::rename(&tmp, &dir).is_err() {
        // another test (or test process) won the race
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container id unique to this test run.
pub fn unique_id(tag: &str) -> String {
    format!(
        "kars-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// runc with a private state root, so tests never see (or touch) other containers.
#[derive(Debug, Clone)]
pub struct Runc {
    pub root: PathBuf,
}

impl Runc {
    pub fn new(root: PathBuf) -> Runc {
        std::fs::create_dir_all(&root).unwrap();
        Runc { root }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(&self.root);
        c
    }

    /// `runc run` (detached or foreground); stdio goes to `log` so a detached container does
    /// not hold our pipes open.
    pub fn run(&self, id: &str, bundle: &Path, detached: bool, log: &Path) -> Output {
        let logf = std::fs::File::create(log).unwrap();
        let mut c = self.cmd();
        c.arg("run");
        if detached {
            c.arg("-d");
        }
        c.arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        c.output().unwrap()
    }

    pub fn state(&self, id: &str) -> Option<serde_json::Value> {
        let out = self
            .cmd()
            .args(["state", id])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The init pid runc records for a running container.
    pub fn pid(&self, id: &str) -> Option<u32> {
        self.state(id)
            .and_then(|s| s["pid"].as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p != 0)
    }

    pub fn kill_and_delete(&self, id: &str) -> Output {
        let _ = self
            .cmd()
            .args(["kill", id, "KILL"])
            .stderr(Stdio::null())
            .output();
        wait_until(Duration::from_secs(10), || {
            self.state(id).is_none_or(|s| s["status"] == "stopped")
        });
        self.cmd().args(["delete", "-f", id]).output().unwrap()
    }

    /// Container ids under this root.
    pub fn list(&self) -> Vec<String> {
        let Ok(out) = self.cmd().args(["list", "-q"]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Kill and delete every container under this root.
    pub fn cleanup_all(&self) {
        for id in self.list() {
            let _ = self.kill_and_delete(&id);
        }
    }
}

/// Deletes its container and the cgroup runc made for it on drop, pass or fail.
pub struct ContainerGuard {
    pub runc: Runc,
    pub id: String,
}

impl ContainerGuard {
    pub fn new(runc: &Runc, id: &str) -> Self {
        ContainerGuard {
            runc: runc.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // where its cgroup is, while the init still runs
        let cgroup = self
            .runc
            .pid(&self.id)
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
            .and_then(|t| kubearmor_containers::procfs::parse_cgroup_v2_path(&t));
        let _ = self.runc.kill_and_delete(&self.id);
        if let Some(m) = HostProc::default().cgroup2_mount() {
            let mut dirs = vec![m.join(&self.id)];
            if let Some(c) = cgroup.filter(|c| !c.trim_matches('/').is_empty()) {
                dirs.push(m.join(c.trim_start_matches('/')));
            }
            for d in dirs {
                // rmdir only: a cgroup that still has tasks is not ours to kill
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// How `kubearmor-hook` is configured in a bundle.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// The hook binary (absolute path).
    pub binary: PathBuf,
    pub socket: PathBuf,
    pub extra_args: Vec<String>,
    /// The hook's environment (`KUBEARMOR_HOOK_LOG=debug` by default).
    pub env: Vec<String>,
    /// runc's hook timeout, in seconds.
    pub timeout_secs: u32,
}

impl HookConfig {
    pub fn new(binary: impl Into<PathBuf>, socket: impl Into<PathBuf>) -> Self {
        HookConfig {
            binary: binary.into(),
            socket: socket.into(),
            extra_args: Vec::new(),
            env: vec!["KUBEARMOR_HOOK_LOG=debug".to_string()],
            timeout_secs: 60,
        }
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The `hooks` entry for `config.json`.
    pub fn entry(&self) -> serde_json::Value {
        let mut args = vec![
            "kubearmor-hook".to_string(),
            "--kubearmor-socket".to_string(),
            self.socket.display().to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        serde_json::json!({"path": self.binary, "args": args, "timeout": self.timeout_secs,
            "env": self.env})
    }
}

/// A bundle directory: `config.json` from `runc spec`, edited; `out` is bind-mounted
/// read-write at `/out` in the container.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub out: PathBuf,
}

impl Bundle {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Edit `config.json` in place.
    pub fn edit_config(&self, f: impl FnOnce(&mut serde_json::Value)) {
        let path = self.config_path();
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        f(&mut c);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    /// Append a hook to a stage (`createRuntime`, `poststop`, ...): runc runs a stage's hooks
    /// in order, each after the previous one exited.
    pub fn add_hook(&self, stage: &str, entry: serde_json::Value) {
        self.edit_config(|c| {
            if !c["hooks"].is_object() {
                c["hooks"] = serde_json::json!({});
            }
            if !c["hooks"][stage].is_array() {
                c["hooks"][stage] = serde_json::json!([]);
            }
            c["hooks"][stage].as_array_mut().unwrap().push(entry);
        });
    }
}

/// Writes `<parent>/bundle-<id>` (and `<parent>/out-<id>`, mounted at `/out`) for a container
/// running `args` on the cached busybox rootfs, with `annotations`, and with `hook` at
/// `createRuntime` and `poststop` when given.
pub fn make_bundle(
    parent: &Path,
    id: &str,
    args: &[&str],
    hook: Option<&HookConfig>,
    annotations: &[(&str, &str)],
) -> Bundle {
    let dir = parent.join(format!("bundle-{id}"));
    let out = parent.join(format!("out-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let spec = Command::new("runc")
        .arg("spec")
        .arg("--bundle")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(spec.status.success(), "runc spec: {spec:?}");
    let bundle = Bundle { dir, out };
    let rootfs = rootfs();
    bundle.edit_config(|c| {
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(args);
        c["root"]["path"] = serde_json::json!(rootfs);
        c["root"]["readonly"] = true.into();
        c["hostname"] = serde_json::json!("kars");
        c["mounts"].as_array_mut().unwrap().push(
            serde_json::json!({"destination": "/out", "type": "bind", "source": bundle.out,
                "options": ["rbind", "rw"]}),
        );
        let mut ann = serde_json::Map::new();
        for (k, v) in annotations {
            ann.insert(k.to_string(), serde_json::json!(v));
        }
        c["annotations"] = serde_json::Value::Object(ann);
        if let Some(h) = hook {
            let entry = serde_json::json!([h.entry()]);
            c["hooks"] = serde_json::json!({"createRuntime": entry, "poststop": entry});
        }
    });
    bundle
}

/// A `createRuntime` hook that holds container creation until released: when runc runs it,
/// it saves the OCI state it got on stdin as `held` (so the test learns the container's init
/// pid), then waits for `release`. Added after `kubearmor-hook`, it runs only once that hook
/// has exited, and the container's command runs only once it exits. Dropping the gate
/// releases it, so a failing test never leaves runc waiting.
pub struct Gate {
    pub dir: PathBuf,
}

impl Gate {
    pub fn new(parent: &Path, id: &str) -> Gate {
        Self::with_check(parent, id, None)
    }

    /// A gate that first runs `check` (a `/bin/busybox sh` command line, run in the runtime's
    /// namespaces with an empty environment) and saves its output as `check`: what the
    /// world looked like the moment the previous hooks had exited.
    pub fn with_check(parent: &Path, id: &str, check: Option<&str>) -> Gate {
        let dir = parent.join(format!("gate-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("gate.sh");
        let d = dir.display();
        let check = check
            .map(|c| {
                format!("( {c} ) > {d}/check.tmp 2>&1\n/bin/busybox mv {d}/check.tmp {d}/check\n")
            })
            .unwrap_or_default();
        std::fs::write(
            &script,
            format!(
                "#!/bin/busybox sh\n\
                 {check}\
                 /bin/busybox cat > {d}/held.tmp\n\
                 /bin/busybox mv {d}/held.tmp {d}/held\n\
                 while [ ! -e {d}/release ]; do /bin/busybox usleep 20000; done\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Gate { dir }
    }

    /// The output of the check command (see [`Gate::with_check`]), once held.
    pub fn check_output(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("check")).ok()
    }

    /// The hook entry to append to `createRuntime` ([`Bundle::add_hook`]).
    pub fn entry(&self) -> serde_json::Value {
        serde_json::json!({"path": self.dir.join("gate.sh"), "args": ["gate"], "timeout": 120})
    }

    pub fn held_path(&self) -> PathBuf {
        self.dir.join("held")
    }

    /// The OCI state runc gave the gate, once the container is held.
    pub fn held(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.held_path()).ok()?).ok()
    }

    /// Waits until the container is held; returns its OCI state.
    pub fn wait_held(&self, timeout: Duration) -> Option<serde_json::Value> {
        let mut state = None;
        wait_until(timeout, || {
            state = self.held();
            state.is_some()
        });
        state
    }

    pub fn release(&self) {
        let _ = std::fs::write(self.dir.join("release"), b"");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.release();
    }
}

/// Poll until `f` holds or the timeout passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup2 mount point.
pub fn cgroup2_mount() -> PathBuf {
    HostProc::default()
        .cgroup2_mount()
        .expect("a cgroup2 mount")
        .to_path_buf()
}

/// Inode of a cgroup-v2 directory (its cgroup id).
pub fn cgroup_inode(cgroup_path: &str) -> u64 {
    std::fs::metadata(cgroup2_mount().join(cgroup_path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

/// The cgroup-v2 path of a process (`0::` line of `/proc/PID/cgroup`).
pub fn cgroup_path_of(pid: u32) -> String {
    kubearmor_containers::procfs::parse_cgroup_v2_path(
        &std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
    )
    .unwrap()
}

/// `readlink /proc/PID/ns/<kind>` as a number.
pub fn ns_id(pid: u32, kind: &str) -> u32 {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    kubearmor_containers::procfs::parse_ns_link(&link.to_string_lossy(), kind).unwrap()
}

/// `/proc/PID/comm`, or empty.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A log file's text, or empty.
pub fn log_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
