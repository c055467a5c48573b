//! What `karmor probe` reads in systemd mode: the probe file (`/tmp/karmorProbeData.cfg`,
//! key `probeDataPath`) and `policy.ProbeService/getProbeData` (runtime spec §2.4, §5.3).
//!
//! Both tell the truth about enforcement: with no plane active, `ActiveLSM` is empty,
//! `HostSecurity`/`ContainerSecurity` are false, and containers report `policyEnabled: 0`.

use std::collections::BTreeMap;
use std::path::Path;

use kubearmor_proto::policy::{HostSecurityPolicies, Policy, ProbeResponse};
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

/// The `getProbeData` answer. Containers appear once the container registry exists; the host
/// map has one key, the host name, with the host policies that select this host.
pub fn probe_response(config: &Config, snapshot: &PolicySnapshot) -> ProbeResponse {
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
        container_list: Vec::new(),
        container_map: BTreeMap::new(),
        host_map,
        network_map: BTreeMap::new(),
    }
}
