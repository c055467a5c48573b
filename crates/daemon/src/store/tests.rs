#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use kubearmor_policy::{HostIdentity, Postures};
use serde_json::json;

use super::*;

fn scope(host: bool, container: bool) -> Scope {
    Scope {
        host: HostIdentity {
            hostname: "vm-1".into(),
            labels: Default::default(),
        },
        host_postures: Postures::default(),
        container_postures: Postures::default(),
        host_policies: host,
        container_policies: container,
    }
}

fn store_in(dir: &Path) -> PolicyStore {
    PolicyStore::new(StoreSettings {
        dir: dir.to_path_buf(),
        scope: scope(true, true),
        immutable: false,
    })
}

fn host_object(name: &str, path: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}},
            "file": {"matchPaths": [{"path": path}]},
            "action": "Audit"
        }
    })
}

fn container_object(name: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"kubearmor.io/container.name": "web"}},
            "process": {"matchPaths": [{"path": "/usr/bin/apt"}]},
            "action": "Block"
        }
    })
}

fn msg(t: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": t, "object": object})).unwrap()
}

fn host_yaml(name: &str, path: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n  file:\n    matchPaths:\n    - path: {path}\n  action: Audit\n"
    )
}

fn names(s: &PolicyStore) -> Vec<String> {
    s.snapshot()
        .policies()
        .map(|p| p.policy.name.clone())
        .collect()
}

#[test]
fn host_policy_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_in(dir.path());
    let add = |o| s.apply(Channel::Host, &msg("ADDED", o)).status;
    assert_eq!(add(host_object("a", "/etc/shadow")), PolicyStatus::Applied);
    assert!(dir.path().join("hsp-a.yaml").is_file());
    // Identical content: Applied, nothing rewritten.
    let gen = s.snapshot().generation;
    assert_eq!(add(host_object("a", "/etc/shadow")), PolicyStatus::Applied);
    assert_eq!(s.snapshot().generation, gen);
    // Same name, different content: replaced, Modified.
    assert_eq!(add(host_object("a", "/etc/passwd")), PolicyStatus::Modified);
    let snap = s.snapshot();
    let p = snap.host_policies().next().unwrap();
    assert_eq!(
        p.document["spec"]["file"]["matchPaths"][0]["path"],
        "/etc/passwd"
    );
    assert_eq!(snap.host_rules().len(), 1);
    // Delete, then delete again.
    let del = |n: &str| {
        s.apply(
            Channel::Host,
            &msg("DELETED", json!({"metadata": {"name": n}})),
        )
        .status
    };
    assert_eq!(del("a"), PolicyStatus::Deleted);
    assert!(!dir.path().join("hsp-a.yaml").exists());
    assert_eq!(del("a"), PolicyStatus::NotExist);
    assert!(s.snapshot().is_empty());
}

#[test]
fn container_policy_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_in(dir.path());
    let send = |t, o| s.apply(Channel::Container, &msg(t, o)).status;
    assert_eq!(send("ADDED", container_object("k")), PolicyStatus::Applied);
    assert_eq!(send("ADDED", container_object("k")), PolicyStatus::Applied);
    assert_eq!(
        send("MODIFIED", container_object("k")),
        PolicyStatus::Modified
    );
    assert!(dir.path().join("ksp-k.yaml").is_file());
    // A host and a container policy of the same name live side by side.
    assert_eq!(
        s.apply(
            Channel::Host,
            &msg("ADDED", host_object("k", "/etc/shadow"))
        )
        .status,
        PolicyStatus::Applied
    );
    assert_eq!(s.snapshot().len(), 2);
    assert_eq!(
        s.apply(
            Channel::Container,
            &msg("DELETED", json!({"metadata": {"name": "k"}}))
        )
        .status,
        PolicyStatus::Deleted
    );
    assert_eq!(names(&s), vec!["k"]);
    assert_eq!(
        s.snapshot().policies().next().unwrap().policy.kind,
        PolicyKind::Host
    );
}

