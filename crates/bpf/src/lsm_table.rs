//! The BPF-LSM plane's map contents, computed from policy rule sets. Pure: no BPF calls.
//!
//! Path rules become groups keyed by (subject, family, what the hash is of, hash, source),
//! each holding per-request-shape masks folded from the policy crate's own rule semantics
//! ([`PathRule::denies`] / [`PathRule::audits`]), so the kernel's walk decides as
//! `RuleSet::decide_open` / `decide_exec` do. [`LsmTable::decide_path`] is that walk in Rust,
//! for tests that compare the two.

use std::collections::BTreeMap;

use kubearmor_policy::{
    Action, Family, NetKey as PolicyNetKey, PathFamily, PathResolver, PathRule, PathTarget,
    Posture, RuleSet, SYSTEM_LIBRARY_DIRS, SYSTEM_LIBRARY_FILES,
};

use crate::abi;
use crate::lsm_abi::{self, LsmKey, LsmPathKey, LsmPathVal, LsmSubject};

/// Rules the kernel side cannot enforce, and why (the daemon reports them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unenforced {
    pub cgroup_id: u64,
    pub what: String,
    pub why: &'static str,
}

/// Everything the BPF-LSM plane's maps should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LsmTable {
    pub paths: BTreeMap<LsmPathKey, LsmPathVal>,
    /// Protocol and capability rules (flags as `abi::ENFORCE` ...).
    pub rules: BTreeMap<LsmKey, u8>,
    pub subjects: BTreeMap<u64, LsmSubject>,
    pub unenforced: Vec<Unenforced>,
}

/// Map capacities (the kernel refuses entries beyond them; `sync` reports which map is full).
pub const MAX_PATH_GROUPS: usize = 1 << 20;
pub const MAX_RULES: usize = 1 << 18;
pub const MAX_SUBJECTS: usize = 1 << 16;

