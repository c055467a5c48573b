//! The node / namespace / container inventory served by `state_agent.StateAgent` (runtime
//! spec §6).
//!
//! Today it holds the node only: containers arrive with the container registry, which will call
//! [`StateHub::publish`] for `container` and `namespace` events. Unlike upstream, a subscriber
//! with a full buffer loses the event alone; the others still get it.

use std::sync::{Arc, Mutex};

use kubearmor_proto::state_agent::{StateEvent, StateEvents};
use kubearmor_proto::values::state;
use serde_json::json;

use crate::config::Config;
use crate::host_info::HostInfo;
use crate::pipeline::fanout::{Fanout, Subscription};
use crate::planes::Enforcement;

/// Upstream's per-subscriber buffer for WatchState.
pub const WATCH_BUFFER: usize = 25;

pub struct StateHub {
    node: StateEvent,
    /// Namespaces and containers, for GetState.
    others: Mutex<Vec<StateEvent>>,
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
            others: Mutex::new(Vec::new()),
            watchers: Fanout::new("WatchState", WATCH_BUFFER),
        }
    }

    /// Sends an event to every WatchState subscriber (never waits).
    pub fn publish(&self, event: StateEvent) {
        if event.kind != state::KIND_NODE {
            let mut others = self
                .others
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            others.retain(|e| !(e.kind == event.kind && e.name == event.name));
            if event.r#type != state::TYPE_DELETED {
                others.push(event.clone());
            }
        }
        self.watchers.send(Arc::new(event));
    }

    /// Broadcast once at start-up (`node/added`), as upstream.
    pub fn announce_node(&self) {
        self.watchers.send(Arc::new(self.node.clone()));
    }

    pub fn subscribe(&self) -> Subscription<StateEvent> {
        self.watchers.subscribe()
    }

    /// The GetState snapshot: the node, then namespaces and containers.
    pub fn snapshot(&self) -> StateEvents {
        let others = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state_events = vec![self.node.clone()];
        state_events.extend(others.iter().cloned());
        StateEvents { state_events }
    }
}

/// Upstream's `tp.Node` JSON. `policyEnabled` and the `kubearmor-policy` annotation say whether
/// anything is enforced: today nothing is.
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
