//! `karmor logs`: stream alerts (WatchAlerts), telemetry (WatchLogs) and debug messages
//! (WatchMessages) from the daemon, filter them client-side and print them (spec §2.2, §5.3).
//!
//! Filtering and formatting are pure functions ([`Filters`], [`render_alert`], [`render_log`],
//! [`render_message`]); [`run`] does the I/O.
//!
//! Upstream semantics kept:
//! * `--logFilter policy|system|all` opens WatchAlerts, WatchLogs or both, and the same word
//!   is sent as `RequestMessage.Filter`;
//! * HealthCheck with a random nonce before anything else; a wrong echo is an error;
//! * `--namespace`, `--operation`, `--logType`, `--container`, `--pod` are case-insensitive
//!   unanchored regexes, `--source` and `--resource` case-sensitive ones; an event whose field
//!   is empty never matches a filter on that field;
//! * text output is `== Alert / <UpdatedTime with ' ' for 'T' and no 'Z'> ==` then `Key: value`
//!   lines: a fixed key order, then the remaining keys sorted; `--json` is karmor's exact JSON,
//!   `-o pretty-json` the same object indented with sorted keys.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context as _};
use kubearmor_proto::feeder::log_service_client::LogServiceClient;
use kubearmor_proto::feeder::{Alert, Log, Message, NonceMessage, RequestMessage};
use kubearmor_proto::json::{karmor_alert, karmor_log, karmor_message};
use regex::Regex;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::cli::{LogsArgs, OutputArg};
use crate::client;

/// Output format of alerts, logs and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    PrettyJson,
}

impl Format {
    /// `-o` wins over `--json`; `--json` alone means JSON lines.
    pub fn from_args(output: Option<OutputArg>, json: bool) -> Self {
        match (output, json) {
            (Some(OutputArg::PrettyJson), _) => Format::PrettyJson,
            (Some(OutputArg::Json), _) | (None, true) => Format::Json,
            (Some(OutputArg::Text), _) | (None, false) => Format::Text,
        }
    }
}

/// The client-side filters of `karmor logs`, compiled.
#[derive(Debug, Default)]
pub struct Filters {
    namespace: Option<Regex>,
    log_type: Option<Regex>,
    operation: Option<Regex>,
    container: Option<Regex>,
    pod: Option<Regex>,
    source: Option<Regex>,
    resource: Option<Regex>,
    labels: Vec<String>,
}

/// The fields of an Alert or a Log that the filters look at.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'a> {
    pub namespace: &'a str,
    pub r#type: &'a str,
    pub operation: &'a str,
    pub container: &'a str,
    pub pod: &'a str,
    pub source: &'a str,
    pub resource: &'a str,
    pub labels: &'a str,
}

impl<'a> From<&'a Alert> for Fields<'a> {
    fn from(a: &'a Alert) -> Self {
        Fields {
            namespace: &a.namespace_name,
            r#type: &a.r#type,
            operation: &a.operation,
            container: &a.container_name,
            pod: &a.pod_name,
            source: &a.source,
            resource: &a.resource,
            labels: &a.labels,
        }
    }
}

impl<'a> From<&'a Log> for Fields<'a> {
    fn from(l: &'a Log) -> Self {
        Fields {
            namespace: &l.namespace_name,
            r#type: &l.r#type,
            operation: &l.operation,
            container: &l.container_name,
            pod: &l.pod_name,
            source: &l.source,
            resource: &l.resource,
            labels: &l.labels,
        }
    }
}

fn compile(flag: &str, pattern: Option<&str>, ignore_case: bool) -> anyhow::Result<Option<Regex>> {
    match pattern.filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => {
            let full = if ignore_case {
                format!("(?i){p}")
            } else {
                p.to_string()
            };
            Regex::new(&full)
                .map(Some)
                .with_context(|| format!("invalid --{flag} regex {p:?}"))
        }
    }
}

impl Filters {
    pub fn from_args(a: &LogsArgs) -> anyhow::Result<Self> {
        Ok(Filters {
            namespace: compile("namespace", a.namespace.as_deref(), true)?,
            log_type: compile("logType", a.log_type.as_deref(), true)?,
            operation: compile("operation", a.operation.as_deref(), true)?,
            container: compile("container", a.container.as_deref(), true)?,
            pod: compile("pod", a.pod.as_deref(), true)?,
            source: compile("source", a.source.as_deref(), false)?,
            resource: compile("resource", a.resource.as_deref(), false)?,
            labels: a.labels.iter().filter(|l| !l.is_empty()).cloned().collect(),
        })
    }

