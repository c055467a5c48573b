//! From raw documents to validated [`Policy`] values, with errors that name where and why.
//!
//! Every check reports against a field path (`spec.file.matchDirectories[0].dir`), and a
//! document with any error yields no policy at all: a half-understood policy is never applied.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::glob::Glob;
use crate::limits;
use crate::model::*;
use crate::names;
use crate::raw::*;

/// Label key that selects containers by name rather than by label.
pub const CONTAINER_NAME_LABEL: &str = "kubearmor.io/container.name";

/// The metadata levels a rule inherits from, innermost last.
#[derive(Clone)]
struct Inherited {
    severity: u8,
    tags: Vec<String>,
    message: String,
    action: Option<Action>,
}

pub(crate) fn validate_document(
    doc: RawDocument,
    kind_hint: Option<PolicyKind>,
    d: &mut Diagnostics,
) -> Option<Policy> {
    let errors_before = d.error_count();

    if let Some(v) = &doc.api_version {
        if v != "security.kubearmor.com/v1" {
            d.error(
                "apiVersion",
                format!("must be security.kubearmor.com/v1, not {v:?}"),
            );
        }
    }
    let kind = match doc.kind.as_deref() {
        Some(k) => match PolicyKind::from_kind(k) {
            Some(kind) => kind,
            None if k == "KubeArmorNetworkPolicy" => {
                d.error(
                    "kind",
                    "KubeArmorNetworkPolicy is not supported by kubearmor-rs (see docs/compatibility.md)",
                );
                return None;
            }
            None => {
                d.error(
                    "kind",
                    format!("must be KubeArmorPolicy, KubeArmorHostPolicy or KubeArmorClusterPolicy, not {k:?}"),
                );
                return None;
            }
        },
        None => match kind_hint {
            Some(k) => k,
            None => {
                d.error("kind", "is required");
                return None;
            }
        },
    };

    // `namespaceName` (upstream's JSON backups, e.g. `container_namespace`) is not a
    // Kubernetes name and is only used outside Kubernetes, where namespaces are ignored.
    let (name, namespace, checked_ns) = match &doc.metadata {
        Some(m) => (
            m.name.clone(),
            m.namespace.clone().or_else(|| m.namespace_name.clone()),
            m.namespace.clone(),
        ),
        None => (None, None, None),
    };
    let name = match name {
        Some(n) => {
            check_name(&n, "metadata.name", d);
            n
        }
        None => {
            d.error("metadata.name", "is required");
            String::new()
        }
    };
    if let Some(ns) = &checked_ns {
        if kind == PolicyKind::Container {
            check_name(ns, "metadata.namespace", d);
        }
    }
    let namespace = if kind == PolicyKind::Container {
        namespace
    } else {
        None
    };

    let Some(spec) = doc.spec else {
        d.error("spec", "is required");
        return None;
    };

    let selector = validate_selector(kind, &spec, d);

    if let Some(a) = &spec.apparmor {
        if !a.trim().is_empty() {
            d.error(
                "spec.apparmor",
                "native AppArmor rules are not supported by kubearmor-rs (see docs/compatibility.md)",
            );
        }
    }
    if let Some(p) = &spec.presets {
        if kind == PolicyKind::Host {
            d.error("spec.presets", "host policies have no presets");
        } else if !p.is_empty() {
            d.error(
                "spec.presets",
                "presets are not supported by kubearmor-rs yet (see docs/compatibility.md)",
            );
        }
    }

    let top = Inherited {
        severity: check_severity(spec.severity, "spec.severity", d),
        tags: check_tags(spec.tags.as_ref(), "spec.tags", d),
        message: check_message(spec.message.as_ref(), "spec.message", d),
        action: check_action(spec.action.as_deref(), "spec.action", d),
    };
    let mut b = Builder {
        policy: Arc::from(name.as_str()),
        kind,
        rules: Rules::default(),
        d,
    };

    if let Some(p) = &spec.process {
        b.process(p, &top);
    }
    if let Some(f) = &spec.file {
        b.file(f, &top);
    }
    if let Some(n) = &spec.network {
        b.network(n, &top);
    }
    if let Some(c) = &spec.capabilities {
        b.capabilities(c, &top);
    }
    if let Some(s) = &spec.syscalls {
        b.syscalls(s, &top);
    }
    if let Some(dev) = &spec.device {
        if kind == PolicyKind::Host {
            b.devices(dev, &top);
        } else {
            b.d.error(
                "spec.device",
                "device rules are only allowed in KubeArmorHostPolicy",
            );
        }
    }
    let rules = b.rules;

    let policy = Policy {
        kind,
        name,
        namespace,
        selector: selector?,
        rules,
    };
    if policy.rule_count() > limits::MAX_RULES_PER_POLICY {
        d.error(
            "spec",
            format!(
                "has {} rules after expansion; the limit is {}",
                policy.rule_count(),
                limits::MAX_RULES_PER_POLICY
            ),
        );
    }
    if policy.rule_count() == 0 && d.error_count() == errors_before {
        d.warn("spec", "has no rules; the policy does nothing");
    }
    (d.error_count() == errors_before).then_some(policy)
}

