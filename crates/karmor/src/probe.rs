//! `karmor probe` in systemd / VM mode (spec §2.4, §5.3): host facts from the daemon's probe
//! file (`/tmp/karmorProbeData.cfg`, when present) and the policy data from
//! `ProbeService.getProbeData`.
//!
//! JSON output keeps upstream's shape:
//! `{"Probe Data":{"ArmoredContainers":{name:[policy...]},"Host":{...},"HostPolicies":{node:{...}}}}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use kubearmor_proto::policy::{HostSecurityPolicies, Policy};
use kubearmor_proto::probe::probe_service_client::ProbeServiceClient;
use kubearmor_proto::probe::ProbeResponse;
use serde_json::{json, Map, Value};

use crate::cli::{ProbeArgs, ProbeFormat};
use crate::client;

/// Every known container (`containerList`) with the policies that apply to it
/// (`containerMap[name].policyList`, empty when the daemon has none for it).
pub fn armored_containers(resp: &ProbeResponse) -> BTreeMap<String, Vec<String>> {
    resp.container_list
        .iter()
        .map(|name| {
            let policies = resp
                .container_map
                .get(name)
                .map(|c| c.policy_list.clone())
                .unwrap_or_default();
            (name.clone(), policies)
        })
        .collect()
}

fn policy_data_json(list: &[Policy]) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    Value::Array(
        list.iter()
            .map(|p| json!({ "policy": engine.encode(&p.policy) }))
            .collect(),
    )
}

/// A `HostSecurityPolicies` as Go's `encoding/json` writes the generated struct (omitempty,
/// `bytes` as base64).
fn host_policies_json(h: &HostSecurityPolicies) -> Value {
    let mut m = Map::new();
    if !h.policy_list.is_empty() {
        m.insert("policyList".into(), json!(h.policy_list));
    }
    if !h.policy_data_list.is_empty() {
        m.insert(
            "policyDataList".into(),
            policy_data_json(&h.policy_data_list),
        );
    }
    Value::Object(m)
}

/// The `-f json` document (one line, no trailing newline).
pub fn render_json(host: Option<&Value>, resp: &ProbeResponse) -> String {
    let mut data = Map::new();
    data.insert("ArmoredContainers".into(), json!(armored_containers(resp)));
    if let Some(h) = host {
        data.insert("Host".into(), h.clone());
    }
    let hosts: Map<String, Value> = resp
        .host_map
        .iter()
        .map(|(k, v)| (k.clone(), host_policies_json(v)))
        .collect();
    data.insert("HostPolicies".into(), Value::Object(hosts));
    crate::logs::sorted(json!({ "Probe Data": Value::Object(data) })).to_string()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_bool)
        .map_or_else(String::new, |b| b.to_string())
}

/// `audit(File) audit(Capabilities) audit(Network)`, plus `(Device)` when the daemon sets it.
fn posture(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return String::new();
    };
    let mut parts = vec![
        format!("{}(File)", str_field(v, "file")),
        format!("{}(Capabilities)", str_field(v, "capabilities")),
        format!("{}(Network)", str_field(v, "network")),
    ];
    let device = str_field(v, "device");
    if !device.is_empty() {
        parts.push(format!("{device}(Device)"));
    }
    parts.join(" ")
}

/// A bordered table like upstream's tablewriter output: header, a line between rows, and a
/// cell left blank when it repeats the one above in the first column (merged cells).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = {
        let mut l = String::from("+");
        for w in &width {
            l.push_str(&"-".repeat(w + 2));
            l.push('+');
        }
        l.push('\n');
        l
    };
    let row = |cells: &[String]| {
        let mut l = String::from("|");
        for (i, w) in width.iter().enumerate() {
            let c = cells.get(i).map_or("", String::as_str);
            let _ = write!(l, " {c:<w$} |");
        }
        l.push('\n');
        l
    };
    let mut out = line.clone();
    out.push_str(&row(&header
        .iter()
        .map(|h| (*h).to_string())
        .collect::<Vec<_>>()));
    out.push_str(&line);
    let mut prev: Option<&str> = None;
    for r in rows {
        let mut cells = r.clone();
        if let Some(first) = r.first() {
            if prev == Some(first.as_str()) {
                cells[0] = String::new();
            }
            prev = Some(first.as_str());
        }
        out.push_str(&row(&cells));
        out.push_str(&line);
    }
    out
}

