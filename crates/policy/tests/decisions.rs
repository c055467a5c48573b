//! Decision semantics, one test per rule of spec/kubearmor-policy.md §3 and per conformance
//! case of §7 that the decision function alone can answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use kubearmor_policy::*;

fn policies(yaml: &str) -> Vec<Policy> {
    match parse_policies(yaml, "test.yaml") {
        Ok(p) => p.policies,
        Err(e) => panic!("policy did not parse:\n{e}"),
    }
}

fn host_set(yaml: &str, postures: Postures) -> RuleSet {
    let subject = Subject::Host(HostIdentity {
        hostname: "node-1".into(),
        labels: BTreeMap::new(),
    });
    RuleSet::for_subject(
        &policies(yaml),
        &subject,
        SelectorMode::default(),
        postures,
        &NoResolve,
    )
}

fn container(name: &str, labels: &[(&str, &str)]) -> Subject {
    Subject::Container(ContainerIdentity {
        namespace: "multiubuntu".into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn set_for(yaml: &str, subject: &Subject, postures: Postures) -> RuleSet {
    let mode = SelectorMode { kubernetes: true };
    RuleSet::for_subject(&policies(yaml), subject, mode, postures, &NoResolve)
}

fn ksp(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: {name}\n  namespace: multiubuntu\nspec:\n  selector:\n    matchLabels:\n      container: ubuntu-1\n{body}"
    )
}

fn hsp(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}"
    )
}

fn ubuntu1() -> Subject {
    container(
        "ubuntu-1",
        &[("container", "ubuntu-1"), ("group", "group-1")],
    )
}

fn exec<'a>(path: &'a str) -> PathRequest<'a> {
    PathRequest::new(path)
}

fn open<'a>(path: &'a str, access: Access) -> PathRequest<'a> {
    PathRequest {
        access,
        ..PathRequest::new(path)
    }
}

fn policy_name(d: &Decision<'_>) -> Option<String> {
    match d.report {
        Report::Alert {
            matched: Matched::Policy(m),
            ..
        } => Some(m.policy.to_string()),
        Report::Alert {
            matched: Matched::DefaultPosture,
            ..
        } => Some("DefaultPosture".into()),
        _ => None,
    }
}

fn alert_action(d: &Decision<'_>) -> Option<Action> {
    match d.report {
        Report::Alert { action, .. } => Some(action),
        _ => None,
    }
}

fn meta<'a>(d: &Decision<'a>) -> &'a RuleMeta {
    match d.report {
        Report::Alert {
            matched: Matched::Policy(m),
            ..
        } => m,
        other => panic!("expected a policy alert, got {other:?}"),
    }
}

const BLOCK: Postures = Postures {
    file: Posture::Block,
    network: Posture::Block,
    capabilities: Posture::Block,
    device: Posture::Block,
};
const AUDIT: Postures = Postures {
    file: Posture::Audit,
    network: Posture::Audit,
    capabilities: Posture::Audit,
    device: Posture::Audit,
};

// §7.1: host path block, action defaulted to Block, no severity.
#[test]
fn host_process_path_block_defaults_to_block() {
    let set = host_set(
        &hsp(
            "hsp-proc-path-block",
            "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n",
        ),
        AUDIT,
    );
    let d = set.decide_exec(&exec("/usr/bin/ls"));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("hsp-proc-path-block"));
    assert_eq!(alert_action(&d), Some(Action::Block));
    assert_eq!(meta(&d).severity, 0);
    assert!(set.is_host());
    // Another binary is untouched and only logged.
    let other = set.decide_exec(&exec("/usr/bin/cat"));
    assert_eq!(other.verdict, Verdict::Allow);
    assert_eq!(other.report, Report::Log);
}

// §7.3: three-level inheritance of severity, tags, message and action.
#[test]
fn inheritance_rule_family_spec() {
    let body = "  severity: 5\n  tags: [global-tag]\n  message: global-msg\n  action: Block\n  process:\n    tags: [process-tag]\n    message: process-msg\n    matchDirectories:\n    - dir: /usr/bin/\n      recursive: true\n      severity: 3\n";
    let set = host_set(&hsp("hsp-inherit", body), AUDIT);
    let d = set.decide_exec(&exec("/usr/bin/ls"));
    assert!(d.is_denied());
    let m = meta(&d);
    assert_eq!(m.severity, 3);
    assert_eq!(m.tags, vec!["process-tag".to_string()]);
    assert_eq!(m.message, "process-msg");
    assert_eq!(m.action, Action::Block);
}

// §3.3 / §7.4: non-recursive directories cover direct children (and the directory itself);
// recursive ones cover any depth.
#[test]
fn directory_depth() {
    let body =
        "  action: Block\n  severity: 6\n  process:\n    matchDirectories:\n    - dir: /sbin/\n";
    let set = set_for(&ksp("ksp-dir", body), &ubuntu1(), AUDIT);
    assert!(set.decide_exec(&exec("/sbin/route")).is_denied());
    assert_eq!(meta(&set.decide_exec(&exec("/sbin/route"))).severity, 6);
    assert!(!set.decide_exec(&exec("/sbin/sub/tool")).is_denied());
    assert!(
        set.decide_exec(&exec("/sbin")).is_denied(),
        "the directory itself"
    );

    let body = "  action: Block\n  severity: 2\n  process:\n    matchDirectories:\n    - dir: /usr/\n      recursive: true\n";
    let set = set_for(&ksp("ksp-dir-rec", body), &ubuntu1(), AUDIT);
    let d = set.decide_exec(&exec("/usr/bin/whoami"));
    assert!(d.is_denied());
    assert_eq!(meta(&d).severity, 2);
    assert!(!set.decide_exec(&exec("/bin/whoami")).is_denied());
    assert!(
        !set.decide_exec(&exec("/usrx/bin")).is_denied(),
        "prefix is per component"
    );
}

