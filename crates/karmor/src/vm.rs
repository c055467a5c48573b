//! `karmor vm policy add|delete FILE...` (spec §2.3): each YAML/JSON document becomes
//! `{"type":"ADDED"|"DELETED","object":<document as JSON>}` and goes to
//! `PolicyService.containerPolicy` (KubeArmorPolicy, KubeArmorClusterPolicy),
//! `hostPolicy` (KubeArmorHostPolicy) or `networkPolicy` (KubeArmorNetworkPolicy).
//! The daemon's answer is printed as upstream does, `Policy <Status>`, one line per document.
//!
//! Before anything is sent, `add` validates every file with `kubearmor-policy` and refuses
//! invalid ones (unless `--no-validate`); `delete` only needs each document's kind and name.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _};
use kubearmor_policy::parse_policies;
use kubearmor_proto::policy::policy_service_client::PolicyServiceClient;
use kubearmor_proto::policy::{Policy, PolicyStatus};
use kubearmor_proto::values::policy_event;
use serde_json::Value;

use crate::cli::VmPolicyArgs;
use crate::client;
use crate::validate::write_diagnostics;

/// `add` or `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Delete,
}

impl Action {
    /// The policy event `type`.
    pub fn event_type(self) -> &'static str {
        match self {
            Action::Add => policy_event::ADDED,
            Action::Delete => policy_event::DELETED,
        }
    }
}

/// Which PolicyService RPC a kind goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Container,
    Host,
    Network,
}

impl Route {
    pub fn for_kind(kind: &str) -> Option<Self> {
        match kind {
            "KubeArmorPolicy" | "KubeArmorClusterPolicy" => Some(Route::Container),
            "KubeArmorHostPolicy" => Some(Route::Host),
            "KubeArmorNetworkPolicy" => Some(Route::Network),
            _ => None,
        }
    }
}

/// One document of a policy file, ready to send.
#[derive(Debug, Clone)]
pub struct Document {
    /// 1-based, counting empty documents, as `kubearmor-policy`'s diagnostics do.
    pub index: usize,
    pub kind: String,
    pub name: String,
    pub route: Route,
    pub object: Value,
}

/// A document that cannot be sent, in the `file: document N: field: message` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub origin: String,
    pub index: usize,
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {}: {}",
            self.origin, self.index, self.message
        )
    }
}

/// Splits a YAML (or JSON) file into documents and converts each to JSON. Empty documents
/// are skipped. Every document must be a mapping with a known `kind` and a `metadata.name`.
pub fn documents(text: &str, origin: &str) -> Result<Vec<Document>, Vec<DocError>> {
    use serde::Deserialize as _;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let err = |message: String| DocError {
            origin: origin.to_string(),
            index,
            message,
        };
        let yaml = match serde_yaml::Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(format!("not valid YAML or JSON: {e}")));
                break;
            }
        };
        if yaml.is_null() {
            continue;
        }
        let object = match serde_json::to_value(&yaml) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                errors.push(err("not a mapping".into()));
                continue;
            }
            Err(e) => {
                errors.push(err(format!("cannot be converted to JSON: {e}")));
                continue;
            }
        };
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(route) = Route::for_kind(kind) else {
            errors.push(err(if kind.is_empty() {
                "kind: is required".into()
            } else {
                format!("kind: {kind:?} cannot be sent to the PolicyService (KubeArmorPolicy, KubeArmorClusterPolicy, KubeArmorHostPolicy or KubeArmorNetworkPolicy)")
            }));
            continue;
        };
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.is_empty() {
            errors.push(err("metadata.name: is required".into()));
            continue;
        }
        docs.push(Document {
            index,
            kind: kind.to_string(),
            name: name.to_string(),
            route,
            object,
        });
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// The `policy.policy` bytes: `{"type":"ADDED","object":{...}}`.
pub fn payload(action: Action, object: &Value) -> Vec<u8> {
    format!(
        "{{\"type\":\"{}\",\"object\":{}}}",
        action.event_type(),
        object
    )
    .into_bytes()
}

/// The status name as upstream prints it (`Applied`, `Invalid`, ...).
pub fn status_name(code: i32) -> String {
    PolicyStatus::try_from(code).map_or_else(
        |_| format!("Unknown({code})"),
        |s| s.as_str_name().to_string(),
    )
}

/// Applied, Deleted and Modified are successes; everything else (Failure, NotExist, Invalid,
/// NotEnabled, unknown codes) is not.
pub fn is_success(code: i32) -> bool {
    matches!(
        PolicyStatus::try_from(code),
        Ok(PolicyStatus::Applied | PolicyStatus::Deleted | PolicyStatus::Modified)
    )
}

/// Reads and checks one file. Problems go to stderr; `None` means "do not send this file".
fn load(path: &Path, action: Action, validate: bool) -> Option<Vec<Document>> {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("karmor: cannot read {origin}: {e}");
            return None;
        }
    };
    let stderr = std::io::stderr();
    if validate && action == Action::Add {
        match parse_policies(&text, &origin) {
            Ok(parsed) => {
                let _ = write_diagnostics(&parsed.warnings, &mut stderr.lock());
            }
            Err(e) => {
                let _ = write_diagnostics(&e.diagnostics, &mut stderr.lock());
                eprintln!("karmor: {origin} is not valid, nothing sent (use --no-validate to send it anyway)");
                return None;
            }
        }
    }
    match documents(&text, &origin) {
        Ok(d) if d.is_empty() => {
            eprintln!("karmor: {origin}: no policy documents");
            None
        }
        Ok(d) => Some(d),
        Err(errors) => {
            let mut err = stderr.lock();
            for e in errors {
                let _ = writeln!(err, "{e}");
            }
            None
        }
    }
}