/// kubearmor-rs's `EnforcementPlanes` / `NotEnforced` probe keys: which plane enforces which
/// family, and which families nothing enforces on this kernel, with the reason.
fn enforcement_text(h: &Value) -> String {
    let mut out = String::new();
    if h.get("TestHooks").and_then(Value::as_bool) == Some(true) {
        out.push_str(
            "Test hooks : compiled in (a test build: events can be injected, USB uevents forged; never use it in production)\n",
        );
    }
    if let Some(planes) = h.get("EnforcementPlanes").and_then(Value::as_array) {
        out.push_str("Enforcement : \n");
        for p in planes {
            let families: Vec<&str> = p
                .get("Families")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\t{} ({}): {}",
                str_field(p, "Name"),
                str_field(p, "Enforcer"),
                families.join(", ")
            );
            for gap in p
                .get("Open")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let _ = writeln!(out, "\t\tnot covered: {gap}");
            }
        }
    }
    if let Some(missing) = h.get("NotEnforced").and_then(Value::as_array) {
        for m in missing {
            let _ = writeln!(
                out,
                "\tNOT enforced: {}: {}",
                str_field(m, "Family"),
                str_field(m, "Reason")
            );
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The text report.
pub fn render_text(host: Option<&Value>, resp: &ProbeResponse) -> String {
    let mut out = String::from("\nFound KubeArmor running in Systemd mode \n\n");
    if let Some(h) = host {
        out.push_str("Host : \n");
        let kv = [
            ("OS Image:", str_field(h, "OSImage").to_string()),
            ("Kernel Version:", str_field(h, "KernelVersion").to_string()),
            (
                "Kubelet Version:",
                str_field(h, "KubeletVersion").to_string(),
            ),
            (
                "Container Runtime:",
                str_field(h, "ContainerRuntime").to_string(),
            ),
            ("Active LSM:", str_field(h, "ActiveLSM").to_string()),
            ("Host Security:", bool_field(h, "HostSecurity")),
            ("Container Security:", bool_field(h, "ContainerSecurity")),
            (
                "Container Default Posture:",
                posture(h.get("ContainerDefaultPosture")),
            ),
            (
                "Host Default Posture:",
                posture(h.get("HostDefaultPosture")),
            ),
            (
                "Host Visibility:",
                str_field(h, "HostVisibility").to_string(),
            ),
        ];
        let w = kv.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in kv {
            let _ = writeln!(out, "\t{k:<w$}  {v}");
        }
        out.push('\n');
        out.push_str(&enforcement_text(h));
    }
    if !resp.host_map.is_empty() {
        out.push_str("Host Policies : \n");
        let rows: Vec<Vec<String>> = resp
            .host_map
            .iter()
            .flat_map(|(host, p)| {
                p.policy_list
                    .iter()
                    .map(move |name| vec![host.clone(), name.clone()])
            })
            .collect();
        out.push_str(&table(&["HOST NAME", "POLICY"], &rows));
        out.push('\n');
    }
    out.push_str("Armored Up Containers : \n");
    let mut rows = Vec::new();
    for (name, policies) in armored_containers(resp) {
        if policies.is_empty() {
            rows.push(vec![name.clone(), String::new()]);
        }
        for p in policies {
            rows.push(vec![name.clone(), p]);
        }
    }
    out.push_str(&table(&["CONTAINER NAME", "POLICY"], &rows));
    out
}

/// The probe file, if it exists. A file that exists but does not parse is reported on stderr
/// and skipped.
fn read_host(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Some(v),
        Ok(_) | Err(_) => {
            eprintln!(
                "karmor: {}: not a JSON object, host facts skipped",
                path.display()
            );
            None
        }
    }
}

pub async fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let (_addr, channel) = client::connect(&args.conn).await?;
    let mut probe = ProbeServiceClient::new(channel);
    let mut req = tonic::Request::new(());
    req.set_timeout(client::CALL_TIMEOUT);
    let resp = probe
        .get_probe_data(req)
        .await
        .map_err(|s| client::rpc_failed("getProbeData", &s))?
        .into_inner();
    let host = read_host(&args.probe_file);
    let out = if args.json || args.format == ProbeFormat::Json {
        format!("{}\n", render_json(host.as_ref(), &resp))
    } else {
        render_text(host.as_ref(), &resp)
    };
    print!("{out}");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kubearmor_proto::probe::ContainerData;

    fn response() -> ProbeResponse {
        ProbeResponse {
            container_list: vec!["wordpress-mysql".into(), "idle".into()],
            container_map: BTreeMap::from([(
                "wordpress-mysql".to_string(),
                ContainerData {
                    policy_list: vec!["ksp-a".into(), "ksp-b".into()],
                    policy_enabled: 1,
                    policy_data_list: vec![],
                },
            )]),
            host_map: BTreeMap::from([(
                "vm-1".to_string(),
                HostSecurityPolicies {
                    policy_list: vec!["hsp-block-ls".into()],
                    policy_data_list: vec![Policy {
                        policy: b"{}".to_vec(),
                    }],
                },
            )]),
            network_map: BTreeMap::new(),
        }
    }

    #[test]
    fn enforcement_planes_and_unenforced_families_are_shown() {
        let h: Value = serde_json::json!({
            "EnforcementPlanes": [{"Name": "cgroup-bpf", "Enforcer": "CgroupBPF", "Families": ["Network"], "Open": ["Network: AF_VSOCK sockets"]}],
            "NotEnforced": [{"Family": "Capabilities", "Reason": "needs a BPF-LSM plane"}]
        });
        let text = render_text(Some(&h), &ProbeResponse::default());
        assert!(
            text.contains(
                "\tcgroup-bpf (CgroupBPF): Network\n\t\tnot covered: Network: AF_VSOCK sockets\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\tNOT enforced: Capabilities: needs a BPF-LSM plane\n"),
            "{text}"
        );
    }

    #[test]
    fn a_test_build_is_named() {
        let h: Value = serde_json::json!({"EnforcementPlanes": [], "TestHooks": true});
        let text = render_text(Some(&h), &ProbeResponse::default());
        assert!(text.contains("Test hooks : compiled in"), "{text}");
        let h: Value = serde_json::json!({"EnforcementPlanes": [], "TestHooks": false});
        let text = render_text(Some(&h), &ProbeResponse::default());
        assert!(!text.contains("Test hooks"), "{text}");
    }

    #[test]
    fn containers_with_their_policies() {
        let m = armored_containers(&response());
        assert_eq!(m["wordpress-mysql"], ["ksp-a", "ksp-b"]);
        assert!(m["idle"].is_empty());
    }

    #[test]
    fn json_shape() {
        let host = json!({"OSImage": "Debian", "HostSecurity": true});
        assert_eq!(
            render_json(Some(&host), &response()),
            r#"{"Probe Data":{"ArmoredContainers":{"idle":[],"wordpress-mysql":["ksp-a","ksp-b"]},"Host":{"HostSecurity":true,"OSImage":"Debian"},"HostPolicies":{"vm-1":{"policyDataList":[{"policy":"e30="}],"policyList":["hsp-block-ls"]}}}}"#
        );
        let empty = ProbeResponse::default();
        assert_eq!(
            render_json(None, &empty),
            r#"{"Probe Data":{"ArmoredContainers":{},"HostPolicies":{}}}"#
        );
    }

    #[test]
    fn text_report() {
        let host = json!({
            "OSImage": "Debian GNU/Linux 12 (bookworm)",
            "KernelVersion": "6.1.0-18-amd64",
            "ActiveLSM": "BPFLSM",
            "HostSecurity": true,
            "ContainerSecurity": true,
            "ContainerDefaultPosture": {"file": "audit", "network": "audit", "capabilities": "audit"},
            "HostDefaultPosture": {"file": "block", "network": "audit", "capabilities": "audit", "device": "audit"},
            "HostVisibility": "process,file,network,capabilities"
        });
        let want = "
Found KubeArmor running in Systemd mode 

Host : 
\tOS Image:                   Debian GNU/Linux 12 (bookworm)
\tKernel Version:             6.1.0-18-amd64
\tKubelet Version:            
\tContainer Runtime:          
\tActive LSM:                 BPFLSM
\tHost Security:              true
\tContainer Security:         true
\tContainer Default Posture:  audit(File) audit(Capabilities) audit(Network)
\tHost Default Posture:       block(File) audit(Capabilities) audit(Network) audit(Device)
\tHost Visibility:            process,file,network,capabilities

Host Policies : 
+-----------+--------------+
| HOST NAME | POLICY       |
+-----------+--------------+
| vm-1      | hsp-block-ls |
+-----------+--------------+

Armored Up Containers : 
+-----------------+--------+
| CONTAINER NAME  | POLICY |
+-----------------+--------+
| idle            |        |
+-----------------+--------+
| wordpress-mysql | ksp-a  |
+-----------------+--------+
|                 | ksp-b  |
+-----------------+--------+
";
        assert_eq!(render_text(Some(&host), &response()), want);
    }

    #[test]
    fn text_without_host_file_or_policies() {
        let out = render_text(None, &ProbeResponse::default());
        assert!(!out.contains("Host :"));
        assert!(!out.contains("Host Policies"));
        assert!(out.ends_with(
            "Armored Up Containers : \n+----------------+--------+\n| CONTAINER NAME | POLICY |\n+----------------+--------+\n"
        ));
    }

    #[test]
    fn unreadable_probe_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_host(&dir.path().join("missing")).is_none());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "[1]").unwrap();
        assert!(read_host(&bad).is_none());
        let good = dir.path().join("good");
        std::fs::write(&good, r#"{"OSImage":"x"}"#).unwrap();
        assert_eq!(read_host(&good).unwrap()["OSImage"], "x");
    }
}
