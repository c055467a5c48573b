//! The one internal event type and the pure steps applied to every event (runtime spec §1.8,
//! §1.9): fill the daemon-wide fields, derive `EventData` and `ATags`, route to alerts or logs.

use std::collections::BTreeMap;

use kubearmor_proto::feeder::{Alert, ExecEvent};
use kubearmor_proto::values::{event_type, operation};

/// One event, as a plane (or the test source) hands it to [`super::Pipeline::emit`].
///
/// `record` is a KubeArmor `Alert`, the superset of every field; events routed to `WatchLogs`
/// are converted to `Log`. Planes fill what they know (Type, Operation, Resource, process
/// fields, policy fields...). The pipeline fills `Timestamp`/`UpdatedTime` (when 0),
/// `ClusterName`, `HostName`, `NodeID` (when empty), `EventData`, `ATags`, `ExecEvent`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub record: Alert,
    /// Owner uid of the file (`oid` of the `logPath` JSON).
    pub oid: i32,
    /// The source already throttled this alert (a kernel plane with its own throttle map):
    /// the pipeline does not throttle it again.
    pub throttled_by_source: bool,
}

impl Event {
    pub fn new(record: Alert) -> Self {
        Self {
            record,
            ..Self::default()
        }
    }
}

/// Which stream an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Alert,
    Log,
}

/// `Type` decides the stream: policy matches and system events are alerts, the rest logs.
pub fn route(record: &Alert) -> Route {
    match record.r#type.as_str() {
        event_type::MATCHED_POLICY
        | event_type::MATCHED_HOST_POLICY
        | event_type::MATCHED_NETWORK_POLICY
        | event_type::SYSTEM_EVENT => Route::Alert,
        _ => Route::Log,
    }
}

/// Whether the userspace throttle applies: policy alerts not throttled at their source.
pub fn throttled_here(event: &Event) -> bool {
    !event.throttled_by_source
        && matches!(
            event.record.r#type.as_str(),
            event_type::MATCHED_POLICY | event_type::MATCHED_HOST_POLICY
        )
}

/// Daemon-wide values copied into every event.
#[derive(Debug, Clone, Default)]
pub struct Stamp {
    pub cluster: String,
    pub host: String,
    pub node_id: String,
}

/// Fills the fields the pipeline owns. `now` is `(Timestamp, UpdatedTime)` for events that
/// carry no time.
pub fn complete(record: &mut Alert, stamp: &Stamp, now: impl FnOnce() -> (i64, String)) {
    if record.timestamp == 0 {
        let (secs, text) = now();
        record.timestamp = secs;
        if record.updated_time.is_empty() {
            record.updated_time = text;
        }
    } else if record.updated_time.is_empty() {
        let nanos = 0;
        record.updated_time = kubearmor_proto::time::updated_time(record.timestamp, nanos);
    }
    if record.cluster_name.is_empty() {
        record.cluster_name.clone_from(&stamp.cluster);
    }
    if record.host_name.is_empty() {
        record.host_name.clone_from(&stamp.host);
    }
    if record.node_id.is_empty() {
        record.node_id.clone_from(&stamp.node_id);
    }
    // Severity "0" means "none given" and is not emitted.
    if record.severity == "0" {
        record.severity.clear();
    }
    if record.a_tags.is_empty() && !record.tags.is_empty() {
        record.a_tags = record.tags.split(',').map(str::to_string).collect();
    }
    if record.event_data.is_empty() {
        record.event_data = event_data(&record.data, &record.resource, &record.operation);
    }
    if record.exec_event.is_none() {
        record.exec_event = Some(ExecEvent::default());
    }
}

/// `EventData` from `Data` (and, for Network events, `Resource`): every `k=v` token, key with
/// its first letter in upper case; Resource pairs win (upstream `parseDataString`).
pub fn event_data(data: &str, resource: &str, op: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add = |text: &str| {
        for token in text.split_whitespace() {
            if let Some((k, v)) = token.split_once('=') {
                let mut chars = k.chars();
                let key: String = match chars.next() {
                    Some(c) => c.to_uppercase().chain(chars).collect(),
                    None => continue,
                };
                out.insert(key, v.to_string());
            }
        }
    };
    add(data);
    if op == operation::NETWORK {
        add(resource);
    }
    out
}