// §7.5: fromSource scopes a process rule to the parent executable.
#[test]
fn from_source_process() {
    let body = "  action: Block\n  process:\n    matchPaths:\n    - path: /bin/ls\n      fromSource:\n      - path: /bin/dash\n";
    let set = set_for(&ksp("ksp-from-source", body), &ubuntu1(), AUDIT);
    let from_dash = PathRequest {
        source: Some("/bin/dash"),
        ..exec("/bin/ls")
    };
    let from_bash = PathRequest {
        source: Some("/bin/bash"),
        ..exec("/bin/ls")
    };
    assert!(set.decide_exec(&from_dash).is_denied());
    assert!(!set.decide_exec(&from_bash).is_denied());
    assert!(
        !set.decide_exec(&exec("/bin/ls")).is_denied(),
        "unknown source"
    );
    let pwd = PathRequest {
        source: Some("/bin/dash"),
        ..exec("/bin/pwd")
    };
    assert!(!set.decide_exec(&pwd).is_denied());
}

// §7.6: execname matches the file name anywhere.
#[test]
fn execname_anywhere() {
    let body = "  action: Block\n  process:\n    matchPaths:\n    - execname: apt\n";
    let set = set_for(&ksp("ksp-execname", body), &ubuntu1(), AUDIT);
    assert!(set.decide_exec(&exec("/usr/bin/apt")).is_denied());
    assert!(set.decide_exec(&exec("/opt/x/apt")).is_denied());
    assert!(!set.decide_exec(&exec("/usr/bin/apt-get")).is_denied());
}

