//! Who a policy applies to: selector matching against a host or a container identity.
//!
//! Semantics follow KubeArmor (`spec/kubearmor-policy.md` §1.4) with its order-dependent and
//! unanchored quirks replaced by the documented intent; docs/compatibility.md lists each one.

use std::collections::BTreeMap;

use crate::model::{
    ContainerNames, ExpressionKey, Operator, Policy, PolicyKind, Selector, WorkloadSelector,
};

/// The thing a rule set is compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Host(HostIdentity),
    Container(ContainerIdentity),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostIdentity {
    /// The configured `host` name; the non-Kubernetes node identity is
    /// `kubearmor.io/hostname=<hostname>`.
    pub hostname: String,
    /// Node labels (Kubernetes mode) or extra labels from configuration.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerIdentity {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// How selectors are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelectorMode {
    /// In Kubernetes mode a `KubeArmorPolicy` only selects workloads of its own namespace; in
    /// systemd mode the namespace is ignored, as upstream forces it to `container_namespace`.
    pub kubernetes: bool,
}

impl Subject {
    pub fn is_host(&self) -> bool {
        matches!(self, Subject::Host(_))
    }
}

impl Policy {
    /// Whether this policy applies to `subject`.
    pub fn selects(&self, subject: &Subject, mode: SelectorMode) -> bool {
        match (&self.selector, subject) {
            (Selector::Node(labels), Subject::Host(host)) => node_selects(labels, host),
            (Selector::Workload(sel), Subject::Container(c)) => {
                if self.kind == PolicyKind::Container && mode.kubernetes {
                    let ns = self.namespace.as_deref().unwrap_or("default");
                    if ns != c.namespace {
                        return false;
                    }
                }
                workload_selects(sel, c)
            }
            _ => false,
        }
    }
}

fn node_selects(labels: &BTreeMap<String, String>, host: &HostIdentity) -> bool {
    // An empty nodeSelector selects nothing (validation also rejects it).
    !labels.is_empty()
        && labels.iter().all(|(k, v)| match k.as_str() {
            // kubernetes.io/hostname is honoured outside Kubernetes too (upstream never matches it
            // there, which silently disables the USB examples of its own docs).
            "kubearmor.io/hostname" | "kubernetes.io/hostname" => v
                .split(',')
                .map(str::trim)
                .any(|h| h == "*" || h == host.hostname),
            "kubearmor.io/hostnamereg" | "kubernetes.io/hostnamereg" => {
                hostname_regex(v).is_some_and(|r| r.is_match(&host.hostname))
            }
            _ => host.labels.get(k) == Some(v),
        })
}

/// `*` stands for any run of characters; the whole host name must match.
pub(crate) fn hostname_regex(v: &str) -> Option<regex::Regex> {
    let pattern = v
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*");
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

fn workload_selects(sel: &WorkloadSelector, c: &ContainerIdentity) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .all(|(k, v)| c.labels.get(k) == Some(v));
    let name_ok = match &sel.container_names {
        None => true,
        Some(ContainerNames::List(names)) => names.contains(&c.name),
        Some(ContainerNames::Regex(r)) => r.is_match(&c.name),
    };
    // The `In` values of one key are pooled, as upstream appends them to one list: two `In`
    // expressions on namespaces select the union. Every `NotIn` must hold.
    let present = |key: ExpressionKey, v: &String| match key {
        ExpressionKey::Namespace => *v == c.namespace,
        ExpressionKey::Label => match v.split_once('=') {
            Some((k, val)) => c.labels.get(k).map(String::as_str) == Some(val),
            None => false,
        },
    };
    let in_ok = [ExpressionKey::Namespace, ExpressionKey::Label]
        .into_iter()
        .all(|key| {
            let mut ins = sel
                .expressions
                .iter()
                .filter(|e| e.key == key && e.operator == Operator::In)
                .peekable();
            ins.peek().is_none() || ins.any(|e| e.values.iter().any(|v| present(key, v)))
        });
    let not_in_ok = sel
        .expressions
        .iter()
        .filter(|e| e.operator == Operator::NotIn)
        .all(|e| !e.values.iter().any(|v| present(e.key, v)));
    let exprs_ok = in_ok && not_in_ok;
    labels_ok && name_ok && exprs_ok
}
