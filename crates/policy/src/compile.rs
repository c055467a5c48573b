//! Compiling the policies that apply to one subject into a [`RuleSet`].
//!
//! A rule set is immutable: a policy change builds a new one off to the side and the caller
//! swaps it in whole, so a decision never sees half a change.

use crate::index::{KeyedIndex, PathIndex};
use crate::model::{
    Action, CapabilityRule, DeviceRule, DnsRule, NetKey, PathFamily, PathRule, PathTarget, Policy,
    ProtocolRule, RuleMeta, SyscallRule,
};
use crate::subject::{SelectorMode, Subject};

/// Default posture of one family: what happens to an operation no rule matched, once the
/// family is in allow-list mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Posture {
    #[default]
    Audit,
    Block,
    /// Unmatched operations pass, reported as plain logs (upstream's kernel treats any posture
    /// but `block` as audit; its feeder labels only `audit` and `block`).
    Allow,
}

impl Posture {
    /// `block` and `allow` in any case; anything else is Audit (as KubeArmor's config reload).
    pub fn parse_lenient(s: &str) -> Self {
        Self::parse(s).unwrap_or(Posture::Audit)
    }

    /// Strict form for configuration validation.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "audit" => Some(Posture::Audit),
            "block" => Some(Posture::Block),
            "allow" => Some(Posture::Allow),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Audit => "audit",
            Posture::Block => "block",
            Posture::Allow => "allow",
        }
    }
}

/// The postures that apply to one subject (the caller passes the host postures for the host).
/// Process rules use the file posture, DNS rules the network posture, as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Postures {
    pub file: Posture,
    pub network: Posture,
    pub capabilities: Posture,
    pub device: Posture,
}

/// Resolves symlinks in rule paths within the subject's filesystem view, so a rule on
/// `/bin/ls` also governs `/usr/bin/ls` when `/bin` links there. Planes report resolved paths.
pub trait PathResolver {
    /// The resolved form of `path` if it differs from `path`.
    fn resolve(&self, path: &str) -> Option<String>;
}

/// A resolver that resolves nothing.
pub struct NoResolve;

impl PathResolver for NoResolve {
    fn resolve(&self, _path: &str) -> Option<String> {
        None
    }
}

/// Enforced (Allow/Block) and audited rules of one family, indexed alike.
#[derive(Debug, Default)]
pub(crate) struct Table<I> {
    pub(crate) enforce: I,
    pub(crate) audit: I,
    /// Any Allow rule puts the whole family in allow-list mode.
    pub(crate) allow_list: bool,
}

/// Everything needed to decide for one subject.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub(crate) path_rules: Vec<PathRule>,
    /// Symlink-resolved forms of pattern rules, by rule id (`/bin/*` as `/usr/bin/*`).
    pub(crate) pattern_aliases: std::collections::BTreeMap<u32, crate::glob::Glob>,
    pub(crate) process: Table<PathIndex>,
    pub(crate) file: Table<PathIndex>,
    pub(crate) protocol_rules: Vec<ProtocolRule>,
    pub(crate) network: Table<KeyedIndex<NetKey>>,
    pub(crate) dns_rules: Vec<DnsRule>,
    pub(crate) dns: Table<KeyedIndex<Box<str>>>,
    pub(crate) capability_rules: Vec<CapabilityRule>,
    pub(crate) capabilities: Table<KeyedIndex<u8>>,
    pub(crate) syscalls: Vec<SyscallRule>,
    /// Sorted most specific first, Block before Audit before Allow on ties.
    pub(crate) devices: Vec<DeviceRule>,
    pub(crate) postures: Postures,
    pub(crate) host: bool,
}