// §7.7: matchExpressions with AND semantics (in either order).
#[test]
fn match_expressions() {
    let yaml = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: ksp-expr\n  namespace: multiubuntu\nspec:\n  selector:\n    matchExpressions:\n    - key: label\n      operator: In\n      values: [container=ubuntu-1]\n    - key: label\n      operator: NotIn\n      values: [container=ubuntu-3]\n  process:\n    matchPaths:\n    - execname: apt\n  action: Block\n";
    let u1 = ubuntu1();
    let u3 = container(
        "ubuntu-3",
        &[("container", "ubuntu-3"), ("group", "group-1")],
    );
    assert!(set_for(yaml, &u1, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());
    assert!(!set_for(yaml, &u3, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());

    let notin = yaml.replace(
        "    - key: label\n      operator: In\n      values: [container=ubuntu-1]\n    - key: label\n      operator: NotIn\n      values: [container=ubuntu-3]\n",
        "    - key: label\n      operator: NotIn\n      values: [container=ubuntu-1]\n",
    );
    assert!(!set_for(&notin, &u1, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());
    assert!(set_for(&notin, &u3, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());

    // Reversed order: both expressions still apply (KubeArmor would ignore the In).
    let reversed = yaml.replace(
        "    - key: label\n      operator: In\n      values: [container=ubuntu-1]\n    - key: label\n      operator: NotIn\n      values: [container=ubuntu-3]\n",
        "    - key: label\n      operator: NotIn\n      values: [container=ubuntu-3]\n    - key: label\n      operator: In\n      values: [container=ubuntu-1]\n",
    );
    let u2 = container("ubuntu-2", &[("container", "ubuntu-2")]);
    assert!(!set_for(&reversed, &u2, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());
    assert!(set_for(&reversed, &u1, AUDIT)
        .decide_exec(&exec("/usr/bin/apt"))
        .is_denied());
}

// §7.8: allowedArgs on a Block rule lets the listed arguments through, silently.
#[test]
fn allowed_args() {
    let body = "  action: Block\n  process:\n    matchPaths:\n    - path: /usr/bin/python3.6\n      allowedArgs: [-m, random]\n";
    let set = set_for(&ksp("ksp-args", body), &ubuntu1(), AUDIT);
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ok = argv(&["python3", "-m", "random"]);
    let bad = argv(&["python3", "-m", "pydoc"]);
    let bare = argv(&["python3"]);
    let req = |a: &'static [String]| PathRequest {
        args: Some(a),
        ..exec("/usr/bin/python3.6")
    };
    let ok: &'static [String] = Box::leak(ok.into_boxed_slice());
    let bad: &'static [String] = Box::leak(bad.into_boxed_slice());
    let bare: &'static [String] = Box::leak(bare.into_boxed_slice());
    let d = set.decide_exec(&req(ok));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log, "passes without an alert");
    assert!(set.decide_exec(&req(bad)).is_denied());
    assert!(set.decide_exec(&req(bare)).is_denied());

    // With Allow, allowedArgs has no effect.
    let allow = set_for(
        &ksp("ksp-args", &body.replace("Block", "Allow")),
        &ubuntu1(),
        AUDIT,
    );
    assert!(!allow.decide_exec(&req(bad)).is_denied());
}

// §7.9: pts: false fires only with a controlling terminal.
#[test]
fn pts_false() {
    let body =
        "  action: Block\n  process:\n    matchPaths:\n    - path: /bin/sleep\n      pts: false\n";
    let set = set_for(&ksp("ksp-pts", body), &ubuntu1(), AUDIT);
    let tty = PathRequest {
        tty: true,
        ..exec("/bin/sleep")
    };
    assert!(set.decide_exec(&tty).is_denied());
    let d = set.decide_exec(&exec("/bin/sleep"));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log);
    // pts: true has no effect.
    let set = set_for(
        &ksp("ksp-pts", &body.replace("false", "true")),
        &ubuntu1(),
        AUDIT,
    );
    assert!(set.decide_exec(&exec("/bin/sleep")).is_denied());
}

// §7.10 / §7.11: allow-list mode with block and audit postures; per-family scope.
#[test]
fn allow_list_postures() {
    let body = "  action: Allow\n  file:\n    matchDirectories:\n    - dir: /credentials/\n      recursive: true\n    - dir: /bin/\n      recursive: true\n";
    let u1 = ubuntu1();
    let blocked = set_for(&ksp("ksp-allow", body), &u1, BLOCK);
    let d = blocked.decide_open(&open("/credentials/password", Access::Read));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Silent);
    let d = blocked.decide_open(&open("/etc/hostname", Access::Read));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
    assert_eq!(alert_action(&d), Some(Action::Block));

    let audited = set_for(&ksp("ksp-allow", body), &u1, AUDIT);
    let d = audited.decide_open(&open("/etc/hostname", Access::Read));
    assert!(!d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
    assert_eq!(alert_action(&d), Some(Action::Audit));

    // A file-only Allow policy does not arm the exec allow-list.
    let d = blocked.decide_exec(&exec("/usr/bin/curl"));
    assert!(!d.is_denied());
    assert!(blocked.allow_list(Family::File));
    assert!(!blocked.allow_list(Family::Process));
}

// §7.12: network allow-list; DNS over UDP falls to the block posture.
#[test]
fn network_allow_list() {
    let body = "  action: Allow\n  network:\n    matchProtocols:\n    - protocol: tcp\n      fromSource:\n      - path: /usr/bin/curl\n";
    let set = set_for(&ksp("ksp-allow-tcp", body), &ubuntu1(), BLOCK);
    let tcp = SocketRequest {
        family: 2,
        sock_type: 1,
        protocol: 0,
        source: Some("/usr/bin/curl"),
        tty: false,
    };
    assert!(!set.decide_socket(&tcp).is_denied());
    let udp = SocketRequest {
        sock_type: 2,
        ..tcp
    };
    let d = set.decide_socket(&udp);
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
    // TCP from another binary is not allowed either: the rule is scoped to curl.
    let wget = SocketRequest {
        source: Some("/usr/bin/wget"),
        ..tcp
    };
    assert!(set.decide_socket(&wget).is_denied());
    // Unix sockets are not network sockets.
    let unix = SocketRequest { family: 1, ..udp };
    assert!(!set.decide_socket(&unix).is_denied());
}

// §7.13 / §7.14: ownerOnly.
#[test]
fn owner_only() {
    let body = "  action: Block\n  severity: 7\n  process:\n    matchPaths:\n    - path: /home/user1/hello\n      ownerOnly: true\n";
    let set = set_for(&ksp("ksp-owner", body), &ubuntu1(), AUDIT);
    let root = PathRequest {
        uid: 0,
        owner: Some(1000),
        ..exec("/home/user1/hello")
    };
    let user1 = PathRequest { uid: 1000, ..root };
    let d = set.decide_exec(&root);
    assert!(d.is_denied());
    assert_eq!(meta(&d).severity, 7);
    let d = set.decide_exec(&user1);
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log);

    let allow = set_for(
        &ksp("ksp-owner", &body.replace("Block", "Allow")),
        &ubuntu1(),
        BLOCK,
    );
    let d = allow.decide_exec(&root);
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
    assert!(!allow.decide_exec(&user1).is_denied());
}

// §7.15 / §7.16: readOnly.
#[test]
fn read_only() {
    let body = "  action: Block\n  severity: 10\n  file:\n    matchPaths:\n    - path: /credentials/password\n      readOnly: true\n";
    let set = set_for(&ksp("ksp-ro", body), &ubuntu1(), AUDIT);
    let d = set.decide_open(&open("/credentials/password", Access::Read));
    assert!(!d.is_denied());
    let d = set.decide_open(&open("/credentials/password", Access::Write));
    assert!(d.is_denied());
    assert_eq!(meta(&d).severity, 10);

    let allow_body = "  action: Allow\n  file:\n    matchPaths:\n    - path: /credentials/password\n      readOnly: true\n";
    let set = set_for(&ksp("ksp-ro-allow", allow_body), &ubuntu1(), BLOCK);
    assert!(!set
        .decide_open(&open("/credentials/password", Access::Read))
        .is_denied());
    let d = set.decide_open(&open("/credentials/password", Access::Write));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
}

// §7.17 / §7.18: Audit with readOnly and ownerOnly reports only writes by non-owners.
#[test]
fn audit_read_only_owner_only() {
    let body = "  action: Audit\n  severity: 10\n  file:\n    matchDirectories:\n    - dir: /dev/shm/\n      readOnly: true\n";
    let set = set_for(&ksp("ksp-audit-ro", body), &ubuntu1(), AUDIT);
    let d = set.decide_open(&open("/dev/shm/new", Access::Write));
    assert!(!d.is_denied());
    assert_eq!(alert_action(&d), Some(Action::Audit));
    assert_eq!(meta(&d).severity, 10);
    assert_eq!(
        set.decide_open(&open("/dev/shm/new", Access::Read)).report,
        Report::Log
    );

    let body = "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /home/user1/\n      ownerOnly: true\n      readOnly: true\n";
    let set = set_for(&ksp("ksp-audit-owner", body), &ubuntu1(), AUDIT);
    let root_write = PathRequest {
        uid: 0,
        owner: Some(1000),
        ..open("/home/user1/new1", Access::Write)
    };
    assert_eq!(
        alert_action(&set.decide_open(&root_write)),
        Some(Action::Audit)
    );
    let user_read = PathRequest {
        uid: 1000,
        owner: Some(1000),
        ..open("/home/user1/secret_data1.txt", Access::Read)
    };
    assert_eq!(set.decide_open(&user_read).report, Report::Log);
}

// §7.19: fromSource beats global; a rule-level Block inside an Allow policy.
#[test]
fn specificity_lenient_allow() {
    let body = "  action: Allow\n  severity: 7\n  file:\n    matchDirectories:\n    - dir: /run/secrets/kubernetes.io/serviceaccount/\n      recursive: true\n      action: Block\n    - dir: /\n      recursive: true\n    - dir: /run/secrets/kubernetes.io/serviceaccount/\n      recursive: true\n      fromSource:\n      - path: /bin/cat\n  process:\n    matchDirectories:\n    - dir: /\n      recursive: true\n";
    let set = set_for(&ksp("ksp-lenient", body), &ubuntu1(), BLOCK);
    let token = "/run/secrets/kubernetes.io/serviceaccount/token";
    let head = PathRequest {
        source: Some("/usr/bin/head"),
        ..open(token, Access::Read)
    };
    let d = set.decide_open(&head);
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("ksp-lenient"));
    assert_eq!(meta(&d).severity, 7);
    let cat = PathRequest {
        source: Some("/bin/cat"),
        ..head
    };
    let d = set.decide_open(&cat);
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Silent);
    let passwd = PathRequest {
        source: Some("/usr/bin/head"),
        ..open("/etc/passwd", Access::Read)
    };
    assert_eq!(set.decide_open(&passwd).report, Report::Silent);
}