/// Rewrites the alert that crossed the limit into the throttle notice (§3, userspace variant):
/// the triggering alert itself, with Type `SystemEvent`, Operation `AlertThreshold` and the
/// limits.
pub fn into_throttle_notice(record: &mut Alert, max_per_sec: u32, throttle_secs: u32) {
    record.operation = operation::ALERT_THRESHOLD.to_string();
    record.r#type = event_type::SYSTEM_EVENT.to_string();
    record.max_alerts_per_sec = i32::try_from(max_per_sec).unwrap_or(i32::MAX);
    record.dropping_alerts_interval = i32::try_from(throttle_secs).unwrap_or(i32::MAX);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn event_data_examples_from_the_spec() {
        let d = event_data(
            "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY",
            "/etc/shadow",
            "File",
        );
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![
                ("Fd".to_string(), "-100".to_string()),
                ("Flags".to_string(), "O_RDONLY".to_string()),
                ("Syscall".to_string(), "SYS_OPENAT".to_string())
            ]
        );
        let d = event_data(
            "syscall=SYS_SOCKET",
            "domain=AF_INET type=SOCK_STREAM protocol=TCP",
            "Network",
        );
        assert_eq!(d.len(), 4);
        assert_eq!(d["Domain"], "AF_INET");
        assert_eq!(d["Protocol"], "TCP");
        let d = event_data("lsm=CAPABLE CAP_NET_RAW", "CAP_NET_RAW", "Capabilities");
        assert_eq!(d.len(), 1);
        assert_eq!(d["Lsm"], "CAPABLE");
        // Empty values are kept; the Resource of non-network events is not parsed.
        let d = event_data("syscall=SYS_UNLINKAT flags=", "a=b", "File");
        assert_eq!(d["Flags"], "");
        assert!(!d.contains_key("A"));
    }

    #[test]
    fn complete_fills_daemon_fields() {
        let mut a = Alert {
            r#type: "MatchedHostPolicy".into(),
            severity: "0".into(),
            tags: "CIS,MITRE".into(),
            data: "syscall=SYS_EXECVE".into(),
            ..Alert::default()
        };
        let stamp = Stamp {
            cluster: "default".into(),
            host: "vm-1".into(),
            node_id: "abc".into(),
        };
        complete(&mut a, &stamp, || {
            (1_753_343_112, "2025-07-24T07:45:12.418203Z".into())
        });
        assert_eq!(a.timestamp, 1_753_343_112);
        assert_eq!(a.updated_time, "2025-07-24T07:45:12.418203Z");
        assert_eq!(a.cluster_name, "default");
        assert_eq!(a.host_name, "vm-1");
        assert_eq!(a.node_id, "abc");
        assert_eq!(a.severity, "");
        assert_eq!(a.a_tags, vec!["CIS", "MITRE"]);
        assert_eq!(a.event_data["Syscall"], "SYS_EXECVE");
        assert_eq!(a.exec_event, Some(ExecEvent::default()));

        // Values the plane set are kept.
        let mut b = Alert {
            timestamp: 5,
            host_name: "other".into(),
            ..Alert::default()
        };
        complete(&mut b, &stamp, || panic!("time already set"));
        assert_eq!(b.host_name, "other");
        assert_eq!(b.updated_time, "1970-01-01T00:00:05.000000Z");
    }

    #[test]
    fn routing_by_type() {
        let of = |t: &str| {
            route(&Alert {
                r#type: t.into(),
                ..Alert::default()
            })
        };
        assert_eq!(of("MatchedPolicy"), Route::Alert);
        assert_eq!(of("MatchedHostPolicy"), Route::Alert);
        assert_eq!(of("SystemEvent"), Route::Alert);
        assert_eq!(of("ContainerLog"), Route::Log);
        assert_eq!(of("HostLog"), Route::Log);
        let sys = Event::new(Alert {
            r#type: "SystemEvent".into(),
            ..Alert::default()
        });
        assert!(!throttled_here(&sys));
        let mut pol = Event::new(Alert {
            r#type: "MatchedPolicy".into(),
            ..Alert::default()
        });
        assert!(throttled_here(&pol));
        pol.throttled_by_source = true;
        assert!(!throttled_here(&pol));
    }

    #[test]
    fn notice_keeps_the_triggering_alert() {
        let mut a = Alert {
            r#type: "MatchedPolicy".into(),
            operation: "Process".into(),
            policy_name: "p".into(),
            resource: "/usr/bin/apt".into(),
            ..Alert::default()
        };
        into_throttle_notice(&mut a, 10, 30);
        assert_eq!(a.r#type, "SystemEvent");
        assert_eq!(a.operation, "AlertThreshold");
        assert_eq!(a.max_alerts_per_sec, 10);
        assert_eq!(a.dropping_alerts_interval, 30);
        assert_eq!(a.policy_name, "p");
        assert_eq!(a.resource, "/usr/bin/apt");
    }
}