#[test]
fn invalid_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_in(dir.path());
    s.apply(
        Channel::Host,
        &msg("ADDED", host_object("a", "/etc/shadow")),
    );
    let gen = s.snapshot().generation;
    for bad in [
        b"not json".to_vec(),
        msg("ADDED", json!({"metadata": {}, "spec": {}})),
        msg(
            "ADDED",
            json!({"metadata": {"name": "b"}, "spec": {"nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}}, "file": {"matchPath": []}}}),
        ),
        msg("UPDATED", host_object("b", "/x")),
        // A container policy sent as a host policy.
        msg(
            "ADDED",
            json!({"kind": "KubeArmorPolicy", "metadata": {"name": "c"}, "spec": container_object("c")["spec"]}),
        ),
    ] {
        let out = s.apply(Channel::Host, &bad);
        assert_eq!(out.status, PolicyStatus::Invalid, "{}", out.detail);
    }
    assert_eq!(s.snapshot().generation, gen);
    assert_eq!(names(&s), vec!["a"]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn disabled_and_immutable_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let s = PolicyStore::new(StoreSettings {
        dir: dir.path().to_path_buf(),
        scope: scope(false, true),
        immutable: false,
    });
    let out = s.apply(Channel::Host, &msg("ADDED", host_object("a", "/x")));
    assert_eq!(out.status, PolicyStatus::NotEnabled);
    assert!(out.detail.contains("enableKubeArmorHostPolicy"));

    fs::write(
        dir.path().join("base.yaml"),
        host_yaml("base", "/etc/shadow"),
    )
    .unwrap();
    let s = PolicyStore::new(StoreSettings {
        dir: dir.path().to_path_buf(),
        scope: scope(true, true),
        immutable: true,
    });
    s.rescan();
    for (t, o) in [
        ("ADDED", host_object("a", "/x")),
        ("DELETED", json!({"metadata": {"name": "base"}})),
    ] {
        let out = s.apply(Channel::Host, &msg(t, o));
        assert_eq!(out.status, PolicyStatus::NotEnabled);
        assert!(out.detail.contains("immutablePolicies"));
    }
    assert_eq!(names(&s), vec!["base"]);
    assert!(dir.path().join("base.yaml").exists());
}

#[test]
fn survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = store_in(dir.path());
        s.apply(
            Channel::Host,
            &msg("ADDED", host_object("a", "/etc/shadow")),
        );
        s.apply(Channel::Container, &msg("ADDED", container_object("k")));
    }
    let s = store_in(dir.path());
    let r = s.rescan();
    assert_eq!(r.added.len(), 2);
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    let snap = s.snapshot();
    let a = snap
        .get(&PolicyKey {
            kind: PolicyKind::Host,
            name: "a".into(),
        })
        .unwrap();
    assert_eq!(
        a.document["spec"]["file"]["matchPaths"][0]["path"],
        "/etc/shadow"
    );
    // The restarted store keeps answering like the first: identical re-add is a no-op.
    assert_eq!(
        s.apply(
            Channel::Host,
            &msg("ADDED", host_object("a", "/etc/shadow"))
        )
        .status,
        PolicyStatus::Applied
    );
}

#[test]
fn directory_changes_are_per_file_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_in(dir.path());
    let good = dir.path().join("good.yaml");
    fs::write(&good, host_yaml("good", "/etc/shadow")).unwrap();
    let r = s.rescan();
    assert_eq!(r.added.len(), 1);
    assert!(r.swapped);
    assert!(s.rescan().is_noop());

    // A broken edit: rejected with the crate's diagnostics; the old version stays in force.
    fs::write(
        &good,
        host_yaml("good", "/etc/passwd").replace("matchPaths", "matchPathz"),
    )
    .unwrap();
    let other = dir.path().join("other.yaml");
    fs::write(&other, host_yaml("other", "/etc/hosts")).unwrap();
    let r = s.rescan();
    assert_eq!(r.rejected.len(), 1);
    assert!(
        r.rejected[0].1.contains("good.yaml: document 1"),
        "{}",
        r.rejected[0].1
    );
    assert!(r.rejected[0].1.contains("matchPathz"));
    assert_eq!(names(&s), vec!["good", "other"]);
    let snap = s.snapshot();
    let g = snap
        .get(&PolicyKey {
            kind: PolicyKind::Host,
            name: "good".into(),
        })
        .unwrap();
    assert_eq!(
        g.document["spec"]["file"]["matchPaths"][0]["path"],
        "/etc/shadow"
    );
    assert_eq!(s.rejected_files().len(), 1);

    // Fixed: applied.
    fs::write(&good, host_yaml("good", "/etc/passwd")).unwrap();
    let r = s.rescan();
    assert_eq!(r.modified.len(), 1);
    assert!(s.rejected_files().is_empty());

    // A second file defining the same policy is rejected; the first keeps it.
    let dup = dir.path().join("dup.yaml");
    fs::write(&dup, host_yaml("good", "/tmp")).unwrap();
    let r = s.rescan();
    assert_eq!(r.rejected.len(), 1);
    assert!(
        r.rejected[0].1.contains("already defined"),
        "{}",
        r.rejected[0].1
    );
    let snap = s.snapshot();
    let g = snap
        .get(&PolicyKey {
            kind: PolicyKind::Host,
            name: "good".into(),
        })
        .unwrap();
    assert_eq!(g.file, good);
    fs::remove_file(&dup).unwrap();

    // Removing a file removes its policies.
    fs::remove_file(&other).unwrap();
    let r = s.rescan();
    assert_eq!(r.removed.len(), 1);
    assert_eq!(names(&s), vec!["good"]);
}

