//! KubeArmor's Confidential Containers proof of concept, with real runc containers registered
//! by the real kubearmor-hook: a container whose policies block raw sockets (net-raw-block)
//! and writes to /bin, /sbin, /usr/bin, /boot (file-integrity-monitoring, readOnly), plus a
//! recursive block of /var/lib/mysql/ (block-mysql-data-access), cannot do any of it, while an
//! unrestricted container beside it can; the alerts say which policy blocked what.
//!
//! Safety: both rootfs live on a tmpfs this test mounts, so the fanotify plane marks only it;
//! network rules exist only for the restricted container's cgroup; the daemon pins into a
//! private bpffs. Containers, daemon, mounts and pins are removed on drop, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use kubearmor_proto::feeder::{Alert, RequestMessage};
use kubearmor_testkit as kit;

const POLICIES: &str = r#"apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: net-raw-block
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: restricted
  network:
    matchProtocols:
    - protocol: raw
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: file-integrity-monitoring
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: restricted
  severity: 5
  file:
    matchDirectories:
    - dir: /bin/
      readOnly: true
      recursive: true
    - dir: /sbin/
      readOnly: true
      recursive: true
    - dir: /usr/bin/
      readOnly: true
      recursive: true
    - dir: /boot/
      readOnly: true
      recursive: true
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: block-mysql-data-access
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: restricted
  file:
    matchDirectories:
    - dir: /var/lib/mysql/
      recursive: true
  action: Block
"#;

