//! Test harness: runs the real `kubearmor` binary on a temp directory with ports picked by the
//! daemon itself (`GRPC=0`, read back from its log), and kills it in `Drop`, so no daemon
//! outlives a test, even a failing one.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kubearmor_proto::feeder::log_service_client::LogServiceClient;
use kubearmor_proto::policy::policy_service_client::PolicyServiceClient;
use kubearmor_proto::policy::{PolicyStatus, ProbeResponse};
use kubearmor_proto::probe::probe_service_client::ProbeServiceClient;
use serde_json::json;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_kubearmor");
pub const STARTUP: Duration = Duration::from_secs(30);

/// A temp directory a daemon (or several, one after the other) runs on.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    runs: AtomicUsize,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        Self {
            dir,
            runs: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn policies(&self) -> PathBuf {
        self.path().join("policies")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("events.sock")
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path().join("kubearmor.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[derive(Default)]
pub struct Options {
    /// kubearmor.yaml content, passed as the positional argument.
    pub config: Option<String>,
    pub env: Vec<(String, String)>,
    pub test_source: bool,
    /// A command the daemon is run under, e.g. `["/usr/sbin/ip", "netns", "exec", NS]` (it
    /// must exec the daemon, so the child pid stays the daemon's).
    pub wrapper: Vec<String>,
}

impl Options {
    pub fn config(text: &str) -> Self {
        Self {
            config: Some(text.to_string()),
            ..Self::default()
        }
    }

    pub fn with_test_source(mut self) -> Self {
        self.test_source = true;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    pub api_port: u16,
    pub health_port: u16,
}

fn command(dir: &TestDir, opts: &Options, log: &Path) -> Command {
    let mut cmd = match opts.wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    // A clean environment: no stray GRPC, DEBUG, LSM... from the caller.
    cmd.env_clear()
        .env("GRPC", "0")
        .env("GRPCHEALTHPORT", "0")
        .env("POLICYDIR", dir.policies())
        .env("PROBEDATAPATH", dir.path().join("probe.cfg"))
        .env("HOST", "test-vm")
        // The API's Unix socket, private to this run (the default is machine-wide).
        .env("GRPCSOCKET", dir.path().join("grpc.sock"))
        // Kernel planes affect the whole machine: tests that want one ask for it.
        .env("PLANES", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if opts.test_source {
        cmd.env("KUBEARMOR_TEST_EVENT_SOCKET", dir.socket());
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if let Some(text) = &opts.config {
        cmd.arg(dir.write_config(text));
    }
    cmd
}

impl Daemon {
    /// Starts the daemon and waits until it says it is ready.
    pub fn start(dir: &TestDir, opts: Options) -> Self {
        let n = dir.runs.fetch_add(1, Ordering::Relaxed);
        let log = dir.path().join(format!("daemon-{n}.log"));
        let child = command(dir, &opts, &log).spawn().unwrap();
        let mut d = Daemon {
            child,
            log,
            api_port: 0,
            health_port: 0,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = d.stderr();
            if text.contains("kubearmor is ready") {
                d.api_port = port_after(&text, "gRPC API listening addr=");
                d.health_port = port_after(&text, "gRPC health listening addr=");
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("kubearmor exited during start-up ({status}):\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "kubearmor not ready after {STARTUP:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log line {needle:?} not seen:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn log_client(&self) -> LogServiceClient<Channel> {
        LogServiceClient::new(self.channel().await)
    }

    pub async fn policy_client(&self) -> PolicyServiceClient<Channel> {
        PolicyServiceClient::new(self.channel().await)
    }

    pub async fn probe(&self) -> ProbeResponse {
        ProbeServiceClient::new(self.channel().await)
            .get_probe_data(())
            .await
            .unwrap()
            .into_inner()
    }

    /// Host policy names in getProbeData.
    pub async fn host_policies(&self) -> Vec<String> {
        self.probe()
            .await
            .host_map
            .get("test-vm")
            .map(|h| h.policy_list.clone())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (no cleanup of any kind), then wait for the exit.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process by pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "kubearmor did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn port_after(text: &str, marker: &str) -> u16 {
    let at = text.find(marker).unwrap() + marker.len();
    let addr: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Runs the binary expecting it to fail at start; returns (status, stderr).
pub fn run_expecting_failure(dir: &TestDir, opts: Options) -> (ExitStatus, String) {
    let log = dir.path().join("failed.log");
    let mut child = command(dir, &opts, &log).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "kubearmor kept running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection to the test event source.
pub struct Injector {
    stream: BufReader<UnixStream>,
}

impl Injector {
    pub fn connect(dir: &TestDir) -> Self {
        Self::connect_path(&dir.socket())
    }

    pub fn connect_path(path: &Path) -> Self {
        Self {
            stream: BufReader::new(UnixStream::connect(path).unwrap()),
        }
    }

    /// Sends several lines in one write, then reads the replies.
    pub fn send_many(&mut self, events: &[serde_json::Value]) -> Vec<String> {
        let mut text = String::new();
        for e in events {
            text.push_str(&serde_json::to_string(e).unwrap());
            text.push('\n');
        }
        self.stream.get_mut().write_all(text.as_bytes()).unwrap();
        events
            .iter()
            .map(|_| {
                let mut reply = String::new();
                self.stream.read_line(&mut reply).unwrap();
                reply.trim_end().to_string()
            })
            .collect()
    }

    /// Sends one JSON line; returns the daemon's reply line.
    pub fn send(&mut self, event: &serde_json::Value) -> String {
        let mut line = serde_json::to_string(event).unwrap();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        self.stream.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }
}

pub fn host_policy(name: &str, path: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}},
            "file": {"matchPaths": [{"path": path}]},
            "action": "Audit"
        }
    })
}

pub fn container_policy(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"kubearmor.io/container.name": "wordpress-mysql"}},
            "process": {"matchPaths": [{"path": "/usr/bin/apt"}, {"path": "/usr/bin/apt-get"}]},
            "action": "Block"
        }
    })
}

pub fn envelope(t: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": t, "object": object})).unwrap()
}

pub async fn send_host(
    client: &mut PolicyServiceClient<Channel>,
    t: &str,
    object: serde_json::Value,
) -> PolicyStatus {
    let r = client
        .host_policy(kubearmor_proto::policy::Policy {
            policy: envelope(t, object),
        })
        .await
        .unwrap()
        .into_inner();
    PolicyStatus::try_from(r.status).unwrap()
}

pub async fn send_container(
    client: &mut PolicyServiceClient<Channel>,
    t: &str,
    object: serde_json::Value,
) -> PolicyStatus {
    let r = client
        .container_policy(kubearmor_proto::policy::Policy {
            policy: envelope(t, object),
        })
        .await
        .unwrap()
        .into_inner();
    PolicyStatus::try_from(r.status).unwrap()
}

/// Polls `f` until it returns true (20 s at most).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a command with its output captured and a 30 s limit, so a bug in a plane fails a test
/// instead of hanging it.
pub fn run_limited(cmd: &mut std::process::Command) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if flag.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signalling our own child, which is still unreaped (done is not set).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    out
}

/// Subscribes to alerts now and returns the first one that arrives (10 s at most).
pub async fn first_alert(d: &Daemon) -> tokio::task::JoinHandle<kubearmor_proto::feeder::Alert> {
    let mut stream = d
        .log_client()
        .await
        .watch_alerts(kubearmor_proto::feeder::RequestMessage {
            filter: "policy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("no alert within 10 s")
            .unwrap()
            .expect("alert stream ended")
    })
}
