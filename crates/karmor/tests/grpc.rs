//! `karmor logs`, `probe` and `vm policy` run as a real binary against a real tonic server
//! (LogService, PolicyService, ProbeService) listening on 127.0.0.1:0 inside the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubearmor_proto::feeder::log_service_server::{LogService, LogServiceServer};
use kubearmor_proto::feeder::{
    Alert, ExecEvent, Log, Message, NonceMessage, ReplyMessage, RequestMessage,
};
use kubearmor_proto::json::{karmor_alert, karmor_log};
use kubearmor_proto::policy::policy_service_server::{PolicyService, PolicyServiceServer};
use kubearmor_proto::policy::{Policy, PolicyStatus, Response as PolicyResponse};
use kubearmor_proto::probe::probe_service_server::{ProbeService, ProbeServiceServer};
use kubearmor_proto::probe::{ContainerData, HostSecurityPolicies, ProbeResponse};
use tonic::codegen::tokio_stream::{self, Stream, StreamExt as _};
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------- the fake daemon

/// What the fake daemon sends, and what it saw.
#[derive(Default)]
struct Daemon {
    alerts: Vec<Alert>,
    logs: Vec<Log>,
    messages: Vec<Message>,
    /// Keep streams open after the scripted items (like a real daemon).
    hold_open: bool,
    /// Send the scripted items over and over, as fast as the client reads.
    repeat: bool,
    /// End WatchAlerts with an error status after the scripted items.
    fail_alerts: bool,
    /// Answer HealthCheck with the wrong value.
    bad_nonce: bool,
    probe: ProbeResponse,
    /// Every call: (method, filter or policy payload).
    calls: Mutex<Vec<(String, String)>>,
}

impl Daemon {
    fn record(&self, method: &str, arg: String) {
        self.calls.lock().unwrap().push((method.to_string(), arg));
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    fn calls_to(&self, method: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(m, _)| m == method)
            .map(|(_, a)| a)
            .collect()
    }

    fn stream<T: Clone + Send + 'static>(&self, items: Vec<T>, fail: bool) -> EventStream<T> {
        if self.repeat {
            return Box::pin(tokio_stream::iter(items.into_iter().cycle().map(Ok)));
        }
        let items = tokio_stream::iter(items.into_iter().map(Ok));
        if fail {
            Box::pin(items.chain(tokio_stream::once(Err(Status::internal("feeder broke")))))
        } else if self.hold_open {
            Box::pin(items.chain(tokio_stream::pending()))
        } else {
            Box::pin(items)
        }
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
struct Svc(Arc<Daemon>);

#[tonic::async_trait]
impl LogService for Svc {
    async fn health_check(
        &self,
        req: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        let nonce = req.into_inner().nonce;
        self.0.record("HealthCheck", nonce.to_string());
        let retval = if self.0.bad_nonce {
            nonce.wrapping_add(1)
        } else {
            nonce
        };
        Ok(Response::new(ReplyMessage { retval }))
    }

    type WatchMessagesStream = EventStream<Message>;
    async fn watch_messages(
        &self,
        req: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        self.0.record("WatchMessages", req.into_inner().filter);
        Ok(Response::new(self.0.stream(self.0.messages.clone(), false)))
    }

    type WatchAlertsStream = EventStream<Alert>;
    async fn watch_alerts(
        &self,
        req: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let filter = req.into_inner().filter;
        self.0.record("WatchAlerts", filter.clone());
        // Upstream: any other filter ends the stream at once with OK.
        if filter != "all" && filter != "policy" {
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        }
        Ok(Response::new(
            self.0.stream(self.0.alerts.clone(), self.0.fail_alerts),
        ))
    }

    type WatchLogsStream = EventStream<Log>;
    async fn watch_logs(
        &self,
        req: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        let filter = req.into_inner().filter;
        self.0.record("WatchLogs", filter.clone());
        if filter != "all" && filter != "system" {
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        }
        Ok(Response::new(self.0.stream(self.0.logs.clone(), false)))
    }
}

impl Svc {
    /// Names starting with `invalid-` are refused; otherwise ADDED -> Applied,
    /// DELETED -> Deleted (a name starting with `gone-` -> NotExist).
    fn answer(
        &self,
        method: &str,
        req: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        let bytes = req.into_inner().policy;
        let text = String::from_utf8(bytes).unwrap();
        self.0.record(method, text.clone());
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Ok(status(PolicyStatus::Invalid)),
        };
        let name = v["object"]["metadata"]["name"].as_str().unwrap_or("");
        let st = if name.is_empty() || name.starts_with("invalid-") {
            PolicyStatus::Invalid
        } else if v["type"] == "DELETED" {
            if name.starts_with("gone-") {
                PolicyStatus::NotExist
            } else {
                PolicyStatus::Deleted
            }
        } else {
            PolicyStatus::Applied
        };
        Ok(status(st))
    }
}

