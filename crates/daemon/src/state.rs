//! The node / namespace / container inventory served by `state_agent.StateAgent` (runtime
//! spec §6).
//!
//! The node is announced once at start. Containers come from the container registry
//! ([`follow_registry`]): each registration pushes `container/added` (`status: running`), each
//! removal `container/deleted` (`status: terminated`); the first container of a namespace
//! pushes `namespace/added` before its own event, the last one out `namespace/deleted` after
//! its own. A registration whose data changes (a rescan refreshing a hook record) pushes
//! `container/updated`, or deleted + added when its name or namespace changed. GetState serves
//! the same inventory as one snapshot.
//!
//! The inventory follows the registry asynchronously (within milliseconds); what the daemon
//! knows *before* a hook gets its `ok` is the registry itself, which `getProbeData` reads.
//! Unlike upstream, a subscriber with a full buffer loses the event alone; the others still
//! get it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kubearmor_containers::{Change, ContainerRecord, Registry};
use kubearmor_proto::state_agent::{StateEvent, StateEvents};
use kubearmor_proto::values::state;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Config;
use crate::host_info::HostInfo;
use crate::pipeline::fanout::{Fanout, Subscription};
use crate::planes::Enforcement;

/// Upstream's per-subscriber buffer for WatchState.
pub const WATCH_BUFFER: usize = 25;

/// What every container object carries besides the registry record.
#[derive(Debug, Clone)]
struct ContainerContext {
    node_name: String,
    node_id: String,
    policy_enabled: bool,
    visibility: crate::config::Visibility,
    file_posture: &'static str,
    network_posture: &'static str,
}

#[derive(Debug, Default)]
struct Inventory {
    /// Namespace name → containers in it.
    namespaces: BTreeMap<String, usize>,
    /// Container id → its record.
    containers: BTreeMap<String, Arc<ContainerRecord>>,
}

pub struct StateHub {
    node: StateEvent,
    context: ContainerContext,
    inventory: Mutex<Inventory>,
    watchers: Arc<Fanout<StateEvent>>,
}

impl StateHub {
    pub fn new(config: &Config, host: &HostInfo, enforcement: &Enforcement) -> Self {
        let node = StateEvent {
            kind: state::KIND_NODE.to_string(),
            r#type: state::TYPE_ADDED.to_string(),
            name: config.host.clone(),
            object: node_json(config, host, enforcement),
        };
        Self {
            node,
            context: ContainerContext {
                node_name: config.host.clone(),
                node_id: host.node_id.clone(),
                policy_enabled: enforcement.is_enforcing() && config.container_policy,
                visibility: config.visibility,
                file_posture: config.container_postures.file.as_str(),
                network_posture: config.container_postures.network.as_str(),
            },
            inventory: Mutex::new(Inventory::default()),
            watchers: Fanout::new("WatchState", WATCH_BUFFER),
        }
    }

    fn inventory(&self) -> MutexGuard<'_, Inventory> {
        // the maps are updated a few inserts at a time; a panic cannot leave them unusable
        self.inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an event to every WatchState subscriber (never waits).
    fn send(&self, event: StateEvent) {
        self.watchers.send(Arc::new(event));
    }

    /// Broadcast once at start-up (`node/added`), as upstream.
    pub fn announce_node(&self) {
        self.send(self.node.clone());
    }

    pub fn subscribe(&self) -> Subscription<StateEvent> {
        self.watchers.subscribe()
    }

    /// Applies one registry change to the inventory and pushes its events.
    pub fn apply(&self, change: &Change) {
        let mut inv = self.inventory();
        match change {
            Change::Added(r) | Change::Updated { new: r, .. } => self.upsert(&mut inv, r),
            Change::Removed(r) => self.remove(&mut inv, &r.id),
        }
    }

