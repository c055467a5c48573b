//! Policy documents: parsing the files of the policy directory (KubeArmor YAML manifests,
//! multi-document files, and upstream's JSON backups) and the canonical form we persist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubearmor_policy::limits::{MAX_DOCUMENTS, MAX_INPUT_BYTES};
use kubearmor_policy::{parse_policy_json, Diagnostic, Level, Policy, PolicyError, PolicyKind};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The `apiVersion` written into persisted policies.
pub const API_VERSION: &str = "security.kubearmor.com/v1";

/// A validated policy and the document it came from.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub policy: Policy,
    /// Canonical document: `{apiVersion, kind, metadata: {name, policyName, ...}, spec}`.
    /// Persisted as is, compared to decide "identical content", and returned by the probe.
    pub document: Value,
    /// The file it lives in.
    pub file: PathBuf,
}

impl StoredPolicy {
    pub fn key(&self) -> PolicyKey {
        PolicyKey {
            kind: self.policy.kind,
            name: self.policy.name.clone(),
        }
    }

    /// `{"metadata": {...}, "spec": {...}}`, the shape of upstream's `tp.SecurityPolicy` JSON in
    /// `getProbeData`'s `policyDataList`.
    pub fn probe_json(&self) -> Vec<u8> {
        let v = json!({
            "metadata": self.document.get("metadata").cloned().unwrap_or(Value::Null),
            "spec": self.document.get("spec").cloned().unwrap_or(Value::Null),
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// Identity of a policy in the store. Kinds have separate name spaces (upstream's file-name
/// clash between a host and a container policy of the same name does not exist here).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub kind: PolicyKind,
    pub name: String,
}

impl std::fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Why a file was not loaded.
#[derive(Debug, Clone)]
pub struct FileError {
    pub messages: Vec<String>,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.messages.join("\n"))
    }
}

impl FileError {
    pub fn single(message: impl Into<String>) -> Self {
        Self {
            messages: vec![message.into()],
        }
    }
}

/// Parses one policy file. Every document must be valid, or the file is rejected whole.
/// Returns the policies and the warnings found.
pub fn parse_file(
    text: &str,
    path: &Path,
) -> Result<(Vec<StoredPolicy>, Vec<Diagnostic>), FileError> {
    let origin = path.display().to_string();
    if text.len() > MAX_INPUT_BYTES {
        return Err(FileError::single(format!(
            "{origin}: file is {} bytes; the limit is {MAX_INPUT_BYTES}",
            text.len()
        )));
    }
    let mut errors: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let mut policies: Vec<StoredPolicy> = Vec::new();
    let mut seen: BTreeSet<PolicyKey> = BTreeSet::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        if i >= MAX_DOCUMENTS {
            errors.push(format!(
                "{origin}: more than {MAX_DOCUMENTS} documents in one file"
            ));
            break;
        }
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!(
                    "{origin}: document {number}: not valid YAML or JSON: {e}"
                ));
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match parse_document(value, &origin, number, path) {
            Ok((p, w)) => {
                warnings.extend(w);
                if !seen.insert(p.key()) {
                    errors.push(format!(
                        "{origin}: document {number}: metadata.name: {} is defined twice in this file",
                        p.key()
                    ));
                    continue;
                }
                policies.push(p);
            }
            Err(e) => errors.extend(e.messages),
        }
    }
    if errors.is_empty() {
        Ok((policies, warnings))
    } else {
        Err(FileError { messages: errors })
    }
}

fn parse_document(
    value: Value,
    origin: &str,
    number: usize,
    path: &Path,
) -> Result<(StoredPolicy, Vec<Diagnostic>), FileError> {
    let (mut value, hint) = from_upstream_backup(value);
    strip_container_namespace(&mut value);
    let raw_metadata = value.get("metadata").cloned();
    let raw_spec = value.get("spec").cloned();
    let mut parsed = parse_policy_json(value, hint, origin).map_err(|e| diagnostics(&e, number))?;
    for w in &mut parsed.warnings {
        w.document = number;
    }
    let Some(policy) = parsed.policies.pop() else {
        return Err(FileError::single(format!(
            "{origin}: document {number}: no policy"
        )));
    };
    let document = canonical(
        &policy,
        raw_metadata.as_ref(),
        raw_spec.unwrap_or(Value::Null),
    );
    Ok((
        StoredPolicy {
            policy,
            document,
            file: path.to_path_buf(),
        },
        parsed.warnings,
    ))
}

