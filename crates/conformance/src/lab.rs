//! The machinery of a run: the real daemon (one per posture), the workloads as runc containers
//! registered by the real kubearmor-hook, their network namespaces, and the alert stream.
//!
//! Safety: every container rootfs and the host scratch area live on one tmpfs this run mounts,
//! so the fanotify plane marks only it; the daemon pins into a private bpffs, scans only this
//! run's runc root and talks to the hook on a private socket. Everything is removed on drop.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kubearmor_proto::feeder::log_service_client::LogServiceClient;
use kubearmor_proto::feeder::{Alert, RequestMessage};
use kubearmor_proto::policy::policy_service_client::PolicyServiceClient;
use kubearmor_proto::policy::PolicyStatus;
use kubearmor_testkit as kit;
use tonic::transport::Channel;

use crate::judge::Posture;

/// Capabilities of a Kubernetes container (containerd's defaults), which the scenarios assume:
/// root in the workload can `su`, `ping` and `arping`.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Addresses the scenarios reach, put on the workload's own `lo` (no traffic leaves the
/// machine): `curl 142.250.193.46`.
const LOCAL_ADDRESSES: &[&str] = &["142.250.193.46/32"];

/// Where the daemon and hook binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub daemon: PathBuf,
    pub hook: PathBuf,
}

