//! The network plane's map contents, computed from policy rule sets. Pure: no BPF calls.

use std::collections::BTreeMap;

use kubearmor_policy::{Action, NetKey as PolicyNetKey, Posture, RuleSet};

use crate::abi::{self, ExeKey, NetKey, NetSubject};
use crate::exe_identity::ExeIdentity;

/// Everything the network plane's maps should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetTable {
    /// Rule flags per key.
    pub rules: BTreeMap<NetKey, u8>,
    /// The host (cgroup id 0) when it has protocol rules, and every registered container.
    pub subjects: BTreeMap<u64, NetSubject>,
    /// Executable files named by rules (and the subjects' dynamic loaders), to source ids.
    pub sources: BTreeMap<ExeKey, u32>,
    /// A path for each source id, for events.
    pub names: BTreeMap<u32, String>,
    /// `fromSource` paths that name no file in their subject (missing, not a regular file):
    /// their rules apply once a later sync finds the file.
    pub unresolved: Vec<String>,
}

/// Stable id of an executable file (FNV-1a of its identity; never 0 or the loader id), so
/// ids survive daemon restarts and rule changes.
pub fn source_id(key: &ExeKey) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key
        .ino
        .to_le_bytes()
        .into_iter()
        .chain(key.dev.to_le_bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.clamp(1, abi::SOURCE_LOADER - 1)
}

