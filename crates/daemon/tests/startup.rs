//! Start-up: configuration sources, bad configuration, and what the daemon says about itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn bad_posture_in_the_file_stops_the_start_naming_key_value_and_file() {
    let dir = TestDir::new();
    let (status, err) = run_expecting_failure(&dir, Options::config("defaultFilePosture: blok\n"));
    assert!(!status.success());
    assert!(err.contains("defaultFilePosture"), "{err}");
    assert!(err.contains("\"blok\""), "{err}");
    assert!(
        err.contains(&dir.path().join("kubearmor.yaml").display().to_string()),
        "{err}"
    );
    assert!(err.contains("audit, block or allow"), "{err}");
}

#[test]
fn bad_port_from_the_environment_names_the_variable() {
    let dir = TestDir::new();
    let (status, err) = run_expecting_failure(&dir, Options::default().env("GRPC", "abc"));
    assert!(!status.success());
    assert!(
        err.contains("gRPC: invalid value \"abc\" (from environment variable GRPC)"),
        "{err}"
    );
}

#[test]
fn negative_rate_and_several_problems_are_all_reported() {
    let dir = TestDir::new();
    let (status, err) = run_expecting_failure(
        &dir,
        Options::config("maxAlertPerSec: -1\nhostDefaultDevicePosture: deny\n"),
    );
    assert!(!status.success());
    assert!(
        err.contains("maxAlertPerSec: invalid value \"-1\""),
        "{err}"
    );
    assert!(
        err.contains("hostDefaultDevicePosture: invalid value \"deny\""),
        "{err}"
    );
}

#[test]
fn unsupported_kubernetes_mode_is_refused() {
    let dir = TestDir::new();
    let (status, err) = run_expecting_failure(&dir, Options::config("k8s: true\n"));
    assert!(!status.success());
    assert!(
        err.contains("k8s") && err.contains("not implemented"),
        "{err}"
    );
}

#[test]
fn missing_config_file_and_log_path_directory_are_errors() {
    let dir = TestDir::new();
    let (status, err) = run_expecting_failure(
        &dir,
        Options::default().env("KUBEARMOR_CFG", "/nonexistent/kubearmor.yaml"),
    );
    assert!(!status.success());
    assert!(err.contains("/nonexistent/kubearmor.yaml"), "{err}");

    let (status, err) = run_expecting_failure(
        &dir,
        Options::default().env("LOGPATH", &dir.path().display().to_string()),
    );
    assert!(!status.success());
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let dir = TestDir::new();
    let taken = std::net::TcpListener::bind("[::]:0")
        .or_else(|_| std::net::TcpListener::bind("0.0.0.0:0"))
        .unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, err) = run_expecting_failure(&dir, Options::default().env("GRPC", &port));
    assert!(!status.success());
    assert!(
        err.contains(&format!("cannot listen on TCP port {port} (gRPC)")),
        "{err}"
    );
}

#[tokio::test]
async fn config_sources_and_unknown_keys_are_logged() {
    let dir = TestDir::new();
    let d = Daemon::start(
        &dir,
        Options::config("cluster: lab\ndefaultFilePostur: block\nvisibility: process\n")
            .env("THROTTLESEC", "5"),
    );
    let log = d.stderr();
    assert!(log.contains("config file: "), "{log}");
    assert!(
        log.contains("unknown key \"defaultFilePostur\" (did you mean \"defaultFilePosture\"?)"),
        "{log}"
    );
    assert!(log.contains("cluster = lab (from config file"), "{log}");
    assert!(
        log.contains("throttleSec = 5 (from environment variable THROTTLESEC)"),
        "{log}"
    );
    assert!(
        log.contains("accepted but not acted on by this version: visibility"),
        "{log}"
    );
    assert!(log.contains("no enforcement plane is active"), "{log}");
    assert!(d.stop().success());
}
