//! TEST ONLY: an event source for tests, off unless `KUBEARMOR_TEST_EVENT_SOCKET` names a Unix
//! socket path. Never enable it in production: anyone who can connect can inject events.
//!
//! Protocol: one JSON object per line, in the karmor JSON shape of an alert or log
//! (`{"Type":"MatchedHostPolicy","Operation":"File","Resource":"/etc/shadow",...}`: the keys of
//! `karmor logs --json`), plus two optional keys of ours: `Oid` (file owner uid) and
//! `ThrottledBySource` (bool). Unknown keys are errors. Each line is answered with `ok` or
//! `error: <why>`, then a newline, once the event is in the pipeline queue.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kubearmor_proto::feeder::{Alert, ExecEvent, Podowner};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::pipeline::{Event, Pipeline};

/// Longest accepted line.
pub const MAX_LINE: usize = 256 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOwner {
    #[serde(default, rename = "Ref")]
    r#ref: String,
    #[serde(default, rename = "Name")]
    name: String,
    #[serde(default, rename = "Namespace")]
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct WireExec {
    #[serde(default)]
    ExecID: String,
    #[serde(default)]
    ExecutableName: String,
}

/// An event as karmor prints it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(non_snake_case)]
struct WireEvent {
    Timestamp: i64,
    UpdatedTime: String,
    ClusterName: String,
    HostName: String,
    NamespaceName: String,
    Owner: Option<WireOwner>,
    PodName: String,
    Labels: String,
    ContainerID: String,
    ContainerName: String,
    ContainerImage: String,
    HostPPID: i32,
    HostPID: i32,
    PPID: i32,
    PID: i32,
    UID: i32,
    ParentProcessName: String,
    ProcessName: String,
    PolicyName: String,
    Severity: String,
    Tags: String,
    ATags: Vec<String>,
    Message: String,
    Type: String,
    Source: String,
    Operation: String,
    Resource: String,
    Data: String,
    EventData: BTreeMap<String, String>,
    Enforcer: String,
    Action: String,
    Result: String,
    Cwd: String,
    TTY: String,
    MaxAlertsPerSec: i32,
    DroppingAlertsInterval: i32,
    ExecEvent: Option<WireExec>,
    KubeArmorVersion: String,
    NodeID: String,
    ProcessHash: String,
    ParentHash: String,
    ResourceHash: String,
    HashAlgo: String,
    UserName: String,
    Oid: i32,
    ThrottledBySource: bool,
}

/// Parses one line into an event.
pub fn parse_line(line: &str) -> Result<Event, String> {
    let w: WireEvent = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if w.Type.is_empty() {
        return Err("Type is required".into());
    }
    Ok(Event {
        record: Alert {
            timestamp: w.Timestamp,
            updated_time: w.UpdatedTime,
            cluster_name: w.ClusterName,
            host_name: w.HostName,
            namespace_name: w.NamespaceName,
            owner: w.Owner.map(|o| Podowner {
                r#ref: o.r#ref,
                name: o.name,
                namespace: o.namespace,
            }),
            pod_name: w.PodName,
            labels: w.Labels,
            container_id: w.ContainerID,
            container_name: w.ContainerName,
            container_image: w.ContainerImage,
            host_ppid: w.HostPPID,
            host_pid: w.HostPID,
            ppid: w.PPID,
            pid: w.PID,
            uid: w.UID,
            parent_process_name: w.ParentProcessName,
            process_name: w.ProcessName,
            policy_name: w.PolicyName,
            severity: w.Severity,
            tags: w.Tags,
            a_tags: w.ATags,
            message: w.Message,
            r#type: w.Type,
            source: w.Source,
            operation: w.Operation,
            resource: w.Resource,
            data: w.Data,
            event_data: w.EventData,
            enforcer: w.Enforcer,
            action: w.Action,
            result: w.Result,
            cwd: w.Cwd,
            tty: w.TTY,
            max_alerts_per_sec: w.MaxAlertsPerSec,
            dropping_alerts_interval: w.DroppingAlertsInterval,
            exec_event: w.ExecEvent.map(|e| ExecEvent {
                exec_id: e.ExecID,
                executable_name: e.ExecutableName,
            }),
            kube_armor_version: w.KubeArmorVersion,
            node_id: w.NodeID,
            process_hash: w.ProcessHash,
            parent_hash: w.ParentHash,
            resource_hash: w.ResourceHash,
            hash_algo: w.HashAlgo,
            user_name: w.UserName,
        },
        oid: w.Oid,
        throttled_by_source: w.ThrottledBySource,
    })
}

/// Binds the socket (replacing a stale one; mode 0600).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Accepts connections until `shutdown`, then removes the socket.
pub async fn run(
    listener: UnixListener,
    path: PathBuf,
    pipeline: Pipeline,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let p = pipeline.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(stream, p).await {
                            tracing::debug!("test event source connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("test event source: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn serve(stream: UnixStream, pipeline: Pipeline) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() > MAX_LINE {
            write
                .write_all(format!("error: line longer than {MAX_LINE} bytes\n").as_bytes())
                .await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let reply = match parse_line(text) {
            Ok(event) => {
                if pipeline.emit(event) {
                    "ok\n".to_string()
                } else {
                    "error: pipeline queue full\n".to_string()
                }
            }
            Err(e) => format!("error: {e}\n"),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_karmor_json() {
        let e = parse_line(r#"{"Type":"MatchedHostPolicy","HostPID":12,"PPID":0,"UID":0,"PolicyName":"p","Operation":"File","Resource":"/etc/shadow","ExecEvent":{"ExecID":"0","ExecutableName":"cat"},"Owner":{"Ref":"Deployment"},"Oid":7}"#).unwrap();
        assert_eq!(e.record.r#type, "MatchedHostPolicy");
        assert_eq!(e.record.host_pid, 12);
        assert_eq!(e.record.exec_event.unwrap().executable_name, "cat");
        assert_eq!(e.record.owner.unwrap().r#ref, "Deployment");
        assert_eq!(e.oid, 7);
        assert!(parse_line(r#"{"Type":"HostLog","Bogus":1}"#)
            .unwrap_err()
            .contains("Bogus"));
        assert!(parse_line(r#"{"Operation":"File"}"#)
            .unwrap_err()
            .contains("Type"));
        assert!(parse_line("nope").is_err());
    }
}