impl NetTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a registered container (cgroup id != 0): it always gets a subject entry, so the
    /// host's rules never apply to it, even when it has no protocol rules of its own.
    pub fn add_container(&mut self, cgroup_id: u64, set: &RuleSet, ids: &dyn ExeIdentity) {
        self.add_rules(cgroup_id, set, ids, true);
    }

    /// Adds the host (cgroup id 0): tasks outside every registered container.
    pub fn add_host(&mut self, set: &RuleSet, ids: &dyn ExeIdentity) {
        self.add_rules(0, set, ids, false);
    }

    fn add_rules(&mut self, cgroup_id: u64, set: &RuleSet, ids: &dyn ExeIdentity, always: bool) {
        let rules = set.protocol_rules();
        if rules.is_empty() && !always {
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
        let named: Vec<&str> = rules.iter().filter_map(|r| r.source.as_deref()).collect();
        let loaders = if named.is_empty() {
            Vec::new()
        } else {
            ids.loaders(&named)
        };
        for key in &loaders {
            self.sources.insert(*key, abi::SOURCE_LOADER);
        }
        let mut loader_flags: BTreeMap<NetKey, u8> = BTreeMap::new();
        for r in rules {
            let (kind, value) = match r.key {
                PolicyNetKey::Type(t) => (abi::NET_TYPE, t),
                PolicyNetKey::Protocol(p) => (abi::NET_PROTO, p),
            };
            let tty = |yes: u8, no: u8| if r.tty_only { yes } else { no };
            let flags = match r.meta.action {
                Action::Block => abi::ENFORCE | tty(abi::DENY_TTY, abi::DENY),
                Action::Allow => abi::ENFORCE | tty(abi::DENY_TTY, 0),
                Action::Audit | Action::AuditAllow | Action::AuditBlock => {
                    tty(abi::AUDIT_TTY, abi::AUDIT)
                }
            };
            let key = |source_id| NetKey {
                cgroup_id,
                source_id,
                kind,
                value,
                pad: 0,
            };
            let Some(source) = &r.source else {
                *self.rules.entry(key(0)).or_default() |= flags;
                continue;
            };
            let Some(exe) = ids.identify(source) else {
                if !self.unresolved.contains(source) {
                    self.unresolved.push(source.clone());
                }
                continue;
            };
            if loaders.contains(&exe) {
                // A rule about the loader itself: the loader's own entry.
                *loader_flags.entry(key(abi::SOURCE_LOADER)).or_default() |= flags;
                self.names
                    .entry(abi::SOURCE_LOADER)
                    .or_insert_with(|| source.clone());
                continue;
            }
            let id = source_id(&exe);
            self.sources.insert(exe, id);
            self.names.entry(id).or_insert_with(|| source.clone());
            *self.rules.entry(key(id)).or_default() |= flags;
            // The loader run as a program may be running this one: it inherits the Block and
            // Audit rules of every named program (never their Allows).
            if r.meta.action != Action::Allow {
                *loader_flags.entry(key(abi::SOURCE_LOADER)).or_default() |= flags;
            }
        }
        if !loaders.is_empty() {
            self.names
                .entry(abi::SOURCE_LOADER)
                .or_insert_with(|| "ld.so".to_string());
        }
        for (k, f) in loader_flags {
            *self.rules.entry(k).or_default() |= f;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::exe_identity::NoIdentity;
    use kubearmor_policy::{parse_policies, NoResolve, Postures};

    fn set(body: &str, postures: Postures) -> RuleSet {
        let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: n\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}");
        let p = parse_policies(&yaml, "t").unwrap().policies;
        RuleSet::compile(&p, postures, &NoResolve)
    }

    /// Paths to made-up inodes; `/lib64/ld.so` is the loader.
    struct Fake;
    impl ExeIdentity for Fake {
        fn identify(&self, path: &str) -> Option<ExeKey> {
            let ino = match path {
                "/usr/bin/curl" | "/bin/curl" => 10,
                "/usr/bin/wget" => 11,
                "/lib64/ld.so" => 12,
                _ => return None,
            };
            Some(ExeKey::new(8, 1, ino))
        }
        fn loaders(&self, _programs: &[&str]) -> Vec<ExeKey> {
            vec![ExeKey::new(8, 1, 12)]
        }
    }

    fn key(cgroup_id: u64, source_id: u32, kind: u8, value: u8) -> NetKey {
        NetKey {
            cgroup_id,
            source_id,
            kind,
            value,
            pad: 0,
        }
    }

    #[test]
    fn rules_become_flags_per_key() {
        let s = set("  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n    - protocol: tcp\n      action: Allow\n      fromSource:\n      - path: /usr/bin/curl\n    - protocol: icmp\n      action: Audit\n", Postures { network: Posture::Block, ..Default::default() });
        let mut t = NetTable::new();
        t.add_container(42, &s, &Fake);
        let curl = source_id(&ExeKey::new(8, 1, 10));
        assert_eq!(
            t.rules[&key(42, 0, abi::NET_TYPE, 3)],
            abi::ENFORCE | abi::DENY
        );
        assert_eq!(t.rules[&key(42, curl, abi::NET_PROTO, 6)], abi::ENFORCE);
        assert_eq!(t.rules[&key(42, 0, abi::NET_PROTO, 1)], abi::AUDIT);
        assert_eq!(
            t.subjects[&42],
            NetSubject {
                allow_list: 1,
                posture_block: 1,
                pad: [0; 6]
            }
        );
        assert_eq!(t.sources[&ExeKey::new(8, 1, 10)], curl);
        assert_eq!(t.names[&curl], "/usr/bin/curl");
        // The loader does not inherit an Allow.
        assert!(!t
            .rules
            .contains_key(&key(42, abi::SOURCE_LOADER, abi::NET_PROTO, 6)));
        assert_eq!(t.sources[&ExeKey::new(8, 1, 12)], abi::SOURCE_LOADER);
    }

    #[test]
    fn two_spellings_of_one_file_are_one_source() {
        let s = set("  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: /bin/curl\n    - protocol: udp\n      fromSource:\n      - path: /usr/bin/curl\n", Postures::default());
        let mut t = NetTable::new();
        t.add_host(&s, &Fake);
        let curl = source_id(&ExeKey::new(8, 1, 10));
        assert_eq!(t.sources.len(), 2, "curl and the loader: {:?}", t.sources);
        assert!(t.rules.contains_key(&key(0, curl, abi::NET_PROTO, 6)));
        assert!(t.rules.contains_key(&key(0, curl, abi::NET_PROTO, 17)));
    }

    #[test]
    fn the_loader_carries_every_block_of_a_named_program() {
        let s = set("  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: /usr/bin/curl\n    - protocol: udp\n      action: Audit\n      fromSource:\n      - path: /usr/bin/wget\n", Postures::default());
        let mut t = NetTable::new();
        t.add_host(&s, &Fake);
        let l = abi::SOURCE_LOADER;
        assert_eq!(
            t.rules[&key(0, l, abi::NET_PROTO, 6)],
            abi::ENFORCE | abi::DENY
        );
        assert_eq!(t.rules[&key(0, l, abi::NET_PROTO, 17)], abi::AUDIT);
    }

    #[test]
    fn a_rule_on_the_loader_itself() {
        let s = set("  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: /lib64/ld.so\n", Postures::default());
        let mut t = NetTable::new();
        t.add_host(&s, &Fake);
        assert_eq!(
            t.rules[&key(0, abi::SOURCE_LOADER, abi::NET_PROTO, 6)],
            abi::ENFORCE
        );
    }

    #[test]
    fn block_and_allow_at_one_key_deny() {
        let s = set("  network:\n    matchProtocols:\n    - protocol: udp\n      action: Allow\n    - protocol: udp\n      action: Block\n", Postures::default());
        let mut t = NetTable::new();
        t.add_host(&s, &NoIdentity);
        let v = t.rules.values().next().unwrap();
        assert_eq!(*v, abi::ENFORCE | abi::DENY);
    }

    #[test]
    fn containers_without_rules_are_subjects_the_host_is_not() {
        let s = set(
            "  file:\n    matchPaths:\n    - path: /etc/x\n",
            Postures::default(),
        );
        let mut t = NetTable::new();
        t.add_host(&s, &NoIdentity);
        assert!(t.subjects.is_empty());
        t.add_container(7, &s, &NoIdentity);
        assert_eq!(t.subjects.keys().copied().collect::<Vec<_>>(), vec![7]);
        assert!(t.rules.is_empty());
    }

    #[test]
    fn missing_sources_are_reported() {
        let s = set("  network:\n    matchProtocols:\n    - protocol: udp\n      fromSource:\n      - path: /opt/nothing\n", Postures::default());
        let mut t = NetTable::new();
        t.add_host(&s, &Fake);
        assert_eq!(t.unresolved, vec!["/opt/nothing".to_string()]);
        assert!(t.rules.keys().all(|k| k.source_id == abi::SOURCE_LOADER));
    }

    #[test]
    fn source_ids_are_stable_and_never_reserved() {
        let a = ExeKey::new(8, 1, 10);
        assert_eq!(source_id(&a), source_id(&a));
        assert_ne!(source_id(&a), source_id(&ExeKey::new(8, 2, 10)));
        assert_ne!(source_id(&ExeKey::default()), 0);
    }
}