// §7.20: capabilities, by every spelling, with fromSource.
#[test]
fn capability_block() {
    let body = "  action: Block\n  severity: 1\n  capabilities:\n    matchCapabilities:\n    - capability: net_raw\n";
    let set = set_for(&ksp("ksp-cap", body), &ubuntu1(), AUDIT);
    let d = set.decide_capability(13, Some("/usr/sbin/arping"));
    assert!(d.is_denied());
    assert_eq!(meta(&d).severity, 1);
    assert!(!set.decide_capability(12, None).is_denied());

    let body = "  action: Block\n  capabilities:\n    matchCapabilities:\n    - capability: CAP_NET_RAW\n      fromSource:\n      - path: /usr/sbin/arping\n";
    let set = set_for(&ksp("ksp-cap-src", body), &ubuntu1(), AUDIT);
    assert!(set
        .decide_capability(13, Some("/usr/sbin/arping"))
        .is_denied());
    assert!(!set.decide_capability(13, Some("/usr/bin/ping")).is_denied());
}

// §7.21: protocol all blocks every network socket type; tcp blocks TCP only.
#[test]
fn protocols() {
    let s = |family, ty, proto| SocketRequest {
        family,
        sock_type: ty,
        protocol: proto,
        source: None,
        tty: false,
    };
    let body = "  action: Block\n  network:\n    matchProtocols:\n    - protocol: all\n";
    let set = set_for(&ksp("ksp-net-all", body), &ubuntu1(), AUDIT);
    for (f, t, p) in [(2, 1, 0), (2, 2, 0), (10, 3, 58), (17, 3, 768), (2, 5, 132)] {
        assert!(set.decide_socket(&s(f, t, p)).is_denied(), "{f}/{t}/{p}");
    }
    let body = "  action: Block\n  network:\n    matchProtocols:\n    - protocol: tcp,ICMP\n";
    let set = set_for(&ksp("ksp-net", body), &ubuntu1(), AUDIT);
    assert!(set.decide_socket(&s(2, 1, 0)).is_denied());
    assert!(
        set.decide_socket(&s(2, 1 | 0o4000, 6)).is_denied(),
        "SOCK_NONBLOCK ignored"
    );
    assert!(set.decide_socket(&s(2, 2, 1)).is_denied(), "ping socket");
    assert!(set.decide_socket(&s(2, 3, 1)).is_denied(), "raw icmp");
    assert!(!set.decide_socket(&s(2, 2, 0)).is_denied(), "udp");
    assert!(
        !set.decide_socket(&s(1, 1, 0)).is_denied(),
        "unix stream is not tcp"
    );

    let body = "  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n";
    let set = set_for(&ksp("ksp-raw", body), &ubuntu1(), AUDIT);
    assert!(set.decide_socket(&s(2, 3, 1)).is_denied());
    assert!(
        set.decide_socket(&s(17, 3, 768)).is_denied(),
        "packet socket"
    );
    assert!(
        !set.decide_socket(&s(16, 3, 0)).is_denied(),
        "netlink is not raw networking"
    );
}

// Issue 10, protocols: a rule names a protocol, not one spelling of the socket() call.
#[test]
fn protocol_variants_are_the_protocol() {
    let s = |family, ty, proto| SocketRequest {
        family,
        sock_type: ty,
        protocol: proto,
        source: None,
        tty: false,
    };
    let block = |word: &str| {
        let body =
            format!("  action: Block\n  network:\n    matchProtocols:\n    - protocol: {word}\n");
        set_for(&ksp("ksp-variant", &body), &ubuntu1(), AUDIT)
    };
    let tcp = block("tcp");
    for f in [2, 10] {
        assert!(
            tcp.decide_socket(&s(f, 1, 262)).is_denied(),
            "MPTCP ({f}) is tcp"
        );
        assert!(
            !tcp.decide_socket(&s(f, 2, 136)).is_denied(),
            "UDP-Lite is not tcp"
        );
    }
    let udp = block("udp");
    assert!(
        udp.decide_socket(&s(2, 2, 136)).is_denied(),
        "UDP-Lite is udp"
    );
    let sctp = block("sctp");
    assert!(
        sctp.decide_socket(&s(2, 5, 0)).is_denied(),
        "seqpacket, protocol 0 is SCTP"
    );

    let raw = block("raw");
    for ty in [2, 3, 10] {
        assert!(
            raw.decide_socket(&s(17, ty, 768)).is_denied(),
            "AF_PACKET type {ty} is raw"
        );
        assert!(
            raw.decide_socket(&s(17, ty | 0o2000000, 0)).is_denied(),
            "AF_PACKET type {ty} (CLOEXEC)"
        );
    }
    assert!(raw.decide_socket(&s(44, 3, 0)).is_denied(), "AF_XDP is raw");
    assert!(
        raw.decide_socket(&s(2, 10, 768)).is_denied(),
        "AF_INET SOCK_PACKET is a packet socket"
    );
    assert!(
        !raw.decide_socket(&s(2, 2, 0)).is_denied(),
        "udp is not raw"
    );
    assert!(
        !raw.decide_socket(&s(40, 1, 0)).is_denied(),
        "vsock is not a network socket here"
    );
    // A dgram rule still names cooked packet sockets by their type.
    let dgram = block("dgram");
    assert!(dgram.decide_socket(&s(17, 2, 768)).is_denied());
}