impl RuleSet {
    /// Compiles the policies among `policies` that select `subject`.
    pub fn for_subject<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        subject: &Subject,
        mode: SelectorMode,
        postures: Postures,
        resolver: &dyn PathResolver,
    ) -> Self {
        let selected = policies.into_iter().filter(|p| p.selects(subject, mode));
        let mut set = match workload_mode(subject) {
            WorkloadMode::Enabled => Self::compile(selected, postures, resolver),
            WorkloadMode::Disabled => Self::compile([], postures, resolver),
            WorkloadMode::Audited => {
                let audited: Vec<Policy> = selected.map(audited_policy).collect();
                Self::compile(&audited, postures, resolver)
            }
        };
        set.host = subject.is_host();
        set
    }

    /// Compiles `policies` as they are (no selector check).
    pub fn compile<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        postures: Postures,
        resolver: &dyn PathResolver,
    ) -> Self {
        let mut set = RuleSet {
            postures,
            ..Default::default()
        };
        for p in policies {
            set.host |= p.kind == crate::model::PolicyKind::Host;
            for r in &p.rules.paths {
                set.add_path_rule(r.clone(), resolver);
            }
            for r in &p.rules.protocols {
                let id = next_id(&set.protocol_rules);
                let t = table(&mut set.network, r.meta.action);
                t.insert(r.key, r.source.as_deref(), id);
                set.protocol_rules.push(r.clone());
            }
            for r in &p.rules.dns {
                let id = next_id(&set.dns_rules);
                let t = table(&mut set.dns, r.meta.action);
                t.insert(r.domain.as_str().into(), r.source.as_deref(), id);
                set.dns_rules.push(r.clone());
            }
            for r in &p.rules.capabilities {
                let id = next_id(&set.capability_rules);
                let t = table(&mut set.capabilities, r.meta.action);
                t.insert(r.capability, r.source.as_deref(), id);
                set.capability_rules.push(r.clone());
            }
            set.syscalls.extend(p.rules.syscalls.iter().cloned());
            set.devices.extend(p.rules.devices.iter().cloned());
        }
        set.network.allow_list = set.protocol_rules.iter().any(|r| is_allow(&r.meta));
        set.dns.allow_list = set.dns_rules.iter().any(|r| is_allow(&r.meta));
        set.capabilities.allow_list = set.capability_rules.iter().any(|r| is_allow(&r.meta));
        set.devices.sort_by(|a, b| {
            b.specificity()
                .cmp(&a.specificity())
                .then_with(|| priority(b.meta.action).cmp(&priority(a.meta.action)))
        });
        set
    }

    fn add_path_rule(&mut self, rule: PathRule, resolver: &dyn PathResolver) {
        let id = next_id(&self.path_rules);
        let alias = match &rule.target {
            PathTarget::Path(p) => resolver.resolve(p),
            PathTarget::Dir { dir, .. } if !dir.is_empty() => resolver.resolve(dir),
            // A pattern's literal directory is resolved like a path; what its wildcards stand
            // for is not (docs/compatibility.md).
            PathTarget::Pattern(g) => {
                let dir = g.literal_dir();
                let resolved = (!dir.is_empty())
                    .then(|| resolver.resolve(&dir))
                    .flatten()
                    .and_then(|r| g.with_dir(r.trim_end_matches('/')));
                if let Some(alias) = resolved {
                    let dir = alias.literal_dir();
                    self.pattern_aliases.insert(id, alias);
                    Some(dir)
                } else {
                    None
                }
            }
            _ => None,
        };
        let source_alias = rule.source.as_deref().and_then(|s| resolver.resolve(s));
        let t = match rule.family {
            PathFamily::Process => &mut self.process,
            PathFamily::File => &mut self.file,
        };
        t.allow_list |= rule.meta.action == Action::Allow;
        let index = table(t, rule.meta.action);
        for source in
            std::iter::once(rule.source.as_deref()).chain(source_alias.as_deref().map(Some))
        {
            index.insert(&rule.target, alias.as_deref(), source, id);
        }
        self.path_rules.push(rule);
    }

    /// Number of compiled rules of every family.
    pub fn len(&self) -> usize {
        self.path_rules.len()
            + self.protocol_rules.len()
            + self.dns_rules.len()
            + self.capability_rules.len()
            + self.syscalls.len()
            + self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn postures(&self) -> Postures {
        self.postures
    }

    /// Whether any rule of `family` exists (planes use this to decide what to watch).
    pub fn has_rules(&self, family: Family) -> bool {
        match family {
            Family::Process => self
                .path_rules
                .iter()
                .any(|r| r.family == PathFamily::Process),
            Family::File => self.path_rules.iter().any(|r| r.family == PathFamily::File),
            Family::Network => !self.protocol_rules.is_empty() || !self.dns_rules.is_empty(),
            Family::Capabilities => !self.capability_rules.is_empty(),
            Family::Syscall => !self.syscalls.is_empty(),
            Family::Device => !self.devices.is_empty(),
        }
    }

    /// Whether `family` is in allow-list mode.
    pub fn allow_list(&self, family: Family) -> bool {
        match family {
            Family::Process => self.process.allow_list,
            Family::File => self.file.allow_list,
            Family::Network => self.network.allow_list || self.dns.allow_list,
            Family::Capabilities => self.capabilities.allow_list,
            Family::Syscall => false,
            Family::Device => self.devices.iter().any(|d| d.meta.action == Action::Allow),
        }
    }

    /// Protocol rules, in compile order (for planes that mirror them into the kernel).
    pub fn protocol_rules(&self) -> &[ProtocolRule] {
        &self.protocol_rules
    }

    /// Whether protocol rules are in allow-list mode (DNS rules have their own switch).
    pub fn protocol_allow_list(&self) -> bool {
        self.network.allow_list
    }

    /// The process and file rules, in compile order (for planes that mirror them elsewhere).
    pub fn path_rules(&self) -> &[PathRule] {
        &self.path_rules
    }

    /// Capability rules, in compile order (for planes that mirror them into the kernel).
    pub fn capability_rules(&self) -> &[CapabilityRule] {
        &self.capability_rules
    }
}

