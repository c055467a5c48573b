//! Shared pieces of the runc integration tests: prerequisites, a cached busybox rootfs, bundles
//! with our hook in `config.json`, runc with a private `--root`, container guards that clean up
//! on drop, and an in-test ka.sock server (the crate's `server` + `registry`).
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubearmor_containers::procfs::HostProc;
use kubearmor_containers::server::{ChangeHandler, HookServer, Readiness, ServerConfig};
use kubearmor_containers::Registry;

pub const HOOK: &str = env!("CARGO_BIN_EXE_kubearmor-hook");

/// Applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "true", "false", "sleep", "touch", "cat", "echo", "ls", "test", "date", "env", "id",
];

/// Fail (never skip) when something the tests need is missing.
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

fn cache_dir() -> PathBuf {
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
    let tmp = cache_dir().join(format!("busybox-rootfs.tmp.{}", std::process::id()));
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
        // another test process won the race
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
        let out = self.cmd().args(["state", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
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

    /// Kill and delete every container under this root.
    pub fn cleanup_all(&self) {
        let Ok(out) = self.cmd().args(["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.kill_and_delete(id.trim());
        }
    }
}

/// Deletes its container (and the cgroup runc made for it) on drop, pass or fail.
pub struct ContainerGuard {
    pub runc: Runc,
    pub id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = self.runc.kill_and_delete(&self.id);
        if let Some(m) = HostProc::default().cgroup2_mount() {
            let _ = std::fs::remove_dir(m.join(&self.id));
        }
    }
}

/// How the hook is configured in a bundle.
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub socket: PathBuf,
    pub extra_args: Vec<String>,
}

/// A bundle directory: config.json from `runc spec`, edited.
pub struct Bundle {
    pub dir: PathBuf,
    pub out: PathBuf,
}

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
    let path = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(args);
    c["root"]["path"] = serde_json::json!(rootfs());
    c["root"]["readonly"] = true.into();
    c["hostname"] = serde_json::json!("kars");
    c["mounts"].as_array_mut().unwrap().push(
        serde_json::json!({"destination": "/out", "type": "bind", "source": out,
            "options": ["rbind", "rw"]}),
    );
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        ann.insert(k.to_string(), serde_json::json!(v));
    }
    c["annotations"] = serde_json::Value::Object(ann);
    if let Some(h) = hook {
        let mut hargs = vec![
            "kubearmor-hook".to_string(),
            "--kubearmor-socket".to_string(),
            h.socket.display().to_string(),
        ];
        hargs.extend(h.extra_args.iter().cloned());
        let entry = serde_json::json!([{"path": HOOK, "args": hargs, "timeout": 60,
            "env": ["KUBEARMOR_HOOK_LOG=debug"]}]);
        c["hooks"] = serde_json::json!({"createRuntime": entry, "poststop": entry});
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    Bundle { dir, out }
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

/// The in-test ka.sock server: a real Unix socket served by the crate's server and registry.
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub registry: Arc<Registry>,
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kubearmor_containers::ServerError>>>,
}

impl TestServer {
    pub fn start(socket: &Path, readiness: Readiness) -> TestServer {
        Self::start_with(socket, readiness, Arc::new(Registry::default()), None)
    }

    pub fn start_with(
        socket: &Path,
        readiness: Readiness,
        registry: Arc<Registry>,
        handler: Option<Arc<dyn ChangeHandler>>,
    ) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut server = HookServer::bind(
            ServerConfig {
                readiness,
                ..ServerConfig::with_socket(socket)
            },
            registry.clone(),
        )
        .unwrap();
        if let Some(h) = handler {
            server = server.with_handler(h);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        TestServer {
            rt,
            registry,
            socket: socket.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn stop(mut self) -> Arc<Registry> {
        self.shutdown();
        self.registry.clone()
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Inode of a cgroup-v2 directory.
pub fn cgroup_inode(cgroup_path: &str) -> u64 {
    let m = HostProc::default().cgroup2_mount().unwrap().to_path_buf();
    std::fs::metadata(m.join(cgroup_path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

/// `readlink /proc/PID/ns/<kind>` as a number.
pub fn ns_id(pid: u32, kind: &str) -> u32 {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    kubearmor_containers::procfs::parse_ns_link(&link.to_string_lossy(), kind).unwrap()
}

pub fn log_text(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
