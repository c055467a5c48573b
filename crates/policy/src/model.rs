//! Validated policies: every field checked, inheritance applied, names turned into numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::glob::Glob;

/// The three policy kinds kubearmor-rs enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// `KubeArmorPolicy`: containers, selected by labels within a namespace.
    Container,
    /// `KubeArmorHostPolicy`: the host (node or VM), selected by node labels.
    Host,
    /// `KubeArmorClusterPolicy`: containers in any namespace, selected by expressions.
    Cluster,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Container => "KubeArmorPolicy",
            PolicyKind::Host => "KubeArmorHostPolicy",
            PolicyKind::Cluster => "KubeArmorClusterPolicy",
        }
    }

    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "KubeArmorPolicy" => Some(PolicyKind::Container),
            "KubeArmorHostPolicy" => Some(PolicyKind::Host),
            "KubeArmorClusterPolicy" => Some(PolicyKind::Cluster),
            _ => None,
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Audit,
    Block,
    /// An Allow rule of a workload in audited mode (`kubearmor-policy: audited`): reported,
    /// never enforced. Never parsed from a policy.
    AuditAllow,
    /// A Block rule of a workload in audited mode: reported, never enforced.
    AuditBlock,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Audit => "Audit",
            Action::Block => "Block",
            Action::AuditAllow => "Audit (Allow)",
            Action::AuditBlock => "Audit (Block)",
        }
    }

    /// Whether a rule with this action only reports.
    pub fn is_audit(self) -> bool {
        matches!(
            self,
            Action::Audit | Action::AuditAllow | Action::AuditBlock
        )
    }

    /// The action a rule of an audited workload reports with.
    pub fn audited(self) -> Self {
        match self {
            Action::Allow => Action::AuditAllow,
            Action::Block => Action::AuditBlock,
            other => other,
        }
    }

    /// Case-insensitive, as KubeArmor treats spec-level actions (and as users expect for all).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Some(Action::Allow),
            "audit" => Some(Action::Audit),
            "block" => Some(Action::Block),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert says about the rule that matched, after three-level inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMeta {
    pub policy: Arc<str>,
    pub kind: PolicyKind,
    /// 1..=10, or 0 when no level gave one (then alerts omit it).
    pub severity: u8,
    pub tags: Vec<String>,
    pub message: String,
    pub action: Action,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub name: String,
    /// Set for `KubeArmorPolicy`; `None` for the cluster-scoped kinds.
    pub namespace: Option<String>,
    pub selector: Selector,
    pub rules: Rules,
}

impl Policy {
    /// Number of rules after `fromSource`, comma and `all` expansion.
    pub fn rule_count(&self) -> usize {
        let r = &self.rules;
        r.paths.len()
            + r.protocols.len()
            + r.dns.len()
            + r.capabilities.len()
            + r.syscalls.len()
            + r.devices.len()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub paths: Vec<PathRule>,
    pub protocols: Vec<ProtocolRule>,
    pub dns: Vec<DnsRule>,
    pub capabilities: Vec<CapabilityRule>,
    pub syscalls: Vec<SyscallRule>,
    pub devices: Vec<DeviceRule>,
}

/// Which workloads a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `KubeArmorPolicy` / `KubeArmorClusterPolicy` selector.
    Workload(WorkloadSelector),
    /// `KubeArmorHostPolicy` `nodeSelector.matchLabels`.
    Node(BTreeMap<String, String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadSelector {
    /// Labels that must all be present (without `kubearmor.io/container.name`).
    pub match_labels: BTreeMap<String, String>,
    /// From `kubearmor.io/container.name`; `None` means every container.
    pub container_names: Option<ContainerNames>,
    pub expressions: Vec<Expression>,
}

#[derive(Debug, Clone)]
pub enum ContainerNames {
    /// `[a, b]`: exact names.
    List(Vec<String>),
    /// A plain value: an anchored regular expression (a plain name matches only itself).
    Regex(regex::Regex),
}

impl PartialEq for ContainerNames {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ContainerNames::List(a), ContainerNames::List(b)) => a == b,
            (ContainerNames::Regex(a), ContainerNames::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}
impl Eq for ContainerNames {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub key: ExpressionKey,
    pub operator: Operator,
    /// `k=v` label strings for `label`, namespace names for `namespace`.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionKey {
    Label,
    Namespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
}

/// Process or file: the two families that match paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathFamily {
    Process,
    File,
}

/// What a process or file rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathTarget {
    /// An absolute path, without a trailing `/`.
    Path(String),
    /// An executable's file name, anywhere in the filesystem (process rules only).
    ExecName(String),
    /// A directory, stored without its trailing `/` (`/` itself is the empty string).
    Dir {
        dir: String,
        recursive: bool,
    },
    Pattern(Glob),
}

#[derive(Debug, Clone)]
pub struct PathRule {
    pub family: PathFamily,
    pub target: PathTarget,
    pub read_only: bool,
    pub owner_only: bool,
    /// `pts: false`: the rule only fires for a process that has a controlling terminal.
    pub tty_only: bool,
    /// `allowedArgs` (process `matchPaths`).
    pub allowed_args: Option<Vec<String>>,
    /// Executable path the rule is scoped to; `None` for every source.
    pub source: Option<String>,
    pub meta: Arc<RuleMeta>,
}

/// A network rule's protocol word, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetKey {
    /// A socket type (`SOCK_STREAM` = 1 ...): `stream`, `dgram`, `raw`, `rdm`, `seqpacket`,
    /// `dccp`, `packet`; `all` expands into all of them.
    Type(u8),
    /// An IP protocol: `tcp` 6, `udp` 17, `icmp` 1, `icmpv6` 58, `sctp` 132.
    Protocol(u8),
}

#[derive(Debug, Clone)]
pub struct ProtocolRule {
    pub key: NetKey,
    pub tty_only: bool,
    pub source: Option<String>,
    pub meta: Arc<RuleMeta>,
}

#[derive(Debug, Clone)]
pub struct DnsRule {
    /// Lower case, without leading or trailing dots.
    pub domain: String,
    pub source: Option<String>,
    pub meta: Arc<RuleMeta>,
}

#[derive(Debug, Clone)]
pub struct CapabilityRule {
    pub capability: u8,
    pub source: Option<String>,
    pub meta: Arc<RuleMeta>,
}

/// Audit-only syscall rule (`matchSyscalls` / `syscalls.matchPaths`).
#[derive(Debug, Clone)]
pub struct SyscallRule {
    pub syscalls: Vec<String>,
    pub path: Option<SyscallPath>,
    pub sources: Vec<SyscallSource>,
    pub meta: Arc<RuleMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallPath {
    File(String),
    /// Without trailing `/`.
    Dir {
        dir: String,
        recursive: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallSource {
    Path(String),
    Dir { dir: String, recursive: bool },
}

/// A USB device rule (host policies).
#[derive(Debug, Clone)]
pub struct DeviceRule {
    /// `None` for `ALL`.
    pub class: Option<u8>,
    pub sub_class: Option<u8>,
    pub protocol: Option<u8>,
    pub level: Option<u8>,
    pub meta: Arc<RuleMeta>,
}

impl DeviceRule {
    /// KubeArmor's specificity: 100 for the class (also `ALL`), 10 for the subclass, 1 for the
    /// protocol, 100 for the level.
    pub fn specificity(&self) -> u32 {
        100 + if self.sub_class.is_some() { 10 } else { 0 }
            + if self.protocol.is_some() { 1 } else { 0 }
            + if self.level.is_some() { 100 } else { 0 }
    }
}