#[test]
fn grpc_updates_a_policy_in_its_own_file_and_refuses_shared_files() {
    let dir = tempfile::tempdir().unwrap();
    // Upstream's plain `<name>.yaml` backup.
    let upstream = dir.path().join("hsp-x.json");
    fs::write(&upstream, r#"{"metadata":{"policyName":"x"},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"}},"file":{"matchPaths":[{"path":"/etc/shadow"}]},"process":{},"action":"Audit"}}"#).unwrap();
    let shared = dir.path().join("bundle.yaml");
    fs::write(
        &shared,
        format!("{}---\n{}", host_yaml("y", "/a"), host_yaml("z", "/b")),
    )
    .unwrap();
    let s = store_in(dir.path());
    let r = s.rescan();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(names(&s), vec!["x", "y", "z"]);

    let out = s.apply(
        Channel::Host,
        &msg("ADDED", host_object("x", "/etc/passwd")),
    );
    assert_eq!(out.status, PolicyStatus::Modified, "{}", out.detail);
    assert!(fs::read_to_string(&upstream)
        .unwrap()
        .contains("/etc/passwd"));
    assert!(!dir.path().join("hsp-x.yaml").exists());

    let out = s.apply(
        Channel::Host,
        &msg("DELETED", json!({"metadata": {"name": "y"}})),
    );
    assert_eq!(out.status, PolicyStatus::Failure);
    assert!(out.detail.contains("bundle.yaml"), "{}", out.detail);
    assert_eq!(names(&s), vec!["x", "y", "z"]);
}

#[test]
fn write_failure_is_failure_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    let s = store_in(&policies);
    fs::remove_dir(&policies).unwrap();
    // The directory is now a file: nothing can be written into it.
    fs::write(&policies, "").unwrap();
    let out = s.apply(Channel::Host, &msg("ADDED", host_object("a", "/x")));
    assert_eq!(out.status, PolicyStatus::Failure, "{}", out.detail);
    assert!(s.snapshot().is_empty());
}

#[test]
fn host_rules_follow_the_selector_and_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let other_host = host_yaml("elsewhere", "/etc/shadow").replace("\"*\"", "node-9");
    fs::write(dir.path().join("a.yaml"), host_yaml("here", "/etc/shadow")).unwrap();
    fs::write(dir.path().join("b.yaml"), other_host).unwrap();
    let s = store_in(dir.path());
    s.rescan();
    let snap = s.snapshot();
    assert_eq!(snap.len(), 2);
    let selected: Vec<_> = snap
        .host_policies()
        .map(|p| p.policy.name.clone())
        .collect();
    assert_eq!(selected, vec!["here"]);
    assert_eq!(snap.host_rules().len(), 1);

    let s = PolicyStore::new(StoreSettings {
        dir: dir.path().to_path_buf(),
        scope: scope(false, true),
        immutable: false,
    });
    s.rescan();
    assert_eq!(s.snapshot().len(), 2, "loaded and validated");
    assert!(s.snapshot().host_rules().is_empty(), "but not in force");
}

#[test]
fn container_rules_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let s = store_in(dir.path());
    s.apply(Channel::Container, &msg("ADDED", container_object("k")));
    let snap = s.snapshot();
    let web = kubearmor_policy::ContainerIdentity {
        namespace: "container_namespace".into(),
        name: "web".into(),
        labels: Default::default(),
    };
    let db = kubearmor_policy::ContainerIdentity {
        name: "db".into(),
        ..web.clone()
    };
    assert_eq!(
        snap.container_rules(&web, &kubearmor_policy::NoResolve)
            .len(),
        1
    );
    assert!(snap
        .container_rules(&db, &kubearmor_policy::NoResolve)
        .is_empty());
}