    /// Whether an event passes every filter that was given.
    pub fn matches(&self, f: &Fields<'_>) -> bool {
        if !self.labels.is_empty()
            && !f
                .labels
                .split(',')
                .any(|l| self.labels.iter().any(|s| s == l))
        {
            return false;
        }
        let checks = [
            (&self.namespace, f.namespace),
            (&self.log_type, f.r#type),
            (&self.operation, f.operation),
            (&self.container, f.container),
            (&self.pod, f.pod),
            (&self.source, f.source),
            (&self.resource, f.resource),
        ];
        checks.iter().all(|(re, value)| match re {
            None => true,
            // Upstream reads the field from karmor's JSON, where an empty field is absent:
            // absent never matches.
            Some(re) => !value.is_empty() && re.is_match(value),
        })
    }
}

/// One alert, newline-terminated, in `format`.
pub fn render_alert(a: &Alert, format: Format) -> String {
    render("Alert", &karmor_alert(a), format)
}

/// One log, newline-terminated, in `format`.
pub fn render_log(l: &Log, format: Format) -> String {
    render("Log", &karmor_log(l), format)
}

/// One debug message, newline-terminated. Text is upstream's
/// `<time>  <cluster>  <host>  [<level>]  <message>`.
pub fn render_message(m: &Message, format: Format) -> String {
    match format {
        Format::Json => format!("{}\n", karmor_message(m)),
        Format::PrettyJson => pretty(&karmor_message(m)),
        Format::Text => format!(
            "{}  {}  {}  [{}]  {}\n",
            header_time(&m.updated_time),
            m.cluster_name,
            m.host_name,
            m.level,
            m.message
        ),
    }
}

fn render(kind: &str, json: &str, format: Format) -> String {
    match format {
        Format::Json => format!("{json}\n"),
        Format::PrettyJson => pretty(json),
        Format::Text => text_block(kind, json),
    }
}

/// Keys printed first, in this order, by upstream's text output. The first two
/// (UpdatedTime, Timestamp) only claim their place: UpdatedTime is in the header line and
/// neither is printed as a key line.
const TEXT_KEYS: [&str; 21] = [
    "UpdatedTime",
    "Timestamp",
    "ClusterName",
    "HostName",
    "NamespaceName",
    "PodName",
    "Labels",
    "ContainerName",
    "ContainerID",
    "ContainerImage",
    "Type",
    "PolicyName",
    "Severity",
    "Message",
    "Source",
    "Resource",
    "Operation",
    "Action",
    "Data",
    "Enforcer",
    "Result",
];

/// Upstream's text block, built from the karmor JSON so that exactly the same keys appear.
fn text_block(kind: &str, json: &str) -> String {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        // Unreachable: karmor_alert/karmor_log always produce an object.
        return format!("== {kind} ==\n{json}\n");
    };
    let mut out = match map.get("UpdatedTime").and_then(Value::as_str) {
        Some(t) => format!("== {kind} / {} ==\n", header_time(t)),
        None => format!("== {kind} ==\n"),
    };
    // Upstream prints the keys outside TEXT_KEYS sorted.
    let mut rest: Vec<&String> = map
        .keys()
        .filter(|k| !TEXT_KEYS.contains(&k.as_str()))
        .collect();
    rest.sort();
    for key in TEXT_KEYS[2..]
        .iter()
        .copied()
        .chain(rest.into_iter().map(String::as_str))
    {
        match map.get(key) {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) => {
                let _ = writeln!(out, "{key}: {}", go_value(v));
            }
        }
    }
    out
}

/// `2025-07-24T07:45:12.418203Z` -> `2025-07-24 07:45:12.418203`, as upstream prints it.
fn header_time(t: &str) -> String {
    t.replace('T', " ").replace('Z', "")
}