/// FNV-1a 64 of a path, as the kernel side hashes the bytes it builds (the root directory
/// is the empty string).
pub fn path_hash(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shapes of a request, as bits of the masks (`lsm_abi::REQ_*`).
fn shapes() -> impl Iterator<Item = (u8, bool, bool, bool)> {
    (0u8..8).map(|bits| {
        (
            bits,
            bits & lsm_abi::REQ_WRITE != 0,
            bits & lsm_abi::REQ_OWNER != 0,
            bits & lsm_abi::REQ_TTY != 0,
        )
    })
}

impl LsmTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a container's rules. Unlike [`LsmTable::add_subject`], a container without rules
    /// still gets an entry, so the kernel does not fall back to the host's rules for it.
    pub fn add_container(&mut self, cgroup_id: u64, set: &RuleSet, resolver: &dyn PathResolver) {
        self.add_subject(cgroup_id, set, resolver);
        self.subjects.entry(cgroup_id).or_default();
    }

    /// Adds the rules of `set` for the subject with cgroup id `cgroup_id` (0 for the host).
    /// A subject without rules is left out: the kernel then treats its tasks as the host's.
    pub fn add_subject(&mut self, cgroup_id: u64, set: &RuleSet, resolver: &dyn PathResolver) {
        let has = |f| set.has_rules(f);
        if !(has(Family::Process)
            || has(Family::File)
            || !set.protocol_rules().is_empty()
            || has(Family::Capabilities))
        {
            return;
        }
        let postures = set.postures();
        let mut subject = LsmSubject {
            process_allow_list: u8::from(set.allow_list(Family::Process)),
            file_allow_list: u8::from(set.allow_list(Family::File)),
            file_posture_block: u8::from(postures.file == Posture::Block),
            net_allow_list: u8::from(set.protocol_allow_list()),
            net_posture_block: u8::from(postures.network == Posture::Block),
            cap_allow_list: u8::from(set.allow_list(Family::Capabilities)),
            cap_posture_block: u8::from(postures.capabilities == Posture::Block),
            process_rules: u8::from(has(Family::Process)),
            file_rules: u8::from(has(Family::File)),
            net_rules: u8::from(!set.protocol_rules().is_empty()),
            cap_rules: u8::from(has(Family::Capabilities)),
            ..Default::default()
        };
        for r in set.path_rules() {
            subject.source_rules |= u8::from(r.source.is_some());
            self.add_path_rule(cgroup_id, r, resolver);
        }
        for r in set.protocol_rules() {
            subject.source_rules |= u8::from(r.source.is_some());
            let (kind, value) = match r.key {
                PolicyNetKey::Type(t) => (abi::NET_TYPE, t),
                PolicyNetKey::Protocol(p) => (abi::NET_PROTO, p),
            };
            let tty = |yes: u8, no: u8| if r.tty_only { yes } else { no };
            let flags = match r.meta.action {
                Action::Block => abi::ENFORCE | tty(abi::DENY_TTY, abi::DENY),
                Action::Allow => abi::ENFORCE | tty(abi::DENY_TTY, 0),
                // An audited workload's Allow and Block rules only report.
                Action::Audit | Action::AuditAllow | Action::AuditBlock => {
                    tty(abi::AUDIT_TTY, abi::AUDIT)
                }
            };
            for source_hash in source_hashes(r.source.as_deref(), resolver) {
                let key = LsmKey {
                    cgroup_id,
                    source_hash,
                    kind,
                    value,
                    pad: [0; 6],
                };
                *self.rules.entry(key).or_default() |= flags;
            }
        }
        for r in set.capability_rules() {
            subject.source_rules |= u8::from(r.source.is_some());
            let flags = match r.meta.action {
                Action::Block => abi::ENFORCE | abi::DENY,
                Action::Allow => abi::ENFORCE,
                Action::Audit | Action::AuditAllow | Action::AuditBlock => abi::AUDIT,
            };
            for source_hash in source_hashes(r.source.as_deref(), resolver) {
                let key = LsmKey {
                    cgroup_id,
                    source_hash,
                    kind: lsm_abi::CAP,
                    value: r.capability,
                    pad: [0; 6],
                };
                *self.rules.entry(key).or_default() |= flags;
            }
        }
        self.subjects.insert(cgroup_id, subject);
    }

    fn add_path_rule(&mut self, cgroup_id: u64, r: &PathRule, resolver: &dyn PathResolver) {
        let family = match r.family {
            PathFamily::Process => lsm_abi::PROCESS,
            PathFamily::File => lsm_abi::FILE,
        };
        let mut unenforced = |what: String, why| {
            self.unenforced.push(Unenforced {
                cgroup_id,
                what,
                why,
            })
        };
        if r.allowed_args.is_some() && r.meta.action == Action::Block {
            unenforced(
                describe(&r.target),
                "allowedArgs: the kernel side does not see argv (decided in userspace only)",
            );
            return;
        }
        let targets: Vec<(u8, String)> = match &r.target {
            PathTarget::Path(p) => with_alias(p, resolver)
                .into_iter()
                .map(|p| (lsm_abi::EXACT, p))
                .collect(),
            PathTarget::ExecName(n) => vec![(lsm_abi::EXECNAME, n.clone())],
            PathTarget::Dir { dir, recursive } => with_alias(dir, resolver)
                .into_iter()
                .flat_map(|d| {
                    let far = recursive.then(|| (lsm_abi::DIR_FAR, d.clone()));
                    std::iter::once((lsm_abi::DIR_NEAR, d)).chain(far)
                })
                .collect(),
            PathTarget::Pattern(g) => {
                unenforced(
                    format!("pattern {}", g.as_str()),
                    "patterns are matched in userspace only on the BPF-LSM plane",
                );
                return;
            }
        };
        let too_long: Vec<&String> = targets
            .iter()
            .map(|(_, p)| p)
            .filter(|p| p.len() >= lsm_abi::PATH_MAX)
            .collect();
        if !too_long.is_empty() {
            unenforced(
                describe(&r.target),
                "path longer than the kernel side's 255 bytes",
            );
            return;
        }
        let exec = r.family == PathFamily::Process;
        let mut val = LsmPathVal::default();
        for (bit, write, owner, tty) in shapes() {
            match r.meta.action {
                // An audited workload's Allow and Block rules only report.
                Action::Audit | Action::AuditAllow | Action::AuditBlock => {
                    val.audit = 1;
                    if r.audits(write, owner, tty, exec) {
                        val.audit_mask |= 1 << bit;
                    }
                }
                Action::Block => {
                    val.enforce = 1;
                    if r.denies(write, owner, tty, exec) {
                        val.deny_mask |= 1 << bit;
                    }
                }
                // An Allow rule whose flags refuse the request leaves it to the posture.
                Action::Allow => {
                    val.enforce = 1;
                    if r.denies(write, owner, tty, exec) {
                        val.posture_mask |= 1 << bit;
                    }
                }
            }
        }
        for source_hash in source_hashes(r.source.as_deref(), resolver) {
            for (kind, target) in &targets {
                let key = LsmPathKey {
                    cgroup_id,
                    path_hash: path_hash(target),
                    source_hash,
                    family,
                    kind: *kind,
                    pad: [0; 6],
                };
                let slot = self.paths.entry(key).or_default();
                slot.deny_mask |= val.deny_mask;
                slot.posture_mask |= val.posture_mask;
                slot.audit_mask |= val.audit_mask;
                slot.enforce |= val.enforce;
                slot.audit |= val.audit;
            }
        }
    }

    /// The kernel's decision for a path request, computed from this table the way
    /// lsm.bpf.c walks it (for tests). Returns whether it denies.
    pub fn decide_path(
        &self,
        cgroup_id: u64,
        family: u8,
        path: &str,
        source: Option<&str>,
        req: u8,
    ) -> bool {
        let Some(subj) = self
            .subjects
            .get(&cgroup_id)
            .or_else(|| self.subjects.get(&0))
        else {
            return false;
        };
        let cg = if self.subjects.contains_key(&cgroup_id) {
            cgroup_id
        } else {
            0
        };
        let base = path.rsplit('/').next().unwrap_or(path);
        let dirs: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let src = if subj.source_rules != 0 {
            source.map(path_hash)
        } else {
            None
        };
        // (deny by a Block rule, refused by an Allow rule's flags) of the first group.
        let mut enforce: Option<(bool, bool)> = None;
        for sh in src.into_iter().chain([0]) {
            let mut keys = vec![(lsm_abi::EXACT, path_hash(path))];
            if family == lsm_abi::PROCESS {
                keys.push((lsm_abi::EXECNAME, path_hash(base)));
            }
            if path.len() > 1 {
                keys.push((lsm_abi::DIR_NEAR, path_hash(path)));
            }
            for (k, d) in dirs.iter().rev().enumerate() {
                let kind = if k == 0 {
                    lsm_abi::DIR_NEAR
                } else {
                    lsm_abi::DIR_FAR
                };
                keys.push((kind, path_hash(d)));
            }
            for (kind, hash) in keys {
                let key = LsmPathKey {
                    cgroup_id: cg,
                    path_hash: hash,
                    source_hash: sh,
                    family,
                    kind,
                    pad: [0; 6],
                };
                if let Some(v) = self.paths.get(&key) {
                    if enforce.is_none() && v.enforce != 0 {
                        enforce = Some((
                            (v.deny_mask >> req) & 1 != 0,
                            (v.posture_mask >> req) & 1 != 0,
                        ));
                    }
                }
            }
        }
        let allow_list = if family == lsm_abi::PROCESS {
            subj.process_allow_list
        } else {
            subj.file_allow_list
        };
        let write = req & lsm_abi::REQ_WRITE != 0;
        let implicit = family == lsm_abi::FILE && !write && implicitly_readable(path);
        let block = subj.file_posture_block != 0;
        match enforce {
            Some((true, _)) => true,
            Some((false, refused)) => refused && block,
            None => allow_list != 0 && !implicit && block,
        }
    }
}