/// Renders a policy crate error with the document number of this file.
pub fn diagnostics(e: &PolicyError, number: usize) -> FileError {
    FileError {
        messages: e
            .diagnostics
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| {
                let mut d = d.clone();
                d.document = number;
                d.to_string()
            })
            .collect(),
    }
}

/// The canonical document of a validated policy: upstream-compatible metadata (`policyName`,
/// and `namespaceName` for container policies, which upstream's restore uses to tell kinds
/// apart) next to the Kubernetes `name`, and the spec exactly as given.
pub fn canonical(policy: &Policy, raw_metadata: Option<&Value>, spec: Value) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(policy.name.clone()));
    metadata.insert("policyName".into(), Value::String(policy.name.clone()));
    if policy.kind == PolicyKind::Container {
        let ns = policy
            .namespace
            .clone()
            .unwrap_or_else(|| kubearmor_proto::values::CONTAINER_NAMESPACE.to_string());
        if raw_metadata.and_then(|m| m.get("namespace")).is_some() {
            metadata.insert("namespace".into(), Value::String(ns.clone()));
        }
        metadata.insert("namespaceName".into(), Value::String(ns));
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": policy.kind.as_str(),
        "metadata": Value::Object(metadata),
        "spec": spec,
    })
}

/// Upstream's policy backups (`/opt/kubearmor/policies/<name>.yaml`) are the JSON of its
/// internal policy type: `{"kind"?, "metadata": {"policyName", "namespaceName"?}, "spec": {...}}`,
/// with derived fields (`identities`, ...) and zero values (`"process": {}`, `"severity": 0`).
/// Turns such a document into a manifest; anything else is returned unchanged.
/// The kind hint follows upstream's restore: `namespaceName` means a container policy.
pub fn from_upstream_backup(mut value: Value) -> (Value, Option<PolicyKind>) {
    let is_backup = value
        .get("metadata")
        .is_some_and(|m| m.get("policyName").is_some() && m.get("name").is_none());
    if !is_backup {
        return (value, None);
    }
    let container = value
        .pointer("/metadata/namespaceName")
        .is_some_and(|v| !v.is_null());
    let hint = if container {
        PolicyKind::Container
    } else {
        PolicyKind::Host
    };
    if let Some(obj) = value.as_object_mut() {
        obj.remove("module");
        if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
            if let Some(n) = meta.get("policyName").cloned() {
                meta.insert("name".into(), n);
            }
        }
        if let Some(spec) = obj.get_mut("spec") {
            for selector in ["selector", "nodeSelector"] {
                if let Some(Value::Object(sel)) = spec.get_mut(selector) {
                    for derived in [
                        "identities",
                        "nonIdentities",
                        "matchExpIdentities",
                        "namespaceList",
                        "containers",
                    ] {
                        sel.remove(derived);
                    }
                }
            }
            prune_zero_values(spec);
        }
    }
    (value, Some(hint))
}

/// `metadata.namespaceName: container_namespace` (upstream backups, and our persisted form for
/// upstream's sake) names the non-Kubernetes pseudo-namespace, which is not a valid Kubernetes
/// name; outside Kubernetes the namespace of a container policy is ignored anyway.
fn strip_container_namespace(value: &mut Value) {
    if let Some(Value::Object(meta)) = value.get_mut("metadata") {
        if meta.get("namespaceName").and_then(Value::as_str)
            == Some(kubearmor_proto::values::CONTAINER_NAMESPACE)
        {
            meta.remove("namespaceName");
        }
    }
}

/// Removes what Go's encoder writes for unset fields: nulls, empty strings, lists and objects,
/// and zero severities.
fn prune_zero_values(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune_zero_values(child);
            }
            map.retain(|k, child| {
                !(child.is_null()
                    || child.as_str() == Some("")
                    || child.as_array().is_some_and(Vec::is_empty)
                    || child.as_object().is_some_and(Map::is_empty)
                    || (k == "severity" && child.as_i64() == Some(0)))
            });
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                prune_zero_values(child);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const HOST_YAML: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-shadow
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /etc/shadow
  action: Audit