/// Runs `vm policy add|delete`. `Ok(false)` when a policy was refused by the daemon.
pub async fn run(action: Action, args: &VmPolicyArgs) -> anyhow::Result<bool> {
    // Check everything first: nothing is sent unless every file is sendable.
    let mut files = Vec::new();
    let mut refused = false;
    for path in &args.files {
        match load(path, action, !args.no_validate) {
            Some(docs) => files.push((path.display().to_string(), docs)),
            None => refused = true,
        }
    }
    if refused {
        bail!("no policy sent");
    }

    let (_addr, channel) = client::connect(&args.conn).await?;
    let mut svc = PolicyServiceClient::new(channel);
    let mut all_ok = true;
    for (origin, docs) in files {
        for d in docs {
            let mut req = tonic::Request::new(Policy {
                policy: payload(action, &d.object),
            });
            req.set_timeout(client::CALL_TIMEOUT);
            let resp = match d.route {
                Route::Container => svc.container_policy(req).await,
                Route::Host => svc.host_policy(req).await,
                Route::Network => svc.network_policy(req).await,
            }
            .map_err(|s| {
                client::rpc_failed(
                    &format!("sending policy {} ({origin}: document {})", d.name, d.index),
                    &s,
                )
            })?;
            let code = resp.into_inner().status;
            let status = status_name(code);
            println!("Policy {status}");
            if !is_success(code) {
                all_ok = false;
                eprintln!(
                    "karmor: {origin}: document {}: {} {}: the daemon answered {status}",
                    d.index, d.kind, d.name
                );
            }
        }
    }
    std::io::stdout().flush().context("cannot write output")?;
    Ok(all_ok)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-a
spec:
  action: Block
---
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-b
  namespace: default
spec:
  severity: 5
";

    #[test]
    fn splits_and_routes_documents() {
        let docs = documents(TWO, "f.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (docs[0].index, docs[0].route, docs[0].name.as_str()),
            (1, Route::Host, "hsp-a")
        );
        assert_eq!(
            (docs[1].index, docs[1].route, docs[1].name.as_str()),
            (3, Route::Container, "ksp-b")
        );
        assert_eq!(docs[1].object["spec"]["severity"], 5);
    }

    #[test]
    fn routes() {
        assert_eq!(Route::for_kind("KubeArmorPolicy"), Some(Route::Container));
        assert_eq!(
            Route::for_kind("KubeArmorClusterPolicy"),
            Some(Route::Container)
        );
        assert_eq!(Route::for_kind("KubeArmorHostPolicy"), Some(Route::Host));
        assert_eq!(
            Route::for_kind("KubeArmorNetworkPolicy"),
            Some(Route::Network)
        );
        assert_eq!(Route::for_kind("kubearmorpolicy"), None);
    }

    #[test]
    fn document_errors() {
        let errs = documents(
            "kind: Pod\nmetadata: {name: x}\n---\nkind: KubeArmorPolicy\n---\n- a\n",
            "f.yaml",
        )
        .unwrap_err();
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(lines[0].starts_with("f.yaml: document 1: kind: \"Pod\" cannot be sent"));
        assert_eq!(lines[1], "f.yaml: document 2: metadata.name: is required");
        assert_eq!(lines[2], "f.yaml: document 3: not a mapping");
        let errs = documents("a: [", "f.yaml").unwrap_err();
        assert!(errs[0]
            .to_string()
            .starts_with("f.yaml: document 1: not valid YAML"));
    }

    #[test]
    fn json_input_is_a_document_too() {
        let docs = documents(
            r#"{"kind":"KubeArmorHostPolicy","metadata":{"name":"h"},"spec":{}}"#,
            "p.json",
        )
        .unwrap();
        assert_eq!(docs[0].route, Route::Host);
    }

    #[test]
    fn payload_shape() {
        let obj = serde_json::json!({"kind": "KubeArmorHostPolicy", "metadata": {"name": "h"}});
        let p = String::from_utf8(payload(Action::Add, &obj)).unwrap();
        assert_eq!(
            p,
            r#"{"type":"ADDED","object":{"kind":"KubeArmorHostPolicy","metadata":{"name":"h"}}}"#
        );
        let p = String::from_utf8(payload(Action::Delete, &obj)).unwrap();
        assert!(p.starts_with(r#"{"type":"DELETED","object":"#));
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["object"], obj);
    }

    #[test]
    fn statuses() {
        assert_eq!(status_name(1), "Applied");
        assert_eq!(status_name(5), "Invalid");
        assert_eq!(status_name(6), "NotEnabled");
        assert_eq!(status_name(42), "Unknown(42)");
        assert!(is_success(1) && is_success(2) && is_success(3));
        assert!(!is_success(0) && !is_success(4) && !is_success(5) && !is_success(6));
        assert!(!is_success(42));
    }
}
