//! Tests of resolution, from every source, with every problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubearmor_policy::{Posture, Postures};

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(
    file: Option<&str>,
    envs: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> Result<Resolved, ConfigError> {
    let env = env(envs);
    let flags: Vec<(String, String)> = flags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = Path::new("/etc/kubearmor.yaml");
    resolve(Inputs {
        file: file.map(|text| FileInput { path, text }),
        env: &env,
        flags: &flags,
        hostname: "vm-1.example.com",
    })
}

fn problems(r: Result<Resolved, ConfigError>) -> Vec<Problem> {
    match r {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

#[test]
fn defaults_are_safe_systemd_defaults() {
    let r = run(None, &[], &[]).unwrap();
    let c = &r.config;
    assert!(!c.k8s);
    assert!(c.host_policy);
    assert!(c.container_policy);
    assert_eq!(c.grpc.port, 32767);
    assert_eq!(c.grpc.health_port, 32766);
    assert_eq!(c.host, "vm-1.example.com");
    assert_eq!(c.cluster, "default");
    assert_eq!(c.container_postures, Postures::default());
    assert_eq!(c.host_postures, Postures::default());
    assert_eq!(c.log_path, LogPath::None);
    assert_eq!(c.policy_dir, PathBuf::from("/opt/kubearmor/policies"));
    assert!(!c.immutable_policies);
    assert_eq!(
        c.throttle,
        ThrottleConfig {
            enabled: true,
            max_alerts_per_sec: 10,
            throttle_secs: 30
        }
    );
    assert_eq!(
        c.host_visibility.to_string(),
        "process,file,network,capabilities"
    );
    assert_eq!(c.init_timeout, Duration::from_secs(60));
    assert!(r.overrides().is_empty());
    assert!(r.warnings.is_empty());
    // Setting a key to its default is not an override.
    let r = run(Some("gRPC: 32767\ncluster: lab\n"), &[], &[]).unwrap();
    assert_eq!(r.changed, vec![Key::Cluster]);
    assert_eq!(r.source_counts(), (2, 0, 0));
}

#[test]
fn every_key_is_typed_and_described() {
    // resolve types every key exactly once, so each has a recorded text; with nothing set, it
    // is the default's.
    let r = run(None, &[], &[]).unwrap();
    for k in KEYS {
        let d = r.text(k.key);
        if let DefaultValue::Str(s) = k.default {
            if !matches!(
                k.key,
                Key::HostVisibility | Key::InitTimeout | Key::ProbeDataPath | Key::HookPath
            ) {
                assert_eq!(d, s, "{}", k.name);
            }
        }
    }
    // Each key is recorded after typing: a changed value of every kind shows up.
    let r = run(
        Some("hostVisibility: process\ninitTimeout: 2m\nhookPath: /run/o.json\nprobeDataPath: none\n"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.text(Key::HostVisibility), "process");
    assert_eq!(r.text(Key::InitTimeout), "120s");
    assert_eq!(r.text(Key::HookPath), "/run/o.json");
    assert_eq!(r.text(Key::ProbeDataPath), "");
    assert_eq!(
        r.changed,
        [
            Key::HostVisibility,
            Key::HookPath,
            Key::InitTimeout,
            Key::ProbeDataPath
        ]
    );
}

#[test]
fn key_names_round_trip() {
    for k in KEYS {
        assert_eq!(k.key.name(), k.name);
        assert_eq!(
            find_key(&k.name.to_ascii_uppercase()).map(|s| s.key),
            Some(k.key)
        );
    }
}

#[test]
fn precedence_env_over_file_over_flag_over_default() {
    let file = "gRPC: 4000\ncluster: from-file\n";
    let r = run(
        Some(file),
        &[("GRPC", "5000")],
        &[
            ("gRPC", "3000"),
            ("cluster", "from-flag"),
            ("host", "flag-host"),
        ],
    )
    .unwrap();
    assert_eq!(r.config.grpc.port, 5000);
    assert_eq!(r.sources[&Key::Grpc], Source::Env("GRPC".into()));
    assert_eq!(r.config.cluster, "from-file");
    assert_eq!(
        r.sources[&Key::Cluster],
        Source::File(PathBuf::from("/etc/kubearmor.yaml"))
    );
    assert_eq!(r.config.host, "flag-host");
    assert_eq!(r.sources[&Key::Host], Source::Flag);
    assert_eq!(r.sources[&Key::ThrottleSec], Source::Default);
}

#[test]
fn upstream_packaged_config_is_accepted() {
    let file = r#"
cluster: "default"
gRPC: "32767"
hostVisibility: "process,file,network,capabilities"
enableKubeArmorHostPolicy: true
enableKubeArmorVm: false
k8s: false
alertThrottling: true
maxAlertPerSec: 10
throttleSec: 30
"#;
    let r = run(Some(file), &[], &[]).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.config.grpc.port, 32767);
}

#[test]
fn coco_config_is_accepted() {
    let file = "k8s: false\nuseOCIHooks: true\nhookPath: /run/output.json\n\
                enableKubeArmorStateAgent: true\nenableKubeArmorPolicy: true\n\
                visibility: process,network\ndefaultFilePosture: audit\n\
                defaultNetworkPosture: audit\ndefaultCapabilitiesPosture: audit\n\
                alertThrottling: true\nmaxAlertPerSec: 10\nthrottleSec: 30\n";
    let c = run(Some(file), &[], &[]).unwrap().config;
    assert!(c.state_agent && c.hooks.use_oci_hooks);
    assert_eq!(c.hooks.hook_path, Some(PathBuf::from("/run/output.json")));
    assert_eq!(c.visibility.to_string(), "process,network");
}

#[test]
fn keys_are_case_insensitive() {
    let c = run(Some("GRPC: 1234\ndefaultfileposture: Block\n"), &[], &[])
        .unwrap()
        .config;
    assert_eq!(c.grpc.port, 1234);
    assert_eq!(c.container_postures.file, Posture::Block);
}

#[test]
fn bad_posture_names_key_value_and_file() {
    let p = problems(run(Some("defaultFilePosture: blok\n"), &[], &[]));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "defaultFilePosture");
    assert_eq!(p[0].value, "blok");
    let text = p[0].to_string();
    assert!(text.contains("defaultFilePosture"), "{text}");
    assert!(text.contains("\"blok\""), "{text}");
    assert!(text.contains("/etc/kubearmor.yaml"), "{text}");
    assert!(text.contains("audit, block or allow"), "{text}");
}

#[test]
fn bad_port_from_env_names_the_variable() {
    let p = problems(run(None, &[("GRPC", "abc")], &[]));
    assert_eq!(p[0].key, "gRPC");
    assert!(p[0].to_string().contains("environment variable GRPC"));
    let p = problems(run(Some("gRPCHealthPort: 70000"), &[], &[]));
    assert_eq!(p[0].key, "gRPCHealthPort");
}

#[test]
fn negative_rate_is_rejected() {
    let p = problems(run(Some("maxAlertPerSec: -1\nthrottleSec: 0\n"), &[], &[]));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["maxAlertPerSec", "throttleSec"]);
    assert_eq!(p[0].value, "-1");
}

#[test]
fn all_problems_are_reported_together() {
    let p = problems(run(
        Some("defaultFilePosture: blok\nhostDefaultDevicePosture: deny\nk8s: maybe\n"),
        &[],
        &[],
    ));
    assert_eq!(p.len(), 3);
}

#[test]
fn unsupported_modes_are_errors() {
    for (k, v) in [("k8s", "true"), ("enableKubeArmorVm", "true")] {
        let p = problems(run(Some(&format!("{k}: {v}")), &[], &[]));
        assert_eq!(p[0].key, k);
    }
    // TLS with upstream's default provider (a generated server certificate) is not implemented.
    let p = problems(run(Some("tlsEnabled: true"), &[], &[]));
    assert_eq!(p[0].key, "tlsCertProvider");
    assert!(p[0].reason.contains("use external"), "{}", p[0].reason);
}

#[test]
fn grpc_access_keys() {
    let r = run(None, &[], &[]).unwrap();
    let g = &r.config.grpc;
    assert_eq!(g.listen_address, None);
    assert_eq!(
        g.unix_socket.as_deref(),
        Some(Path::new("/var/run/kubearmor/grpc.sock"))
    );
    assert!(!g.tls_enabled);
    assert_eq!(r.config.hooks.ka_socket_mode, 0o600);
    let r = run(
        Some(
            "tlsEnabled: true\ntlsCertProvider: external\ngRPCListenAddress: 127.0.0.1\n\
             gRPCSocket: none\nkaSocketMode: \"0660\"\n",
        ),
        &[],
        &[],
    )
    .unwrap();
    let g = &r.config.grpc;
    assert!(g.tls_enabled);
    assert_eq!(g.listen_address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(g.unix_socket, None);
    assert_eq!(r.config.hooks.ka_socket_mode, 0o660);
    assert_eq!(r.text(Key::KaSocketMode), "0660");
    let p = problems(run(
        Some("gRPCListenAddress: localhost\nkaSocketMode: \"0999\"\n"),
        &[],
        &[],
    ));
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["gRPCListenAddress", "kaSocketMode"]);
}

#[test]
fn unknown_keys_warn_with_a_close_match() {
    let r = run(Some("defaultFilePostur: block\nfrobnicate: 1\n"), &[], &[]).unwrap();
    assert_eq!(r.warnings.len(), 2);
    assert!(r.warnings[0].contains("\"defaultFilePostur\""));
    assert!(r.warnings[0].contains("did you mean \"defaultFilePosture\""));
    assert!(r.warnings[1].contains("\"frobnicate\""));
    assert!(!r.warnings[1].contains("did you mean"));
}

#[test]
fn malformed_files_are_errors() {
    assert!(matches!(
        run(Some("gRPC: [1, 2]"), &[], &[]),
        Err(ConfigError::File { .. })
    ));
    assert!(matches!(
        run(Some("- a\n- b\n"), &[], &[]),
        Err(ConfigError::File { .. })
    ));
    assert!(matches!(
        run(Some("gRPC: 1\ngrpc: 2\n"), &[], &[]),
        Err(ConfigError::File { .. })
    ));
    assert!(matches!(
        run(Some("a: : :\n  - ]"), &[], &[]),
        Err(ConfigError::File { .. })
    ));
    // Empty and comment-only files are fine.
    assert!(run(Some(""), &[], &[]).is_ok());
    assert!(run(Some("# nothing\n"), &[], &[]).is_ok());
}

#[test]
fn host_visibility_default_depends_on_mode() {
    let c = run(Some("enableKubeArmorHostPolicy: false"), &[], &[])
        .unwrap()
        .config;
    assert_eq!(c.host_visibility, Visibility::default());
    let c = run(Some("hostVisibility: process"), &[], &[])
        .unwrap()
        .config;
    assert_eq!(c.host_visibility.to_string(), "process");
    let p = problems(run(Some("visibility: process,files"), &[], &[]));
    assert!(p[0].reason.contains("\"files\""));
}

#[test]
fn empty_host_means_short_hostname() {
    let c = run(Some("host: \"\""), &[], &[]).unwrap().config;
    assert_eq!(c.host, "vm-1");
}

#[test]
fn same_ports_are_rejected() {
    let p = problems(run(Some("gRPC: 5000\ngRPCHealthPort: 5000"), &[], &[]));
    assert_eq!(p[0].key, "gRPCHealthPort");
    // 0 means "pick a port" for both.
    assert!(run(Some("gRPC: 0\ngRPCHealthPort: 0"), &[], &[]).is_ok());
}

#[test]
fn special_env_and_test_socket() {
    let c = run(
        None,
        &[
            ("CRI_SOCKET", "unix:///run/containerd/containerd.sock"),
            (TEST_EVENT_SOCKET_ENV, "/tmp/x.sock"),
        ],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c.cri_socket, "unix:///run/containerd/containerd.sock");
    assert_eq!(c.test_event_socket, Some(PathBuf::from("/tmp/x.sock")));
    let p = problems(run(Some("criSocket: /run/x.sock"), &[], &[]));
    assert_eq!(p[0].key, "criSocket");
}

#[test]
fn empty_env_is_ignored() {
    let c = run(Some("gRPC: 4000"), &[("GRPC", "")], &[])
        .unwrap()
        .config;
    assert_eq!(c.grpc.port, 4000);
}

#[test]
fn args_parse_like_go_flags() {
    let a = parse_args(
        [
            "/opt/kubearmor/kubearmor.yaml",
            "-gRPC=1",
            "--k8s",
            "-cluster",
            "c1",
        ]
        .map(String::from),
    )
    .unwrap();
    assert_eq!(
        a.config,
        Some(PathBuf::from("/opt/kubearmor/kubearmor.yaml"))
    );
    assert_eq!(
        a.flags,
        vec![
            ("gRPC".to_string(), "1".to_string()),
            ("k8s".to_string(), "true".to_string()),
            ("cluster".to_string(), "c1".to_string())
        ]
    );
    let e = parse_args(["-defaultFilePostur=block".to_string()]).unwrap_err();
    assert!(
        e.to_string()
            .contains("did you mean \"defaultFilePosture\""),
        "{e}"
    );
    assert!(parse_args(["a.yaml".to_string(), "b.yaml".to_string()]).is_err());
    assert!(parse_args(["-cluster".to_string()]).is_err());
    assert!(parse_args(["--help".to_string()]).unwrap().help);
}

#[test]
fn location_order() {
    let env_with = env(&[(CONFIG_ENV, "/etc/ka.yaml")]);
    let none = env(&[]);
    let dir = Path::new("/opt/kubearmor");
    assert_eq!(
        locate(Some(Path::new("x.yaml")), &env_with, Some(dir), |_| true),
        ConfigLocation::Argument("x.yaml".into())
    );
    assert_eq!(
        locate(None, &env_with, Some(dir), |_| true),
        ConfigLocation::Env("/etc/ka.yaml".into())
    );
    assert_eq!(
        locate(None, &none, Some(dir), |_| true),
        ConfigLocation::BesideBinary("/opt/kubearmor/kubearmor.yaml".into())
    );
    assert_eq!(
        locate(None, &none, Some(dir), |_| false),
        ConfigLocation::Embedded
    );
}

#[test]
fn usb_state_file_and_test_only_userspace_uevents() {
    let r = run(None, &[], &[]).unwrap();
    assert_eq!(
        r.config.usb.state_file.as_deref(),
        Some(Path::new(kubearmor_usb::DEFAULT_STATE_FILE))
    );
    assert!(!r.config.usb.accept_userspace_uevents);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let r = run(
        Some("usbStateFile: none\nusbAcceptUserspaceUevents: true\n"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.config.usb.state_file, None);
    assert!(r.config.usb.accept_userspace_uevents);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("usbAcceptUserspaceUevents") && w.contains("TEST ONLY")),
        "{:?}",
        r.warnings
    );
    let r = run(None, &[("USBSTATEFILE", "/tmp/x/usb.state")], &[]).unwrap();
    assert_eq!(
        r.config.usb.state_file.as_deref(),
        Some(Path::new("/tmp/x/usb.state"))
    );
}

