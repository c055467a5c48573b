//! Validation errors name file, document, field path and reason; nothing is accepted in part.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubearmor_policy::*;

fn errors(yaml: &str) -> Vec<String> {
    match parse_policies(yaml, "policies/x.yaml") {
        Ok(p) => panic!("expected errors, got {} policies", p.policies.len()),
        Err(e) => e.errors().map(ToString::to_string).collect(),
    }
}

const HEAD: &str = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n";

fn host(body: &str) -> String {
    format!("{HEAD}{body}")
}

#[test]
fn issue_example_directory_without_slash() {
    let good = host("  file:\n    matchPaths:\n    - path: /etc/passwd\n");
    let bad =
        host("  file:\n    matchDirectories:\n    - dir: /etc\n").replace("name: p", "name: q");
    let e = errors(&format!("{good}---\n{bad}"));
    assert_eq!(
        e,
        vec!["policies/x.yaml: document 2: spec.file.matchDirectories[0].dir: must end with '/'"]
    );
}

#[test]
fn field_errors_name_their_path() {
    let cases: &[(&str, &str)] = &[
        (
            "  severity: 11\n  file:\n    matchPaths:\n    - path: /a\n",
            "spec.severity: must be between 1 and 10, not 11",
        ),
        (
            "  action: Deny\n  file:\n    matchPaths:\n    - path: /a\n",
            "spec.action: must be Allow, Audit or Block, not \"Deny\"",
        ),
        (
            "  file:\n    matchPaths:\n    - path: relative\n",
            "spec.file.matchPaths[0].path: \"relative\" must be an absolute path",
        ),
        (
            "  file:\n    matchPaths:\n    - path: /etc/\n",
            "spec.file.matchPaths[0].path: \"/etc/\" must not end with '/'",
        ),
        (
            "  file:\n    matchPaths:\n    - path: /a/../b\n",
            "must not contain '.' or '..'",
        ),
        (
            "  file:\n    matchPaths:\n    - readOnly: true\n",
            "spec.file.matchPaths[0].path: is required",
        ),
        (
            "  file:\n    matchPatterns:\n    - pattern: /a[\n",
            "spec.file.matchPatterns[0].pattern: \"/a[\": unterminated character class",
        ),
        (
            "  process:\n    matchPaths:\n    - execname: a/b\n",
            "spec.process.matchPaths[0].execname",
        ),
        (
            "  process:\n    matchDirectories:\n    - dir: /bin/\n      readOnly: true\n",
            "spec.process.matchDirectories[0].readOnly: applies to file rules only",
        ),
        (
            "  network:\n    matchProtocols:\n    - protocol: tcp,quic\n",
            "spec.network.matchProtocols[0].protocol: unknown protocol \"quic\"",
        ),
        (
            "  capabilities:\n    matchCapabilities:\n    - capability: net_rawx\n",
            "unknown capability \"net_rawx\"",
        ),
        (
            "  syscalls:\n    matchSyscalls:\n    - syscall: [unlinkk]\n",
            "spec.syscalls.matchSyscalls[0].syscall: unknown syscalls",
        ),
        (
            "  device:\n    matchDevice:\n    - class: FLOPPY\n",
            "spec.device.matchDevice[0].class: unknown USB class \"FLOPPY\"",
        ),
        (
            "  device:\n    matchDevice:\n    - class: 8\n      level: 0\n",
            "spec.device.matchDevice[0].level: must be between 1 and 255, not 0",
        ),
        (
            "  file:\n    matchDirectory:\n    - dir: /a/\n",
            "spec.file.matchDirectory: unknown field `matchDirectory`",
        ),
        (
            "  file:\n    matchPaths:\n    - path: /a\n      readonly: true\n",
            "spec.file.matchPaths[0].readonly: unknown field `readonly`",
        ),
        (
            "  file:\n    matchPaths:\n    - path: /a\n      severity: high\n",
            "spec.file.matchPaths[0].severity: invalid type",
        ),
        (
            "  apparmor: deny /etc/** rw,\n",
            "spec.apparmor: native AppArmor rules are not supported",
        ),
    ];
    for (body, want) in cases {
        let e = errors(&host(body));
        assert!(
            e.iter()
                .any(|l| l.starts_with("policies/x.yaml: document 1: ") && l.contains(want)),
            "for\n{body}\nwanted {want:?}, got {e:#?}"
        );
    }
}

