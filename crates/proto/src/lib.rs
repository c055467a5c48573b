//! KubeArmor-compatible gRPC API for kubearmor-rs.
//!
//! The `.proto` files under `proto/` are written from the runtime spec (§1, §2, §6) and are
//! wire-compatible with upstream KubeArmor: same packages, services, method names, message
//! names and field numbers. Code is generated with tonic/prost (client and server); no system
//! `protoc` is needed (see `build.rs`).
//!
//! Besides the generated types this crate holds the two JSON renderings of events
//! ([`json`]), the API's string values and ports ([`values`]) and the `UpdatedTime`
//! timestamp format ([`time`]).

/// Package `feeder`: `LogService` (HealthCheck, WatchMessages, WatchAlerts, WatchLogs) and the
/// event messages `Alert`, `Log`, `Message`.
pub mod feeder {
    include!(concat!(env!("OUT_DIR"), "/feeder.rs"));

    impl From<Alert> for Log {
        /// Keeps the fields a `Log` has. The daemon can build every event as an `Alert`
        /// (the superset) and convert only the ones routed to `WatchLogs`.
        fn from(a: Alert) -> Self {
            Log {
                timestamp: a.timestamp,
                updated_time: a.updated_time,
                cluster_name: a.cluster_name,
                host_name: a.host_name,
                namespace_name: a.namespace_name,
                owner: a.owner,
                pod_name: a.pod_name,
                labels: a.labels,
                container_id: a.container_id,
                container_name: a.container_name,
                container_image: a.container_image,
                parent_process_name: a.parent_process_name,
                process_name: a.process_name,
                host_ppid: a.host_ppid,
                host_pid: a.host_pid,
                ppid: a.ppid,
                pid: a.pid,
                uid: a.uid,
                r#type: a.r#type,
                source: a.source,
                operation: a.operation,
                resource: a.resource,
                data: a.data,
                event_data: a.event_data,
                result: a.result,
                cwd: a.cwd,
                tty: a.tty,
                exec_event: a.exec_event,
                node_id: a.node_id,
                process_hash: a.process_hash,
                parent_hash: a.parent_hash,
                resource_hash: a.resource_hash,
                hash_algo: a.hash_algo,
                user_name: a.user_name,
            }
        }
    }
}

/// Package `policy`: `PolicyService` (containerPolicy, hostPolicy, networkPolicy, with
/// `PolicyStatus`) and `ProbeService` (getProbeData), which upstream also puts in `policy`.
pub mod policy {
    include!(concat!(env!("OUT_DIR"), "/policy.rs"));
}

/// The `ProbeService` items of package `policy`, re-exported under a shorter path.
pub mod probe {
    pub use crate::policy::{
        probe_service_client, probe_service_server, ContainerData, HostSecurityPolicies,
        NetworkSecurityPolicies, ProbeResponse,
    };
}

/// Package `state_agent`: `StateAgent` (WatchState, GetState), the node/namespace/container
/// inventory of spec §6.
pub mod state_agent {
    include!(concat!(env!("OUT_DIR"), "/state_agent.rs"));
}

pub mod json;
pub mod time;
pub mod values;

/// Encoded `FileDescriptorSet` of all the protos (and their imports), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kubearmor_descriptor.bin"));