#[test]
fn runc_state_dirs_default_to_the_rescan_roots() {
    let r = run(None, &[], &[]).unwrap();
    let defaults: Vec<PathBuf> = kubearmor_containers::rescan::DEFAULT_ROOTS
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(r.config.hooks.runc_state_dirs, defaults);
    let r = run(None, &[("RUNCSTATEDIRS", "/tmp/a/runc, /run/runc")], &[]).unwrap();
    assert_eq!(
        r.config.hooks.runc_state_dirs,
        [PathBuf::from("/tmp/a/runc"), PathBuf::from("/run/runc")]
    );
    assert_eq!(r.text(Key::RuncStateDirs), "/tmp/a/runc,/run/runc");
    let r = run(Some("runcStateDirs: none\n"), &[], &[]).unwrap();
    assert!(r.config.hooks.runc_state_dirs.is_empty());
    assert_eq!(r.text(Key::RuncStateDirs), "none");
    let p = problems(run(
        Some("runcStateDirs: /run/runc,relative/dir\n"),
        &[],
        &[],
    ));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "runcStateDirs");
    assert!(p[0].reason.contains("\"relative/dir\""), "{}", p[0].reason);
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("60s"), Some(Duration::from_secs(60)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("60"), None);
    assert_eq!(parse_go_duration("-1s"), None);
    assert_eq!(parse_go_duration("s"), None);
}