/// A JSON value as Go's `%v` prints the decoded `interface{}`: maps as `map[k:v k:v]` with
/// sorted keys, lists as `[a b]`. Numbers are printed as integers (upstream prints large ones
/// in exponent form, e.g. `3.647533e+06`, an artefact of decoding into float64).
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// `v` with every object's keys in sorted order, as Go marshals maps. (serde_json's map is
/// sorted already unless some crate in the build enables its `preserve_order` feature; then
/// it keeps insertion order, which this makes sorted.)
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Go's `json.MarshalIndent(map, "", "  ")`: sorted keys, two-space indent, HTML-safe
/// escapes. `<`, `>`, `&`, U+2028 and U+2029 can only occur inside strings, so escaping them
/// after formatting is safe.
fn pretty(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return format!("{json}\n");
    };
    let Ok(s) = serde_json::to_string_pretty(&sorted(v)) else {
        return format!("{json}\n");
    };
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// Where output goes: `stdout`, `none`, or a file opened for appending.
enum Sink {
    Stdout,
    File(File),
    Discard,
}

impl Sink {
    fn open(path: &str) -> anyhow::Result<Self> {
        match path {
            "stdout" => Ok(Sink::Stdout),
            "none" => Ok(Sink::Discard),
            p => OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Sink::File)
                .with_context(|| format!("cannot open {p}")),
        }
    }

    fn write(&mut self, s: &str) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(s.as_bytes())?;
                out.flush()
            }
            Sink::File(f) => f.write_all(s.as_bytes()),
            Sink::Discard => Ok(()),
        }
    }
}

/// Why a `run` ended without error.
enum Stop {
    Done,
    BrokenPipe,
}

fn write_or_stop(sink: &mut Sink, s: &str) -> anyhow::Result<Option<Stop>> {
    match sink.write(s) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Some(Stop::BrokenPipe)),
        Err(e) => Err(anyhow!(e).context("cannot write output")),
    }
}

/// A random non-negative nonce, like Go's `rand.Int31()`.
fn nonce() -> i32 {
    let h = RandomState::new().hash_one(SystemTime::now());
    i32::try_from(h & 0x7fff_ffff).unwrap_or(1)
}

async fn health_check(client: &mut LogServiceClient<Channel>) -> anyhow::Result<()> {
    let n = nonce();
    let mut req = tonic::Request::new(NonceMessage { nonce: n });
    req.set_timeout(client::CALL_TIMEOUT);
    let reply = client
        .health_check(req)
        .await
        .map_err(|s| client::rpc_failed("HealthCheck", &s))
        .context("failed to check the liveness of the gRPC server")?;
    let got = reply.into_inner().retval;
    if got != n {
        bail!("failed to check the liveness of the gRPC server: HealthCheck answered {got}, expected the nonce {n}");
    }
    Ok(())
}