"#;

    #[test]
    fn parses_a_manifest_with_canonical_document() {
        let (ps, _) = parse_file(HOST_YAML, Path::new("/p/a.yaml")).unwrap();
        assert_eq!(ps.len(), 1);
        let p = &ps[0];
        assert_eq!(p.policy.kind, PolicyKind::Host);
        assert_eq!(p.document["metadata"]["policyName"], "hsp-shadow");
        assert_eq!(p.document["kind"], "KubeArmorHostPolicy");
        assert_eq!(
            p.document["spec"]["file"]["matchPaths"][0]["path"],
            "/etc/shadow"
        );
        let probe: Value = serde_json::from_slice(&p.probe_json()).unwrap();
        assert_eq!(probe["metadata"]["name"], "hsp-shadow");
    }

    #[test]
    fn multi_document_files_and_duplicates() {
        let two = format!(
            "{HOST_YAML}\n---\n{}",
            HOST_YAML.replace("hsp-shadow", "hsp-other")
        );
        let (ps, _) = parse_file(&two, Path::new("/p/a.yaml")).unwrap();
        assert_eq!(ps.len(), 2);
        let dup = format!("{HOST_YAML}\n---\n{HOST_YAML}");
        let e = parse_file(&dup, Path::new("/p/a.yaml")).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let bad = format!(
            "{HOST_YAML}\n---\n{}",
            HOST_YAML
                .replace("hsp-shadow", "hsp-bad")
                .replace("matchPaths", "matchPath")
        );
        let e = parse_file(&bad, Path::new("/p/bad.yaml")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/p/bad.yaml: document 2"), "{text}");
        assert!(text.contains("matchPath"), "{text}");
        let e = parse_file("a: [", Path::new("/p/x.yaml")).unwrap_err();
        assert!(e.to_string().contains("not valid YAML"), "{e}");
    }

    #[test]
    fn loads_upstream_host_backup() {
        // What upstream's backupKubeArmorHostPolicy writes (json.Marshal of tp.HostSecurityPolicy).
        let backup = r#"{"metadata":{"policyName":"hsp-block-ls"},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"},"identities":["kubearmor.io/hostname=*"]},"process":{"matchPaths":[{"path":"/usr/bin/ls"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"severity":5,"action":"Block"}}"#;
        let (ps, _) = parse_file(backup, Path::new("/p/hsp-block-ls.yaml")).unwrap();
        assert_eq!(ps[0].policy.kind, PolicyKind::Host);
        assert_eq!(ps[0].policy.name, "hsp-block-ls");
        assert_eq!(ps[0].policy.rule_count(), 1);
    }

    #[test]
    fn loads_upstream_container_backup() {
        let backup = r#"{"kind":"KubeArmorPolicy","metadata":{"namespaceName":"container_namespace","policyName":"ksp-block"},"spec":{"selector":{"matchLabels":{"kubearmor.io/container.name":"wordpress-mysql"},"identities":["namespaceName=container_namespace","kubearmor.io/container.name=wordpress-mysql"]},"process":{"matchPaths":[{"path":"/usr/bin/apt","severity":0}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"action":"Block"}}"#;
        let (ps, _) = parse_file(backup, Path::new("/p/ksp-block.yaml")).unwrap();
        assert_eq!(ps[0].policy.kind, PolicyKind::Container);
        assert_eq!(
            ps[0].document["metadata"]["namespaceName"],
            "container_namespace"
        );
    }

    #[test]
    fn our_persisted_form_reloads_identically() {
        let (ps, _) = parse_file(HOST_YAML, Path::new("/p/a.yaml")).unwrap();
        let text = serde_json::to_string_pretty(&ps[0].document).unwrap();
        let (again, _) = parse_file(&text, Path::new("/p/hsp-hsp-shadow.yaml")).unwrap();
        assert_eq!(again[0].document, ps[0].document);
    }
}