fn status(s: PolicyStatus) -> Response<PolicyResponse> {
    Response::new(PolicyResponse { status: s as i32 })
}

#[tonic::async_trait]
impl PolicyService for Svc {
    async fn container_policy(
        &self,
        req: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.answer("containerPolicy", req)
    }
    async fn host_policy(&self, req: Request<Policy>) -> Result<Response<PolicyResponse>, Status> {
        self.answer("hostPolicy", req)
    }
    async fn network_policy(
        &self,
        req: Request<Policy>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.answer("networkPolicy", req)
    }
}

#[tonic::async_trait]
impl ProbeService for Svc {
    async fn get_probe_data(&self, _: Request<()>) -> Result<Response<ProbeResponse>, Status> {
        self.0.record("getProbeData", String::new());
        Ok(Response::new(self.0.probe.clone()))
    }
}

async fn serve(d: Daemon) -> (SocketAddr, Arc<Daemon>) {
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let d = Arc::new(d);
    let svc = Svc(d.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogServiceServer::new(svc.clone()))
            .add_service(PolicyServiceServer::new(svc.clone()))
            .add_service(ProbeServiceServer::new(svc))
            .serve_with_incoming(incoming),
    );
    (addr, d)
}

/// Runs karmor with `args`, `KUBEARMOR_SERVICE` unset unless given in `env`.
async fn karmor_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_karmor"));
    cmd.args(args)
        .env_remove("KUBEARMOR_SERVICE")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("karmor did not exit within 60 s")
        .expect("run karmor")
}

