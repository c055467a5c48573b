//! What `karmor probe` reads in systemd mode: the probe file (`/tmp/karmorProbeData.cfg`,
//! key `probeDataPath`) and `policy.ProbeService/getProbeData` (runtime spec §2.4, §5.3).
//!
//! Both tell the truth about enforcement: with no plane active, `ActiveLSM` is empty,
//! `HostSecurity`/`ContainerSecurity` are false, and containers report `policyEnabled: 0`.
//!
//! Containers come from the container registry, read at the time of the call: a container is
//! listed as soon as it is registered, which is before its OCI hook gets `ok`. The probe file
//! (written once at start, upstream's `KarmorData` keys) lists no containers, as upstream's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kubearmor_containers::ContainerRecord;
use kubearmor_proto::policy::{ContainerData, HostSecurityPolicies, Policy, ProbeResponse};
use serde_json::json;

use crate::config::Config;
use crate::host_info::HostInfo;
use crate::planes::Enforcement;
use crate::store::PolicySnapshot;

/// The probe file's JSON (upstream's `KarmorData` keys).
pub fn probe_file_json(config: &Config, host: &HostInfo, enforcement: &Enforcement) -> String {
    let enforcing = enforcement.is_enforcing();
    let c = &config.container_postures;
    let h = &config.host_postures;
    let v = json!({
        "OSImage": host.os_image,
        "KernelVersion": host.kernel_version,
        "KubeletVersion": "",
        "ContainerRuntime": "",
        "ActiveLSM": enforcement.active_lsm(),
        "KernelHeaderPresent": host.kernel_headers,
        "HostSecurity": enforcing && config.host_policy,
        "ContainerSecurity": enforcing && config.container_policy,
        "ContainerDefaultPosture": {
            "file": c.file.as_str(),
            "network": c.network.as_str(),
            "capabilities": c.capabilities.as_str(),
        },
        "HostDefaultPosture": {
            "file": h.file.as_str(),
            "network": h.network.as_str(),
            "capabilities": h.capabilities.as_str(),
            "device": h.device.as_str(),
        },
        "HostVisibility": config.host_visibility.to_string(),
        // kubearmor-rs: which plane enforces what, and what is not enforced on this kernel.
        "EnforcementPlanes": enforcement
            .planes
            .iter()
            .map(|p| json!({"Name": p.name, "Enforcer": p.enforcer, "Families": p.families}))
            .collect::<Vec<_>>(),
        "NotEnforced": enforcement
            .unenforced
            .iter()
            .map(|(f, why)| json!({"Family": f, "Reason": why}))
            .collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Writes the probe file; a failure is a warning (karmor then has less to show).
pub fn write_probe_file(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!("cannot write the karmor probe file {}: {e}", path.display());
    }
}

/// The `getProbeData` answer.
/// * `containerList`: the name of every registered container (one entry per container, sorted).
/// * `containerMap`: endpoint name (the container name outside Kubernetes) → the container
///   and cluster policies that select it; `policyEnabled` is 1 when a plane enforces and the
///   planes can find the container (its cgroup id is known).
/// * `hostMap`: one key, the host name, with the host policies that select this host.
pub fn probe_response(
    config: &Config,
    snapshot: &PolicySnapshot,
    containers: &[Arc<ContainerRecord>],
    enforcement: &Enforcement,
) -> ProbeResponse {
    let mut records: Vec<&Arc<ContainerRecord>> = containers.iter().collect();
    records.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let container_list = records.iter().map(|r| r.name.clone()).collect();
    let enforcing = enforcement.is_enforcing() && config.container_policy;
    let mut container_map: BTreeMap<String, ContainerData> = BTreeMap::new();
    for r in records {
        let entry = container_map
            .entry(r.endpoint.clone())
            .or_insert_with(|| ContainerData {
                policy_enabled: 1,
                ..ContainerData::default()
            });
        if !(enforcing && r.cgroup_id != 0) {
            entry.policy_enabled = 0;
        }
        for p in snapshot.container_policies(&r.identity()) {
            if !entry.policy_list.contains(&p.policy.name) {
                entry.policy_list.push(p.policy.name.clone());
                entry.policy_data_list.push(Policy {
                    policy: p.probe_json(),
                });
            }
        }
    }
    let mut host_map = BTreeMap::new();
    if config.host_policy {
        let mut h = HostSecurityPolicies::default();
        for p in snapshot.host_policies() {
            h.policy_list.push(p.policy.name.clone());
            h.policy_data_list.push(Policy {
                policy: p.probe_json(),
            });
        }
        host_map.insert(config.host.clone(), h);
    }
    ProbeResponse {
        container_list,
        container_map,
        host_map,
        network_map: BTreeMap::new(),
    }
}