// §7.22: container-name lists.
#[test]
fn container_names() {
    let yaml = |v: &str| {
        format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: cn\n  namespace: multiubuntu\nspec:\n  selector:\n    matchLabels:\n      container: multicontainer\n      kubearmor.io/container.name: \"{v}\"\n  process:\n    matchPaths:\n    - path: /bin/ls\n  action: Block\n")
    };
    let c1 = container("container-1", &[("container", "multicontainer")]);
    let c2 = container("container-2", &[("container", "multicontainer")]);
    let denied = |y: &str, c: &Subject| {
        set_for(y, c, AUDIT)
            .decide_exec(&exec("/bin/ls"))
            .is_denied()
    };
    assert!(denied(&yaml("[container-1,,]"), &c1));
    assert!(!denied(&yaml("[container-1,,]"), &c2));
    assert!(denied(&yaml("[]"), &c2));
    assert!(denied(&yaml(""), &c2));
    // A plain value is an anchored regular expression.
    assert!(denied(&yaml("container-1"), &c1));
    assert!(!denied(&yaml("container"), &c1));
    assert!(denied(&yaml("container-.*"), &c2));
}

// §7.23: cluster policies by namespace.
#[test]
fn cluster_policy_namespaces() {
    let yaml = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorClusterPolicy\nmetadata:\n  name: csp\nspec:\n  selector:\n    matchExpressions:\n    - key: namespace\n      operator: In\n      values: [nginx1, nginx-later]\n  process:\n    matchPaths:\n    - path: /usr/bin/apt\n  action: Block\n";
    let in_ns = |ns: &str| {
        Subject::Container(ContainerIdentity {
            namespace: ns.into(),
            name: "c".into(),
            labels: BTreeMap::new(),
        })
    };
    let denied = |y: &str, ns: &str| {
        set_for(y, &in_ns(ns), AUDIT)
            .decide_exec(&exec("/usr/bin/apt"))
            .is_denied()
    };
    assert!(denied(yaml, "nginx1"));
    assert!(denied(yaml, "nginx-later"));
    assert!(!denied(yaml, "nginx2"));
    let notin = yaml.replace(
        "operator: In\n      values: [nginx1, nginx-later]",
        "operator: NotIn\n      values: [nginx2]",
    );
    assert!(denied(&notin, "nginx1"));
    assert!(!denied(&notin, "nginx2"));
}

// §7.24 / §5: USB device rules, specificity and default posture.
#[test]
fn usb_devices() {
    let body = "  device:\n    matchDevice:\n    - class: 8\n      subClass: 6\n      protocol: 80\n      level: 2\n      action: Allow\n    - class: 8\n      subClass: 6\n      protocol: 80\n      level: 2\n      action: Block\n    - class: 8\n      subClass: 6\n      level: 2\n      action: Audit\n";
    let set = host_set(&hsp("hsp-usb", body), AUDIT);
    let d = set.decide_device(8, 6, 80, 2);
    assert!(d.is_denied());
    assert_eq!(alert_action(&d), Some(Action::Block));
    let d = set.decide_device(8, 6, 50, 2);
    assert_eq!(alert_action(&d), Some(Action::Audit));

    let body = "  device:\n    matchDevice:\n    - class: HID\n      action: Allow\n";
    let set = host_set(&hsp("hsp-usb-hid", body), BLOCK);
    assert!(!set.decide_device(3, 1, 1, 1).is_denied());
    let d = set.decide_device(8, 6, 80, 1);
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));

    let body = "  device:\n    matchDevice:\n    - class: ALL\n      action: Audit\n";
    let set = host_set(&hsp("hsp-usb-all", body), BLOCK);
    assert_eq!(
        alert_action(&set.decide_device(224, 1, 1, 1)),
        Some(Action::Audit)
    );
}

// §7.25: syscall rules only audit, even with action: Block.
#[test]
fn syscalls_audit_only() {
    let body = "  severity: 8\n  syscalls:\n    severity: 7\n    message: Local message\n    matchPaths:\n    - syscall: [unlink]\n      path: /home/\n      recursive: true\n";
    let set = set_for(&ksp("ksp-sys", body), &ubuntu1(), AUDIT);
    let d = set.decide_syscall("unlink", Some("/home/dummy"), Some("/usr/bin/rm"));
    assert!(!d.is_denied());
    assert_eq!(alert_action(&d), Some(Action::Audit));
    assert_eq!(meta(&d).severity, 7);
    assert_eq!(meta(&d).message, "Local message");
    assert_eq!(
        set.decide_syscall("unlink", Some("/tmp/x"), None).report,
        Report::Log
    );
    assert_eq!(
        set.decide_syscall("unlinkat", Some("/home/x"), None).report,
        Report::Log
    );
}

// §3.3: lookup order: fromSource exact > fromSource dir > exact > pattern > dir; deepest dir.
#[test]
fn lookup_order() {
    let body = "  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n      action: Allow\n    - dir: /etc/ssl/\n      action: Block\n    matchPatterns:\n    - pattern: /etc/*.conf\n      action: Block\n    matchPaths:\n    - path: /etc/ok.conf\n      action: Allow\n";
    let set = host_set(&hsp("hsp-order", body), AUDIT);
    assert!(
        set.decide_open(&open("/etc/ssl/x", Access::Read))
            .is_denied(),
        "deepest dir wins"
    );
    assert!(
        !set.decide_open(&open("/etc/ssl/sub/x", Access::Read))
            .is_denied(),
        "non-recursive"
    );
    assert!(
        set.decide_open(&open("/etc/a.conf", Access::Read))
            .is_denied(),
        "pattern beats dir"
    );
    assert!(
        !set.decide_open(&open("/etc/ok.conf", Access::Read))
            .is_denied(),
        "path beats pattern"
    );
    assert!(!set
        .decide_open(&open("/etc/hosts", Access::Read))
        .is_denied());
}

