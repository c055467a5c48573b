//! The network plane's map contents, computed from policy rule sets. Pure: no BPF calls.

use std::collections::BTreeMap;

use kubearmor_policy::{Action, NetKey as PolicyNetKey, PathResolver, Posture, RuleSet};

use crate::abi::{self, NetKey, NetSubject, PathKey};

/// Everything the network plane's maps should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetTable {
    /// Rule flags per key.
    pub rules: BTreeMap<NetKey, u8>,
    /// Subjects with protocol rules, by cgroup id (0 = the host).
    pub subjects: BTreeMap<u64, NetSubject>,
    /// Executable paths named by rules (and their resolved forms), to source ids.
    pub sources: BTreeMap<String, u32>,
    /// Source paths too long for the kernel to match; their rules are not enforced in the kernel.
    pub unenforceable: Vec<String>,
}

/// Stable id of a source path (FNV-1a, never 0), so ids survive daemon restarts and rule
/// changes without renumbering processes the kernel already tagged.
pub fn source_id(path: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in path.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

impl NetTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the protocol rules of `set` for the subject with cgroup id `cgroup_id` (0 for the
    /// host). Subjects without protocol rules are left out: the kernel then allows everything.
    pub fn add_subject(&mut self, cgroup_id: u64, set: &RuleSet, resolver: &dyn PathResolver) {
        let rules = set.protocol_rules();
        if rules.is_empty() {
            return;
        }
        self.subjects.insert(
            cgroup_id,
            NetSubject {
                allow_list: u8::from(set.protocol_allow_list()),
                posture_block: u8::from(set.postures().network == Posture::Block),
                pad: [0; 6],
            },
        );
        for r in rules {
            let source_id = match &r.source {
                None => 0,
                Some(s) => match self.add_source(s, resolver) {
                    Some(id) => id,
                    None => continue,
                },
            };
            let (kind, value) = match r.key {
                PolicyNetKey::Type(t) => (abi::NET_TYPE, t),
                PolicyNetKey::Protocol(p) => (abi::NET_PROTO, p),
            };
            let key = NetKey {
                cgroup_id,
                source_id,
                kind,
                value,
                pad: 0,
            };
            let tty = |yes: u8, no: u8| if r.tty_only { yes } else { no };
            let flags = match r.meta.action {
                Action::Block => abi::ENFORCE | tty(abi::DENY_TTY, abi::DENY),
                Action::Allow => abi::ENFORCE | tty(abi::DENY_TTY, 0),
                Action::Audit => tty(abi::AUDIT_TTY, abi::AUDIT),
            };
            *self.rules.entry(key).or_default() |= flags;
        }
    }

    fn add_source(&mut self, source: &str, resolver: &dyn PathResolver) -> Option<u32> {
        if PathKey::new(source).is_none() {
            if !self.unenforceable.iter().any(|s| s == source) {
                self.unenforceable.push(source.to_string());
            }
            return None;
        }
        let id = source_id(source);
        self.sources.insert(source.to_string(), id);
        if let Some(resolved) = resolver.resolve(source) {
            if PathKey::new(&resolved).is_some() {
                self.sources.insert(resolved, id);
            }
        }
        Some(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kubearmor_policy::{parse_policies, NoResolve, Postures};

    fn set(body: &str, postures: Postures) -> RuleSet {
        let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: n\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}");
        let p = parse_policies(&yaml, "t").unwrap().policies;
        RuleSet::compile(&p, postures, &NoResolve)
    }

    #[test]
    fn rules_become_flags_per_key() {
        let s = set("  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n    - protocol: tcp\n      action: Allow\n      fromSource:\n      - path: /usr/bin/curl\n    - protocol: icmp\n      action: Audit\n", Postures { network: Posture::Block, ..Default::default() });
        let mut t = NetTable::new();
        t.add_subject(42, &s, &NoResolve);
        let curl = source_id("/usr/bin/curl");
        let key = |source_id, kind, value| NetKey {
            cgroup_id: 42,
            source_id,
            kind,
            value,
            pad: 0,
        };
        assert_eq!(t.rules[&key(0, abi::NET_TYPE, 3)], abi::ENFORCE | abi::DENY);
        assert_eq!(t.rules[&key(curl, abi::NET_PROTO, 6)], abi::ENFORCE);
        assert_eq!(t.rules[&key(0, abi::NET_PROTO, 1)], abi::AUDIT);
        assert_eq!(
            t.subjects[&42],
            NetSubject {
                allow_list: 1,
                posture_block: 1,
                pad: [0; 6]
            }
        );
        assert_eq!(t.sources["/usr/bin/curl"], curl);
    }

    #[test]
    fn block_and_allow_at_one_key_deny() {
        let s = set("  network:\n    matchProtocols:\n    - protocol: udp\n      action: Allow\n    - protocol: udp\n      action: Block\n", Postures::default());
        let mut t = NetTable::new();
        t.add_subject(0, &s, &NoResolve);
        let v = t.rules.values().next().unwrap();
        assert_eq!(*v, abi::ENFORCE | abi::DENY);
    }

    #[test]
    fn no_protocol_rules_no_subject() {
        let s = set(
            "  file:\n    matchPaths:\n    - path: /etc/x\n",
            Postures::default(),
        );
        let mut t = NetTable::new();
        t.add_subject(7, &s, &NoResolve);
        assert!(t.subjects.is_empty() && t.rules.is_empty());
    }

    #[test]
    fn long_sources_are_reported() {
        let long = format!("/{}", "a".repeat(300));
        let s = set(&format!("  network:\n    matchProtocols:\n    - protocol: udp\n      fromSource:\n      - path: {long}\n"), Postures::default());
        let mut t = NetTable::new();
        t.add_subject(0, &s, &NoResolve);
        assert_eq!(t.unenforceable, vec![long]);
        assert!(t.rules.is_empty());
    }

    #[test]
    fn source_ids_are_stable_and_nonzero() {
        assert_eq!(source_id("/usr/bin/curl"), source_id("/usr/bin/curl"));
        assert_ne!(source_id("/usr/bin/curl"), source_id("/usr/bin/wget"));
        assert_ne!(source_id(""), 0);
    }
}