#[test]
fn document_level_errors() {
    assert!(errors("kind: Foo\n")[0].contains("kind: must be KubeArmorPolicy"));
    assert!(errors("- a\n- b\n")[0].contains("document 1"));
    assert!(errors("a: [\n")[0].contains("not valid YAML"));
    let no_selector = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: p\nspec:\n  file:\n    matchPaths:\n    - path: /a\n";
    assert!(errors(no_selector)[0].contains("spec.nodeSelector: is required"));
    let bad_name =
        host("  file:\n    matchPaths:\n    - path: /a\n").replace("name: p", "name: ../etc");
    assert!(errors(&bad_name)[0].contains("metadata.name: \"../etc\" is not a valid name"));
    let twice = host("  file:\n    matchPaths:\n    - path: /a\n");
    assert!(errors(&format!("{twice}---\n{twice}"))[0].contains("defined twice"));
    let net = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorNetworkPolicy\nmetadata:\n  name: n\nspec: {}\n";
    assert!(errors(net)[0].contains("KubeArmorNetworkPolicy is not supported"));
}

#[test]
fn one_bad_document_rejects_the_whole_input() {
    let good = host("  file:\n    matchPaths:\n    - path: /a\n");
    let bad = host("  severity: 0\n  file:\n    matchPaths:\n    - path: /a\n")
        .replace("name: p", "name: q");
    let err = parse_policies(&format!("{good}---\n{bad}"), "f").unwrap_err();
    assert_eq!(err.errors().count(), 1);
}

#[test]
fn limits_are_enforced() {
    let huge = "#".repeat(limits::MAX_INPUT_BYTES + 1);
    assert!(errors(&huge)[0].contains("the limit is"));
    let many: String = (0..=limits::MAX_DOCUMENTS).map(|_| "---\n{}\n").collect();
    assert!(errors(&many)
        .iter()
        .any(|e| e.contains("more than 1000 documents")));
    let long = format!("/{}", "a".repeat(limits::MAX_STRING));
    assert!(errors(&host(&format!(
        "  file:\n    matchPaths:\n    - path: {long}\n"
    )))[0]
        .contains("at most 4096"));
    let args: String = (0..21).map(|i| format!("a{i},")).collect();
    let body = format!(
        "  process:\n    matchPaths:\n    - path: /bin/x\n      allowedArgs: [{}]\n",
        args.trim_end_matches(',')
    );
    assert!(errors(&host(&body))[0].contains("more than 20 entries"));
}

#[test]
fn warnings_do_not_reject() {
    let yaml = host("  action: block\n  network:\n    matchProtocols:\n    - protocol: udp\n");
    let parsed = parse_policies(&yaml, "f").unwrap();
    assert_eq!(parsed.policies.len(), 1);
    let w: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|l| l.contains("spec.action") && l.contains("read as Block")),
        "{w:?}"
    );
    assert!(w.iter().any(|l| l.contains("requires fromSource")), "{w:?}");
}

#[test]
fn grpc_envelope() {
    let obj = serde_json::json!({
        "type": "ADDED",
        "object": {
            "kind": "KubeArmorHostPolicy",
            "metadata": {"name": "hsp-x"},
            "spec": {"nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}},
                     "process": {"matchPaths": [{"path": "/usr/bin/curl"}]}, "action": "Block"}
        }
    });
    let c = parse_policy_change(obj.to_string().as_bytes(), PolicyKind::Host).unwrap();
    assert_eq!(c.change, ChangeType::Added);
    assert_eq!(c.name, "hsp-x");
    assert_eq!(c.policy.unwrap().rules.paths.len(), 1);

    let del = serde_json::json!({"type": "DELETED", "object": {"metadata": {"name": "hsp-x"}}});
    let c = parse_policy_change(del.to_string().as_bytes(), PolicyKind::Host).unwrap();
    assert_eq!(c.change, ChangeType::Deleted);
    assert!(c.policy.is_none());

    assert!(parse_policy_change(b"{not json", PolicyKind::Host).is_err());
    assert!(parse_policy_change(br#"{"type":"ADDED"}"#, PolicyKind::Host).is_err());
    let ksp = serde_json::json!({"type": "ADDED", "object": {
        "kind": "KubeArmorPolicy", "metadata": {"name": "k"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "file": {"matchPaths": [{"path": "/a"}]}}}});
    let e = parse_policy_change(ksp.to_string().as_bytes(), PolicyKind::Host).unwrap_err();
    assert!(e.to_string().contains("cannot be sent as"), "{e}");
}

#[test]
fn upstream_backup_namespace_name_is_accepted() {
    let backup = r#"{"kind":"KubeArmorPolicy","metadata":{"name":"ksp-x","namespaceName":"container_namespace"},"spec":{"selector":{"matchLabels":{"kubearmor.io/container.name":"web"}},"process":{"matchPaths":[{"path":"/bin/ls"}]},"action":"Block"}}"#;
    let parsed = parse_policies(backup, "backup.yaml").unwrap();
    assert_eq!(
        parsed.policies[0].namespace.as_deref(),
        Some("container_namespace")
    );
}