#[test]
fn bools_as_go() {
    for t in ["1", "t", "T", "true", "TRUE", "True"] {
        assert_eq!(parse_bool(t), Some(true));
    }
    assert_eq!(parse_bool("yes"), None);
    let p = problems(run(Some("debug: yes"), &[], &[]));
    assert_eq!(p[0].key, "debug");
}

#[test]
fn example_config_names_every_key_and_resolves() {
    let text = include_str!("../../../../examples/kubearmor.yaml");
    for k in KEYS {
        assert!(
            text.lines().any(|l| l
                .trim_start_matches("# ")
                .starts_with(&format!("{}:", k.name))),
            "examples/kubearmor.yaml does not mention {}",
            k.name
        );
    }
    let r = run(Some(text), &[], &[]).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn test_hooks_are_in_test_builds() {
    // `cargo test` builds the daemon with the test-hooks feature (a self dev-dependency);
    // `cargo build --release` and scripts/install.sh do not. Without it, setting
    // usbAcceptUserspaceUevents or KUBEARMOR_TEST_EVENT_SOCKET is a configuration error.
    let r = run(Some("usbAcceptUserspaceUevents: true"), &[], &[]);
    assert!(
        r.is_ok_and(|r| r.config.usb.accept_userspace_uevents),
        "a test build accepts the test-only key"
    );
}
