//! Who may change policy over gRPC, end to end: the REAL daemon, the REAL `karmor` binary as
//! the client, a REAL network namespace joined to the host by a veth pair (so the daemon sees a
//! non-loopback peer, as it would see a container on a bridge or another machine), and
//! certificates generated at test time (rcgen).
//!
//! Shown: a delete from the other namespace is refused without TLS, accepted over mutual TLS
//! with a client certificate signed by the configured CA, refused with a certificate from
//! another CA; root over loopback keeps working with no flags; an unprivileged user cannot
//! change policy over loopback nor open the Unix socket; reading (`karmor probe`) from the
//! other namespace still works.
//!
//! Needs root and `ip` (iproute2); fails, never skips, naming what is missing. The namespace,
//! the veth pair and every daemon are removed on drop, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use kubearmor_proto::policy::PolicyStatus;

fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{why} needs root: run `sudo -E cargo test -p kubearmor-daemon --test api_access`");
    }
}

fn ip_binary() -> &'static str {
    for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] {
        if Path::new(p).is_file() {
            return p;
        }
    }
    panic!("the api_access tests need `ip` (apt-get install iproute2)");
}

fn karmor_binary() -> PathBuf {
    let p = Path::new(BIN).with_file_name("karmor");
    assert!(
        p.is_file(),
        "the karmor binary is missing at {}: `cargo build -p karmor` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A network namespace with one end of a veth pair; the host end is `host_ip`, the namespace
/// end `ns_ip`. Both go away on drop.
struct VethNs {
    name: String,
    host_if: String,
    host_ip: String,
}

impl VethNs {
    fn create() -> Self {
        require_root("creating a network namespace and a veth pair");
        let ip = ip_binary();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", std::process::id() % 100_000, seq);
        let name = format!("kars-api-{tag}");
        let host_if = format!("kaapi{tag}h");
        let ns_if = format!("kaapi{tag}n");
        // Leftovers of a killed run with the same pid.
        let _ = Command::new(ip).args(["netns", "delete", &name]).status();
        let _ = Command::new(ip)
            .args(["link", "delete", &host_if])
            .stderr(Stdio::null())
            .status();
        let net = format!("10.{}.{}", 200 + seq % 50, std::process::id() % 250);
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        run_ok(ip, &["netns", "add", &name]);
        let guard = Self {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        run_ok(
            ip,
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
        );
        run_ok(ip, &["link", "set", &ns_if, "netns", &name]);
        run_ok(
            ip,
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
        );
        run_ok(ip, &["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &name, ip];
            a.extend_from_slice(args);
            run_ok(ip, &a);
        };
        in_ns(&["addr", "add", &format!("{ns_ip}/24"), "dev", &ns_if]);
        in_ns(&["link", "set", &ns_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        guard
    }

    /// `karmor ARGS` run inside the namespace.
    fn karmor(&self, args: &[&str]) -> Output {
        Command::new(ip_binary())
            .args(["netns", "exec", &self.name])
            .arg(karmor_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for VethNs {
    fn drop(&mut self) {
        let ip = ip_binary();
        let _ = Command::new(ip)
            .args(["link", "delete", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new(ip)
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A CA and the files of both sides signed by it, in upstream's names: `ca.crt`,
/// `server.crt`/`server.key` (daemon) and `client.crt`/`client.key` (karmor).
fn write_pki(dir: &Path, server_ips: &[&str]) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    std::fs::create_dir_all(dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubearmor test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();

    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    for ip in server_ips {
        server
            .subject_alt_names
            .push(SanType::IpAddress(ip.parse().unwrap()));
    }
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();

    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "karmor");
    let key = KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("client.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
}

const POLICY_NAME: &str = "hsp-api-access";

/// A host policy file karmor can send, in a directory everyone may read.
fn policy_file(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.join("public");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = d.join("policy.yaml");
    std::fs::write(
        &p,
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\n\
             metadata:\n  name: {POLICY_NAME}\nspec:\n  nodeSelector:\n    matchLabels:\n      \
             kubearmor.io/hostname: test-vm\n  file:\n    matchPaths:\n    - path: /etc/shadow\n  \
             action: Block\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `karmor` on this host (the test's namespace), optionally as another user.
fn karmor_here(uid: Option<u32>, args: &[&str]) -> Output {
    let mut c = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--clear-groups",
            ])
            .arg(karmor_binary());
            c
        }
        None => Command::new(karmor_binary()),
    };
    c.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run karmor (setpriv from util-linux for uid): {e}"))
}

/// Whether the daemon holds the policy: its file in the policy directory (written and fsynced
/// before the RPC answers) and, over plaintext, getProbeData.
async fn has_policy(d: &Daemon, dir: &TestDir, plaintext: bool) -> bool {
    let on_disk = dir
        .policies()
        .join(format!("hsp-{POLICY_NAME}.yaml"))
        .is_file();
    if plaintext {
        let served = d.host_policies().await.iter().any(|p| p == POLICY_NAME);
        assert_eq!(on_disk, served, "policy file and getProbeData disagree");
    }
    on_disk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_only_root_on_this_host_changes_policy() {
    let ns = VethNs::create();
    let dir = TestDir::new();
    let file = policy_file(dir.path());
    let file = file.to_str().unwrap();
    let d = Daemon::start(&dir, Options::default());
    let stderr = d.stderr();
    assert!(
        stderr.contains("policy changes over gRPC accepted from: root on the Unix socket")
            && stderr.contains("root over loopback TCP"),
        "startup log must say who may change policy:\n{stderr}"
    );
    let local = format!("127.0.0.1:{}", d.api_port);
    let remote = format!("{}:{}", ns.host_ip, d.api_port);

    // Root over loopback, no flags beyond the address: as before.
    let o = karmor_here(None, &["vm", "policy", "add", file, "--gRPC", &local]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(has_policy(&d, &dir, true).await);

    // From the other namespace (a non-loopback peer): reading works, deleting is refused.
    let o = ns.karmor(&["probe", "--gRPC", &remote, "-f", "json"]);
    assert!(o.status.success(), "probe from the namespace: {}", text(&o));
    let o = ns.karmor(&["vm", "policy", "delete", file, "--gRPC", &remote]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("mutual TLS"),
        "{}",
        text(&o)
    );
    assert!(
        has_policy(&d, &dir, true).await,
        "a refused delete changed nothing"
    );
    d.wait_log("is not on this host's loopback").await;

    // An unprivileged user on this host: refused over loopback, cannot open the Unix socket.
    let o = karmor_here(
        Some(65534),
        &["vm", "policy", "delete", file, "--gRPC", &local],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("uid 65534"),
        "{}",
        text(&o)
    );
    let sock = dir.path().join("grpc.sock");
    let sock = sock.to_str().unwrap();
    let o = karmor_here(
        Some(65534),
        &["vm", "policy", "delete", file, "--socket", sock],
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot connect"),
        "{}",
        text(&o)
    );
    assert!(has_policy(&d, &dir, true).await);
    // The socket is root's alone.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(sock).unwrap();
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o600));

    // Root on the Unix socket (`karmor --socket`) may.
    let o = karmor_here(None, &["vm", "policy", "delete", file, "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!has_policy(&d, &dir, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_a_remote_delete_needs_a_client_certificate_from_the_ca() {
    let ns = VethNs::create();
    let dir = TestDir::new();
    let file = policy_file(dir.path());
    let file = file.to_str().unwrap();
    let good = dir.path().join("tls");
    write_pki(&good, &[&ns.host_ip, "127.0.0.1"]);
    // Same file names, another CA: the daemon must not accept its client certificate.
    let wrong = dir.path().join("tls-wrong");
    write_pki(&wrong, &[&ns.host_ip]);
    std::fs::copy(good.join("ca.crt"), wrong.join("ca.crt")).unwrap();

    let d = Daemon::start(
        &dir,
        Options::default()
            .env("TLSENABLED", "true")
            .env("TLSCERTPROVIDER", "external")
            .env("TLSCERTPATH", good.to_str().unwrap()),
    );
    d.wait_log("TCP clients with a certificate signed by").await;
    let sock = dir.path().join("grpc.sock");
    let sock = sock.to_str().unwrap();
    let remote = format!("{}:{}", ns.host_ip, d.api_port);
    let good = good.to_str().unwrap();
    let wrong = wrong.to_str().unwrap();

    // Root on the Unix socket adds it (the TCP port now speaks TLS only).
    let o = karmor_here(None, &["vm", "policy", "add", file, "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(has_policy(&d, &dir, false).await);

    // From the namespace without TLS: no connection at all.
    let o = ns.karmor(&["vm", "policy", "delete", file, "--gRPC", &remote]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(has_policy(&d, &dir, false).await);
    // With a client certificate from another CA: the handshake fails.
    let o = ns.karmor(&[
        "vm",
        "policy",
        "delete",
        file,
        "--gRPC",
        &remote,
        "--secure",
        "--tlsCertPath",
        wrong,
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        has_policy(&d, &dir, false).await,
        "a wrong certificate changed nothing"
    );
    // With the right one: deleted.
    let o = ns.karmor(&[
        "vm",
        "policy",
        "delete",
        file,
        "--gRPC",
        &remote,
        "--secure",
        "--tlsCertPath",
        good,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Policy Deleted"),
        "{}",
        text(&o)
    );
    assert!(!has_policy(&d, &dir, false).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_policies_refuse_even_root() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, Options::default().env("IMMUTABLEPOLICIES", "true"));
    assert!(d
        .stderr()
        .contains("policy changes over gRPC: refused for everyone (immutablePolicies)"));
    let mut c = d.policy_client().await;
    assert_eq!(
        send_host(&mut c, "ADDED", host_policy("hsp-x", "/etc/shadow")).await,
        PolicyStatus::NotEnabled
    );
}
