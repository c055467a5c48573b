//! The allow cache's predicate: may this inode be ignored for every process from now on?
//!
//! An inode ignore mark makes the kernel skip this group's permission events for the inode,
//! whoever opens it, by whatever name. So the answer must be "allow, nothing to report" for
//! every rule set (host and every container), every request attribute the rules look at
//! (source executable, owner or not, terminal or not, read or write, exec or open), and every
//! name the file may have: each `/`-suffix of the path seen (a container root anywhere above
//! it), and the rewrites given as [`crate::PathAlias`]. Hard-linked files (`nlink > 1`) and
//! non-regular files are never cached. The decision function answers each question, so
//! symlink aliases compiled into the rule sets are honoured.

use std::collections::HashMap;
use std::sync::Arc;

use kubearmor_policy::{Access, Family, PathRequest, Report, RuleSet, Verdict};

use crate::subject::{CacheViews, PathAlias, Rules};

/// What a rule set looks at, computed once per swap.
#[derive(Debug, Clone, Default)]
pub(crate) struct Profile {
    /// Any process or file rule, or an allow-list for either family.
    pub path_rules: bool,
    pub process_rules: bool,
    pub process_allow_list: bool,
    pub needs_source: bool,
    pub needs_owner: bool,
    pub needs_tty: bool,
    pub needs_access: bool,
    pub needs_args: bool,
    /// Distinct `fromSource` values.
    pub sources: Vec<String>,
}

impl Profile {
    pub(crate) fn of(set: &RuleSet) -> Self {
        let mut p = Profile {
            process_rules: set.has_rules(Family::Process) || set.allow_list(Family::Process),
            process_allow_list: set.allow_list(Family::Process),
            ..Default::default()
        };
        p.path_rules =
            p.process_rules || set.has_rules(Family::File) || set.allow_list(Family::File);
        // A file allow-list lets reads of system libraries through but not writes
        // (kubearmor_policy::SYSTEM_LIBRARY_DIRS): the access decides.
        p.needs_access = set.allow_list(Family::File);
        for r in set.path_rules() {
            if let Some(s) = &r.source {
                p.needs_source = true;
                if !p.sources.contains(s) {
                    p.sources.push(s.clone());
                }
            }
            p.needs_owner |= r.owner_only;
            p.needs_tty |= r.tty_only;
            p.needs_access |= r.read_only;
            p.needs_args |= r.allowed_args.is_some();
        }
        p
    }
}

/// Profiles of the distinct rule sets of one [`Rules`].
#[derive(Debug, Default)]
pub(crate) struct Profiles {
    by_ptr: HashMap<usize, Profile>,
    /// Distinct sets that have path rules, with their profiles, for the cache check.
    sets: Vec<(Arc<RuleSet>, Profile)>,
}

fn key(set: &Arc<RuleSet>) -> usize {
    Arc::as_ptr(set) as usize
}

impl Profiles {
    pub(crate) fn build(rules: &Rules) -> Self {
        let mut out = Profiles::default();
        for set in rules.all() {
            if out.by_ptr.contains_key(&key(set)) {
                continue;
            }
            let p = Profile::of(set);
            if p.path_rules {
                out.sets.push((set.clone(), p.clone()));
            }
            out.by_ptr.insert(key(set), p);
        }
        out
    }

    /// Whether any rule set has process or file rules (else every open and exec is a plain
    /// log for everyone, and the subject does not matter).
    pub(crate) fn any_path_rules(&self) -> bool {
        !self.sets.is_empty()
    }

    /// Whether any rule set has process rules / a process allow-list.
    pub(crate) fn any_process_rules(&self) -> bool {
        self.sets.iter().any(|(_, p)| p.process_rules)
    }

    pub(crate) fn any_process_allow_list(&self) -> bool {
        self.sets.iter().any(|(_, p)| p.process_allow_list)
    }

    pub(crate) fn get(&self, set: &Arc<RuleSet>) -> Option<&Profile> {
        self.by_ptr.get(&key(set))
    }
}

/// Every name the file at `path` may have, in any rule set's view.
pub(crate) fn views(path: &str, aliases: &[PathAlias], mode: CacheViews) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push_suffixes = |p: &str, out: &mut Vec<String>| {
        if mode == CacheViews::AliasesOnly {
            if p.len() > 1 && !out.iter().any(|o| o == p) {
                out.push(p.to_owned());
            }
            return;
        }
        for (i, _) in p.match_indices('/') {
            let s = &p[i..];
            if s.len() > 1 && !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
    };
    push_suffixes(path, &mut out);
    for a in aliases {
        for (from, to) in [(&a.from, &a.to), (&a.to, &a.from)] {
            let from = from.trim_end_matches('/');
            let to = to.trim_end_matches('/');
            if let Some(rest) = path.strip_prefix(from) {
                if rest.starts_with('/') {
                    push_suffixes(&format!("{to}{rest}"), &mut out);
                }
            }
        }
    }
    out
}