    /// Brings the inventory in line with a full registry snapshot (at start, and after the
    /// follower fell behind the registry's change stream).
    pub fn resync(&self, records: &[Arc<ContainerRecord>]) {
        let mut inv = self.inventory();
        let current: std::collections::HashSet<&str> =
            records.iter().map(|r| r.id.as_str()).collect();
        let gone: Vec<String> = inv
            .containers
            .keys()
            .filter(|id| !current.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&mut inv, &id);
        }
        for r in records {
            self.upsert(&mut inv, r);
        }
    }

    fn upsert(&self, inv: &mut Inventory, r: &Arc<ContainerRecord>) {
        match inv.containers.get(&r.id).cloned() {
            Some(old) if *old == **r => {}
            Some(old) if old.name == r.name && old.namespace == r.namespace => {
                inv.containers.insert(r.id.clone(), r.clone());
                self.send(self.container_event(r, state::TYPE_UPDATED));
            }
            Some(_) => {
                self.remove(inv, &r.id);
                self.add(inv, r);
            }
            None => self.add(inv, r),
        }
    }

    fn add(&self, inv: &mut Inventory, r: &Arc<ContainerRecord>) {
        let count = inv.namespaces.entry(r.namespace.clone()).or_insert(0);
        *count += 1;
        let first = *count == 1;
        inv.containers.insert(r.id.clone(), r.clone());
        if first {
            self.send(self.namespace_event(&r.namespace, 1, state::TYPE_ADDED));
        }
        self.send(self.container_event(r, state::TYPE_ADDED));
    }

    fn remove(&self, inv: &mut Inventory, id: &str) {
        let Some(r) = inv.containers.remove(id) else {
            return;
        };
        let left = match inv.namespaces.get_mut(&r.namespace) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        self.send(self.container_event(&r, state::TYPE_DELETED));
        if left == 0 {
            inv.namespaces.remove(&r.namespace);
            self.send(self.namespace_event(&r.namespace, 0, state::TYPE_DELETED));
        }
    }

    fn container_event(&self, r: &ContainerRecord, kind: &str) -> StateEvent {
        let deleted = kind == state::TYPE_DELETED;
        let mut c = r.to_container(if deleted { "terminated" } else { "running" });
        let ctx = &self.context;
        c.node_name = ctx.node_name.clone();
        c.node_id = ctx.node_id.clone();
        c.last_updated_at = if deleted {
            kubearmor_proto::time::now().1
        } else {
            updated_time(r.registered_at)
        };
        // enforced only when a plane runs and the planes can find the container (cgroup id)
        c.policy_enabled = i32::from(ctx.policy_enabled && r.cgroup_id != 0);
        c.process_visibility_enabled = ctx.visibility.process;
        c.file_visibility_enabled = ctx.visibility.file;
        c.network_visibility_enabled = ctx.visibility.network;
        c.capabilities_visibility_enabled = ctx.visibility.capabilities;
        StateEvent {
            kind: state::KIND_CONTAINER.to_string(),
            r#type: kind.to_string(),
            name: r.name.clone(),
            object: serde_json::to_vec(&c).unwrap_or_default(),
        }
    }

    /// Upstream's `tp.Namespace` (omitempty keys).
    fn namespace_event(&self, name: &str, containers: usize, kind: &str) -> StateEvent {
        let mut v = json!({
            "name": name,
            "kubearmor_file_posture": self.context.file_posture,
            "kubearmor_network_posture": self.context.network_posture,
            "last_updated_at": kubearmor_proto::time::now().1,
        });
        if containers > 0 {
            v["container_count"] = json!(containers);
        }
        StateEvent {
            kind: state::KIND_NAMESPACE.to_string(),
            r#type: kind.to_string(),
            name: name.to_string(),
            object: serde_json::to_vec(&v).unwrap_or_default(),
        }
    }

    /// The GetState snapshot: the node, then namespaces, then containers (by id), all
    /// `added`.
    pub fn snapshot(&self) -> StateEvents {
        let inv = self.inventory();
        let mut state_events = Vec::with_capacity(1 + inv.namespaces.len() + inv.containers.len());
        state_events.push(self.node.clone());
        for (name, n) in &inv.namespaces {
            state_events.push(self.namespace_event(name, *n, state::TYPE_ADDED));
        }
        for r in inv.containers.values() {
            state_events.push(self.container_event(r, state::TYPE_ADDED));
        }
        StateEvents { state_events }
    }
}

