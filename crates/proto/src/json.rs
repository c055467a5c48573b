//! JSON renderings of events, written by hand so key order and omission rules are exact.
//!
//! * karmor JSON ([`karmor_alert`], [`karmor_log`], [`karmor_message`]): what
//!   `karmor logs --json` prints (spec §1.1). karmor runs Go `encoding/json` on the generated
//!   Go structs, so: PascalCase proto field names, proto *declaration* order, every field
//!   omitted when zero/empty except `PPID` and `UID`, `EventData` keys sorted, sub-messages
//!   printed when set even if empty (`"ExecEvent":{}`).
//! * daemon-native JSON ([`native`]): the `logPath` line, Go `json.Marshal` of the daemon's
//!   internal log with camelCase keys (spec §1.10).
//!
//! Strings are escaped as Go does by default (HTML-safe: `<`, `>`, `&`, U+2028 and U+2029 as
//! `\uXXXX`), so output matches upstream byte for byte.
//!
//! We build strings rather than a `serde_json::Value`: keeping insertion order would need
//! serde_json's `preserve_order`, a feature that would change key order for every crate
//! in the workspace.

use std::collections::BTreeMap;

use crate::feeder::{Alert, ExecEvent, Log, Message, Podowner};

/// One alert as `karmor logs --json` prints it (without the trailing newline).
pub fn karmor_alert(a: &Alert) -> String {
    let mut o = Obj::new();
    o.int_omitempty("Timestamp", a.timestamp);
    o.str_omitempty("UpdatedTime", &a.updated_time);
    o.str_omitempty("ClusterName", &a.cluster_name);
    o.str_omitempty("HostName", &a.host_name);
    o.str_omitempty("NamespaceName", &a.namespace_name);
    if let Some(owner) = &a.owner {
        o.raw("Owner", &pb_owner(owner));
    }
    o.str_omitempty("PodName", &a.pod_name);
    o.str_omitempty("Labels", &a.labels);
    o.str_omitempty("ContainerID", &a.container_id);
    o.str_omitempty("ContainerName", &a.container_name);
    o.str_omitempty("ContainerImage", &a.container_image);
    o.int_omitempty("HostPPID", a.host_ppid);
    o.int_omitempty("HostPID", a.host_pid);
    // upstream's Makefile strips omitempty from PPID and UID only.
    o.int("PPID", a.ppid);
    o.int_omitempty("PID", a.pid);
    o.int("UID", a.uid);
    o.str_omitempty("ParentProcessName", &a.parent_process_name);
    o.str_omitempty("ProcessName", &a.process_name);
    o.str_omitempty("PolicyName", &a.policy_name);
    o.str_omitempty("Severity", &a.severity);
    o.str_omitempty("Tags", &a.tags);
    if !a.a_tags.is_empty() {
        o.raw("ATags", &string_list(&a.a_tags));
    }
    o.str_omitempty("Message", &a.message);
    o.str_omitempty("Type", &a.r#type);
    o.str_omitempty("Source", &a.source);
    o.str_omitempty("Operation", &a.operation);
    o.str_omitempty("Resource", &a.resource);
    o.str_omitempty("Data", &a.data);
    if !a.event_data.is_empty() {
        o.raw("EventData", &string_map(&a.event_data));
    }
    o.str_omitempty("Enforcer", &a.enforcer);
    o.str_omitempty("Action", &a.action);
    o.str_omitempty("Result", &a.result);
    o.str_omitempty("Cwd", &a.cwd);
    o.str_omitempty("TTY", &a.tty);
    o.int_omitempty("MaxAlertsPerSec", a.max_alerts_per_sec);
    o.int_omitempty("DroppingAlertsInterval", a.dropping_alerts_interval);
    if let Some(e) = &a.exec_event {
        o.raw("ExecEvent", &exec_event(e));
    }
    o.str_omitempty("KubeArmorVersion", &a.kube_armor_version);
    o.str_omitempty("NodeID", &a.node_id);
    o.str_omitempty("ProcessHash", &a.process_hash);
    o.str_omitempty("ParentHash", &a.parent_hash);
    o.str_omitempty("ResourceHash", &a.resource_hash);
    o.str_omitempty("HashAlgo", &a.hash_algo);
    o.str_omitempty("UserName", &a.user_name);
    o.finish()
}

/// One log as `karmor logs --json` prints it. Unlike an Alert, ParentProcessName and
/// ProcessName come before HostPPID.
pub fn karmor_log(l: &Log) -> String {
    let mut o = Obj::new();
    o.int_omitempty("Timestamp", l.timestamp);
    o.str_omitempty("UpdatedTime", &l.updated_time);
    o.str_omitempty("ClusterName", &l.cluster_name);
    o.str_omitempty("HostName", &l.host_name);
    o.str_omitempty("NamespaceName", &l.namespace_name);
    if let Some(owner) = &l.owner {
        o.raw("Owner", &pb_owner(owner));
    }
    o.str_omitempty("PodName", &l.pod_name);
    o.str_omitempty("Labels", &l.labels);
    o.str_omitempty("ContainerID", &l.container_id);
    o.str_omitempty("ContainerName", &l.container_name);
    o.str_omitempty("ContainerImage", &l.container_image);
    o.str_omitempty("ParentProcessName", &l.parent_process_name);
    o.str_omitempty("ProcessName", &l.process_name);
    o.int_omitempty("HostPPID", l.host_ppid);
    o.int_omitempty("HostPID", l.host_pid);
    o.int("PPID", l.ppid);
    o.int_omitempty("PID", l.pid);
    o.int("UID", l.uid);
    o.str_omitempty("Type", &l.r#type);
    o.str_omitempty("Source", &l.source);
    o.str_omitempty("Operation", &l.operation);
    o.str_omitempty("Resource", &l.resource);
    o.str_omitempty("Data", &l.data);
    if !l.event_data.is_empty() {
        o.raw("EventData", &string_map(&l.event_data));
    }
    o.str_omitempty("Result", &l.result);
    o.str_omitempty("Cwd", &l.cwd);
    o.str_omitempty("TTY", &l.tty);
    if let Some(e) = &l.exec_event {
        o.raw("ExecEvent", &exec_event(e));
    }
    o.str_omitempty("NodeID", &l.node_id);
    o.str_omitempty("ProcessHash", &l.process_hash);
    o.str_omitempty("ParentHash", &l.parent_hash);
    o.str_omitempty("ResourceHash", &l.resource_hash);
    o.str_omitempty("HashAlgo", &l.hash_algo);
    o.str_omitempty("UserName", &l.user_name);
    o.finish()
}

/// One debug message as `karmor logs --json` prints it.
pub fn karmor_message(m: &Message) -> String {
    let mut o = Obj::new();
    o.int_omitempty("Timestamp", m.timestamp);
    o.str_omitempty("UpdatedTime", &m.updated_time);
    o.str_omitempty("ClusterName", &m.cluster_name);
    o.str_omitempty("HostName", &m.host_name);
    o.str_omitempty("HostIP", &m.host_ip);
    o.str_omitempty("Type", &m.r#type);
    o.str_omitempty("Level", &m.level);
    o.str_omitempty("Message", &m.message);
    o.finish()
}

/// One `logPath` line (daemon-native JSON, spec §1.10) for any event, alert or log.
///
/// The daemon's internal record is a superset of `Alert` plus `oid` (the file owner uid), so
/// it is passed as an `Alert`. Always present: `hostPPid`, `hostPid`, `ppid`, `pid`, `uid`,
/// `atags` (`null` when empty), `type`, `source`, `operation`, `resource`, `cwd`, `oid`,
/// `result`; every other key is omitted when empty. Upstream normally has no `clusterName`
/// here: leave `cluster_name` empty to match.
pub fn native(a: &Alert, oid: i32) -> String {
    let mut o = Obj::new();
    o.int_omitempty("timestamp", a.timestamp);
    o.str_omitempty("updatedTime", &a.updated_time);
    o.str_omitempty("clusterName", &a.cluster_name);
    o.str_omitempty("hostName", &a.host_name);
    o.str_omitempty("nodeID", &a.node_id);
    o.str_omitempty("username", &a.user_name);
    o.str_omitempty("namespaceName", &a.namespace_name);
    if let Some(owner) = &a.owner {
        let mut w = Obj::new();
        w.str("ref", &owner.r#ref);
        w.str("name", &owner.name);
        w.str("namespace", &owner.namespace);
        o.raw("owner", &w.finish());
    }
    o.str_omitempty("podName", &a.pod_name);
    o.str_omitempty("labels", &a.labels);
    o.str_omitempty("containerID", &a.container_id);
    o.str_omitempty("containerName", &a.container_name);
    o.str_omitempty("containerImage", &a.container_image);
    o.int("hostPPid", a.host_ppid);
    o.int("hostPid", a.host_pid);
    o.int("ppid", a.ppid);
    o.int("pid", a.pid);
    o.int("uid", a.uid);
    // The protobuf ExecEvent type is embedded, hence its PascalCase keys.
    if let Some(e) = &a.exec_event {
        o.raw("execEvent", &exec_event(e));
    }
    o.str_omitempty("parentProcessName", &a.parent_process_name);
    o.str_omitempty("processName", &a.process_name);
    o.str_omitempty("enforcer", &a.enforcer);
    o.str_omitempty("policyName", &a.policy_name);
    o.str_omitempty("kubeArmorVersion", &a.kube_armor_version);
    o.str_omitempty("severity", &a.severity);
    o.str_omitempty("tags", &a.tags);
    if a.a_tags.is_empty() {
        // A nil Go slice without omitempty.
        o.raw("atags", "null");
    } else {
        o.raw("atags", &string_list(&a.a_tags));
    }
    o.str_omitempty("message", &a.message);
    o.str("type", &a.r#type);
    o.str("source", &a.source);
    o.str("operation", &a.operation);
    o.str("resource", &a.resource);
    o.str("cwd", &a.cwd);
    o.str_omitempty("tty", &a.tty);
    o.int("oid", oid);
    o.str_omitempty("data", &a.data);
    if !a.event_data.is_empty() {
        o.raw("eventData", &string_map(&a.event_data));
    }
    o.str_omitempty("processHash", &a.process_hash);
    o.str_omitempty("parentHash", &a.parent_hash);
    o.str_omitempty("resourceHash", &a.resource_hash);
    o.str_omitempty("hashAlgo", &a.hash_algo);
    o.str_omitempty("action", &a.action);
    o.str("result", &a.result);
    o.int_omitempty("MaxAlertsPerSec", a.max_alerts_per_sec);
    o.int_omitempty("DroppingAlertsInterval", a.dropping_alerts_interval);
    o.finish()
}

fn pb_owner(p: &Podowner) -> String {
    let mut o = Obj::new();
    o.str_omitempty("Ref", &p.r#ref);
    o.str_omitempty("Name", &p.name);
    o.str_omitempty("Namespace", &p.namespace);
    o.finish()
}

fn exec_event(e: &ExecEvent) -> String {
    let mut o = Obj::new();
    o.str_omitempty("ExecID", &e.exec_id);
    o.str_omitempty("ExecutableName", &e.executable_name);
    o.finish()
}

/// Go marshals map keys sorted bytewise, which is BTreeMap's order for `String`.
fn string_map(m: &BTreeMap<String, String>) -> String {
    let mut o = Obj::new();
    for (k, v) in m {
        o.str(k, v);
    }
    o.finish()
}

fn string_list(v: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_string(&mut out, s);
    }
    out.push(']');
    out
}

/// A JSON object whose keys come out in the order they are added.
struct Obj {
    out: String,
}

impl Obj {
    fn new() -> Self {
        Obj {
            out: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        push_go_string(&mut self.out, key);
        self.out.push(':');
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key);
        push_go_string(&mut self.out, v);
    }

    fn str_omitempty(&mut self, key: &str, v: &str) {
        if !v.is_empty() {
            self.str(key, v);
        }
    }

    fn int(&mut self, key: &str, v: impl Into<i64>) {
        self.key(key);
        self.out.push_str(&v.into().to_string());
    }

    fn int_omitempty(&mut self, key: &str, v: impl Into<i64>) {
        let v = v.into();
        if v != 0 {
            self.int(key, v);
        }
    }

    /// `json` must already be valid JSON.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.push_str(json);
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// Appends `s` as a JSON string the way Go's `encoding/json` escapes it by default
/// (Go >= 1.22 writes `\b` and `\f` in short form).
fn push_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::values::{action, enforcer, event_type, operation, result};

    fn s(v: &str) -> String {
        v.to_string()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (s(k), s(v))).collect()
    }

    fn exec(id: &str, name: &str) -> Option<ExecEvent> {
        Some(ExecEvent {
            exec_id: s(id),
            executable_name: s(name),
        })
    }

    fn owner(kind: &str, name: &str, ns: &str) -> Option<Podowner> {
        Some(Podowner {
            r#ref: s(kind),
            name: s(name),
            namespace: s(ns),
        })
    }

    /// Compares exactly, and checks the output is valid JSON.
    fn check(got: &str, want: &str) {
        assert_eq!(got, want);
        serde_json::from_str::<serde_json::Value>(got).unwrap();
    }

    // Expected strings are spec §1.11's examples with the line wrapping removed.

    #[test]
    fn example_a_process_blocked_docker() {
        let a = Alert {
            timestamp: 1753343112,
            updated_time: s("2025-07-24T07:45:12.418203Z"),
            cluster_name: s("default"),
            host_name: s("vm-1"),
            namespace_name: s("container_namespace"),
            pod_name: s("wordpress-mysql"),
            container_id: s("4f1c0b2e9a7d5c3b8e6f0a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b"),
            container_name: s("wordpress-mysql"),
            container_image: s("wordpress:latest"),
            host_ppid: 412233,
            host_pid: 412301,
            ppid: 7,
            pid: 31,
            uid: 0,
            parent_process_name: s("/usr/bin/bash"),
            process_name: s("/usr/bin/apt"),
            policy_name: s("ksp-block-policy"),
            severity: s("3"),
            r#type: s(event_type::MATCHED_POLICY),
            source: s("/usr/bin/bash"),
            operation: s(operation::PROCESS),
            resource: s("/usr/bin/apt update"),
            data: s("lsm=SECURITY_BPRM_CHECK"),
            event_data: map(&[("Lsm", "SECURITY_BPRM_CHECK")]),
            enforcer: s(enforcer::BPFLSM),
            action: s(action::BLOCK),
            result: s(result::PERMISSION_DENIED),
            cwd: s("/"),
            tty: s("pts0"),
            exec_event: exec("88231904552311", "bash"),
            kube_armor_version: s("v1.6.3"),
            node_id: s("3c1e5e7fd4a44b0f9c6a0c1d5b2e7a90"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"Timestamp":1753343112,"UpdatedTime":"2025-07-24T07:45:12.418203Z","ClusterName":"default","HostName":"vm-1","NamespaceName":"container_namespace","PodName":"wordpress-mysql","ContainerID":"4f1c0b2e9a7d5c3b8e6f0a1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b","ContainerName":"wordpress-mysql","ContainerImage":"wordpress:latest","HostPPID":412233,"HostPID":412301,"PPID":7,"PID":31,"UID":0,"ParentProcessName":"/usr/bin/bash","ProcessName":"/usr/bin/apt","PolicyName":"ksp-block-policy","Severity":"3","Type":"MatchedPolicy","Source":"/usr/bin/bash","Operation":"Process","Resource":"/usr/bin/apt update","Data":"lsm=SECURITY_BPRM_CHECK","EventData":{"Lsm":"SECURITY_BPRM_CHECK"},"Enforcer":"BPFLSM","Action":"Block","Result":"Permission denied","Cwd":"/","TTY":"pts0","ExecEvent":{"ExecID":"88231904552311","ExecutableName":"bash"},"KubeArmorVersion":"v1.6.3","NodeID":"3c1e5e7fd4a44b0f9c6a0c1d5b2e7a90"}"#,
        );
    }

    #[test]
    fn example_b_file_audit_k8s() {
        let a = Alert {
            timestamp: 1753343300,
            updated_time: s("2025-07-24T07:48:20.031877Z"),
            cluster_name: s("default"),
            host_name: s("node-a"),
            namespace_name: s("wordpress-mysql"),
            owner: owner("Deployment", "mysql", "wordpress-mysql"),
            pod_name: s("mysql-76ddc6ddc4-h47hv"),
            labels: s("app=mysql"),
            container_id: s("e10d5edb62ac…"),
            container_name: s("mysql"),
            container_image: s("docker.io/library/mysql:5.6@sha256:20575ecebe…"),
            host_ppid: 3642706,
            host_pid: 3647533,
            ppid: 251,
            pid: 266,
            parent_process_name: s("/bin/bash"),
            process_name: s("/bin/cat"),
            policy_name: s("ksp-audit-file-access"),
            severity: s("7"),
            r#type: s(event_type::MATCHED_POLICY),
            source: s("/bin/cat /etc/shadow"),
            operation: s(operation::FILE),
            resource: s("/etc/shadow"),
            data: s("syscall=SYS_OPENAT fd=-100 flags=O_RDONLY"),
            // Inserted out of order on purpose: output must be sorted.
            event_data: map(&[
                ("Syscall", "SYS_OPENAT"),
                ("Fd", "-100"),
                ("Flags", "O_RDONLY"),
            ]),
            enforcer: s(enforcer::EBPF_MONITOR),
            action: s(action::AUDIT),
            result: s(result::PASSED),
            cwd: s("/"),
            exec_event: exec("0", "cat"),
            node_id: s("…"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"Timestamp":1753343300,"UpdatedTime":"2025-07-24T07:48:20.031877Z","ClusterName":"default","HostName":"node-a","NamespaceName":"wordpress-mysql","Owner":{"Ref":"Deployment","Name":"mysql","Namespace":"wordpress-mysql"},"PodName":"mysql-76ddc6ddc4-h47hv","Labels":"app=mysql","ContainerID":"e10d5edb62ac…","ContainerName":"mysql","ContainerImage":"docker.io/library/mysql:5.6@sha256:20575ecebe…","HostPPID":3642706,"HostPID":3647533,"PPID":251,"PID":266,"UID":0,"ParentProcessName":"/bin/bash","ProcessName":"/bin/cat","PolicyName":"ksp-audit-file-access","Severity":"7","Type":"MatchedPolicy","Source":"/bin/cat /etc/shadow","Operation":"File","Resource":"/etc/shadow","Data":"syscall=SYS_OPENAT fd=-100 flags=O_RDONLY","EventData":{"Fd":"-100","Flags":"O_RDONLY","Syscall":"SYS_OPENAT"},"Enforcer":"eBPF Monitor","Action":"Audit","Result":"Passed","Cwd":"/","ExecEvent":{"ExecID":"0","ExecutableName":"cat"},"NodeID":"…"}"#,
        );
    }

    #[test]
    fn example_c_raw_socket_host() {
        let a = Alert {
            timestamp: 1753343402,
            updated_time: s("2025-07-24T07:50:02.772114Z"),
            cluster_name: s("default"),
            host_name: s("vm-1"),
            host_ppid: 1582,
            host_pid: 2871,
            ppid: 1582,
            pid: 2871,
            parent_process_name: s("/usr/bin/bash"),
            process_name: s("/usr/bin/ping"),
            policy_name: s("host-net-raw-block"),
            r#type: s(event_type::MATCHED_HOST_POLICY),
            source: s("/usr/bin/ping -c1 8.8.8.8"),
            operation: s(operation::NETWORK),
            resource: s("type=SOCK_RAW"),
            data: s("lsm=SOCKET_CREATE type=SOCK_RAW"),
            event_data: map(&[("Lsm", "SOCKET_CREATE"), ("Type", "SOCK_RAW")]),
            enforcer: s(enforcer::BPFLSM),
            action: s(action::BLOCK),
            result: s(result::PERMISSION_DENIED),
            cwd: s("/"),
            tty: s("pts0"),
            exec_event: exec("0", "ping"),
            kube_armor_version: s("v1.6.3"),
            node_id: s("…"),
            user_name: s("root"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"Timestamp":1753343402,"UpdatedTime":"2025-07-24T07:50:02.772114Z","ClusterName":"default","HostName":"vm-1","HostPPID":1582,"HostPID":2871,"PPID":1582,"PID":2871,"UID":0,"ParentProcessName":"/usr/bin/bash","ProcessName":"/usr/bin/ping","PolicyName":"host-net-raw-block","Type":"MatchedHostPolicy","Source":"/usr/bin/ping -c1 8.8.8.8","Operation":"Network","Resource":"type=SOCK_RAW","Data":"lsm=SOCKET_CREATE type=SOCK_RAW","EventData":{"Lsm":"SOCKET_CREATE","Type":"SOCK_RAW"},"Enforcer":"BPFLSM","Action":"Block","Result":"Permission denied","Cwd":"/","TTY":"pts0","ExecEvent":{"ExecID":"0","ExecutableName":"ping"},"KubeArmorVersion":"v1.6.3","NodeID":"…","UserName":"root"}"#,
        );
    }

    #[test]
    fn example_d_usb_blocked_empty_exec_event() {
        let a = Alert {
            timestamp: 1753343555,
            updated_time: s("2025-07-24T07:52:35.100220Z"),
            cluster_name: s("default"),
            host_name: s("vm-1"),
            policy_name: s("hsp-block-usb-storage"),
            severity: s("5"),
            r#type: s(event_type::MATCHED_HOST_POLICY),
            operation: s(operation::DEVICE),
            resource: s("USB MASS-STORAGE"),
            data: s("Class=8 SubClass=6 Protocol=80 Level=2 SysPath=/sys/bus/usb/devices/1-1:1.0"),
            event_data: map(&[
                ("Class", "8"),
                ("SubClass", "6"),
                ("Protocol", "80"),
                ("Level", "2"),
                ("SysPath", "/sys/bus/usb/devices/1-1:1.0"),
            ]),
            enforcer: s(enforcer::USB_DEVICE_HANDLER),
            action: s(action::BLOCK),
            result: s(result::PERMISSION_DENIED),
            exec_event: Some(ExecEvent::default()),
            node_id: s("…"),
            user_name: s("root"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"Timestamp":1753343555,"UpdatedTime":"2025-07-24T07:52:35.100220Z","ClusterName":"default","HostName":"vm-1","PPID":0,"UID":0,"PolicyName":"hsp-block-usb-storage","Severity":"5","Type":"MatchedHostPolicy","Operation":"Device","Resource":"USB MASS-STORAGE","Data":"Class=8 SubClass=6 Protocol=80 Level=2 SysPath=/sys/bus/usb/devices/1-1:1.0","EventData":{"Class":"8","Level":"2","Protocol":"80","SubClass":"6","SysPath":"/sys/bus/usb/devices/1-1:1.0"},"Enforcer":"USBDeviceHandler","Action":"Block","Result":"Permission denied","ExecEvent":{},"NodeID":"…","UserName":"root"}"#,
        );
    }

    #[test]
    fn example_e_throttle_notice() {
        let a = Alert {
            timestamp: 1753343600,
            updated_time: s("2025-07-24T07:53:20.000521Z"),
            cluster_name: s("default"),
            host_name: s("node-a"),
            namespace_name: s("wordpress-mysql"),
            owner: owner("Deployment", "wordpress", "wordpress-mysql"),
            pod_name: s("wordpress-586468bf4f-8bf6x"),
            labels: s("app=wordpress"),
            container_id: s("a4e3d52aeda8…"),
            container_name: s("wordpress"),
            container_image: s("docker.io/library/wordpress:4.8-apache@sha256:6216f6…"),
            r#type: s(event_type::SYSTEM_EVENT),
            operation: s(operation::ALERT_THRESHOLD),
            enforcer: s(enforcer::BPFLSM),
            result: s(result::PASSED),
            max_alerts_per_sec: 10,
            dropping_alerts_interval: 30,
            exec_event: exec("0", "apt"),
            kube_armor_version: s("v1.6.3"),
            node_id: s("…"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"Timestamp":1753343600,"UpdatedTime":"2025-07-24T07:53:20.000521Z","ClusterName":"default","HostName":"node-a","NamespaceName":"wordpress-mysql","Owner":{"Ref":"Deployment","Name":"wordpress","Namespace":"wordpress-mysql"},"PodName":"wordpress-586468bf4f-8bf6x","Labels":"app=wordpress","ContainerID":"a4e3d52aeda8…","ContainerName":"wordpress","ContainerImage":"docker.io/library/wordpress:4.8-apache@sha256:6216f6…","PPID":0,"UID":0,"Type":"SystemEvent","Operation":"AlertThreshold","Enforcer":"BPFLSM","Result":"Passed","MaxAlertsPerSec":10,"DroppingAlertsInterval":30,"ExecEvent":{"ExecID":"0","ExecutableName":"apt"},"KubeArmorVersion":"v1.6.3","NodeID":"…"}"#,
        );
    }

    const EXAMPLE_F: &str = r#"{"Timestamp":1686491023,"UpdatedTime":"2023-06-11T13:43:43.291471Z","ClusterName":"default","HostName":"ip-172-31-24-142","NamespaceName":"default","PodName":"nginx-8f458dc5b-fl42t","Labels":"app=nginx","ContainerID":"8762eafc25a3…","ContainerName":"nginx","ContainerImage":"docker.io/library/nginx:latest@sha256:af296b…","ParentProcessName":"/bin/dash","ProcessName":"/bin/cat","HostPPID":3488357,"HostPID":3488363,"PPID":832,"PID":838,"UID":0,"Type":"ContainerLog","Source":"/bin/dash","Operation":"Process","Resource":"/bin/cat /run/secrets/kubernetes.io/serviceaccount/token","Data":"syscall=SYS_EXECVE","EventData":{"Syscall":"SYS_EXECVE"},"Result":"Passed","Cwd":"/","ExecEvent":{"ExecID":"0","ExecutableName":"cat"}}"#;

    fn example_f_alert() -> Alert {
        Alert {
            timestamp: 1686491023,
            updated_time: s("2023-06-11T13:43:43.291471Z"),
            cluster_name: s("default"),
            host_name: s("ip-172-31-24-142"),
            namespace_name: s("default"),
            pod_name: s("nginx-8f458dc5b-fl42t"),
            labels: s("app=nginx"),
            container_id: s("8762eafc25a3…"),
            container_name: s("nginx"),
            container_image: s("docker.io/library/nginx:latest@sha256:af296b…"),
            parent_process_name: s("/bin/dash"),
            process_name: s("/bin/cat"),
            host_ppid: 3488357,
            host_pid: 3488363,
            ppid: 832,
            pid: 838,
            r#type: s(event_type::CONTAINER_LOG),
            source: s("/bin/dash"),
            operation: s(operation::PROCESS),
            resource: s("/bin/cat /run/secrets/kubernetes.io/serviceaccount/token"),
            data: s("syscall=SYS_EXECVE"),
            event_data: map(&[("Syscall", "SYS_EXECVE")]),
            result: s(result::PASSED),
            cwd: s("/"),
            exec_event: exec("0", "cat"),
            ..Default::default()
        }
    }

    #[test]
    fn example_f_container_log() {
        check(&karmor_log(&Log::from(example_f_alert())), EXAMPLE_F);
    }

    #[test]
    fn log_from_alert_drops_policy_fields() {
        let mut a = example_f_alert();
        a.policy_name = s("p");
        a.enforcer = s(enforcer::EBPF_MONITOR);
        a.action = s(action::AUDIT);
        check(&karmor_log(&Log::from(a)), EXAMPLE_F);
    }

    #[test]
    fn atags_and_hashes_in_declaration_order() {
        let a = Alert {
            tags: s("NIST,CIS"),
            a_tags: vec![s("NIST"), s("CIS")],
            message: s("m"),
            hash_algo: s("sha256"),
            process_hash: s("ab"),
            ..Default::default()
        };
        check(
            &karmor_alert(&a),
            r#"{"PPID":0,"UID":0,"Tags":"NIST,CIS","ATags":["NIST","CIS"],"Message":"m","ProcessHash":"ab","HashAlgo":"sha256"}"#,
        );
    }

    #[test]
    fn message_all_fields() {
        let m = Message {
            timestamp: 1,
            updated_time: s("u"),
            cluster_name: s("default"),
            host_name: s("h"),
            host_ip: s("10.0.0.1"),
            r#type: s(event_type::MESSAGE),
            level: s("INFO"),
            message: s("started"),
        };
        check(
            &karmor_message(&m),
            r#"{"Timestamp":1,"UpdatedTime":"u","ClusterName":"default","HostName":"h","HostIP":"10.0.0.1","Type":"Message","Level":"INFO","Message":"started"}"#,
        );
        check(&karmor_message(&Message::default()), "{}");
    }

    #[test]
    fn empty_log_keeps_ppid_uid() {
        check(&karmor_log(&Log::default()), r#"{"PPID":0,"UID":0}"#);
    }

    #[test]
    fn go_string_escaping() {
        let mut out = String::new();
        push_go_string(
            &mut out,
            "a && b <c> \"q\" \\ \n\r\t\u{8}\u{c}\u{1}\u{7f} \u{2028}\u{2029} é…",
        );
        assert_eq!(
            out,
            r#""a \u0026\u0026 b \u003cc\u003e \"q\" \\ \n\r\t\b\f\u0001"#.to_string()
                + "\u{7f} \\u2028\\u2029 é…\""
        );
        // serde_json reads it back to the original.
        let back: String = serde_json::from_str(&out).unwrap();
        assert!(back.starts_with("a && b <c>"));
    }

    #[test]
    fn native_example_f() {
        let mut a = example_f_alert();
        a.cluster_name.clear(); // upstream's tp.Log does not carry it
        check(
            &native(&a, 0),
            r#"{"timestamp":1686491023,"updatedTime":"2023-06-11T13:43:43.291471Z","hostName":"ip-172-31-24-142","namespaceName":"default","podName":"nginx-8f458dc5b-fl42t","labels":"app=nginx","containerID":"8762eafc25a3…","containerName":"nginx","containerImage":"docker.io/library/nginx:latest@sha256:af296b…","hostPPid":3488357,"hostPid":3488363,"ppid":832,"pid":838,"uid":0,"execEvent":{"ExecID":"0","ExecutableName":"cat"},"parentProcessName":"/bin/dash","processName":"/bin/cat","atags":null,"type":"ContainerLog","source":"/bin/dash","operation":"Process","resource":"/bin/cat /run/secrets/kubernetes.io/serviceaccount/token","cwd":"/","oid":0,"data":"syscall=SYS_EXECVE","eventData":{"Syscall":"SYS_EXECVE"},"result":"Passed"}"#,
        );
    }

    #[test]
    fn native_full_alert() {
        let a = Alert {
            timestamp: 5,
            updated_time: s("u"),
            host_name: s("h"),
            node_id: s("n"),
            user_name: s("root"),
            owner: owner("Deployment", "", ""),
            enforcer: s(enforcer::BPFLSM),
            policy_name: s("p"),
            kube_armor_version: s("v"),
            severity: s("1"),
            tags: s("A,B"),
            a_tags: vec![s("A"), s("B")],
            message: s("msg"),
            tty: s("pts0"),
            hash_algo: s("sha256"),
            action: s(action::BLOCK),
            result: s(result::PERMISSION_DENIED),
            max_alerts_per_sec: 10,
            dropping_alerts_interval: 30,
            ..Default::default()
        };
        check(
            &native(&a, 1000),
            r#"{"timestamp":5,"updatedTime":"u","hostName":"h","nodeID":"n","username":"root","owner":{"ref":"Deployment","name":"","namespace":""},"hostPPid":0,"hostPid":0,"ppid":0,"pid":0,"uid":0,"enforcer":"BPFLSM","policyName":"p","kubeArmorVersion":"v","severity":"1","tags":"A,B","atags":["A","B"],"message":"msg","type":"","source":"","operation":"","resource":"","cwd":"","tty":"pts0","oid":1000,"hashAlgo":"sha256","action":"Block","result":"Permission denied","MaxAlertsPerSec":10,"DroppingAlertsInterval":30}"#,
        );
    }
}