/// Whether every rule set allows every access to every name of the file silently (a Log
/// counts as silent unless the plane emits logs).
pub(crate) fn allowed_everywhere(
    path: &str,
    rules: &Rules,
    profiles: &Profiles,
    emit_logs: bool,
) -> bool {
    if profiles.sets.is_empty() {
        return true;
    }
    let names = views(path, &rules.aliases, rules.cache_views);
    let quiet = |r: Report<'_>| match r {
        Report::Silent => true,
        Report::Log => !emit_logs,
        Report::Alert { .. } => false,
    };
    for (set, p) in &profiles.sets {
        let sources: Vec<Option<&str>> = std::iter::once(None)
            .chain(p.sources.iter().map(|s| Some(s.as_str())))
            .collect();
        let owners: &[bool] = if p.needs_owner {
            &[true, false]
        } else {
            &[true]
        };
        let ttys: &[bool] = if p.needs_tty {
            &[false, true]
        } else {
            &[false]
        };
        let accesses: &[Access] = if p.needs_access {
            &[Access::Read, Access::Write]
        } else {
            &[Access::Read]
        };
        for name in &names {
            for src in &sources {
                for &owner in owners {
                    for &tty in ttys {
                        let base = PathRequest {
                            path: name,
                            access: Access::Read,
                            source: *src,
                            uid: if owner { 0 } else { 1 },
                            owner: Some(0),
                            tty,
                            args: None,
                        };
                        let d = set.decide_exec(&base);
                        if d.verdict != Verdict::Allow || !quiet(d.report) {
                            return false;
                        }
                        for &access in accesses {
                            let d = set.decide_open(&PathRequest { access, ..base });
                            if d.verdict != Verdict::Allow || !quiet(d.report) {
                                return false;
                            }
                        }
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubearmor_policy::{parse_policies, NoResolve, Postures};

    fn set(body: &str) -> Arc<RuleSet> {
        let yaml = format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}"
        );
        let parsed = parse_policies(&yaml, "t.yaml").map(|p| p.policies);
        let policies = parsed.unwrap_or_default();
        assert!(!policies.is_empty(), "policy did not parse");
        Arc::new(RuleSet::compile(&policies, Postures::default(), &NoResolve))
    }

    fn rules(sets: Vec<Arc<RuleSet>>) -> Rules {
        let mut r = Rules::default();
        let mut it = sets.into_iter();
        r.host = it.next();
        for (i, s) in it.enumerate() {
            r.containers.insert(100 + i as u64, s);
        }
        r
    }

    fn ok(path: &str, r: &Rules) -> bool {
        allowed_everywhere(path, r, &Profiles::build(r), false)
    }

    #[test]
    fn suffixes_and_aliases() {
        let all = CacheViews::AllSuffixes;
        assert_eq!(views("/a/b/c", &[], all), vec!["/a/b/c", "/b/c", "/c"]);
        let alias = PathAlias {
            from: "/srv/vol/".into(),
            to: "/data".into(),
        };
        let v = views("/srv/vol/x", std::slice::from_ref(&alias), all);
        assert!(v.contains(&"/data/x".to_owned()));
        let v = views("/data/x", std::slice::from_ref(&alias), all);
        assert!(v.contains(&"/srv/vol/x".to_owned()));
        assert!(views("/", &[], all).is_empty());
        // A container root given as an alias, views limited to the aliases.
        let root = PathAlias {
            from: "/var/lib/ctr/rootfs".into(),
            to: "/".into(),
        };
        let only = CacheViews::AliasesOnly;
        assert_eq!(
            views("/etc/x", std::slice::from_ref(&root), only),
            vec!["/etc/x", "/var/lib/ctr/rootfs/etc/x"]
        );
        let v = views("/var/lib/ctr/rootfs/etc/x", &[root], only);
        assert!(v.contains(&"/etc/x".to_owned()));
        assert!(!v.contains(&"/x".to_owned()));
    }

    #[test]
    fn no_rules_caches_everything() {
        assert!(ok("/any/file", &Rules::default()));
        assert!(ok("/any/file", &rules(vec![Arc::new(RuleSet::default())])));
    }

    #[test]
    fn a_block_anywhere_prevents_caching() {
        let block = set("  file:\n    matchPaths:\n    - path: /etc/shadow\n  action: Block\n");
        let r = rules(vec![Arc::new(RuleSet::default()), block]);
        assert!(!ok("/etc/shadow", &r));
        // Seen from the host under a container root: the container's view is a suffix.
        assert!(!ok("/var/lib/ctr/rootfs/etc/shadow", &r));
        assert!(ok("/etc/passwd", &r));
    }

    #[test]
    fn flags_and_sources_are_enumerated() {
        let audit_write = set(
            "  file:\n    matchPaths:\n    - path: /x/f\n      readOnly: true\n  action: Audit\n",
        );
        assert!(!ok("/x/f", &rules(vec![audit_write])));
        let owner = set(
            "  file:\n    matchPaths:\n    - path: /x/f\n      ownerOnly: true\n  action: Allow\n",
        );
        assert!(!ok("/x/f", &rules(vec![owner])));
        let from = set(
            "  file:\n    matchPaths:\n    - path: /x/f\n      fromSource:\n      - path: /bin/cat\n  action: Block\n",
        );
        assert!(!ok("/x/f", &rules(vec![from])));
        let exec = set("  process:\n    matchPaths:\n    - path: /x/f\n  action: Block\n");
        assert!(!ok("/x/f", &rules(vec![exec])));
    }

    #[test]
    fn allow_list_caches_only_silently_allowed_files() {
        let allow = set("  file:\n    matchPaths:\n    - path: /x/f\n  action: Allow\n");
        let mut r = rules(vec![allow]);
        // Its suffix `/f` could be the same file in a container rooted at /x: unlisted there.
        assert!(!ok("/x/f", &r));
        r.cache_views = CacheViews::AliasesOnly;
        assert!(ok("/x/f", &r));
        // Unlisted: the posture (audit here) reports it.
        assert!(!ok("/x/g", &r));
    }
}