/// Kubernetes object names (DNS-1123 subdomains). The policy store uses the name as a file
/// name, so this also keeps `../` and `/` out of it.
fn check_name(n: &str, path: &str, d: &mut Diagnostics) {
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.as_bytes()[n.len() - 1].is_ascii_alphanumeric();
    if !ok {
        d.error(
            path,
            format!("{n:?} is not a valid name (lower-case letters, digits, '-' and '.', at most 253, starting and ending with a letter or digit)"),
        );
    }
}

fn validate_selector(kind: PolicyKind, spec: &RawSpec, d: &mut Diagnostics) -> Option<Selector> {
    match kind {
        PolicyKind::Host => {
            if spec.selector.is_some() {
                d.error(
                    "spec.selector",
                    "host policies select nodes with spec.nodeSelector",
                );
            }
            let Some(ns) = &spec.node_selector else {
                d.error("spec.nodeSelector", "is required for KubeArmorHostPolicy");
                return None;
            };
            let labels = ns.match_labels.clone().unwrap_or_default();
            if labels.is_empty() {
                d.error(
                    "spec.nodeSelector.matchLabels",
                    "must name at least one label (use kubearmor.io/hostname: \"*\" for every host)",
                );
            }
            check_labels(&labels, "spec.nodeSelector.matchLabels", d);
            for (k, v) in &labels {
                if k.ends_with("/hostnamereg") && crate::subject::hostname_regex(v).is_none() {
                    d.error(
                        format!("spec.nodeSelector.matchLabels.{k}"),
                        format!("{v:?} is not a valid host name pattern"),
                    );
                }
            }
            Some(Selector::Node(labels))
        }
        PolicyKind::Container | PolicyKind::Cluster => {
            if spec.node_selector.is_some() {
                d.error(
                    "spec.nodeSelector",
                    "only KubeArmorHostPolicy has a nodeSelector",
                );
            }
            let raw = spec.selector.as_ref();
            let mut sel = WorkloadSelector::default();
            let mut labels = raw.and_then(|s| s.match_labels.clone()).unwrap_or_default();
            if kind == PolicyKind::Cluster && !labels.is_empty() {
                d.error(
                    "spec.selector.matchLabels",
                    "KubeArmorClusterPolicy selects with matchExpressions only",
                );
            }
            check_labels(&labels, "spec.selector.matchLabels", d);
            if let Some(v) = labels.remove(CONTAINER_NAME_LABEL) {
                let path = format!("spec.selector.matchLabels.{CONTAINER_NAME_LABEL}");
                sel.container_names = container_names(&v, &path, d);
            }
            sel.match_labels = labels;
            for (i, e) in raw
                .and_then(|s| s.match_expressions.as_ref())
                .into_iter()
                .flatten()
                .enumerate()
            {
                let path = format!("spec.selector.matchExpressions[{i}]");
                if let Some(expr) = expression(kind, e, &path, d) {
                    sel.expressions.push(expr);
                }
            }
            Some(Selector::Workload(sel))
        }
    }
}

fn check_labels(labels: &BTreeMap<String, String>, path: &str, d: &mut Diagnostics) {
    if labels.len() > limits::MAX_LABELS {
        d.error(path, format!("has more than {} labels", limits::MAX_LABELS));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > limits::MAX_STRING || v.len() > limits::MAX_STRING {
            d.error(
                format!("{path}.{k}"),
                "label key must be non-empty and keys and values at most 4096 bytes",
            );
        }
    }
}