/// Reads a file allow-list leaves alone (the kernel side checks the same list, which
/// [`implicit_entries`] gives it).
fn implicitly_readable(path: &str) -> bool {
    path == "/"
        || SYSTEM_LIBRARY_FILES.contains(&path)
        || SYSTEM_LIBRARY_DIRS.iter().any(|d| path.starts_with(d))
}

/// The `ka_lsm_implicit` map: hashes of the system library files and directories (without
/// their trailing `/`), with `lsm_abi::IMPLICIT_FILE` / `IMPLICIT_DIR`.
pub fn implicit_entries() -> Vec<(u64, u32)> {
    SYSTEM_LIBRARY_FILES
        .iter()
        .map(|f| (path_hash(f), lsm_abi::IMPLICIT_FILE))
        .chain(
            SYSTEM_LIBRARY_DIRS
                .iter()
                .map(|d| (path_hash(d.trim_end_matches('/')), lsm_abi::IMPLICIT_DIR)),
        )
        .collect()
}

fn with_alias(p: &str, resolver: &dyn PathResolver) -> Vec<String> {
    std::iter::once(p.to_string())
        .chain(resolver.resolve(p))
        .collect()
}

/// 0 (every source) or the hashes of the source and its resolved form.
fn source_hashes(source: Option<&str>, resolver: &dyn PathResolver) -> Vec<u64> {
    match source {
        None => vec![0],
        Some(s) => with_alias(s, resolver)
            .iter()
            .map(|p| path_hash(p))
            .collect(),
    }
}