/// The next item of an optional stream; never resolves for `None`.
async fn next<T>(s: &mut Option<Streaming<T>>) -> Result<Option<T>, tonic::Status> {
    match s {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

/// What to do with the end of a stream: `Ok` if the server closed it, the error otherwise.
fn stream_ended(name: &str, r: Result<(), tonic::Status>, failures: &mut Vec<String>) {
    match r {
        Ok(()) => eprintln!("Stopped {name}"),
        Err(s) => failures.push(format!("{name} failed: {}", client::status_text(&s))),
    }
}

/// Runs `karmor logs` until the limit, a signal, or the end of every stream.
pub async fn run(args: &LogsArgs) -> anyhow::Result<()> {
    let filters = Filters::from_args(args)?;
    let format = Format::from_args(args.output, args.json);
    if args.log_path == "none" && args.msg_path == "none" {
        bail!("nothing to watch: --logPath and --msgPath are both none");
    }
    let mut log_sink = Sink::open(&args.log_path)?;
    let mut msg_sink = Sink::open(&args.msg_path)?;

    let (addr, channel) = client::connect(&args.conn).await?;
    eprintln!("Created a gRPC client ({addr})");
    let mut client = LogServiceClient::new(channel);
    health_check(&mut client).await?;
    eprintln!("Checked the liveness of the gRPC server");

    let open_err =
        |what: &str, s: tonic::Status| anyhow!("cannot start {what}: {}", client::status_text(&s));
    let filter = args.log_filter.as_str().to_string();
    let mut messages = None;
    if args.msg_path != "none" {
        let req = RequestMessage {
            filter: String::new(),
        };
        let s = client
            .watch_messages(req)
            .await
            .map_err(|s| open_err("WatchMessages", s))?;
        messages = Some(s.into_inner());
        eprintln!("Started to watch messages");
    }
    let mut alerts = None;
    let mut logs = None;
    if args.log_path != "none" {
        if args.log_filter.alerts() {
            let req = RequestMessage {
                filter: filter.clone(),
            };
            let s = client
                .watch_alerts(req)
                .await
                .map_err(|s| open_err("WatchAlerts", s))?;
            alerts = Some(s.into_inner());
            eprintln!("Started to watch alerts");
        }
        if args.log_filter.logs() {
            let req = RequestMessage { filter };
            let s = client
                .watch_logs(req)
                .await
                .map_err(|s| open_err("WatchLogs", s))?;
            logs = Some(s.into_inner());
            eprintln!("Started to watch logs");
        }
    }

    let mut signals = Signals::new()?;
    let limit = u64::from(args.limit);
    let mut printed: u64 = 0;
    let mut failures = Vec::new();
    loop {
        if alerts.is_none() && logs.is_none() && messages.is_none() {
            break;
        }
        let stop = tokio::select! {
            r = next(&mut alerts) => match r {
                Ok(Some(a)) if filters.matches(&Fields::from(&a)) => {
                    printed += 1;
                    write_or_stop(&mut log_sink, &render_alert(&a, format))?
                }
                Ok(Some(_)) => None,
                Ok(None) => { alerts = None; stream_ended("WatchAlerts", Ok(()), &mut failures); None }
                Err(s) => { alerts = None; stream_ended("WatchAlerts", Err(s), &mut failures); None }
            },
            r = next(&mut logs) => match r {
                Ok(Some(l)) if filters.matches(&Fields::from(&l)) => {
                    printed += 1;
                    write_or_stop(&mut log_sink, &render_log(&l, format))?
                }
                Ok(Some(_)) => None,
                Ok(None) => { logs = None; stream_ended("WatchLogs", Ok(()), &mut failures); None }
                Err(s) => { logs = None; stream_ended("WatchLogs", Err(s), &mut failures); None }
            },
            r = next(&mut messages) => match r {
                Ok(Some(m)) => write_or_stop(&mut msg_sink, &render_message(&m, format))?,
                Ok(None) => { messages = None; stream_ended("WatchMessages", Ok(()), &mut failures); None }
                Err(s) => { messages = None; stream_ended("WatchMessages", Err(s), &mut failures); None }
            },
            () = signals.recv() => Some(Stop::Done),
        };
        match stop {
            Some(Stop::Done | Stop::BrokenPipe) => return Ok(()),
            None if limit > 0 && printed >= limit => return Ok(()),
            None => {}
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "{} (the daemon at {addr} closed the connection)",
            failures.join("; ")
        ))
    }
}

/// SIGINT, SIGTERM and SIGHUP, as upstream listens for.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use kubearmor_proto::feeder::{ExecEvent, Podowner};
    use std::collections::BTreeMap;

    fn args(extra: &[&str]) -> LogsArgs {
        let cli =
            crate::cli::Cli::try_parse_from(["karmor", "logs"].iter().chain(extra.iter()).copied())
                .unwrap();
        match cli.command {
            crate::cli::Command::Logs(l) => *l,
            _ => unreachable!(),
        }
    }

    fn filters(extra: &[&str]) -> Filters {
        Filters::from_args(&args(extra)).unwrap()
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    /// Spec §1.11 (b).
    fn file_alert() -> Alert {
        Alert {
            timestamp: 1753343300,
            updated_time: s("2025-07-24T07:48:20.031877Z"),
            cluster_name: s("default"),
            host_name: s("node-a"),
            namespace_name: s("wordpress-mysql"),
            owner: Some(Podowner {
                r#ref: s("Deployment"),
                name: s("mysql"),
                namespace: s("wordpress-mysql"),
            }),
            pod_name: s("mysql-76ddc6ddc4-h47hv"),
            labels: s("app=mysql"),
            container_id: s("e10d5edb62ac"),
            container_name: s("mysql"),
            container_image: s("docker.io/library/mysql:5.6"),
            host_ppid: 3642706,
            host_pid: 3647533,
            ppid: 251,
            pid: 266,
            uid: 0,
            parent_process_name: s("/bin/bash"),
            process_name: s("/bin/cat"),
            policy_name: s("ksp-audit-file-access"),
            severity: s("7"),
            tags: s("PCI,NIST"),
            a_tags: vec![s("PCI"), s("NIST")],
            r#type: s("MatchedPolicy"),
            source: s("/bin/cat /etc/shadow"),
            operation: s("File"),
            resource: s("/etc/shadow"),
            data: s("syscall=SYS_OPENAT fd=-100 flags=O_RDONLY"),
            event_data: BTreeMap::from([
                (s("Fd"), s("-100")),
                (s("Flags"), s("O_RDONLY")),
                (s("Syscall"), s("SYS_OPENAT")),
            ]),
            enforcer: s("eBPF Monitor"),
            action: s("Audit"),
            result: s("Passed"),
            cwd: s("/"),
            exec_event: Some(ExecEvent {
                exec_id: s("0"),
                executable_name: s("cat"),
            }),
            node_id: s("n1"),
            ..Default::default()
        }
    }

    #[test]
    fn alert_text_block_matches_upstream_layout() {
        let want = "\
== Alert / 2025-07-24 07:48:20.031877 ==
ClusterName: default
HostName: node-a
NamespaceName: wordpress-mysql
PodName: mysql-76ddc6ddc4-h47hv
Labels: app=mysql
ContainerName: mysql
ContainerID: e10d5edb62ac
ContainerImage: docker.io/library/mysql:5.6
Type: MatchedPolicy
PolicyName: ksp-audit-file-access
Severity: 7
Source: /bin/cat /etc/shadow
Resource: /etc/shadow
Operation: File
Action: Audit
Data: syscall=SYS_OPENAT fd=-100 flags=O_RDONLY
Enforcer: eBPF Monitor
Result: Passed
ATags: [PCI NIST]
Cwd: /
EventData: map[Fd:-100 Flags:O_RDONLY Syscall:SYS_OPENAT]
ExecEvent: map[ExecID:0 ExecutableName:cat]
HostPID: 3647533
HostPPID: 3642706
NodeID: n1
Owner: map[Name:mysql Namespace:wordpress-mysql Ref:Deployment]
PID: 266
PPID: 251
ParentProcessName: /bin/bash
ProcessName: /bin/cat
Tags: PCI,NIST
UID: 0
";
        assert_eq!(render_alert(&file_alert(), Format::Text), want);
    }

    #[test]
    fn log_text_block_and_missing_time() {
        let l = Log {
            r#type: s("HostLog"),
            operation: s("Process"),
            resource: s("/usr/bin/ls"),
            exec_event: Some(ExecEvent::default()),
            ..Default::default()
        };
        assert_eq!(
            render_log(&l, Format::Text),
            "== Log ==\nType: HostLog\nResource: /usr/bin/ls\nOperation: Process\nExecEvent: map[]\nPPID: 0\nUID: 0\n"
        );
    }

    #[test]
    fn json_is_karmor_json_per_line() {
        let a = file_alert();
        assert_eq!(
            render_alert(&a, Format::Json),
            format!("{}\n", karmor_alert(&a))
        );
        let l = Log::from(a);
        assert_eq!(
            render_log(&l, Format::Json),
            format!("{}\n", karmor_log(&l))
        );
    }

    #[test]
    fn pretty_json_sorted_and_html_safe() {
        let a = Alert {
            resource: s("/bin/sh -c a<b&c"),
            ..Default::default()
        };
        assert_eq!(
            render_alert(&a, Format::PrettyJson),
            "{\n  \"PPID\": 0,\n  \"Resource\": \"/bin/sh -c a\\u003cb\\u0026c\",\n  \"UID\": 0\n}\n"
        );
    }

    #[test]
    fn message_rendering() {
        let m = Message {
            updated_time: s("2025-07-24T07:48:20.031877Z"),
            cluster_name: s("default"),
            host_name: s("vm-1"),
            r#type: s("Message"),
            level: s("INFO"),
            message: s("started"),
            ..Default::default()
        };
        assert_eq!(
            render_message(&m, Format::Text),
            "2025-07-24 07:48:20.031877  default  vm-1  [INFO]  started\n"
        );
        assert_eq!(
            render_message(&m, Format::Json),
            format!("{}\n", karmor_message(&m))
        );
    }

    #[test]
    fn format_selection() {
        assert_eq!(Format::from_args(None, false), Format::Text);
        assert_eq!(Format::from_args(None, true), Format::Json);
        assert_eq!(
            Format::from_args(Some(OutputArg::Json), false),
            Format::Json
        );
        assert_eq!(
            Format::from_args(Some(OutputArg::PrettyJson), true),
            Format::PrettyJson
        );
        assert_eq!(Format::from_args(Some(OutputArg::Text), true), Format::Text);
    }

    #[test]
    fn no_filters_pass_everything() {
        let f = filters(&[]);
        assert!(f.matches(&Fields::default()));
        assert!(f.matches(&Fields::from(&file_alert())));
    }

    #[test]
    fn operation_filter_is_case_insensitive_regex() {
        let a = file_alert();
        let ev = Fields::from(&a);
        assert!(filters(&["--operation", "file"]).matches(&ev));
        assert!(filters(&["--operation", "FILE"]).matches(&ev));
        assert!(!filters(&["--operation", "process"]).matches(&ev));
        assert!(filters(&["--operation", "process|file"]).matches(&ev));
        // Unanchored, as upstream: "network" also selects NetworkFirewall.
        let fw = Fields {
            operation: "NetworkFirewall",
            ..Fields::default()
        };
        assert!(filters(&["--operation", "network"]).matches(&fw));
        assert!(!filters(&["--operation", "^network$"]).matches(&fw));
        // An empty filter is no filter.
        assert!(filters(&["--operation", ""]).matches(&Fields::default()));
    }

    #[test]
    fn empty_field_never_matches() {
        let host = Fields {
            r#type: "HostLog",
            operation: "Process",
            ..Fields::default()
        };
        assert!(!filters(&["--namespace", ".*"]).matches(&host));
        assert!(!filters(&["--container", "web"]).matches(&Fields::default()));
        assert!(filters(&["--logType", "hostlog"]).matches(&host));
        assert!(!filters(&["--logType", "ContainerLog"]).matches(&host));
    }

    #[test]
    fn namespace_container_pod_filters() {
        let a = file_alert();
        let ev = Fields::from(&a);
        assert!(filters(&["-n", "WORDPRESS"]).matches(&ev));
        assert!(!filters(&["-n", "kube-system"]).matches(&ev));
        assert!(filters(&["--container", "^mysql$"]).matches(&ev));
        assert!(!filters(&["--container", "web"]).matches(&ev));
        assert!(filters(&["--pod", "mysql-"]).matches(&ev));
        assert!(filters(&[
            "-n",
            "wordpress",
            "--container",
            "mysql",
            "--operation",
            "file"
        ])
        .matches(&ev));
        assert!(!filters(&[
            "-n",
            "wordpress",
            "--container",
            "mysql",
            "--operation",
            "network"
        ])
        .matches(&ev));
    }

    #[test]
    fn source_and_resource_are_case_sensitive() {
        let a = file_alert();
        let ev = Fields::from(&a);
        assert!(filters(&["--source", "/bin/cat"]).matches(&ev));
        assert!(!filters(&["--source", "/BIN/CAT"]).matches(&ev));
        assert!(filters(&["--resource", "shadow$"]).matches(&ev));
        assert!(!filters(&["--resource", "SHADOW"]).matches(&ev));
    }

    #[test]
    fn label_filter_is_exact_membership() {
        let ev = Fields {
            labels: "app=mysql,tier=db",
            ..Fields::default()
        };
        assert!(filters(&["-l", "tier=db"]).matches(&ev));
        assert!(filters(&["-l", "x=y", "-l", "app=mysql"]).matches(&ev));
        assert!(!filters(&["-l", "app=my"]).matches(&ev));
        assert!(!filters(&["-l", "app=mysql"]).matches(&Fields::default()));
    }

    #[test]
    fn invalid_regex_is_reported() {
        let e = Filters::from_args(&args(&["--namespace", "("])).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("invalid --namespace regex \"(\""),
            "{e:#}"
        );
    }

    #[test]
    fn header_time_format() {
        assert_eq!(
            header_time("2025-07-24T07:45:12.418203Z"),
            "2025-07-24 07:45:12.418203"
        );
    }

    #[test]
    fn nonce_is_non_negative() {
        for _ in 0..100 {
            assert!(nonce() >= 0);
        }
    }
}
