//! Turning a decision into a KubeArmor event record (runtime spec §1.7-1.8).

use kubearmor_containers::ContainerRecord;
use kubearmor_policy::{Decision, Matched, Report};
use kubearmor_proto::feeder::Alert;
use kubearmor_proto::values::{self, event_type, result};

use super::procinfo::ProcessInfo;

/// `Result` of an operation a plane stopped by killing the process (SIGKILL), because its
/// hook cannot make the call fail.
pub const KILLED: &str = "Killed (SIGKILL)";

/// What a plane knows about one operation.
pub struct Operation<'a> {
    /// `Process`, `File`, `Network`, ...
    pub operation: &'a str,
    pub resource: String,
    pub data: String,
    /// The plane's `Enforcer` name.
    pub enforcer: &'a str,
    /// Whether the kernel denied it (the plane's verdict is authoritative).
    pub denied: bool,
    /// The plane could not refuse the call and killed the process instead.
    pub killed: bool,
}

/// Builds the event for `decision`, or `None` when nothing is to be reported (an operation an
/// Allow rule permits).
pub fn event_for(
    decision: &Decision<'_>,
    op: Operation<'_>,
    proc_info: &ProcessInfo,
    container: Option<&ContainerRecord>,
    source: &str,
) -> Option<Alert> {
    let host = container.is_none();
    let mut a = Alert {
        operation: op.operation.to_string(),
        resource: op.resource,
        data: op.data,
        result: if op.killed {
            KILLED.to_string()
        } else if op.denied {
            result::PERMISSION_DENIED.to_string()
        } else {
            result::PASSED.to_string()
        },
        host_pid: proc_info.host_pid as i32,
        host_ppid: proc_info.host_ppid as i32,
        pid: proc_info.pid as i32,
        ppid: proc_info.ppid as i32,
        uid: proc_info.uid as i32,
        process_name: proc_info.exe.clone(),
        parent_process_name: proc_info.parent_exe.clone(),
        source: source.to_string(),
        cwd: "/".to_string(),
        ..Default::default()
    };
    if let Some(c) = container {
        fill_container(&mut a, c);
    }
    match decision.report {
        Report::Silent if !op.denied => return None,
        Report::Alert { action, matched } => {
            a.r#type = if host {
                event_type::MATCHED_HOST_POLICY
            } else {
                event_type::MATCHED_POLICY
            }
            .to_string();
            a.action = action.as_str().to_string();
            a.enforcer = op.enforcer.to_string();
            match matched {
                Matched::Policy(m) => {
                    a.policy_name = m.policy.to_string();
                    if m.severity > 0 {
                        a.severity = m.severity.to_string();
                    }
                    a.tags = m.tags.join(",");
                    a.message = m.message.clone();
                }
                Matched::DefaultPosture => a.policy_name = values::DEFAULT_POSTURE.to_string(),
            }
        }
        _ if op.denied => {
            // The kernel denied under rules that have since changed: say so without guessing.
            a.r#type = if host {
                event_type::MATCHED_HOST_POLICY
            } else {
                event_type::MATCHED_POLICY
            }
            .to_string();
            a.action = "Block".to_string();
            a.enforcer = op.enforcer.to_string();
            a.policy_name = values::DEFAULT_POSTURE.to_string();
        }
        _ => {
            a.r#type = if host {
                event_type::HOST_LOG
            } else {
                event_type::CONTAINER_LOG
            }
            .to_string();
        }
    }
    Some(a)
}

/// The container fields of an event (runtime spec §1.7).
pub fn fill_container(a: &mut Alert, c: &ContainerRecord) {
    a.container_id = c.id.clone();
    a.container_name = c.name.clone();
    a.container_image = c.image.clone();
    a.namespace_name = c.namespace.clone();
    a.pod_name = c.endpoint.clone();
    a.labels = c
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
}
