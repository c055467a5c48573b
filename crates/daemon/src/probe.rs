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
            .map(|p| json!({"Name": p.name, "Enforcer": p.enforcer, "Families": p.families, "Open": p.open}))
            .collect::<Vec<_>>(),
        "NotEnforced": enforcement
            .unenforced
            .iter()
            .map(|(f, why)| json!({"Family": f, "Reason": why}))
            .collect::<Vec<_>>(),
        // kubearmor-rs: a build with the test-only hooks (event injection, forgeable uevents).
        "TestHooks": crate::config::TEST_HOOKS,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::planes::PlaneStatus;
    use crate::store::{PolicyStore, Scope, StoreSettings};
    use kubearmor_containers::procfs::HostProc;
    use kubearmor_containers::{Container, HookRequest, Registry, Source};
    use kubearmor_policy::{HostIdentity, Postures};

    const POLICIES: &str = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: ksp-web}
spec:
  selector: {matchLabels: {kubearmor.io/container.name: web}}
  process: {matchPaths: [{path: /usr/bin/apt}]}
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: ksp-shop}
spec:
  selector: {matchLabels: {app: shop}}
  file: {matchPaths: [{path: /etc/shadow}]}
  action: Block
";

    fn config() -> Config {
        crate::config::resolve(crate::config::Inputs {
            file: None,
            env: &Default::default(),
            flags: &[],
            hostname: "vm-1",
        })
        .unwrap()
        .config
    }

    fn store(dir: &Path, container_policies: bool) -> PolicyStore {
        std::fs::write(dir.join("p.yaml"), POLICIES).unwrap();
        let store = PolicyStore::new(StoreSettings {
            dir: dir.to_path_buf(),
            scope: Scope {
                host: HostIdentity {
                    hostname: "vm-1".into(),
                    labels: Default::default(),
                },
                host_postures: Postures::default(),
                container_postures: Postures::default(),
                host_policies: true,
                container_policies,
            },
            immutable: false,
        });
        store.rescan();
        store
    }

    fn registry() -> Registry {
        // records without a pid never touch /proc
        let reg = Registry::new(Arc::new(HostProc::new("/nonexistent")));
        for (id, name, labels, cgroup_id) in [
            ("c1", "web", "app=shop", 11),
            ("c2", "web", "", 0),
            ("c3", "db", "app=shop", 13),
            ("c4", "idle", "", 14),
        ] {
            let c = Container {
                container_id: id.into(),
                container_name: name.into(),
                labels: labels.into(),
                cgroup_id,
                ..Container::default()
            };
            reg.apply(&HookRequest::create(c), Source::Hook).unwrap();
        }
        reg
    }

    fn enforcing() -> Enforcement {
        Enforcement::from_planes(
            vec![PlaneStatus {
                name: "fanotify",
                enforcer: "fanotify",
                families: vec!["Process", "File"],
                open: vec![],
                down: None,
            }],
            &[],
        )
    }

    #[test]
    fn containers_and_the_policies_that_select_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), true);
        let reg = registry();
        let r = probe_response(&config(), &store.snapshot(), &reg.snapshot(), &enforcing());
        assert_eq!(r.container_list, ["db", "idle", "web", "web"]);
        let names = |k: &str| r.container_map[k].policy_list.clone();
        // one endpoint for both "web" containers: the union of their policies
        assert_eq!(names("web"), ["ksp-shop", "ksp-web"]);
        assert_eq!(names("db"), ["ksp-shop"]);
        assert!(names("idle").is_empty());
        assert_eq!(r.container_map.len(), 3);
        let doc: serde_json::Value =
            serde_json::from_slice(&r.container_map["db"].policy_data_list[0].policy).unwrap();
        assert_eq!(doc["metadata"]["name"], "ksp-shop");
        assert_eq!(doc["spec"]["selector"]["matchLabels"]["app"], "shop");
        // enforced only where a plane runs and can find every container (cgroup id known)
        assert_eq!(r.container_map["db"].policy_enabled, 1);
        assert_eq!(r.container_map["idle"].policy_enabled, 1);
        assert_eq!(r.container_map["web"].policy_enabled, 0);
        let r = probe_response(
            &config(),
            &store.snapshot(),
            &reg.snapshot(),
            &Enforcement::none(),
        );
        assert!(r.container_map.values().all(|c| c.policy_enabled == 0));
    }

    #[test]
    fn disabled_container_policies_select_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), false);
        let mut config = config();
        config.container_policy = false;
        let r = probe_response(
            &config,
            &store.snapshot(),
            &registry().snapshot(),
            &enforcing(),
        );
        assert_eq!(r.container_list.len(), 4);
        assert!(r.container_map.values().all(|c| c.policy_list.is_empty()));
        assert!(r.container_map.values().all(|c| c.policy_enabled == 0));
        let empty = probe_response(&config, &store.snapshot(), &[], &enforcing());
        assert!(empty.container_list.is_empty() && empty.container_map.is_empty());
    }
}
