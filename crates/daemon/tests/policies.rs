//! PolicyService and the policy directory, against the real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kubearmor_proto::policy::PolicyStatus;
use serde_json::json;

#[tokio::test]
async fn add_delete_round_trip_survives_restart() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::default());
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-shadow", "/etc/shadow")).await,
        PolicyStatus::Applied
    );
    assert_eq!(
        send_container(&mut c, "ADDED", container_policy("ksp-block-policy")).await,
        PolicyStatus::Applied
    );
    // The same host policy again: no-op, Applied. Different content: Modified.
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-shadow", "/etc/shadow")).await,
        PolicyStatus::Applied
    );
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-passwd", "/etc/passwd")).await,
        PolicyStatus::Applied
    );
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-passwd", "/etc/group")).await,
        PolicyStatus::Modified
    );
    assert_eq!(d.host_policies().await, vec!["hsp-passwd", "hsp-shadow"]);
    // Persisted, one file per policy, host and container prefixed.
    for f in [
        "hsp-hsp-shadow.yaml",
        "hsp-hsp-passwd.yaml",
        "ksp-ksp-block-policy.yaml",
    ] {
        assert!(dir.policies().join(f).is_file(), "{f}");
    }
    assert!(d.stop().success());

    // Restart on the same directory: everything is back.
    let d = Daemon::start(&dir, Options::default());
    assert_eq!(d.host_policies().await, vec!["hsp-passwd", "hsp-shadow"]);
    let probe = d.probe().await;
    let data: serde_json::Value =
        serde_json::from_slice(&probe.host_map["test-vm"].policy_data_list[0].policy).unwrap();
    assert_eq!(data["spec"]["file"]["matchPaths"][0]["path"], "/etc/group");
    let mut c = d.policy_client().await;
    // Still the same policy after the restart: identical content is a no-op.
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-passwd", "/etc/group")).await,
        PolicyStatus::Applied
    );
    let del = json!({"metadata": {"name": "hsp-shadow"}});
    assert_eq!(
        send_host(&mut c, "DELETED", del.clone()).await,
        PolicyStatus::Deleted
    );
    assert_eq!(
        send_host(&mut c, "DELETED", del.clone()).await,
        PolicyStatus::NotExist
    );
    assert_eq!(
        send_container(
            &mut c,
            "DELETED",
            json!({"metadata": {"name": "ksp-block-policy"}})
        )
        .await,
        PolicyStatus::Deleted
    );
    assert!(!dir.policies().join("hsp-hsp-shadow.yaml").exists());
    assert!(d.stop().success());

    let d = Daemon::start(&dir, Options::default());
    assert_eq!(d.host_policies().await, vec!["hsp-passwd"]);
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "DELETED", del).await,
        PolicyStatus::NotExist
    );
}

#[tokio::test]
async fn invalid_policies_are_rejected_and_change_nothing() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::default());
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-good", "/etc/shadow")).await,
        PolicyStatus::Applied
    );
    let files_before = std::fs::read_dir(dir.policies()).unwrap().count();

    // A typo in a field: Invalid, with the field named in the daemon's log.
    let mut typo = host_policy("hsp-typo", "/etc/passwd");
    typo["spec"]["file"] = json!({"matchPath": [{"path": "/etc/passwd"}]});
    assert_eq!(
        send_host(&mut c, "ADDED", typo).await,
        PolicyStatus::Invalid
    );
    d.wait_log("matchPath").await;
    // Not JSON at all; no name; a container policy sent as a host policy.
    for payload in [
        b"{not json".to_vec(),
        envelope("ADDED", json!({"metadata": {}, "spec": {}})),
        envelope(
            "ADDED",
            json!({"kind": "KubeArmorPolicy", "metadata": {"name": "x"}, "spec": container_policy("x")["spec"]}),
        ),
    ] {
        let r = c
            .host_policy(kubearmor_proto::policy::Policy { policy: payload })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, PolicyStatus::Invalid as i32);
    }
    // An invalid replacement of an existing policy keeps the old one.
    let mut bad = host_policy("hsp-good", "relative/path");
    bad["spec"]["action"] = json!("Deny");
    assert_eq!(send_host(&mut c, "ADDED", bad).await, PolicyStatus::Invalid);
    assert_eq!(d.host_policies().await, vec!["hsp-good"]);
    let probe = d.probe().await;
    let data: serde_json::Value =
        serde_json::from_slice(&probe.host_map["test-vm"].policy_data_list[0].policy).unwrap();
    assert_eq!(data["spec"]["file"]["matchPaths"][0]["path"], "/etc/shadow");
    assert_eq!(
        std::fs::read_dir(dir.policies()).unwrap().count(),
        files_before
    );
    // networkPolicy is not supported: NotEnabled.
    let r = c
        .network_policy(kubearmor_proto::policy::Policy {
            policy: envelope("ADDED", json!({"metadata": {"name": "n"}, "spec": {}})),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, PolicyStatus::NotEnabled as i32);
    // Still serving.
    let mut lc = d.log_client().await;
    let reply = lc
        .health_check(kubearmor_proto::feeder::NonceMessage { nonce: 5 })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().retval, 5);
}

