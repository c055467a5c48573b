//! A fanotify plane that stops (aborted, as the stall watchdog does) is noticed, reported as NOT
//! enforcing (status, live Enforcement, a `SystemEvent`) and restarted by supervision, which
//! then enforces again and says so. Real plane, real tmpfs this test mounts, real opens by
//! `cat`. Needs root; fails without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::process::Command;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kubearmor_daemon::config::{FanotifyConfig, LogPath, ThrottleConfig};
use kubearmor_daemon::enforce::fanotify::FanotifyPlane;
use kubearmor_daemon::enforce::{Plane, World};
use kubearmor_daemon::pipeline::{Pipeline, Settings, Stamp, SUBSCRIBER_BUFFER};
use kubearmor_daemon::planes::Enforcement;
use kubearmor_policy::{parse_policies, NoResolve, Postures, RuleSet};

struct TmpFs(std::path::PathBuf);

impl Drop for TmpFs {
    fn drop(&mut self) {
        let c = CString::new(self.0.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cat_errno(path: &std::path::Path) -> Option<i32> {
    let out = Command::new("/usr/bin/cat").arg(path).output().unwrap();
    if out.status.success() {
        return None;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not permitted"),
        "cat failed otherwise: {err}"
    );
    Some(libc::EPERM)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_plane_is_reported_and_restarted() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "plane_restart needs root (fanotify, a tmpfs mount)"
    );
    let dir = std::env::temp_dir().join(format!("ka-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = CString::new(dir.to_str().unwrap()).unwrap();
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=16m".as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
    let fs = TmpFs(dir.clone());
    let secret = fs.0.join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let yaml = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: secret\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
        secret.display()
    );
    let parsed = parse_policies(&yaml, "restart.yaml").unwrap();
    let world = World {
        generation: 1,
        host: Arc::new(RuleSet::compile(
            &parsed.policies,
            Postures::default(),
            &NoResolve,
        )),
        containers: BTreeMap::new(),
    };
    let pipeline = Pipeline::start(Settings {
        stamp: Stamp {
            cluster: "default".into(),
            host: "test".into(),
            node_id: "id".into(),
        },
        throttle: ThrottleConfig {
            enabled: false,
            max_alerts_per_sec: 100,
            throttle_secs: 30,
        },
        log_path: LogPath::None,
        debug: false,
        drop_resource_from_process_logs: false,
        subscriber_buffer: SUBSCRIBER_BUFFER,
    })
    .unwrap();
    let mut alerts = pipeline.subscribe_alerts();
    let mut plane = FanotifyPlane::start(
        Weak::new(),
        pipeline.clone(),
        FanotifyConfig { fail_closed: false },
    )
    .unwrap();
    plane.apply(&world);
    assert_eq!(cat_errno(&secret), Some(libc::EPERM), "enforced at start");
    plane.supervise(&world);
    assert!(plane.status().down.is_none());

    // The plane stops enforcing (what the stall watchdog does): the kernel allows everything.
    plane.abort_handle().abort("test: simulated stall");
    assert_eq!(cat_errno(&secret), None, "an aborted plane fails open");
    plane.supervise(&world);
    let status = plane.status();
    let down = status.down.clone().expect("the plane must say it is down");
    assert!(down.why.contains("simulated stall"), "{down:?}");
    let live = Enforcement::from_planes(vec![status], &[]);
    assert!(!live.is_enforcing());
    for f in ["Process", "File"] {
        let why = &live.unenforced.iter().find(|(x, _)| *x == f).unwrap().1;
        assert!(why.contains("fanotify plane is down since"), "{why}");
    }
    let gap = tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .expect("a SystemEvent for the gap")
        .unwrap();
    assert_eq!(
        (
            gap.r#type.as_str(),
            gap.operation.as_str(),
            gap.result.as_str()
        ),
        ("SystemEvent", "EnforcementGap", "Failed")
    );
    assert!(gap.message.contains("NOT enforced"), "{}", gap.message);

    // Next supervision round: a new plane with the same world.
    plane.supervise(&world);
    assert!(plane.status().down.is_none());
    assert_eq!(
        cat_errno(&secret),
        Some(libc::EPERM),
        "enforced again after the restart"
    );
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let a = alerts.recv().await.unwrap();
            if a.operation == "EnforcementGap" {
                return a;
            }
        }
    })
    .await
    .expect("a SystemEvent when enforcement is back");
    assert_eq!(back.result, "Passed");
    assert!(back.message.contains("enforced again"), "{}", back.message);
    plane.stop();
    pipeline.shutdown();
}