async fn karmor(args: &[&str]) -> Output {
    karmor_env(args, &[]).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

// ---------------------------------------------------------------- events

fn s(v: &str) -> String {
    v.to_string()
}

fn alert(operation: &str, resource: &str) -> Alert {
    Alert {
        timestamp: 1753343112,
        updated_time: s("2025-07-24T07:45:12.418203Z"),
        cluster_name: s("default"),
        host_name: s("vm-1"),
        namespace_name: s("container_namespace"),
        pod_name: s("wordpress-mysql"),
        container_id: s("4f1c0b2e9a7d"),
        container_name: s("wordpress-mysql"),
        host_ppid: 412233,
        host_pid: 412301,
        ppid: 7,
        pid: 31,
        parent_process_name: s("/usr/bin/bash"),
        process_name: s("/usr/bin/apt"),
        policy_name: s("ksp-block-policy"),
        severity: s("3"),
        r#type: s("MatchedPolicy"),
        source: s("/usr/bin/bash"),
        operation: s(operation),
        resource: s(resource),
        data: s("lsm=SECURITY_BPRM_CHECK"),
        event_data: BTreeMap::from([(s("Lsm"), s("SECURITY_BPRM_CHECK"))]),
        enforcer: s("BPFLSM"),
        action: s("Block"),
        result: s("Permission denied"),
        cwd: s("/"),
        exec_event: Some(ExecEvent {
            exec_id: s("0"),
            executable_name: s("bash"),
        }),
        ..Default::default()
    }
}

fn log(r#type: &str, operation: &str, resource: &str) -> Log {
    Log {
        timestamp: 1686491023,
        updated_time: s("2023-06-11T13:43:43.291471Z"),
        cluster_name: s("default"),
        host_name: s("vm-1"),
        r#type: s(r#type),
        source: s("/bin/dash"),
        operation: s(operation),
        resource: s(resource),
        data: s("syscall=SYS_EXECVE"),
        result: s("Passed"),
        exec_event: Some(ExecEvent {
            exec_id: s("0"),
            executable_name: s("cat"),
        }),
        ..Default::default()
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

// ---------------------------------------------------------------- logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_json_is_exact_karmor_json() {
    let alerts = vec![
        alert("Process", "/usr/bin/apt update"),
        alert("File", "/etc/shadow"),
    ];
    let (addr, d) = serve(Daemon {
        alerts: alerts.clone(),
        hold_open: true,
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--limit",
        "2",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want: String = alerts.iter().map(|a| karmor_alert(a) + "\n").collect();
    assert_eq!(stdout(&o), want);
    // Default --logFilter policy: only WatchAlerts, with Filter "policy", after HealthCheck.
    let calls = d.calls();
    assert_eq!(calls[0].0, "HealthCheck");
    assert_eq!(d.calls_to("WatchAlerts"), ["policy"]);
    assert!(d.calls_to("WatchLogs").is_empty());
    assert!(d.calls_to("WatchMessages").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_filter_is_client_side_and_case_insensitive() {
    let (addr, _d) = serve(Daemon {
        alerts: vec![
            alert("Process", "/usr/bin/apt"),
            alert("File", "/etc/shadow"),
            alert("Network", "domain=AF_INET"),
            alert("File", "/etc/passwd"),
        ],
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "log",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--operation",
        "file",
    ])
    .await;
    // The stream ends after the scripted events: karmor exits 0.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = format!(
        "{}\n{}\n",
        karmor_alert(&alert("File", "/etc/shadow")),
        karmor_alert(&alert("File", "/etc/passwd"))
    );
    assert_eq!(stdout(&o), want);

    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--operation",
        "NETWORK",
    ])
    .await;
    assert_eq!(
        stdout(&o),
        karmor_alert(&alert("Network", "domain=AF_INET")) + "\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_system_routes_to_watch_logs() {
    let logs = vec![
        log("HostLog", "Process", "/usr/bin/ls"),
        log("ContainerLog", "File", "/etc/hosts"),
    ];
    let (addr, d) = serve(Daemon {
        alerts: vec![alert("Process", "/usr/bin/apt")],
        logs: logs.clone(),
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--logFilter",
        "system",
        "--json",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want: String = logs.iter().map(|l| karmor_log(l) + "\n").collect();
    assert_eq!(stdout(&o), want);
    assert_eq!(d.calls_to("WatchLogs"), ["system"]);
    assert!(d.calls_to("WatchAlerts").is_empty());

    // --logType filters on Type (case-insensitive).
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--log-filter",
        "system",
        "--json",
        "--logType",
        "hostlog",
    ])
    .await;
    assert_eq!(stdout(&o), karmor_log(&logs[0]) + "\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_filter_all_opens_both_streams() {
    let a = alert("Process", "/usr/bin/apt");
    let l = log("HostLog", "Process", "/usr/bin/ls");
    let (addr, d) = serve(Daemon {
        alerts: vec![a.clone()],
        logs: vec![l.clone()],
        hold_open: true,
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--logFilter=all",
        "--json",
        "--limit",
        "2",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got = lines(&stdout(&o));
    got.sort();
    let mut want = vec![karmor_alert(&a), karmor_log(&l)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(d.calls_to("WatchAlerts"), ["all"]);
    assert_eq!(d.calls_to("WatchLogs"), ["all"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_kubearmor_service_env() {
    let (addr, _d) = serve(Daemon {
        alerts: vec![alert("Process", "/usr/bin/apt update")],
        ..Default::default()
    })
    .await;
    let o = karmor_env(&["logs"], &[("KUBEARMOR_SERVICE", &addr.to_string())]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = "\
== Alert / 2025-07-24 07:45:12.418203 ==
ClusterName: default
HostName: vm-1
NamespaceName: container_namespace
PodName: wordpress-mysql
ContainerName: wordpress-mysql
ContainerID: 4f1c0b2e9a7d
Type: MatchedPolicy
PolicyName: ksp-block-policy
Severity: 3
Source: /usr/bin/bash
Resource: /usr/bin/apt update
Operation: Process
Action: Block
Data: lsm=SECURITY_BPRM_CHECK
Enforcer: BPFLSM
Result: Permission denied
Cwd: /
EventData: map[Lsm:SECURITY_BPRM_CHECK]
ExecEvent: map[ExecID:0 ExecutableName:bash]
HostPID: 412301
HostPPID: 412233
PID: 31
PPID: 7
ParentProcessName: /usr/bin/bash
ProcessName: /usr/bin/apt
UID: 0
";
    assert_eq!(stdout(&o), want);
    assert!(stderr(&o).contains(&format!("Created a gRPC client ({addr})")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_and_container_filters() {
    let mut host = alert("Process", "/usr/bin/ls");
    host.namespace_name.clear();
    host.container_name.clear();
    host.r#type = s("MatchedHostPolicy");
    let other = Alert {
        container_name: s("web"),
        ..alert("File", "/etc/shadow")
    };
    let (addr, _d) = serve(Daemon {
        alerts: vec![host.clone(), alert("File", "/x"), other.clone()],
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--container",
        "^WEB$",
    ])
    .await;
    assert_eq!(stdout(&o), karmor_alert(&other) + "\n");
    // A namespace filter never matches host events (no namespace).
    let o = karmor(&["logs", "--gRPC", &addr.to_string(), "--json", "-n", ".*"]).await;
    assert_eq!(lines(&stdout(&o)).len(), 2);
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--logType",
        "MatchedHostPolicy",
    ])
    .await;
    assert_eq!(stdout(&o), karmor_alert(&host) + "\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_to_msg_path() {
    let (addr, d) = serve(Daemon {
        messages: vec![Message {
            updated_time: s("2025-07-24T07:45:12.418203Z"),
            cluster_name: s("default"),
            host_name: s("vm-1"),
            r#type: s("Message"),
            level: s("INFO"),
            message: s("hello"),
            ..Default::default()
        }],
        ..Default::default()
    })
    .await;
    let o = karmor(&[
        "logs",
        "--gRPC",
        &addr.to_string(),
        "--msgPath",
        "stdout",
        "--logPath",
        "none",
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "2025-07-24 07:45:12.418203  default  vm-1  [INFO]  hello\n"
    );
    assert_eq!(d.calls_to("WatchMessages"), [""]);
    assert!(d.calls_to("WatchAlerts").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_ends_quietly() {
    use tokio::io::AsyncBufReadExt as _;
    let a = alert("File", "/etc/shadow");
    let (addr, _d) = serve(Daemon {
        alerts: vec![a.clone()],
        repeat: true,
        ..Default::default()
    })
    .await;
    // `karmor logs --json | head -1`
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_karmor"))
        .args(["logs", "--gRPC", &addr.to_string(), "--json"])
        .env_remove("KUBEARMOR_SERVICE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).await.unwrap();
    assert_eq!(first, karmor_alert(&a) + "\n");
    drop(out);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("karmor kept running after its stdout was closed")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_daemon_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    for args in [
        vec!["logs", "--gRPC", addr.as_str()],
        vec!["probe", "--gRPC", addr.as_str()],
    ] {
        let o = karmor(&args).await;
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(o.stdout.is_empty());
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("karmor: cannot connect to KubeArmor at {addr}: ")),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_health_check_and_failed_stream() {
    let (addr, _d) = serve(Daemon {
        bad_nonce: true,
        ..Default::default()
    })
    .await;
    let o = karmor(&["logs", "--gRPC", &addr.to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("failed to check the liveness of the gRPC server"),
        "{}",
        stderr(&o)
    );

    let a = alert("File", "/etc/shadow");
    let (addr, _d) = serve(Daemon {
        alerts: vec![a.clone()],
        fail_alerts: true,
        ..Default::default()
    })
    .await;
    let o = karmor(&["logs", "--gRPC", &addr.to_string(), "--json"]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), karmor_alert(&a) + "\n");
    assert!(
        stderr(&o).contains("WatchAlerts failed: Internal: feeder broke"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------- vm policy

const HOST_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-block-ls
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: '*'
  process:
    matchPaths:
    - path: /usr/bin/ls
  action: Block
";

const CONTAINER_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-block-policy
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: wordpress-mysql
  process:
    matchPaths:
    - path: /usr/bin/apt
    - path: /usr/bin/apt-get
  action: Block
";

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn payload(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_policy_add_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "p.yaml",
        &format!("{HOST_POLICY}---\n{CONTAINER_POLICY}"),
    );
    let (addr, d) = serve(Daemon::default()).await;

    let o = karmor(&["vm", "policy", "add", &f, "--gRPC", &addr.to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Policy Applied\nPolicy Applied\n");
    let host = d.calls_to("hostPolicy");
    let cont = d.calls_to("containerPolicy");
    assert_eq!((host.len(), cont.len()), (1, 1));
    let h = payload(&host[0]);
    assert_eq!(h["type"], "ADDED");
    assert_eq!(h["object"]["metadata"]["name"], "hsp-block-ls");
    assert_eq!(h["object"]["kind"], "KubeArmorHostPolicy");
    assert_eq!(
        h["object"]["spec"]["process"]["matchPaths"][0]["path"],
        "/usr/bin/ls"
    );
    let c = payload(&cont[0]);
    assert_eq!(c["type"], "ADDED");
    assert_eq!(
        c["object"]["spec"]["selector"]["matchLabels"]["kubearmor.io/container.name"],
        "wordpress-mysql"
    );
    // The payload starts with the type, as upstream's Go struct order does.
    assert!(host[0].starts_with(r#"{"type":"ADDED","object":{"#));

    let o = karmor_env(
        &["vm", "policy", "delete", &f],
        &[("KUBEARMOR_SERVICE", &addr.to_string())],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Policy Deleted\nPolicy Deleted\n");
    let host = d.calls_to("hostPolicy");
    assert_eq!(payload(&host[1])["type"], "DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_policy_refused_status_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let refused = HOST_POLICY.replace("hsp-block-ls", "invalid-hsp");
    let f = write(&dir, "p.yaml", &format!("{refused}---\n{CONTAINER_POLICY}"));
    let (addr, d) = serve(Daemon::default()).await;
    let o = karmor(&["vm", "policy", "add", &f, "--gRPC", &addr.to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "Policy Invalid\nPolicy Applied\n");
    assert!(
        stderr(&o).contains("KubeArmorHostPolicy invalid-hsp: the daemon answered Invalid"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.calls_to("containerPolicy").len(), 1);

    let gone = write(
        &dir,
        "g.yaml",
        &HOST_POLICY.replace("hsp-block-ls", "gone-hsp"),
    );
    let o = karmor(&["vm", "policy", "delete", &gone, "--gRPC", &addr.to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "Policy NotExist\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_policy_add_validates_locally_first() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CONTAINER_POLICY.replace("path: /usr/bin/apt-get", "path: apt-get");
    let f = write(&dir, "x.yaml", &format!("{HOST_POLICY}---\n{bad}"));
    let (addr, d) = serve(Daemon::default()).await;

    let o = karmor(&["vm", "policy", "add", &f, "--gRPC", &addr.to_string()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "{f}: document 2: spec.process.matchPaths[1].path: "
        )),
        "{err}"
    );
    assert!(err.contains("nothing sent"), "{err}");
    // Nothing reached the daemon, not even the valid first document.
    assert!(d.calls().is_empty(), "{:?}", d.calls());

    // --no-validate sends it anyway; the daemon decides.
    let o = karmor(&[
        "vm",
        "policy",
        "add",
        "--no-validate",
        &f,
        "--gRPC",
        &addr.to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Policy Applied\nPolicy Applied\n");
    assert_eq!(d.calls_to("containerPolicy").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_policy_errors_without_daemon_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "p.yaml", HOST_POLICY);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let o = karmor(&["vm", "policy", "add", &f, "--gRPC", &addr]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot connect to KubeArmor at {addr}")),
        "{}",
        stderr(&o)
    );

    let missing = dir.path().join("missing.yaml").display().to_string();
    let o = karmor(&["vm", "policy", "delete", &missing, "--gRPC", &addr]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot read {missing}")),
        "{}",
        stderr(&o)
    );

    let pod = write(&dir, "pod.yaml", "kind: Pod\nmetadata:\n  name: x\n");
    let o = karmor(&["vm", "policy", "delete", &pod, "--gRPC", &addr]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("document 1: kind: \"Pod\" cannot be sent"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------- probe

fn probe_data() -> ProbeResponse {
    ProbeResponse {
        container_list: vec![s("wordpress-mysql")],
        container_map: BTreeMap::from([(
            s("wordpress-mysql"),
            ContainerData {
                policy_list: vec![s("ksp-block-policy")],
                policy_enabled: 1,
                policy_data_list: vec![],
            },
        )]),
        host_map: BTreeMap::from([(
            s("vm-1"),
            HostSecurityPolicies {
                policy_list: vec![s("hsp-block-ls")],
                policy_data_list: vec![],
            },
        )]),
        network_map: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "karmorProbeData.cfg",
        r#"{"OSImage":"Debian GNU/Linux 12 (bookworm)","KernelVersion":"6.1.0","ActiveLSM":"BPFLSM","HostSecurity":true}"#,
    );
    let (addr, d) = serve(Daemon {
        probe: probe_data(),
        ..Default::default()
    })
    .await;
    let missing = dir.path().join("none.cfg").display().to_string();
    let o = karmor(&[
        "probe",
        "--gRPC",
        &addr.to_string(),
        "--json",
        "--probe-file",
        &missing,
    ])
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"Probe Data\":{\"ArmoredContainers\":{\"wordpress-mysql\":[\"ksp-block-policy\"]},\"HostPolicies\":{\"vm-1\":{\"policyList\":[\"hsp-block-ls\"]}}}}\n"
    );
    assert_eq!(d.calls_to("getProbeData").len(), 1);

    let o = karmor(&["probe", "--gRPC", &addr.to_string(), "--probe-file", &cfg]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("\tOS Image:                   Debian GNU/Linux 12 (bookworm)\n"),
        "{out}"
    );
    assert!(out.contains("| vm-1      | hsp-block-ls |\n"), "{out}");
    assert!(
        out.contains("| wordpress-mysql | ksp-block-policy |\n"),
        "{out}"
    );
}