/// `kubearmor.io/container.name`: `[a, b]` lists exact names (`""` and `[]` mean every
/// container); any other value is an anchored regular expression.
fn container_names(v: &str, path: &str, d: &mut Diagnostics) -> Option<ContainerNames> {
    let v = v.trim();
    if v.len() < 3 && (v.is_empty() || v == "[]") {
        return None;
    }
    if v.starts_with('[') && v.ends_with(']') {
        let names: Vec<String> = v[1..v.len() - 1]
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        return (!names.is_empty()).then_some(ContainerNames::List(names));
    }
    match regex::Regex::new(&format!("^(?:{v})$")) {
        Ok(r) => Some(ContainerNames::Regex(r)),
        Err(e) => {
            d.error(
                path,
                format!("{v:?} is neither a [list] nor a valid regular expression: {e}"),
            );
            None
        }
    }
}

fn expression(
    kind: PolicyKind,
    e: &RawExpression,
    path: &str,
    d: &mut Diagnostics,
) -> Option<Expression> {
    let key = match e.key.as_deref() {
        Some("label") => ExpressionKey::Label,
        Some("namespace") if kind == PolicyKind::Cluster => ExpressionKey::Namespace,
        Some(k) => {
            let allowed = if kind == PolicyKind::Cluster {
                "'namespace' or 'label'"
            } else {
                "'label'"
            };
            d.error(
                format!("{path}.key"),
                format!("must be {allowed}, not {k:?}"),
            );
            return None;
        }
        None => {
            d.error(format!("{path}.key"), "is required");
            return None;
        }
    };
    let operator = match e.operator.as_deref() {
        Some("In") => Operator::In,
        Some("NotIn") => Operator::NotIn,
        Some(o) => {
            d.error(
                format!("{path}.operator"),
                format!("must be In or NotIn, not {o:?}"),
            );
            return None;
        }
        None => {
            d.error(format!("{path}.operator"), "is required");
            return None;
        }
    };
    let values = e.values.clone().unwrap_or_default();
    if values.is_empty() {
        d.error(format!("{path}.values"), "must list at least one value");
        return None;
    }
    if key == ExpressionKey::Label {
        for (i, v) in values.iter().enumerate() {
            if !v.contains('=') {
                d.error(
                    format!("{path}.values[{i}]"),
                    format!("{v:?} must be a key=value label"),
                );
            }
        }
    }
    Some(Expression {
        key,
        operator,
        values,
    })
}

fn check_severity(s: Option<i64>, path: &str, d: &mut Diagnostics) -> u8 {
    match s {
        None => 0,
        Some(v) if (1..=10).contains(&v) => v as u8,
        Some(v) => {
            d.error(path, format!("must be between 1 and 10, not {v}"));
            0
        }
    }
}

fn check_tags(t: Option<&Vec<String>>, path: &str, d: &mut Diagnostics) -> Vec<String> {
    let tags = t.cloned().unwrap_or_default();
    if tags.len() > limits::MAX_TAGS {
        d.error(path, format!("has more than {} tags", limits::MAX_TAGS));
    }
    if tags.iter().any(|t| t.len() > limits::MAX_STRING) {
        d.error(path, "a tag is longer than 4096 bytes");
    }
    tags
}

fn check_message(m: Option<&String>, path: &str, d: &mut Diagnostics) -> String {
    let m = m.cloned().unwrap_or_default();
    if m.len() > limits::MAX_STRING {
        d.error(path, "is longer than 4096 bytes");
    }
    m
}

fn check_action(a: Option<&str>, path: &str, d: &mut Diagnostics) -> Option<Action> {
    let a = a?;
    match Action::parse(a.trim()) {
        Some(action) => {
            if a != action.as_str() {
                d.warn(
                    path,
                    format!("{a:?} read as {action}; KubeArmor only accepts this spelling at spec level"),
                );
            }
            Some(action)
        }
        None => {
            d.error(path, format!("must be Allow, Audit or Block, not {a:?}"));
            None
        }
    }
}

/// Absolute path, no trailing `/`, no `.`/`..` components; repeated slashes collapse.
fn check_path(p: &str, path: &str, d: &mut Diagnostics) -> Option<String> {
    if !p.starts_with('/') {
        d.error(
            path,
            format!("{p:?} must be an absolute path (start with '/')"),
        );
        return None;
    }
    if p.len() > 1 && p.ends_with('/') {
        d.error(
            path,
            format!("{p:?} must not end with '/' (directories go in matchDirectories)"),
        );
        return None;
    }
    normalise(p, path, d)
}