/// Mounts, pins and containers of one run.
struct Lab {
    guards: Vec<kit::ContainerGuard>,
    daemon: Option<Daemon>,
    fs: PathBuf,
    bpffs: PathBuf,
    dir: TestDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.guards.clear();
        drop(self.daemon.take());
        let _ = std::fs::remove_dir_all(self.bpffs.join("kubearmor-rs"));
        for p in [&self.bpffs, &self.fs] {
            if let Ok(c) = CString::new(p.to_str().unwrap_or_default()) {
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// A static program that opens a raw ICMP socket and exits with the errno (0 on success).
fn raw_socket_probe(dir: &Path) -> PathBuf {
    let src = dir.join("rawsock.c");
    std::fs::write(
        &src,
        "#include <sys/socket.h>\n#include <netinet/in.h>\n#include <errno.h>\n#include <stdio.h>\n#include <string.h>\nint main(void){int s=socket(AF_INET,SOCK_RAW,IPPROTO_ICMP);if(s<0){printf(\"socket: %s\\n\",strerror(errno));return errno;}printf(\"ok\\n\");return 0;}\n",
    )
    .unwrap();
    let bin = dir.join("rawsock");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc is needed (apt-get install gcc libc6-dev)");
    assert!(out.status.success(), "gcc -static: {out:?}");
    bin
}

/// A writable copy of the busybox rootfs with the directories the policies name.
fn rootfs(fs: &Path, name: &str, probe: &Path) -> PathBuf {
    let root = fs.join(name);
    let out = Command::new("cp")
        .arg("-a")
        .arg(kit::rootfs())
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for d in ["sbin", "usr/bin", "boot", "var/lib/mysql"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in [
        "usr/bin/tool",
        "sbin/tool",
        "boot/vmlinuz",
        "var/lib/mysql/data.db",
    ] {
        std::fs::write(root.join(f), "original\n").unwrap();
    }
    std::fs::copy(probe, root.join("usr/bin/rawsock")).unwrap();
    root
}

fn exec(runc: &kit::Runc, id: &str, cmd: &str) -> Output {
    run_limited(runc.cmd().args(["exec", id, "/bin/sh", "-c", cmd]))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_containers_proof_of_concept() {
    kit::require_prerequisites();
    let dir = TestDir::new();
    let fs = dir.path().join("fs");
    std::fs::create_dir_all(&fs).unwrap();
    let c = CString::new(fs.to_str().unwrap()).unwrap();
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=128m".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs");
    let bpffs = dir.path().join("bpffs");
    let runc = kit::Runc::new(dir.path().join("runc-root"));
    let mut lab = Lab {
        guards: Vec::new(),
        daemon: None,
        fs: fs.clone(),
        bpffs: bpffs.clone(),
        dir,
    };
    std::fs::write(lab.dir.policies().join("coco.yaml"), POLICIES).unwrap();
    let socket = lab.dir.path().join("ka.sock");
    let daemon = Daemon::start(
        &lab.dir,
        Options::default()
            .env("PLANES", "cgroup-bpf,fanotify")
            .env("BPFFSPATH", bpffs.to_str().unwrap())
            .env("USEOCIHOOKS", "true")
            .env("KASOCKET", socket.to_str().unwrap()),
    );
    let mut alerts = daemon
        .log_client()
        .await
        .watch_alerts(RequestMessage {
            filter: "policy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    lab.daemon = Some(daemon);

    let probe = raw_socket_probe(lab.dir.path());
    let hook = kit::HookConfig::new(
        kit::sibling_binary(env!("CARGO_BIN_EXE_kubearmor"), "kubearmor-hook"),
        &socket,
    );
    let mut ids = Vec::new();
    for name in ["restricted", "unrestricted"] {
        let id = kit::unique_id(name);
        let root = rootfs(&fs, name, &probe);
        let bundle = kit::make_bundle(
            lab.dir.path(),
            &id,
            &["sleep", "120"],
            Some(&hook),
            &[("io.kubernetes.cri.container-name", name)],
        );
        bundle.edit_config(|c| {
            c["root"]["path"] = serde_json::json!(root);
            c["root"]["readonly"] = false.into();
            // runc's default set lacks CAP_NET_RAW; the unrestricted container needs it.
            for set in ["bounding", "effective", "permitted"] {
                if let Some(caps) = c["process"]["capabilities"][set].as_array_mut() {
                    caps.push(serde_json::json!("CAP_NET_RAW"));
                }
            }
        });
        lab.guards.push(kit::ContainerGuard::new(&runc, &id));
        let out = runc.run(
            &id,
            &bundle.dir,
            true,
            &lab.dir.path().join(format!("{id}.log")),
        );
        assert!(out.status.success(), "runc run {name}: {out:?}");
        ids.push(id);
    }
    let (restricted, unrestricted) = (&ids[0], &ids[1]);

    // Raw sockets.
    let r = exec(&runc, restricted, "/usr/bin/rawsock");
    assert_eq!(
        r.status.code(),
        Some(libc::EACCES),
        "restricted raw socket: {}",
        text(&r)
    );
    assert!(text(&r).contains("Permission denied"), "{}", text(&r));
    let u = exec(&runc, unrestricted, "/usr/bin/rawsock");
    assert!(u.status.success(), "unrestricted raw socket: {}", text(&u));

    // File integrity: reads pass, writes to /bin, /sbin, /usr/bin, /boot do not.
    for f in ["/usr/bin/tool", "/sbin/tool", "/boot/vmlinuz"] {
        let r = exec(&runc, restricted, &format!("cat {f}"));
        assert!(r.status.success(), "read {f}: {}", text(&r));
        let w = exec(&runc, restricted, &format!("echo tampered >> {f}"));
        assert!(!w.status.success(), "write {f} must fail: {}", text(&w));
        assert!(text(&w).contains("Operation not permitted"), "{}", text(&w));
        let w = exec(&runc, unrestricted, &format!("echo tampered >> {f}"));
        assert!(w.status.success(), "unrestricted write {f}: {}", text(&w));
    }
    let w = exec(&runc, restricted, "echo x >> /bin/newfile");
    assert!(!w.status.success(), "creating a file in /bin: {}", text(&w));
    assert_eq!(
        std::fs::read_to_string(fs.join("restricted/usr/bin/tool")).unwrap(),
        "original\n"
    );

    // block-mysql-data-access: cat of a file under the directory is denied.
    let r = exec(&runc, restricted, "cat /var/lib/mysql/data.db");
    assert!(!r.status.success(), "{}", text(&r));
    assert!(text(&r).contains("Operation not permitted"), "{}", text(&r));
    let u = exec(&runc, unrestricted, "cat /var/lib/mysql/data.db");
    assert!(u.status.success(), "{}", text(&u));

    // The alerts say which policy blocked what, in which container, by which plane.
    let mut seen: Vec<Alert> = Vec::new();
    let wanted = |seen: &[Alert]| {
        [
            "net-raw-block",
            "file-integrity-monitoring",
            "block-mysql-data-access",
        ]
        .iter()
        .all(|p| seen.iter().any(|a| a.policy_name == *p))
    };
    while !wanted(&seen) {
        match tokio::time::timeout(Duration::from_secs(10), alerts.message()).await {
            Ok(Ok(Some(a))) => seen.push(a),
            other => panic!("alerts missing ({other:?}); got {seen:#?}"),
        }
    }
    for a in &seen {
        assert_eq!(a.container_name, "restricted", "{a:?}");
        assert_eq!(a.r#type, "MatchedPolicy");
        assert_eq!(a.action, "Block");
    }
    let net = seen
        .iter()
        .find(|a| a.policy_name == "net-raw-block")
        .unwrap();
    assert_eq!(
        (
            net.enforcer.as_str(),
            net.result.as_str(),
            net.operation.as_str()
        ),
        ("CgroupBPF", "Permission denied", "Network")
    );
    let fim = seen
        .iter()
        .find(|a| a.policy_name == "file-integrity-monitoring")
        .unwrap();
    assert_eq!(
        (
            fim.enforcer.as_str(),
            fim.operation.as_str(),
            fim.severity.as_str()
        ),
        ("fanotify", "File", "5")
    );
    let db = seen
        .iter()
        .find(|a| a.policy_name == "block-mysql-data-access")
        .unwrap();
    assert_eq!(db.resource, "/var/lib/mysql/data.db");
}