fn updated_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    kubearmor_proto::time::updated_time(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_nanos(),
    )
}

/// Keeps the hub in line with the registry until shutdown: its current containers, then every
/// change; a resync from a fresh snapshot when the change stream lagged.
pub async fn follow_registry(
    hub: Arc<StateHub>,
    registry: Arc<Registry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut sub = registry.subscribe();
    hub.resync(&sub.snapshot);
    loop {
        tokio::select! {
            change = sub.changes.recv() => match change {
                Ok(change) => hub.apply(&change),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "state agent fell behind the container registry; resyncing");
                    hub.resync(&registry.snapshot());
                }
                Err(RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Upstream's `tp.Node` JSON. `policyEnabled` and the `kubearmor-policy` annotation say whether
/// anything is enforced.
fn node_json(config: &Config, host: &HostInfo, enforcement: &Enforcement) -> Vec<u8> {
    let enabled = enforcement.is_enforcing() && config.host_policy;
    let v = json!({
        "clusterName": config.cluster,
        "nodeName": config.host,
        "nodeIP": "",
        "nodeID": host.node_id,
        "annotations": {
            "kubearmor-policy": if enabled { "enabled" } else { "disabled" },
            "kubearmor-visibility": config.host_visibility.to_string(),
        },
        "labels": { "kubearmor.io/hostname": config.host },
        "identities": [ format!("kubearmor.io/hostname={}", config.host) ],
        "architecture": host.architecture,
        "operatingSystem": "linux",
        "osImage": host.os_image,
        "kernelVersion": host.kernel_version,
        "kubeletVersion": "",
        "containerRuntimeVersion": "",
        "last_updated_at": kubearmor_proto::time::now().1,
        "policyEnabled": i32::from(enabled),
        "processVisibilityEnabled": config.host_visibility.process,
        "fileVisibilityEnabled": config.host_visibility.file,
        "networkVisibilityEnabled": config.host_visibility.network,
        "capabilitiesVisibilityEnabled": config.host_visibility.capabilities,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kubearmor_containers::procfs::HostProc;
    use kubearmor_containers::{Container, HookRequest, Source};

    fn hub() -> StateHub {
        let config = crate::config::resolve(crate::config::Inputs {
            file: None,
            env: &BTreeMap::new(),
            flags: &[],
            hostname: "vm-1",
        })
        .unwrap()
        .config;
        StateHub::new(&config, &HostInfo::default(), &Enforcement::none())
    }

    /// Records without a pid never touch /proc.
    fn registry() -> Registry {
        Registry::new(Arc::new(HostProc::new("/nonexistent")))
    }

    fn create(id: &str, name: &str, namespace: &str) -> HookRequest {
        HookRequest::create(Container {
            container_id: id.to_string(),
            container_name: name.to_string(),
            namespace_name: namespace.to_string(),
            ..Container::default()
        })
    }

    fn drain(sub: &mut Subscription<StateEvent>) -> Vec<(String, String, String)> {
        let mut v = Vec::new();
        while let Some(e) = sub.try_recv() {
            v.push((e.kind.clone(), e.r#type.clone(), e.name.clone()));
        }
        v
    }

    fn ev(kind: &str, t: &str, name: &str) -> (String, String, String) {
        (kind.into(), t.into(), name.into())
    }

    #[test]
    fn namespace_events_frame_the_first_and_last_container() {
        let reg = registry();
        let hub = hub();
        let mut sub = hub.subscribe();
        let apply = |req: HookRequest| {
            if let Some(c) = reg.apply(&req, Source::Hook).unwrap() {
                hub.apply(&c);
            }
        };
        apply(create("a", "web", ""));
        apply(create("b", "db", ""));
        apply(create("c", "job", "batch"));
        assert_eq!(
            drain(&mut sub),
            [
                ev("namespace", "added", "container_namespace"),
                ev("container", "added", "web"),
                ev("container", "added", "db"),
                ev("namespace", "added", "batch"),
                ev("container", "added", "job"),
            ]
        );
        let snap = hub.snapshot().state_events;
        let kinds: Vec<_> = snap
            .iter()
            .map(|e| (e.kind.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("node", "vm-1"),
                ("namespace", "batch"),
                ("namespace", "container_namespace"),
                ("container", "web"),
                ("container", "db"),
                ("container", "job"),
            ]
        );
        let ns: serde_json::Value = serde_json::from_slice(&snap[2].object).unwrap();
        assert_eq!(ns["container_count"], 2);
        assert_eq!(ns["kubearmor_file_posture"], "audit");
        let c: serde_json::Value = serde_json::from_slice(&snap[3].object).unwrap();
        assert_eq!(c["containerID"], "a");
        assert_eq!(c["status"], "running");
        assert_eq!(c["node_name"], "vm-1");
        assert_eq!(c["policyEnabled"], 0);

        apply(HookRequest::delete("a"));
        apply(HookRequest::delete("b"));
        apply(HookRequest::delete("b")); // unknown by now: nothing
        assert_eq!(
            drain(&mut sub),
            [
                ev("container", "deleted", "web"),
                ev("container", "deleted", "db"),
                ev("namespace", "deleted", "container_namespace"),
            ]
        );
        assert_eq!(hub.snapshot().state_events.len(), 3);
    }

    #[test]
    fn deleted_objects_say_terminated_and_updates_are_updates() {
        let reg = registry();
        let hub = hub();
        let c = reg
            .apply(&create("a", "web", ""), Source::Hook)
            .unwrap()
            .unwrap();
        hub.apply(&c);
        let mut sub = hub.subscribe();
        let mut again = create("a", "web", "");
        again.container.labels = "tier=db".into();
        hub.apply(&reg.apply(&again, Source::Rescan).unwrap().unwrap());
        // a rename is a delete and an add
        hub.apply(
            &reg.apply(&create("a", "api", ""), Source::Rescan)
                .unwrap()
                .unwrap(),
        );
        let c = reg
            .apply(&HookRequest::delete("a"), Source::Hook)
            .unwrap()
            .unwrap();
        hub.apply(&c);
        let events: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
        let summary: Vec<_> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.r#type.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("container", "updated", "web"),
                ("container", "deleted", "web"),
                ("namespace", "deleted", "container_namespace"),
                ("namespace", "added", "container_namespace"),
                ("container", "added", "api"),
                ("container", "deleted", "api"),
                ("namespace", "deleted", "container_namespace"),
            ]
        );
        let last: serde_json::Value = serde_json::from_slice(&events[5].object).unwrap();
        assert_eq!(last["status"], "terminated");
    }

    #[test]
    fn resync_adds_and_removes_the_difference() {
        let reg = registry();
        let hub = hub();
        reg.apply(&create("a", "web", ""), Source::Hook).unwrap();
        reg.apply(&create("b", "db", ""), Source::Hook).unwrap();
        hub.resync(&reg.snapshot());
        reg.remove("a");
        reg.apply(&create("c", "job", ""), Source::Hook).unwrap();
        let mut sub = hub.subscribe();
        hub.resync(&reg.snapshot());
        let mut got = drain(&mut sub);
        got.sort();
        assert_eq!(
            got,
            [
                ev("container", "added", "job"),
                ev("container", "deleted", "web"),
            ]
        );
        assert_eq!(hub.snapshot().state_events.len(), 4);
    }
}