/// Absolute directory ending in `/`; returned without the trailing `/` (`/` becomes ``).
fn check_dir(p: &str, path: &str, d: &mut Diagnostics) -> Option<String> {
    if !p.starts_with('/') {
        d.error(
            path,
            format!("{p:?} must be an absolute path (start with '/')"),
        );
        return None;
    }
    if !p.ends_with('/') {
        d.error(path, "must end with '/'");
        return None;
    }
    let n = normalise(p, path, d)?;
    Some(if n == "/" { String::new() } else { n })
}

fn normalise(p: &str, path: &str, d: &mut Diagnostics) -> Option<String> {
    if p.len() > limits::MAX_STRING || p.contains('\0') {
        d.error(path, "must be at most 4096 bytes and contain no NUL");
        return None;
    }
    let mut out = String::with_capacity(p.len());
    for part in p.split('/').filter(|s| !s.is_empty()) {
        if part == "." || part == ".." {
            d.error(
                path,
                format!("{p:?} must not contain '.' or '..' components"),
            );
            return None;
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Expands `fromSource` into one optional source per rule copy.
fn sources(s: Option<&Vec<RawSource>>, path: &str, d: &mut Diagnostics) -> Vec<Option<String>> {
    let Some(list) = s else {
        return vec![None];
    };
    if list.len() > limits::MAX_FROM_SOURCE {
        d.error(
            path,
            format!("has more than {} entries", limits::MAX_FROM_SOURCE),
        );
        return vec![];
    }
    if list.is_empty() {
        return vec![None];
    }
    let mut out = Vec::new();
    for (i, src) in list.iter().enumerate() {
        let p = format!("{path}[{i}].path");
        match &src.path {
            Some(sp) => {
                if let Some(n) = check_path(sp, &p, d) {
                    if !out.contains(&Some(n.clone())) {
                        out.push(Some(n));
                    }
                }
            }
            None => d.error(p, "is required"),
        }
    }
    out
}

/// Splits comma lists in every element (KubeArmor only looks at the first element).
fn comma_expand(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>())
        .filter(|s| !s.is_empty())
}

struct Builder<'d> {
    policy: Arc<str>,
    kind: PolicyKind,
    rules: Rules,
    d: &'d mut Diagnostics,
}

impl Builder<'_> {
    /// Reads one level of metadata and layers it over `outer`.
    fn level(&mut self, m: &RawMeta, outer: &Inherited, path: &str) -> Inherited {
        let severity = check_severity(m.severity, &format!("{path}.severity"), self.d);
        let tags = check_tags(m.tags.as_ref(), &format!("{path}.tags"), self.d);
        let message = check_message(m.message.as_ref(), &format!("{path}.message"), self.d);
        let action = check_action(m.action.as_deref(), &format!("{path}.action"), self.d);
        Inherited {
            severity: if severity != 0 {
                severity
            } else {
                outer.severity
            },
            tags: if tags.is_empty() {
                outer.tags.clone()
            } else {
                tags
            },
            message: if message.is_empty() {
                outer.message.clone()
            } else {
                message
            },
            action: action.or(outer.action),
        }
    }

    fn meta(&mut self, m: &RawMeta, outer: &Inherited, path: &str) -> Arc<RuleMeta> {
        let l = self.level(m, outer, path);
        Arc::new(RuleMeta {
            policy: self.policy.clone(),
            kind: self.kind,
            severity: l.severity,
            tags: l.tags,
            message: l.message,
            action: l.action.unwrap_or(Action::Block),
        })
    }

    fn list_len(&mut self, n: usize, path: &str) -> bool {
        if n > limits::MAX_RULES_PER_POLICY {
            self.d.error(
                path,
                format!("has more than {} entries", limits::MAX_RULES_PER_POLICY),
            );
            false
        } else {
            true
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_path_rules(
        &mut self,
        family: PathFamily,
        target: PathTarget,
        flags: (bool, bool, Option<bool>),
        allowed_args: Option<Vec<String>>,
        from: Option<&Vec<RawSource>>,
        meta: Arc<RuleMeta>,
        path: &str,
    ) {
        let (read_only, owner_only, pts) = flags;
        for source in sources(from, &format!("{path}.fromSource"), self.d) {
            self.rules.paths.push(PathRule {
                family,
                target: target.clone(),
                read_only,
                owner_only,
                tty_only: pts == Some(false),
                allowed_args: allowed_args.clone(),
                source,
                meta: meta.clone(),
            });
        }
    }

    fn process(&mut self, p: &RawProcess, top: &Inherited) {
        let fam = self.level(&p.meta(), top, "spec.process");
        let paths = p.match_paths.as_deref().unwrap_or_default();
        if !self.list_len(paths.len(), "spec.process.matchPaths") {
            return;
        }
        for (i, r) in paths.iter().enumerate() {
            let path = format!("spec.process.matchPaths[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let target = match (&r.execname, &r.path) {
                (Some(e), p) => {
                    if p.is_some() {
                        self.d
                            .warn(&path, "both path and execname given; execname is used");
                    }
                    if e.is_empty() || e.contains('/') || e.len() > 255 {
                        self.d.error(
                            format!("{path}.execname"),
                            format!("{e:?} must be a file name without '/'"),
                        );
                        continue;
                    }
                    PathTarget::ExecName(e.clone())
                }
                (None, Some(p)) => match check_path(p, &format!("{path}.path"), self.d) {
                    Some(p) => PathTarget::Path(p),
                    None => continue,
                },
                (None, None) => {
                    self.d.error(&path, "needs a path or an execname");
                    continue;
                }
            };
            let args = match &r.allowed_args {
                Some(a) if a.len() > limits::MAX_ALLOWED_ARGS => {
                    self.d.error(
                        format!("{path}.allowedArgs"),
                        format!("has more than {} entries", limits::MAX_ALLOWED_ARGS),
                    );
                    continue;
                }
                Some(a) if !a.is_empty() => Some(a.clone()),
                _ => None,
            };
            let flags = (false, r.owner_only.unwrap_or(false), r.pts);
            self.push_path_rules(
                PathFamily::Process,
                target,
                flags,
                args,
                r.from_source.as_ref(),
                meta,
                &path,
            );
        }
        self.directories(
            PathFamily::Process,
            p.match_directories.as_deref(),
            &fam,
            "spec.process",
        );
        self.patterns(
            PathFamily::Process,
            p.match_patterns.as_deref(),
            &fam,
            "spec.process",
        );
    }

    fn file(&mut self, f: &RawFile, top: &Inherited) {
        let fam = self.level(&f.meta(), top, "spec.file");
        let paths = f.match_paths.as_deref().unwrap_or_default();
        if !self.list_len(paths.len(), "spec.file.matchPaths") {
            return;
        }
        for (i, r) in paths.iter().enumerate() {
            let path = format!("spec.file.matchPaths[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let Some(p) = &r.path else {
                self.d.error(format!("{path}.path"), "is required");
                continue;
            };
            let Some(p) = check_path(p, &format!("{path}.path"), self.d) else {
                continue;
            };
            let flags = (
                r.read_only.unwrap_or(false),
                r.owner_only.unwrap_or(false),
                r.pts,
            );
            self.push_path_rules(
                PathFamily::File,
                PathTarget::Path(p),
                flags,
                None,
                r.from_source.as_ref(),
                meta,
                &path,
            );
        }
        self.directories(
            PathFamily::File,
            f.match_directories.as_deref(),
            &fam,
            "spec.file",
        );
        self.patterns(
            PathFamily::File,
            f.match_patterns.as_deref(),
            &fam,
            "spec.file",
        );
    }

    fn directories(
        &mut self,
        family: PathFamily,
        dirs: Option<&[RawDirectory]>,
        fam: &Inherited,
        base: &str,
    ) {
        let dirs = dirs.unwrap_or_default();
        if !self.list_len(dirs.len(), &format!("{base}.matchDirectories")) {
            return;
        }
        for (i, r) in dirs.iter().enumerate() {
            let path = format!("{base}.matchDirectories[{i}]");
            let meta = self.meta(&r.meta(), fam, &path);
            if family == PathFamily::Process && r.read_only.is_some() {
                self.d
                    .error(format!("{path}.readOnly"), "applies to file rules only");
                continue;
            }
            let Some(dir) = &r.dir else {
                self.d.error(format!("{path}.dir"), "is required");
                continue;
            };
            let Some(dir) = check_dir(dir, &format!("{path}.dir"), self.d) else {
                continue;
            };
            let target = PathTarget::Dir {
                dir,
                recursive: r.recursive.unwrap_or(false),
            };
            let flags = (
                r.read_only.unwrap_or(false),
                r.owner_only.unwrap_or(false),
                r.pts,
            );
            self.push_path_rules(
                family,
                target,
                flags,
                None,
                r.from_source.as_ref(),
                meta,
                &path,
            );
        }
    }

    fn patterns(
        &mut self,
        family: PathFamily,
        pats: Option<&[RawPattern]>,
        fam: &Inherited,
        base: &str,
    ) {
        let pats = pats.unwrap_or_default();
        if !self.list_len(pats.len(), &format!("{base}.matchPatterns")) {
            return;
        }
        for (i, r) in pats.iter().enumerate() {
            let path = format!("{base}.matchPatterns[{i}]");
            let meta = self.meta(&r.meta(), fam, &path);
            if family == PathFamily::Process && r.read_only.is_some() {
                self.d
                    .error(format!("{path}.readOnly"), "applies to file rules only");
                continue;
            }
            let Some(raw) = &r.pattern else {
                self.d.error(format!("{path}.pattern"), "is required");
                continue;
            };
            let p = raw.trim();
            if p != raw {
                self.d
                    .warn(format!("{path}.pattern"), "surrounding whitespace removed");
            }
            if !p.starts_with('/') || p.len() > limits::MAX_STRING {
                self.d.error(
                    format!("{path}.pattern"),
                    format!("{p:?} must start with '/' and be at most 4096 bytes"),
                );
                continue;
            }
            let glob = match Glob::new(p) {
                Ok(g) => g,
                Err(e) => {
                    self.d
                        .error(format!("{path}.pattern"), format!("{p:?}: {e}"));
                    continue;
                }
            };
            let flags = (
                r.read_only.unwrap_or(false),
                r.owner_only.unwrap_or(false),
                None,
            );
            self.push_path_rules(
                family,
                PathTarget::Pattern(glob),
                flags,
                None,
                None,
                meta,
                &path,
            );
        }
    }

    fn network(&mut self, n: &RawNetwork, top: &Inherited) {
        let fam = self.level(&n.meta(), top, "spec.network");
        let protos = n.match_protocols.as_deref().unwrap_or_default();
        if !self.list_len(protos.len(), "spec.network.matchProtocols") {
            return;
        }
        for (i, r) in protos.iter().enumerate() {
            let path = format!("spec.network.matchProtocols[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let Some(word) = &r.protocol else {
                self.d.error(format!("{path}.protocol"), "is required");
                continue;
            };
            if self.kind == PolicyKind::Host {
                if r.from_source.as_ref().is_none_or(|s| s.is_empty()) {
                    self.d.warn(&path, "KubeArmor's CRD requires fromSource in host network rules; this rule applies to every process");
                }
                if r.pts.is_some() {
                    self.d
                        .error(format!("{path}.pts"), "host network rules have no pts");
                    continue;
                }
            }
            let mut keys = Vec::new();
            for w in comma_expand(word) {
                match protocol_keys(&w) {
                    Some(k) => keys.extend(k),
                    None => self.d.error(
                        format!("{path}.protocol"),
                        format!("unknown protocol {w:?} (tcp, udp, icmp, icmpv6, sctp, raw, stream, dgram, rdm, seqpacket, dccp, packet, all)"),
                    ),
                }
            }
            if keys.is_empty() && comma_expand(word).next().is_none() {
                self.d.error(format!("{path}.protocol"), "is empty");
            }
            let srcs = sources(
                r.from_source.as_ref(),
                &format!("{path}.fromSource"),
                self.d,
            );
            for key in keys {
                for source in &srcs {
                    self.rules.protocols.push(ProtocolRule {
                        key,
                        tty_only: r.pts == Some(false),
                        source: source.clone(),
                        meta: meta.clone(),
                    });
                }
            }
        }
        let dns = n.match_dns_queries.as_deref().unwrap_or_default();
        if !self.list_len(dns.len(), "spec.network.matchDNSQueries") {
            return;
        }
        for (i, r) in dns.iter().enumerate() {
            let path = format!("spec.network.matchDNSQueries[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let Some(domain) = &r.domain else {
                self.d.error(format!("{path}.domain"), "is required");
                continue;
            };
            let domain = domain.trim().trim_matches('.').to_ascii_lowercase();
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
            if !valid {
                self.d.error(
                    format!("{path}.domain"),
                    format!("{domain:?} is not a domain name"),
                );
                continue;
            }
            for source in sources(
                r.from_source.as_ref(),
                &format!("{path}.fromSource"),
                self.d,
            ) {
                self.rules.dns.push(DnsRule {
                    domain: domain.clone(),
                    source,
                    meta: meta.clone(),
                });
            }
        }
    }

    fn capabilities(&mut self, c: &RawCapabilities, top: &Inherited) {
        let fam = self.level(&c.meta(), top, "spec.capabilities");
        let caps = c.match_capabilities.as_deref().unwrap_or_default();
        if !self.list_len(caps.len(), "spec.capabilities.matchCapabilities") {
            return;
        }
        for (i, r) in caps.iter().enumerate() {
            let path = format!("spec.capabilities.matchCapabilities[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let Some(word) = &r.capability else {
                self.d.error(format!("{path}.capability"), "is required");
                continue;
            };
            if self.kind == PolicyKind::Host && r.from_source.as_ref().is_none_or(|s| s.is_empty())
            {
                self.d.warn(&path, "KubeArmor's CRD requires fromSource in host capability rules; this rule applies to every process");
            }
            let srcs = sources(
                r.from_source.as_ref(),
                &format!("{path}.fromSource"),
                self.d,
            );
            for w in comma_expand(word) {
                let Some(n) = names::capability_number(&w) else {
                    self.d.error(
                        format!("{path}.capability"),
                        format!("unknown capability {w:?}"),
                    );
                    continue;
                };
                for source in &srcs {
                    self.rules.capabilities.push(CapabilityRule {
                        capability: n,
                        source: source.clone(),
                        meta: meta.clone(),
                    });
                }
            }
        }
    }

    fn syscalls(&mut self, s: &RawSyscalls, top: &Inherited) {
        let mut fam = self.level(&s.meta(), top, "spec.syscalls");
        if s.action.is_some() {
            self.d.warn(
                "spec.syscalls.action",
                "syscall rules are audit-only; the action is ignored",
            );
        }
        fam.action = Some(Action::Audit);
        let lists = [
            (
                "matchSyscalls",
                s.match_syscalls.as_deref().unwrap_or_default(),
            ),
            ("matchPaths", s.match_paths.as_deref().unwrap_or_default()),
        ];
        for (field, list) in lists {
            if !self.list_len(list.len(), &format!("spec.syscalls.{field}")) {
                continue;
            }
            for (i, r) in list.iter().enumerate() {
                let path = format!("spec.syscalls.{field}[{i}]");
                if r.action.is_some() {
                    self.d.warn(
                        format!("{path}.action"),
                        "syscall rules are audit-only; the action is ignored",
                    );
                }
                let mut meta = (*self.meta(&r.meta(), &fam, &path)).clone();
                meta.action = Action::Audit;
                let names: Vec<String> = r.syscall.clone().unwrap_or_default();
                if names.is_empty() {
                    self.d
                        .error(format!("{path}.syscall"), "must list at least one syscall");
                    continue;
                }
                let bad: Vec<&String> = names.iter().filter(|n| !names::is_syscall(n)).collect();
                if !bad.is_empty() {
                    self.d.error(
                        format!("{path}.syscall"),
                        format!("unknown syscalls {bad:?}"),
                    );
                    continue;
                }
                let sc_path = match (field, &r.path) {
                    ("matchSyscalls", Some(_)) => {
                        self.d
                            .error(format!("{path}.path"), "belongs in syscalls.matchPaths");
                        continue;
                    }
                    ("matchPaths", None) => {
                        self.d.error(format!("{path}.path"), "is required");
                        continue;
                    }
                    (_, Some(p)) if p.ends_with('/') => {
                        match check_dir(p, &format!("{path}.path"), self.d) {
                            Some(dir) => Some(SyscallPath::Dir {
                                dir,
                                recursive: r.recursive.unwrap_or(false),
                            }),
                            None => continue,
                        }
                    }
                    (_, Some(p)) => match check_path(p, &format!("{path}.path"), self.d) {
                        Some(p) => Some(SyscallPath::File(p)),
                        None => continue,
                    },
                    (_, None) => None,
                };
                let mut srcs = Vec::new();
                for (j, src) in r.from_source.iter().flatten().enumerate() {
                    let sp = format!("{path}.fromSource[{j}]");
                    match (&src.path, &src.dir) {
                        (Some(p), None) => {
                            if let Some(p) = check_path(p, &format!("{sp}.path"), self.d) {
                                srcs.push(SyscallSource::Path(p));
                            }
                        }
                        (None, Some(dir)) => {
                            // KubeArmor appends the missing '/' here, so we accept both.
                            let with_slash = if dir.ends_with('/') {
                                dir.clone()
                            } else {
                                format!("{dir}/")
                            };
                            if let Some(dir) = check_dir(&with_slash, &format!("{sp}.dir"), self.d)
                            {
                                srcs.push(SyscallSource::Dir {
                                    dir,
                                    recursive: src.recursive.unwrap_or(false),
                                });
                            }
                        }
                        _ => self.d.error(sp, "needs exactly one of path or dir"),
                    }
                }
                self.rules.syscalls.push(SyscallRule {
                    syscalls: names,
                    path: sc_path,
                    sources: srcs,
                    meta: Arc::new(meta),
                });
            }
        }
    }

    fn devices(&mut self, dev: &RawDevice, top: &Inherited) {
        let fam = self.level(&dev.meta(), top, "spec.device");
        let list = dev.match_device.as_deref().unwrap_or_default();
        if !self.list_len(list.len(), "spec.device.matchDevice") {
            return;
        }
        for (i, r) in list.iter().enumerate() {
            let path = format!("spec.device.matchDevice[{i}]");
            let meta = self.meta(&r.meta(), &fam, &path);
            let class = match &r.class {
                None => {
                    self.d.error(format!("{path}.class"), "is required");
                    continue;
                }
                Some(v) => match device_class(v) {
                    Ok(c) => c,
                    Err(msg) => {
                        self.d.error(format!("{path}.class"), msg);
                        continue;
                    }
                },
            };
            let byte = |d: &mut Diagnostics,
                        v: Option<i64>,
                        field: &str,
                        min: i64|
             -> Result<Option<u8>, ()> {
                match v {
                    None => Ok(None),
                    Some(n) if (min..=255).contains(&n) => Ok(Some(n as u8)),
                    Some(n) => {
                        d.error(
                            format!("{path}.{field}"),
                            format!("must be between {min} and 255, not {n}"),
                        );
                        Err(())
                    }
                }
            };
            let (Ok(sub_class), Ok(protocol), Ok(level)) = (
                byte(self.d, r.sub_class, "subClass", 0),
                byte(self.d, r.protocol, "protocol", 0),
                byte(self.d, r.level, "level", 1),
            ) else {
                continue;
            };
            self.rules.devices.push(DeviceRule {
                class,
                sub_class,
                protocol,
                level,
                meta,
            });
        }
    }
}

/// `class`: `ALL`, a table name, or a number (decimal or `0x` hex). Zero is not a class.
fn device_class(v: &serde_yaml::Value) -> Result<Option<u8>, String> {
    let text = match v {
        serde_yaml::Value::String(s) => s.trim().to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        other => return Err(format!("must be a class name or number, not {other:?}")),
    };
    if text.eq_ignore_ascii_case("ALL") {
        return Ok(None);
    }
    let number = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()
    } else {
        text.parse::<i64>().ok()
    };
    match number {
        Some(n) if (1..=255).contains(&n) => Ok(Some(n as u8)),
        Some(n) => Err(format!("class number must be between 1 and 255, not {n}")),
        None => names::usb_class_number(&text).map(Some).ok_or_else(|| {
            format!(
                "unknown USB class {text:?} (a name such as MASS-STORAGE or HID, a number, or ALL)"
            )
        }),
    }
}

/// A protocol word to the keys it stands for.
fn protocol_keys(word: &str) -> Option<Vec<NetKey>> {
    use names::{ipproto, sock};
    let t = |n: i32| NetKey::Type(n as u8);
    let p = |n: i32| NetKey::Protocol(n as u8);
    Some(match word.to_ascii_lowercase().as_str() {
        "tcp" => vec![p(ipproto::TCP)],
        "udp" => vec![p(ipproto::UDP)],
        "icmp" => vec![p(ipproto::ICMP)],
        "icmpv6" => vec![p(ipproto::ICMPV6)],
        "sctp" => vec![p(ipproto::SCTP)],
        "stream" => vec![t(sock::STREAM)],
        "dgram" => vec![t(sock::DGRAM)],
        "raw" => vec![t(sock::RAW)],
        "rdm" => vec![t(sock::RDM)],
        "seqpacket" => vec![t(sock::SEQPACKET)],
        "dccp" => vec![t(sock::DCCP)],
        "packet" => vec![t(sock::PACKET)],
        "all" => [
            sock::STREAM,
            sock::DGRAM,
            sock::RAW,
            sock::RDM,
            sock::SEQPACKET,
            sock::DCCP,
            sock::PACKET,
        ]
        .into_iter()
        .map(t)
        .collect(),
        _ => return None,
    })
}