// Block beats Allow for the identical key, whatever the policy order.
#[test]
fn block_beats_allow_on_same_key() {
    let a = hsp(
        "a-allow",
        "  action: Allow\n  file:\n    matchPaths:\n    - path: /etc/passwd\n",
    );
    let b = hsp(
        "b-block",
        "  action: Block\n  file:\n    matchPaths:\n    - path: /etc/passwd\n",
    );
    for yaml in [format!("{a}---\n{b}"), format!("{b}---\n{a}")] {
        let set = host_set(&yaml, AUDIT);
        let d = set.decide_open(&open("/etc/passwd", Access::Read));
        assert!(d.is_denied());
        assert_eq!(policy_name(&d).as_deref(), Some("b-block"));
    }
}

// matchPatterns are enforced (KubeArmor's BPF-LSM ignores them).
#[test]
fn patterns_enforced() {
    let body = "  action: Block\n  file:\n    matchPatterns:\n    - pattern: /etc/*hado?\n    - pattern: /home/**/secret*\n";
    let set = host_set(&hsp("hsp-pat", body), AUDIT);
    assert!(set
        .decide_open(&open("/etc/shadow", Access::Read))
        .is_denied());
    assert!(set
        .decide_open(&open("/etc/gshadow", Access::Read))
        .is_denied());
    assert!(!set
        .decide_open(&open("/etc/passwd", Access::Read))
        .is_denied());
    assert!(set
        .decide_open(&open("/home/a/b/secret.txt", Access::Read))
        .is_denied());
}

// Audit rules never grant access in allow-list mode, and take precedence over the posture alert.
#[test]
fn audit_in_allow_list() {
    let body = "  file:\n    matchPaths:\n    - path: /bin/ok\n      action: Allow\n    - path: /etc/hostname\n      action: Audit\n";
    let set = host_set(&hsp("hsp-mixed", body), BLOCK);
    let d = set.decide_open(&open("/etc/hostname", Access::Read));
    assert!(d.is_denied(), "audit does not allow");
    let set = host_set(&hsp("hsp-mixed", body), AUDIT);
    let d = set.decide_open(&open("/etc/hostname", Access::Read));
    assert_eq!(policy_name(&d).as_deref(), Some("hsp-mixed"));
    assert_eq!(alert_action(&d), Some(Action::Audit));
}

// Symlinked rule paths also govern the resolved path.
#[test]
fn symlinks_in_rule_paths() {
    struct UsrMerge;
    impl PathResolver for UsrMerge {
        fn resolve(&self, p: &str) -> Option<String> {
            p.strip_prefix("/bin").map(|rest| format!("/usr/bin{rest}"))
        }
    }
    let yaml = hsp("hsp-link", "  action: Block\n  process:\n    matchPaths:\n    - path: /bin/ls\n      fromSource:\n      - path: /bin/dash\n");
    let set = RuleSet::compile(&policies(&yaml), AUDIT, &UsrMerge);
    let req = PathRequest {
        source: Some("/usr/bin/dash"),
        ..exec("/usr/bin/ls")
    };
    assert!(set.decide_exec(&req).is_denied());
}

// Issue 10: patterns are compiled in symlink-resolved form like paths (`/bin/*` on a
// usr-merged host governs `/usr/bin/...`, the name the kernel reports).
#[test]
fn symlinks_in_rule_patterns() {
    struct UsrMerge;
    impl PathResolver for UsrMerge {
        fn resolve(&self, p: &str) -> Option<String> {
            p.strip_prefix("/bin").map(|rest| format!("/usr/bin{rest}"))
        }
    }
    let yaml = hsp("hsp-pat", "  action: Block\n  process:\n    matchPatterns:\n    - pattern: /bin/*\n  file:\n    matchPatterns:\n    - pattern: /bin/**/c?t\n");
    let set = RuleSet::compile(&policies(&yaml), AUDIT, &UsrMerge);
    for p in ["/usr/bin/ls", "/bin/ls"] {
        assert!(set.decide_exec(&exec(p)).is_denied(), "{p}");
    }
    assert!(
        !set.decide_exec(&exec("/usr/bin/x/ls")).is_denied(),
        "* stays one level"
    );
    assert!(!set.decide_exec(&exec("/usr/sbin/ls")).is_denied());
    assert!(set
        .decide_open(&open("/usr/bin/a/b/cat", Access::Read))
        .is_denied());
    // Without a resolver (the old behaviour) the kernel's name escapes the rule.
    let plain = RuleSet::compile(&policies(&yaml), AUDIT, &NoResolve);
    assert!(!plain.decide_exec(&exec("/usr/bin/ls")).is_denied());
}

// DNS rules cover subdomains.
#[test]
fn dns_suffixes() {
    let body = "  action: Block\n  network:\n    matchDNSQueries:\n    - domain: google.com.\n";
    let set = set_for(&ksp("ksp-dns", body), &ubuntu1(), AUDIT);
    assert!(set.decide_dns("google.com", None).is_denied());
    assert!(set.decide_dns("www.Google.com.", None).is_denied());
    assert!(!set.decide_dns("notgoogle.com", None).is_denied());
}