fn describe(t: &PathTarget) -> String {
    match t {
        PathTarget::Path(p) => p.clone(),
        PathTarget::ExecName(n) => n.clone(),
        PathTarget::Dir { dir, .. } => format!("{dir}/"),
        PathTarget::Pattern(g) => g.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kubearmor_policy::{parse_policies, Access, NoResolve, PathRequest, Postures};

    fn set(body: &str, postures: Postures) -> RuleSet {
        let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: n\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}");
        let p = parse_policies(&yaml, "t").unwrap().policies;
        RuleSet::compile(&p, postures, &NoResolve)
    }

    const READONLY: &str = "  action: Block\n  file:\n    matchDirectories:\n    - dir: /bin/\n      recursive: true\n      readOnly: true\n    matchPaths:\n    - path: /etc/secret\n    - path: /home/u/own\n      ownerOnly: true\n    - path: /etc/fs\n      fromSource:\n      - path: /usr/bin/cat\n";

    #[test]
    fn masks_follow_the_policy_semantics() {
        let s = set(READONLY, Postures::default());
        let mut t = LsmTable::new();
        t.add_subject(0, &s, &NoResolve);
        let key = |kind, p: &str, src| LsmPathKey {
            cgroup_id: 0,
            path_hash: path_hash(p),
            source_hash: src,
            family: lsm_abi::FILE,
            kind,
            pad: [0; 6],
        };
        // readOnly: every write shape denied, no read shape.
        let ro = t.paths[&key(lsm_abi::DIR_FAR, "/bin", 0)];
        assert_eq!(ro.deny_mask, 0b1010_1010);
        assert_eq!(ro.enforce, 1);
        assert_eq!(t.paths[&key(lsm_abi::DIR_NEAR, "/bin", 0)], ro);
        assert_eq!(
            t.paths[&key(lsm_abi::EXACT, "/etc/secret", 0)].deny_mask,
            0xff
        );
        // ownerOnly Block: the owner passes, everyone else is denied.
        assert_eq!(
            t.paths[&key(lsm_abi::EXACT, "/home/u/own", 0)].deny_mask,
            0b0011_0011
        );
        let cat = path_hash("/usr/bin/cat");
        assert_eq!(
            t.paths[&key(lsm_abi::EXACT, "/etc/fs", cat)].deny_mask,
            0xff
        );
        assert_eq!(t.subjects[&0].source_rules, 1);
    }

    #[test]
    fn table_walk_agrees_with_the_decision_function() {
        let bodies = [
            READONLY.to_string(),
            "  action: Allow\n  file:\n    matchDirectories:\n    - dir: /data/\n      recursive: true\n    - dir: /etc/\n      readOnly: true\n    matchPaths:\n    - path: /etc/secret\n      action: Block\n".to_string(),
            "  action: Allow\n  process:\n    matchDirectories:\n    - dir: /bin/\n    matchPaths:\n    - path: /usr/bin/env\n      fromSource:\n      - path: /bin/sh\n".to_string(),
            "  action: Allow\n  file:\n    matchDirectories:\n    - dir: /lib/\n      recursive: true\n      readOnly: true\n    matchPaths:\n    - path: /home/u/own\n      ownerOnly: true\n".to_string(),
        ];
        let paths = [
            "/",
            "/bin",
            "/bin/ls",
            "/bin/x/y",
            "/etc/secret",
            "/etc/fs",
            "/etc/passwd",
            "/etc/a/b",
            "/home/u/own",
            "/data/x",
            "/data/a/b/c",
            "/usr/bin/env",
            "/tmp/z",
        ];
        let sources = [None, Some("/usr/bin/cat"), Some("/bin/sh")];
        let postures = [Posture::Block, Posture::Audit].map(|file| Postures {
            file,
            ..Default::default()
        });
        for (body, postures) in bodies.iter().flat_map(|b| postures.map(|p| (b, p))) {
            let s = set(body, postures);
            let mut t = LsmTable::new();
            t.add_subject(0, &s, &NoResolve);
            for path in paths {
                for source in sources {
                    for (bit, write, owner, tty) in shapes() {
                        let req = PathRequest {
                            access: if write { Access::Write } else { Access::Read },
                            source,
                            uid: 0,
                            owner: Some(if owner { 0 } else { 1 }),
                            tty,
                            ..PathRequest::new(path)
                        };
                        for (family, want) in [
                            (lsm_abi::FILE, s.decide_open(&req).is_denied()),
                            (lsm_abi::PROCESS, s.decide_exec(&req).is_denied()),
                        ] {
                            let got = t.decide_path(0, family, path, source, bit);
                            assert_eq!(
                                got, want,
                                "{body}\npath {path} source {source:?} shape {bit:03b} family {family}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn patterns_and_blocked_args_are_reported_not_enforced() {
        let s = set("  action: Block\n  file:\n    matchPatterns:\n    - pattern: /etc/*.key\n  process:\n    matchPaths:\n    - path: /bin/ls\n      allowedArgs: [\"-l\"]\n", Postures::default());
        let mut t = LsmTable::new();
        t.add_subject(9, &s, &NoResolve);
        assert_eq!(t.unenforced.len(), 2, "{:?}", t.unenforced);
        assert!(t.paths.is_empty());
    }

    #[test]
    fn protocol_and_capability_rules() {
        let s = set("  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n  capabilities:\n    matchCapabilities:\n    - capability: net_raw\n", Postures::default());
        let mut t = LsmTable::new();
        t.add_subject(5, &s, &NoResolve);
        let k = |kind, value| LsmKey {
            cgroup_id: 5,
            source_hash: 0,
            kind,
            value,
            pad: [0; 6],
        };
        assert_eq!(t.rules[&k(abi::NET_TYPE, 3)], abi::ENFORCE | abi::DENY);
        assert_eq!(t.rules[&k(lsm_abi::CAP, 13)], abi::ENFORCE | abi::DENY);
        assert_eq!(t.subjects[&5].net_rules, 1);
        assert_eq!(t.subjects[&5].cap_rules, 1);
    }

    #[test]
    fn hashes_match_the_kernel_side() {
        // FNV-1a 64 test vectors.
        assert_eq!(path_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(path_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