/// Operation families, as in alerts' `Operation` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Process,
    File,
    Network,
    Capabilities,
    Syscall,
    Device,
}

/// A workload's `kubearmor-policy` annotation (a container label here), as upstream reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkloadMode {
    Enabled,
    Disabled,
    Audited,
}

/// The annotation key that puts a workload in `enabled`, `disabled` or `audited` mode.
pub const POLICY_MODE_LABEL: &str = "kubearmor-policy";

fn workload_mode(subject: &Subject) -> WorkloadMode {
    let Subject::Container(c) = subject else {
        return WorkloadMode::Enabled;
    };
    match c
        .labels
        .get(POLICY_MODE_LABEL)
        .map(|v| v.trim().to_ascii_lowercase())
    {
        Some(v) if v == "disabled" => WorkloadMode::Disabled,
        Some(v) if v == "audited" => WorkloadMode::Audited,
        // Any other value is `enabled`, as upstream.
        _ => WorkloadMode::Enabled,
    }
}

/// The policy as an audited workload sees it: every Allow and Block rule only reports, as
/// `Audit (Allow)` / `Audit (Block)`.
fn audited_policy(p: &Policy) -> Policy {
    let mut p = p.clone();
    let audited = |m: &mut std::sync::Arc<RuleMeta>| {
        if !m.action.is_audit() {
            std::sync::Arc::make_mut(m).action = m.action.audited();
        }
    };
    p.rules.paths.iter_mut().for_each(|r| audited(&mut r.meta));
    p.rules
        .protocols
        .iter_mut()
        .for_each(|r| audited(&mut r.meta));
    p.rules.dns.iter_mut().for_each(|r| audited(&mut r.meta));
    p.rules
        .capabilities
        .iter_mut()
        .for_each(|r| audited(&mut r.meta));
    p
}

fn next_id<T>(v: &[T]) -> u32 {
    // Bounded by MAX_RULES_PER_POLICY times the number of policies; u32 is ample.
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

fn table<I>(t: &mut Table<I>, action: Action) -> &mut I {
    if action.is_audit() {
        &mut t.audit
    } else {
        &mut t.enforce
    }
}

fn is_allow(m: &RuleMeta) -> bool {
    m.action == Action::Allow
}

/// Tie-break between rules of equal specificity: Block over Audit over Allow.
pub(crate) fn priority(a: Action) -> u8 {
    match a {
        Action::Block | Action::AuditBlock => 3,
        Action::Audit => 2,
        Action::Allow | Action::AuditAllow => 1,
    }
}