/// A running `kubearmor`.
pub struct DaemonProc {
    child: Child,
    pub log: PathBuf,
    pub api_port: u16,
    pub probe_file: PathBuf,
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        // SIGTERM first, so the planes detach cleanly.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One workload container.
pub struct Workload {
    pub source: String,
    pub id: String,
    pub pid: u32,
    /// The HTTP server and the gateway namespace's holder.
    helpers: Vec<Child>,
    _guard: kit::ContainerGuard,
}

impl Drop for Workload {
    fn drop(&mut self) {
        for h in &mut self.helpers {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// Labels and annotations of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub source: String,
    pub container: String,
    pub namespace: String,
    pub labels: Vec<(String, String)>,
}

pub struct Lab {
    // Field order is drop order: workloads, then the daemon, then mounts and files.
    pub workloads: Vec<Workload>,
    pub daemon: Option<DaemonProc>,
    pub alerts: Arc<Mutex<Vec<(Instant, Alert)>>>,
    alert_task: Option<tokio::task::JoinHandle<()>>,
    runc: kit::Runc,
    bins: Binaries,
    image: PathBuf,
    /// The tmpfs holding the container rootfs and the host scratch area.
    pub fs: PathBuf,
    bpffs: PathBuf,
    www: PathBuf,
    dir: tempfile::TempDir,
    runs: u32,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(t) = self.alert_task.take() {
            t.abort();
        }
        self.workloads.clear();
        self.runc.cleanup_all();
        drop(self.daemon.take());
        let _ = std::fs::remove_dir_all(self.bpffs.join("kubearmor-rs"));
        for p in [&self.bpffs, &self.fs] {
            umount(p);
        }
    }
}

fn umount(p: &Path) {
    if let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) {
        // SAFETY: a plain syscall on a path we own.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_tmpfs(p: &Path, options: &str) -> Result<()> {
    std::fs::create_dir_all(p)?;
    let target = CString::new(p.as_os_str().as_encoded_bytes())?;
    let opts = CString::new(options)?;
    // SAFETY: valid C strings; mounting a fresh tmpfs on a directory we created.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        bail!(
            "mount tmpfs on {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

impl Lab {
    pub fn new(bins: Binaries, image: PathBuf) -> Result<Lab> {
        kit::require_prerequisites();
        for (what, p) in [("kubearmor", &bins.daemon), ("kubearmor-hook", &bins.hook)] {
            if !p.is_file() {
                bail!(
                    "{what} not found at {} (cargo build --workspace)",
                    p.display()
                );
            }
        }
        if !image.join("bin/bash").exists() {
            bail!(
                "the workload image {} is not built (scripts/conformance-image.sh)",
                image.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("ka-conformance")
            .tempdir()?;
        let fs = dir.path().join("fs");
        mount_tmpfs(&fs, "size=4g,mode=0755")?;
        let bpffs = dir.path().join("bpffs");
        std::fs::create_dir_all(&bpffs)?;
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(
            www.join("index.html"),
            "<html>kubearmor-rs conformance</html>\n",
        )?;
        let runc = kit::Runc::new(dir.path().join("runc-root"));
        Ok(Lab {
            workloads: Vec::new(),
            daemon: None,
            alerts: Arc::new(Mutex::new(Vec::new())),
            alert_task: None,
            runc,
            bins,
            image,
            fs,
            bpffs,
            www,
            dir,
            runs: 0,
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("ka.sock")
    }

    /// Starts the daemon with every default posture set to `posture`.
    pub async fn start_daemon(&mut self, posture: Posture) -> Result<()> {
        self.runs += 1;
        let n = self.runs;
        let log = self.dir.path().join(format!("daemon-{n}.log"));
        let policies = self.dir.path().join(format!("policies-{n}"));
        std::fs::create_dir_all(&policies)?;
        let probe_file = self.dir.path().join(format!("probe-{n}.json"));
        let p = posture.as_str();
        let child = Command::new(&self.bins.daemon)
            .env_clear()
            .env("GRPC", "0")
            .env("GRPCHEALTHPORT", "0")
            .env("POLICYDIR", &policies)
            .env("PROBEDATAPATH", &probe_file)
            .env("HOST", "conformance-host")
            .env("PLANES", "cgroup-bpf,fanotify")
            .env("BPFFSPATH", &self.bpffs)
            .env("USEOCIHOOKS", "true")
            .env("KASOCKET", self.socket())
            // The API's Unix socket, private to this lab (the default is machine-wide).
            .env("GRPCSOCKET", self.dir.path().join("grpc.sock"))
            .env("RUNCSTATEDIRS", &self.runc.root)
            .env("ENABLEKUBEARMORHOSTPOLICY", "true")
            .env("DEFAULTFILEPOSTURE", p)
            .env("DEFAULTNETWORKPOSTURE", p)
            .env("DEFAULTCAPABILITIESPOSTURE", p)
            .env("HOSTDEFAULTFILEPOSTURE", p)
            .env("HOSTDEFAULTNETWORKPOSTURE", p)
            .env("HOSTDEFAULTCAPABILITIESPOSTURE", p)
            .env("ALERTTHROTTLING", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", self.bins.daemon.display()))?;
        let mut d = DaemonProc {
            child,
            log: log.clone(),
            api_port: 0,
            probe_file,
        };
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("kubearmor is ready") {
                d.api_port = port_after(&text, "gRPC API listening addr=")
                    .ok_or_else(|| anyhow!("no gRPC address in the daemon log:\n{text}"))?;
                break;
            }
            if let Ok(Some(s)) = d.child.try_wait() {
                bail!("kubearmor exited during start-up ({s}):\n{text}");
            }
            if Instant::now() > until {
                bail!("kubearmor not ready after 60 s:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.daemon = Some(d);
        let mut stream = LogServiceClient::new(self.channel().await?)
            .watch_alerts(RequestMessage {
                filter: "policy".into(),
            })
            .await?
            .into_inner();
        let alerts = self.alerts.clone();
        self.alert_task = Some(tokio::spawn(async move {
            while let Ok(Some(a)) = stream.message().await {
                if let Ok(mut v) = alerts.lock() {
                    v.push((Instant::now(), a));
                }
            }
        }));
        Ok(())
    }

    /// Stops the workloads and the daemon.
    pub fn stop(&mut self) {
        if let Some(t) = self.alert_task.take() {
            t.abort();
        }
        self.workloads.clear();
        self.runc.cleanup_all();
        drop(self.daemon.take());
        if let Ok(mut v) = self.alerts.lock() {
            v.clear();
        }
    }

    pub fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| std::fs::read_to_string(&d.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The families the daemon says it does not enforce (probe file `NotEnforced`).
    pub fn not_enforced(&self) -> Vec<(String, String)> {
        let Some(d) = &self.daemon else {
            return Vec::new();
        };
        let v: serde_json::Value = std::fs::read(&d.probe_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        v["NotEnforced"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["Family"].as_str().unwrap_or_default().to_string(),
                            e["Reason"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn channel(&self) -> Result<Channel> {
        let d = self.daemon.as_ref().ok_or_else(|| anyhow!("no daemon"))?;
        Ok(
            Channel::from_shared(format!("http://127.0.0.1:{}", d.api_port))?
                .connect()
                .await?,
        )
    }

    /// Sends a policy over gRPC (`ADDED` or `DELETED`), as karmor does.
    pub async fn send_policy(
        &self,
        host: bool,
        event: &str,
        object: &serde_json::Value,
    ) -> Result<PolicyStatus> {
        let body = serde_json::to_vec(&serde_json::json!({"type": event, "object": object}))?;
        let mut client = PolicyServiceClient::new(self.channel().await?);
        let req = kubearmor_proto::policy::Policy { policy: body };
        let r = if host {
            client.host_policy(req).await?
        } else {
            client.container_policy(req).await?
        }
        .into_inner();
        Ok(PolicyStatus::try_from(r.status).unwrap_or(PolicyStatus::Failure))
    }

    /// Starts one workload container, registered through the hook with its labels.
    pub fn start_workload(&mut self, spec: &WorkloadSpec) -> Result<()> {
        let id = kit::unique_id(&spec.container);
        let root = self.fs.join("containers").join(&id);
        std::fs::create_dir_all(root.parent().unwrap_or(&self.fs))?;
        let out = Command::new("cp")
            .arg("-a")
            .arg(&self.image)
            .arg(&root)
            .output()?;
        if !out.status.success() {
            bail!(
                "copying the image: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let hook = kit::HookConfig::new(&self.bins.hook, self.socket());
        let mut annotations: Vec<(String, String)> = vec![
            (
                "io.kubernetes.cri.container-name".into(),
                spec.container.clone(),
            ),
            ("io.kubernetes.pod.name".into(), spec.source.clone()),
            ("io.kubernetes.pod.namespace".into(), spec.namespace.clone()),
        ];
        annotations.extend(spec.labels.iter().cloned());
        let ann: Vec<(&str, &str)> = annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let bundle = kit::make_bundle(
            self.dir.path(),
            &id,
            &["/bin/sleep", "infinity"],
            Some(&hook),
            &ann,
        );
        bundle.edit_config(|c| {
            c["root"]["path"] = serde_json::json!(root);
            c["root"]["readonly"] = false.into();
            c["hostname"] = serde_json::json!(spec.source);
            c["process"]["noNewPrivileges"] = false.into();
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set] = serde_json::json!(DEFAULT_CAPS);
            }
        });
        let guard = kit::ContainerGuard::new(&self.runc, &id);
        let log = self.dir.path().join(format!("{id}.log"));
        let out = self.runc.run(&id, &bundle.dir, true, &log);
        if !out.status.success() {
            bail!("runc run {}: {}", spec.source, kit::log_text(&log));
        }
        let pid = self
            .runc
            .pid(&id)
            .ok_or_else(|| anyhow!("{}: no init pid", spec.source))?;
        let (server, gateway) = self.network(pid)?;
        self.workloads.push(Workload {
            source: spec.source.clone(),
            id,
            pid,
            helpers: vec![server, gateway],
            _guard: guard,
        });
        Ok(())
    }

    /// The workload's own network namespace, shaped like a pod's: `lo` up with the addresses
    /// the scenarios reach, `eth0` on a veth whose other end sits in a private "gateway"
    /// namespace that answers ARP (as a CNI's gateway does; `arping 127.0.0.1` gets its reply),
    /// and an HTTP server on port 80. The server and the gateway are host processes inside
    /// those namespaces only; nothing is connected to the host's network.
    fn network(&self, pid: u32) -> Result<(Child, Child)> {
        let gateway = Command::new("unshare")
            .args(["-n", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("unshare (util-linux)")?;
        let gw = gateway.id();
        let own = std::fs::read_link("/proc/self/ns/net")?;
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{gw}/ns/net"))
            .ok()
            .as_ref()
            == Some(&own)
        {
            if Instant::now() > until {
                bail!("the gateway namespace was not created");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let gw_s = gw.to_string();
        let ns = format!("--net=/proc/{pid}/ns/net");
        let gw_ns = format!("--net=/proc/{gw}/ns/net");
        let mut steps: Vec<(&str, Vec<&str>)> = vec![
            (&ns, vec!["ip", "link", "set", "lo", "up"]),
            (
                &ns,
                vec![
                    "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "gw0", "netns",
                    &gw_s,
                ],
            ),
            (
                &ns,
                vec!["ip", "addr", "add", "10.200.0.2/24", "dev", "eth0"],
            ),
            (&ns, vec!["ip", "link", "set", "eth0", "up"]),
            (
                &ns,
                vec!["ip", "route", "add", "default", "via", "10.200.0.1"],
            ),
            (&gw_ns, vec!["ip", "link", "set", "lo", "up"]),
            (
                &gw_ns,
                vec!["ip", "addr", "add", "10.200.0.1/24", "dev", "gw0"],
            ),
            (&gw_ns, vec!["ip", "link", "set", "gw0", "up"]),
            // Answer ARP for 127.0.0.1 too (what arping asks in the scenarios).
            (
                &gw_ns,
                vec!["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"],
            ),
            (
                &gw_ns,
                vec!["sysctl", "-q", "-w", "net.ipv4.conf.gw0.route_localnet=1"],
            ),
        ];
        for a in LOCAL_ADDRESSES {
            steps.push((&ns, vec!["ip", "addr", "add", a, "dev", "lo"]));
        }
        for (ns, s) in steps {
            let out = Command::new("nsenter").arg(ns).args(&s).output()?;
            if !out.status.success() {
                bail!(
                    "nsenter {}: {}",
                    s.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let server = Command::new("nsenter")
            .arg(&ns)
            .args(["/bin/busybox", "httpd", "-f", "-p", "80", "-h"])
            .arg(&self.www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("busybox httpd (apt-get install busybox-static)")?;
        Ok((server, gateway))
    }

    pub fn workload(&self, source: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.source == source)
    }

    /// Runs `bash -c CMD` in a workload; (exit 0, output).
    pub fn exec(&self, source: &str, cmd: &str) -> Result<(bool, String)> {
        let w = self
            .workload(source)
            .ok_or_else(|| anyhow!("no workload {source}"))?;
        let mut c = self.runc.cmd();
        c.args(["exec", &w.id, "bash", "-c", cmd]);
        Ok(run_limited(&mut c, Duration::from_secs(30)))
    }

    /// Alerts received since `since`.
    pub fn alerts_since(&self, since: Instant) -> Vec<Alert> {
        self.alerts
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| *t >= since)
                    .map(|(_, a)| a.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn port_after(text: &str, marker: &str) -> Option<u16> {
    let at = text.find(marker)? + marker.len();
    let addr: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    addr.rsplit(':').next()?.parse().ok()
}

/// Runs a command with a time limit; (exit 0, stdout+stderr).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (false, format!("cannot run: {e}")),
    };
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: our own unreaped child (done is not set).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    match out {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("wait: {e}")),
    }
}