// Host policies select by hostname; container and host policies never cross.
#[test]
fn host_selectors() {
    let yaml = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: h\nspec:\n  nodeSelector:\n    matchLabels:\n      kubernetes.io/hostname: node-2,node-1\n  process:\n    matchPaths:\n    - path: /usr/bin/ls\n  action: Block\n";
    assert!(host_set(yaml, AUDIT)
        .decide_exec(&exec("/usr/bin/ls"))
        .is_denied());
    let other = yaml.replace("node-2,node-1", "node-2");
    assert!(!host_set(&other, AUDIT)
        .decide_exec(&exec("/usr/bin/ls"))
        .is_denied());
    let reg = yaml.replace(
        "kubernetes.io/hostname: node-2,node-1",
        "kubearmor.io/hostnamereg: node-*",
    );
    assert!(host_set(&reg, AUDIT)
        .decide_exec(&exec("/usr/bin/ls"))
        .is_denied());
    // A host policy never applies to a container.
    let set = set_for(yaml, &ubuntu1(), AUDIT);
    assert!(set.is_empty());
}

// ---- Semantics KubeArmor's scenario suites need (docs/compatibility.md, "Conformance") ----

/// multiubuntu_test_08: a file allow-list that lists only /credentials/.
fn credentials_only(postures: Postures) -> RuleSet {
    let body = "  action: Allow\n  process:\n    matchDirectories:\n    - dir: /bin/\n  file:\n    matchDirectories:\n    - dir: /credentials/\n      recursive: true\n";
    set_for(
        &ksp("ksp-ubuntu-3-proc-dir-allow", body),
        &ubuntu1(),
        postures,
    )
}

#[test]
fn running_a_program_is_a_process_decision_only() {
    // The program's file is not on the file allow-list; the process rules allow it.
    let set = credentials_only(BLOCK);
    let d = set.decide_exec(&exec("/bin/cat"));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Silent);
    // The same file opened as a file is a File access and falls to the posture.
    assert!(set.decide_open(&open("/bin/cat", Access::Read)).is_denied());
    // A program outside the process allow-list is denied by the process rules.
    let d = set.decide_exec(&exec("/usr/bin/head"));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
}

#[test]
fn system_libraries_are_readable_under_a_file_allow_list() {
    let set = credentials_only(BLOCK);
    for p in [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/usr/lib/locale/locale-archive",
        "/etc/ld.so.cache",
        "/",
    ] {
        let d = set.decide_open(&open(p, Access::Read));
        assert!(!d.is_denied(), "{p}");
        assert_eq!(d.report, Report::Log, "{p}");
    }
    // Read only: writing a library still falls to the posture.
    let d = set.decide_open(&open("/lib/x86_64-linux-gnu/libc.so.6", Access::Write));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
    // Only those directories, not names that merely start alike.
    for p in [
        "/lib64evil/x",
        "/libfoo",
        "/usr/libexec/x",
        "/etc/ld.so.preload",
        "/etc/hostname",
    ] {
        assert!(set.decide_open(&open(p, Access::Read)).is_denied(), "{p}");
    }
    // Executing from there is still a process decision (not on the process allow-list).
    assert!(set
        .decide_exec(&exec("/lib/x86_64-linux-gnu/libc.so.6"))
        .is_denied());
}

#[test]
fn a_rule_naming_a_library_path_still_decides_it() {
    let body = "  action: Allow\n  file:\n    matchDirectories:\n    - dir: /credentials/\n      recursive: true\n    matchPaths:\n    - path: /usr/lib/secret/key\n      ownerOnly: true\n";
    let block = "  action: Block\n  file:\n    matchPaths:\n    - path: /lib/x86_64-linux-gnu/libblocked.so\n";
    let audit = "  action: Audit\n  file:\n    matchDirectories:\n    - dir: /usr/lib/watched/\n";
    let yaml = format!(
        "{}\n---\n{}\n---\n{}",
        ksp("allow", body),
        ksp("block-lib", block),
        ksp("audit-lib", audit)
    );
    let set = set_for(&yaml, &ubuntu1(), BLOCK);
    let d = set.decide_open(&open("/lib/x86_64-linux-gnu/libblocked.so", Access::Read));
    assert!(d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("block-lib"));
    let non_owner = PathRequest {
        uid: 0,
        owner: Some(1000),
        ..open("/usr/lib/secret/key", Access::Read)
    };
    assert!(set.decide_open(&non_owner).is_denied());
    let d = set.decide_open(&open("/usr/lib/watched/x", Access::Read));
    assert!(!d.is_denied());
    assert_eq!(policy_name(&d).as_deref(), Some("audit-lib"));
}

#[test]
fn allow_rule_flags_follow_the_posture() {
    // github_test_06 / multiubuntu_test_22: ownerOnly + readOnly Allow.
    let body = "  action: Allow\n  file:\n    matchPaths:\n    - path: /home/user1/secret_data1.txt\n      readOnly: true\n      ownerOnly: true\n";
    let root_read = PathRequest {
        uid: 0,
        owner: Some(1000),
        ..open("/home/user1/secret_data1.txt", Access::Read)
    };
    let owner_write = PathRequest {
        uid: 1000,
        access: Access::Write,
        ..root_read
    };
    let owner_read = PathRequest {
        uid: 1000,
        ..root_read
    };
    let block = set_for(&ksp("p", body), &ubuntu1(), BLOCK);
    for r in [&root_read, &owner_write] {
        let d = block.decide_open(r);
        assert!(d.is_denied());
        assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
        assert_eq!(alert_action(&d), Some(Action::Block));
    }
    assert_eq!(block.decide_open(&owner_read).report, Report::Silent);
    let audit = set_for(&ksp("p", body), &ubuntu1(), AUDIT);
    for r in [&root_read, &owner_write] {
        let d = audit.decide_open(r);
        assert!(!d.is_denied());
        assert_eq!(policy_name(&d).as_deref(), Some("DefaultPosture"));
        assert_eq!(alert_action(&d), Some(Action::Audit));
    }
    // A Block rule's flags deny whatever the posture.
    let set = set_for(
        &ksp("b", &body.replace("Allow", "Block")),
        &ubuntu1(),
        AUDIT,
    );
    assert_eq!(
        policy_name(&set.decide_open(&root_read)).as_deref(),
        Some("b")
    );
}

