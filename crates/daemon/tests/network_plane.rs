//! The cgroup-BPF network plane through the real daemon: a host policy denies raw sockets to one
//! executable, a real socket() call fails with EACCES, the alert names the policy and the plane,
//! and the denial keeps working across `kill -9` of the daemon and a restart that adopts it.
//!
//! Safety: the rule is scoped by fromSource to a copy of perl that only this test runs, so no
//! other process on the machine is affected; the daemon pins into a private bpffs that the test
//! unmounts (detaching everything) on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use kubearmor_proto::feeder::{Alert, RequestMessage};

const EACCES: i32 = 13;

/// A private bpffs for the daemon's pins, and the test's scratch binaries; detached on drop.
struct Scratch {
    bpffs: PathBuf,
    blocked: PathBuf,
}

impl Scratch {
    fn new(dir: &TestDir) -> Self {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the network plane test needs root"
        );
        let bpffs = dir.path().join("bpffs");
        let blocked = dir.path().join("perl-blocked");
        std::fs::copy("/usr/bin/perl", &blocked).expect("perl (perl-base) is needed");
        Scratch { bpffs, blocked }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.bpffs.join("kubearmor-rs"));
        if let Ok(c) = CString::new(self.bpffs.to_str().unwrap_or_default()) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn raw_socket_errno(perl: &Path) -> i32 {
    Command::new(perl)
        .args([
            "-e",
            "use Socket; socket(my $s, PF_INET, SOCK_RAW, 1) or exit($!+0); exit 0",
        ])
        .status()
        .unwrap()
        .code()
        .unwrap()
}

fn policy(blocked: &Path) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: hsp-net-raw-block\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n  severity: 5\n  network:\n    matchProtocols:\n    - protocol: raw\n      fromSource:\n      - path: {}\n  action: Block\n",
        blocked.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &TestDir, s: &Scratch, metrics: u16) -> Daemon {
    Daemon::start(
        dir,
        Options::default()
            .env("PLANES", "cgroup-bpf")
            .env("BPFFSPATH", s.bpffs.to_str().unwrap())
            .env("METRICSPORT", &metrics.to_string()),
    )
}

fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_socket_denied_alerted_and_enforced_across_kill_9() {
    let dir = TestDir::new();
    let s = Scratch::new(&dir);
    std::fs::write(
        dir.policies().join("hsp-net-raw-block.yaml"),
        policy(&s.blocked),
    )
    .unwrap();

    let port = free_port();
    let d = start(&dir, &s, port);
    assert!(
        d.stderr()
            .contains("cgroup-bpf (CgroupBPF) enforces Network"),
        "{}",
        d.stderr()
    );
    let m = metrics(port);
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.contains(r#"kubearmor_family_enforced{family="Network",plane="cgroup-bpf",enforcer="CgroupBPF"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"kubearmor_family_enforced{family="Capabilities",plane="",enforcer=""} 0"#),
        "{m}"
    );
    assert!(
        d.stderr().contains("Capabilities rules are NOT enforced"),
        "{}",
        d.stderr()
    );
    let mut alerts = d
        .log_client()
        .await
        .watch_alerts(RequestMessage {
            filter: "policy".into(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        raw_socket_errno(&s.blocked),
        EACCES,
        "the policy's executable is denied"
    );
    assert_eq!(
        raw_socket_errno(Path::new("/usr/bin/perl")),
        0,
        "other executables are not"
    );

    let a: Alert = tokio::time::timeout(Duration::from_secs(10), alerts.message())
        .await
        .expect("no alert")
        .unwrap()
        .unwrap();
    assert_eq!(a.policy_name, "hsp-net-raw-block");
    assert_eq!(a.r#type, "MatchedHostPolicy");
    assert_eq!(a.operation, "Network");
    assert_eq!(a.action, "Block");
    assert_eq!(a.result, "Permission denied");
    assert_eq!(a.enforcer, "CgroupBPF");
    assert_eq!(a.severity, "5");
    assert!(a.resource.contains("type=SOCK_RAW"), "{}", a.resource);
    assert!(
        a.process_name.ends_with("perl-blocked"),
        "{}",
        a.process_name
    );

    // kill -9: no cleanup runs, the pinned programs and maps keep enforcing.
    d.kill9();
    assert_eq!(
        raw_socket_errno(&s.blocked),
        EACCES,
        "still denied with the daemon dead"
    );

    // A restart adopts the pinned state; deleting the policy then lifts the denial.
    let d = start(&dir, &s, free_port());
    assert_eq!(
        raw_socket_errno(&s.blocked),
        EACCES,
        "still denied after the restart"
    );
    let mut client = d.policy_client().await;
    let deleted = send_host(
        &mut client,
        "DELETED",
        serde_json::json!({"metadata": {"name": "hsp-net-raw-block"}}),
    )
    .await;
    assert_eq!(deleted, kubearmor_proto::policy::PolicyStatus::Deleted);
    eventually("the denial is lifted", || async {
        raw_socket_errno(&s.blocked) == 0
    })
    .await;
    d.stop();
}