#[tokio::test]
async fn oversized_policy_message_is_refused_and_the_daemon_keeps_running() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::default());
    let mut c = d.policy_client().await;
    let mut big = host_policy("hsp-big", "/etc/shadow");
    big["spec"]["message"] = json!("x".repeat(6 * 1024 * 1024));
    let err = c
        .host_policy(kubearmor_proto::policy::Policy {
            policy: envelope("ADDED", big),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
    assert!(err.message().contains("too large"), "{err}");
    // The server is fine, and so is the next request on a new connection.
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-small", "/etc/shadow")).await,
        PolicyStatus::Applied
    );
    assert_eq!(d.host_policies().await, vec!["hsp-small"]);
}

#[tokio::test]
async fn directory_hot_reload_applies_good_files_and_rejects_broken_ones() {
    let dir = TestDir::new();
    // Upstream's JSON backup format is loaded at boot.
    std::fs::write(
        dir.policies().join("hsp-upstream.yaml"),
        r#"{"metadata":{"policyName":"hsp-upstream"},"spec":{"nodeSelector":{"matchLabels":{"kubearmor.io/hostname":"*"},"identities":["kubearmor.io/hostname=*"]},"process":{"matchPaths":[{"path":"/usr/bin/ls"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"action":"Block"}}"#,
    )
    .unwrap();
    let d = Daemon::start(&dir, Options::default());
    assert_eq!(d.host_policies().await, vec!["hsp-upstream"]);

    let yaml = |name: &str, path: &str| {
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n  file:\n    matchPaths:\n    - path: {path}\n  action: Audit\n"
        )
    };
    let file = dir.policies().join("dropped-in.yaml");
    std::fs::write(&file, yaml("hsp-dropped", "/etc/shadow")).unwrap();
    eventually("the dropped-in policy is applied", || async {
        d.host_policies().await == vec!["hsp-dropped", "hsp-upstream"]
    })
    .await;

    // Break it: rejected, reported with file, document and field; the old version stays.
    std::fs::write(
        &file,
        yaml("hsp-dropped", "/etc/passwd").replace("matchPaths", "matchPathz"),
    )
    .unwrap();
    d.wait_log("dropped-in.yaml: document 1: spec.file").await;
    // A new broken file is not applied either.
    std::fs::write(dir.policies().join("broken.yaml"), "apiVersion: [").unwrap();
    d.wait_log("broken.yaml").await;
    assert_eq!(d.host_policies().await, vec!["hsp-dropped", "hsp-upstream"]);
    let probe = d.probe().await;
    let dropped = probe.host_map["test-vm"]
        .policy_data_list
        .iter()
        .map(|p| serde_json::from_slice::<serde_json::Value>(&p.policy).unwrap())
        .find(|v| v["metadata"]["name"] == "hsp-dropped")
        .unwrap();
    assert_eq!(
        dropped["spec"]["file"]["matchPaths"][0]["path"],
        "/etc/shadow"
    );

    // Fixed: applied; removed: gone.
    std::fs::write(&file, yaml("hsp-dropped", "/etc/passwd")).unwrap();
    eventually("the fixed policy is applied", || async {
        let probe = d.probe().await;
        probe.host_map["test-vm"].policy_data_list.iter().any(|p| {
            let v: serde_json::Value = serde_json::from_slice(&p.policy).unwrap();
            v["metadata"]["name"] == "hsp-dropped"
                && v["spec"]["file"]["matchPaths"][0]["path"] == "/etc/passwd"
        })
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    eventually("the removed policy is gone", || async {
        d.host_policies().await == vec!["hsp-upstream"]
    })
    .await;
}

#[tokio::test]
async fn immutable_mode_refuses_changes() {
    let dir = TestDir::new();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/policies/hsp-audit-shadow.yaml"
        ),
        dir.policies().join("hsp-audit-shadow.yaml"),
    )
    .unwrap();
    let d = Daemon::start(&dir, Options::config("immutablePolicies: true\n"));
    assert_eq!(d.host_policies().await, vec!["hsp-audit-shadow"]);
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-new", "/etc/passwd")).await,
        PolicyStatus::NotEnabled
    );
    assert_eq!(
        send_host(
            &mut c,
            "DELETED",
            json!({"metadata": {"name": "hsp-audit-shadow"}})
        )
        .await,
        PolicyStatus::NotEnabled
    );
    assert_eq!(
        send_container(&mut c, "ADDED", container_policy("ksp-x")).await,
        PolicyStatus::NotEnabled
    );
    d.wait_log("refused: immutablePolicies is set").await;
    assert_eq!(d.host_policies().await, vec!["hsp-audit-shadow"]);
    assert_eq!(std::fs::read_dir(dir.policies()).unwrap().count(), 1);
}

#[tokio::test]
async fn disabled_host_policies_answer_not_enabled() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::config("enableKubeArmorHostPolicy: false\n"));
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-x", "/etc/passwd")).await,
        PolicyStatus::NotEnabled
    );
    assert_eq!(
        send_container(&mut c, "ADDED", container_policy("ksp-x")).await,
        PolicyStatus::Applied
    );
}
