//! The world the planes enforce: the host's rules and every registered container's rules, by
//! cgroup id, rebuilt whole on every policy or registry change.

use std::collections::BTreeMap;
use std::sync::Arc;

use kubearmor_containers::ContainerRecord;
use kubearmor_policy::RuleSet;

use super::rootfs::RootfsResolver;
use crate::store::PolicySnapshot;

/// One container as the planes see it.
#[derive(Debug)]
pub struct ContainerView {
    pub record: Arc<ContainerRecord>,
    pub rules: Arc<RuleSet>,
}

#[derive(Debug)]
pub struct World {
    /// Policy generation this world was built from.
    pub generation: u64,
    pub host: Arc<RuleSet>,
    /// Registered containers with a known cgroup id.
    pub containers: BTreeMap<u64, ContainerView>,
}

impl World {
    pub fn build(snapshot: &PolicySnapshot, containers: &[Arc<ContainerRecord>]) -> Self {
        let containers = containers
            .iter()
            .filter(|c| c.cgroup_id != 0)
            .map(|c| {
                let resolver = RootfsResolver::new(&c.rootfs);
                let rules = snapshot.container_rules(&c.identity(), &resolver);
                (
                    c.cgroup_id,
                    ContainerView {
                        record: c.clone(),
                        rules: Arc::new(rules),
                    },
                )
            })
            .collect();
        Self {
            generation: snapshot.generation,
            host: snapshot.host_rules(),
            containers,
        }
    }

    /// The rules and container (None for the host) that govern a task in `cgroup_id`. Tasks in
    /// cgroups of no registered container are the host's.
    pub fn subject(&self, cgroup_id: u64) -> (&RuleSet, Option<&ContainerRecord>) {
        match self.containers.get(&cgroup_id) {
            Some(c) => (&c.rules, Some(&c.record)),
            None => (&self.host, None),
        }
    }
}
