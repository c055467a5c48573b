//! An immutable view of the policies in force, with the host's compiled rule set.
//!
//! Planes read the current snapshot lock-free ([`super::PolicyStore::snapshot`]) and get a new
//! one, whole, after every change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kubearmor_policy::{
    ContainerIdentity, HostIdentity, PathResolver, PolicyKind, Postures, RuleSet, SelectorMode,
    Subject,
};

use super::document::{PolicyKey, StoredPolicy};

/// What the snapshot compiles against.
#[derive(Debug, Clone)]
pub struct Scope {
    pub host: HostIdentity,
    pub host_postures: Postures,
    pub container_postures: Postures,
    /// `enableKubeArmorHostPolicy`.
    pub host_policies: bool,
    /// `enableKubeArmorPolicy`.
    pub container_policies: bool,
}

#[derive(Debug)]
pub struct PolicySnapshot {
    /// Increases with every change that is swapped in.
    pub generation: u64,
    policies: BTreeMap<PolicyKey, Arc<StoredPolicy>>,
    scope: Arc<Scope>,
    host_rules: Arc<RuleSet>,
    host_selected: Vec<PolicyKey>,
}

const MODE: SelectorMode = SelectorMode { kubernetes: false };

impl PolicySnapshot {
    /// Compiles the host's rule set (container rule sets are compiled per container, on demand).
    pub fn build(
        generation: u64,
        policies: BTreeMap<PolicyKey, Arc<StoredPolicy>>,
        scope: Arc<Scope>,
    ) -> Self {
        let subject = Subject::Host(scope.host.clone());
        let host_selected: Vec<PolicyKey> = if scope.host_policies {
            policies
                .values()
                .filter(|p| p.policy.kind == PolicyKind::Host && p.policy.selects(&subject, MODE))
                .map(|p| p.key())
                .collect()
        } else {
            Vec::new()
        };
        let host_rules = RuleSet::for_subject(
            host_selected
                .iter()
                .filter_map(|k| policies.get(k))
                .map(|p| &p.policy),
            &subject,
            MODE,
            scope.host_postures,
            &HostPaths,
        );
        Self {
            generation,
            policies,
            scope,
            host_rules: Arc::new(host_rules),
            host_selected,
        }
    }

    /// An empty snapshot (before the policy directory is loaded).
    pub fn empty(scope: Arc<Scope>) -> Self {
        Self::build(0, BTreeMap::new(), scope)
    }

    /// The host's compiled rules (empty when host policies are disabled).
    pub fn host_rules(&self) -> Arc<RuleSet> {
        self.host_rules.clone()
    }

    /// Compiles the rules of one container: every container or cluster policy that selects it,
    /// with the container postures. Empty when container policies are disabled. `resolver`
    /// resolves symlinks in rule paths inside the container's filesystem.
    pub fn container_rules(
        &self,
        container: &ContainerIdentity,
        resolver: &dyn PathResolver,
    ) -> RuleSet {
        let subject = Subject::Container(container.clone());
        if !self.scope.container_policies {
            return RuleSet::for_subject(
                [],
                &subject,
                MODE,
                self.scope.container_postures,
                resolver,
            );
        }
        RuleSet::for_subject(
            self.policies
                .values()
                .filter(|p| p.policy.kind != PolicyKind::Host)
                .map(|p| &p.policy),
            &subject,
            MODE,
            self.scope.container_postures,
            resolver,
        )
    }

    /// The container and cluster policies that select a container, in key order (what
    /// [`Self::container_rules`] compiles; none when container policies are disabled).
    pub fn container_policies<'a>(
        &'a self,
        container: &ContainerIdentity,
    ) -> impl Iterator<Item = &'a Arc<StoredPolicy>> + 'a {
        let subject = Subject::Container(container.clone());
        let enabled = self.scope.container_policies;
        self.policies.values().filter(move |p| {
            enabled && p.policy.kind != PolicyKind::Host && p.policy.selects(&subject, MODE)
        })
    }

    /// Every policy in force, host and container, in key order.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<StoredPolicy>> {
        self.policies.values()
    }

    pub fn get(&self, key: &PolicyKey) -> Option<&Arc<StoredPolicy>> {
        self.policies.get(key)
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The host policies that select this host and are compiled into [`Self::host_rules`].
    pub fn host_policies(&self) -> impl Iterator<Item = &Arc<StoredPolicy>> {
        self.host_selected
            .iter()
            .filter_map(|k| self.policies.get(k))
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    pub(crate) fn map(&self) -> &BTreeMap<PolicyKey, Arc<StoredPolicy>> {
        &self.policies
    }
}

/// Resolves rule paths on the host's own filesystem (`/bin/ls` -> `/usr/bin/ls` on a
/// usr-merged system), so host rules govern the files the kernel reports.
struct HostPaths;

impl PathResolver for HostPaths {
    fn resolve(&self, path: &str) -> Option<String> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return None;
        }
        let resolved = std::fs::canonicalize(p).ok()?;
        let text = resolved.to_str()?;
        (text != path.trim_end_matches('/') && !text.is_empty()).then(|| text.to_string())
    }
}