#[test]
fn default_posture_allow() {
    assert_eq!(Posture::parse("Allow"), Some(Posture::Allow));
    assert_eq!(Posture::parse_lenient("allow"), Posture::Allow);
    assert_eq!(Posture::parse_lenient("bogus"), Posture::Audit);
    let allow = Postures {
        file: Posture::Allow,
        network: Posture::Allow,
        capabilities: Posture::Allow,
        device: Posture::Allow,
    };
    let set = credentials_only(allow);
    let d = set.decide_open(&open("/etc/hostname", Access::Read));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log);
    let d = set.decide_exec(&exec("/usr/bin/head"));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log);
}

#[test]
fn audit_read_only_owner_only_reports_all_but_the_owner_reading() {
    let body = "  action: Audit\n  file:\n    matchPaths:\n    - path: /home/user1/secret_data1.txt\n      ownerOnly: true\n      readOnly: true\n";
    let set = set_for(&ksp("audit-ro-owner", body), &ubuntu1(), AUDIT);
    let req = |uid: u32, access: Access| PathRequest {
        uid,
        owner: Some(1000),
        ..open("/home/user1/secret_data1.txt", access)
    };
    for (uid, access) in [(1000, Access::Write), (0, Access::Read), (0, Access::Write)] {
        let d = set.decide_open(&req(uid, access));
        assert!(!d.is_denied());
        assert_eq!(
            alert_action(&d),
            Some(Action::Audit),
            "uid {uid} {access:?}"
        );
    }
    assert_eq!(
        set.decide_open(&req(1000, Access::Read)).report,
        Report::Log
    );
}

#[test]
fn pts_false_does_not_short_cut_owner_only_or_read_only() {
    let body = "  action: Block\n  file:\n    matchPaths:\n    - path: /home/user1/secret_data1.txt\n      ownerOnly: true\n      pts: false\n    - path: /credentials/password\n      readOnly: true\n      pts: false\n";
    let set = set_for(&ksp("pts", body), &ubuntu1(), AUDIT);
    let secret = |uid: u32, tty: bool| PathRequest {
        uid,
        owner: Some(1000),
        tty,
        ..open("/home/user1/secret_data1.txt", Access::Read)
    };
    assert!(set.decide_open(&secret(0, false)).is_denied());
    assert!(!set.decide_open(&secret(1000, false)).is_denied());
    assert!(set.decide_open(&secret(1000, true)).is_denied());
    assert!(set
        .decide_open(&open("/credentials/password", Access::Write))
        .is_denied());
    assert!(!set
        .decide_open(&open("/credentials/password", Access::Read))
        .is_denied());
}

#[test]
fn two_in_expressions_on_namespaces_select_the_union() {
    let yaml = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorClusterPolicy\nmetadata:\n  name: csp\nspec:\n  selector:\n    matchExpressions:\n    - key: namespace\n      operator: In\n      values: [nginx1]\n    - key: namespace\n      operator: In\n      values: [nginx2]\n    - key: namespace\n      operator: NotIn\n      values: [nginx3]\n  process:\n    matchPaths:\n    - path: /usr/bin/apt\n  action: Block\n";
    let denied = |ns: &str| {
        let s = Subject::Container(ContainerIdentity {
            namespace: ns.into(),
            name: "c".into(),
            labels: BTreeMap::new(),
        });
        set_for(yaml, &s, AUDIT)
            .decide_exec(&exec("/usr/bin/apt"))
            .is_denied()
    };
    assert!(denied("nginx1"));
    assert!(denied("nginx2"));
    assert!(!denied("nginx3"));
    assert!(!denied("other"));
}

#[test]
fn audited_workloads_report_and_never_enforce() {
    let block = "  action: Block\n  process:\n    matchPaths:\n    - path: /bin/sleep\n  network:\n    matchProtocols:\n    - protocol: raw\n";
    let allow = "  action: Allow\n  file:\n    matchDirectories:\n    - dir: /credentials/\n      recursive: true\n";
    let yaml = format!("{}\n---\n{}", ksp("block", block), ksp("allow", allow));
    let with_mode = |mode: &str| {
        container(
            "ubuntu-1",
            &[("container", "ubuntu-1"), ("kubearmor-policy", mode)],
        )
    };
    let audited = set_for(&yaml, &with_mode("audited"), BLOCK);
    let d = audited.decide_exec(&exec("/bin/sleep"));
    assert!(!d.is_denied());
    assert_eq!(alert_action(&d), Some(Action::AuditBlock));
    assert_eq!(Action::AuditBlock.as_str(), "Audit (Block)");
    assert_eq!(policy_name(&d).as_deref(), Some("block"));
    let raw = SocketRequest {
        family: 2,
        sock_type: 3,
        protocol: 1,
        source: None,
        tty: false,
    };
    let d = audited.decide_socket(&raw);
    assert!(!d.is_denied());
    assert_eq!(alert_action(&d), Some(Action::AuditBlock));
    // An Allow rule reports what it covers; nothing falls to the posture.
    let d = audited.decide_open(&open("/credentials/password", Access::Read));
    assert_eq!(alert_action(&d), Some(Action::AuditAllow));
    assert_eq!(Action::AuditAllow.as_str(), "Audit (Allow)");
    let d = audited.decide_open(&open("/etc/hostname", Access::Read));
    assert!(!d.is_denied());
    assert_eq!(d.report, Report::Log);
    assert!(!audited.allow_list(Family::File));

    // disabled: no rules at all; any other value: enabled.
    let disabled = set_for(&yaml, &with_mode("disabled"), BLOCK);
    assert!(disabled.is_empty());
    let enabled = set_for(&yaml, &with_mode("whatever"), BLOCK);
    assert!(enabled.decide_exec(&exec("/bin/sleep")).is_denied());
}
