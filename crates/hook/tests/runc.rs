//! Real runc containers with the real `kubearmor-hook` in their `config.json`, talking to an
//! in-test ka.sock server built from `kubearmor_containers::{server, registry}`.
//!
//! Needs root, runc and busybox-static; fails (never skips) with what to install otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kubearmor_containers::labels::{CONTAINER_NAME_LABEL, DEFAULT_NAMESPACE};
use kubearmor_containers::registry::ContainerRecord;
use kubearmor_containers::rescan::{self, RescanConfig};
use kubearmor_containers::server::{ChangeHandler, HandlerFuture, Readiness};
use kubearmor_containers::{Change, HookRequest, Registry, Source};
use support::*;

/// Holds the reply for the first `Added` change of one container until released, after
/// handing the record to the test.
struct HoldFirst {
    id: String,
    tx: std::sync::Mutex<Option<mpsc::Sender<Arc<ContainerRecord>>>>,
    release: Arc<tokio::sync::Semaphore>,
}

impl ChangeHandler for HoldFirst {
    fn on_change<'a>(&'a self, change: &'a Change) -> HandlerFuture<'a> {
        Box::pin(async move {
            if let Change::Added(r) = change {
                if r.id == self.id {
                    let tx = self.tx.lock().unwrap().take();
                    if let Some(tx) = tx {
                        let _ = tx.send(r.clone());
                        if let Ok(p) = self.release.acquire().await {
                            p.forget();
                        }
                    }
                }
            }
        })
    }
}

/// Lets a held hook go when the test ends early, so runc can finish and be cleaned up.
struct ReleaseOnDrop(Arc<tokio::sync::Semaphore>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

#[test]
fn registered_before_first_instruction_and_unregistered_at_poststop() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("run/kubearmor/ka.sock");
    let id = unique_id("order");

    let (tx, rx) = mpsc::channel();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Arc::new(HoldFirst {
        id: id.clone(),
        tx: std::sync::Mutex::new(Some(tx)),
        release: release.clone(),
    });
    let server = TestServer::start_with(
        &socket,
        Readiness::Open,
        Arc::new(Registry::default()),
        Some(handler),
    );

    let hook = hook_config(&socket, &["--fail-closed", "--timeout-ms", "60000"]);
    let bundle = make_bundle(
        tmp.path(),
        &id,
        &[
            "/bin/sh",
            "-c",
            "echo started > /out/marker; exec sleep 600",
        ],
        Some(&hook),
        &[
            ("io.kubernetes.cri.container-name", "web"),
            ("app", "shop"),
            ("tier", "front,back"),
        ],
    );
    let _guard = ContainerGuard {
        runc: runc.clone(),
        id: id.clone(),
    };
    // dropped before the guard: a failing assertion releases the hook first
    let _release_on_exit = ReleaseOnDrop(release.clone());
    let log = tmp.path().join("run.log");
    let runner = {
        let (runc, id, dir, log) = (runc.clone(), id.clone(), bundle.dir.clone(), log.clone());
        std::thread::spawn(move || runc.run(&id, &dir, true, &log))
    };

    // the hook's message has been applied; the reply is held
    let record = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no registration; runc log: {}", log_text(&log)));
    let marker = bundle.out.join("marker");
    assert!(
        !marker.exists(),
        "the container ran its command before registration"
    );
    // the container's init is still runc's, not the user command
    assert_eq!(comm(record.pid), "runc:[2:INIT]");
    // identity is right
    assert!(record.cgroup_id > 1);
    assert_eq!(record.cgroup_id, cgroup_inode(&record.cgroup_path));
    assert_eq!(
        kubearmor_containers::procfs::parse_cgroup_v2_path(
            &std::fs::read_to_string(format!("/proc/{}/cgroup", record.pid)).unwrap()
        )
        .unwrap(),
        record.cgroup_path
    );
    assert_eq!(record.pidns, ns_id(record.pid, "pid"));
    assert_eq!(record.mntns, ns_id(record.pid, "mnt"));
    assert_ne!(record.pidns, ns_id(std::process::id(), "pid"));
    assert_eq!(record.id, id);
    assert_eq!(record.name, "web");
    assert_eq!(record.namespace, DEFAULT_NAMESPACE);
    assert_eq!(record.labels["app"], "shop");
    assert_eq!(record.labels["tier"], "front,back");
    assert_eq!(record.labels[CONTAINER_NAME_LABEL], "web");
    assert_eq!(record.bundle, bundle.dir.display().to_string());
    assert_eq!(record.rootfs, rootfs().display().to_string());
    assert_eq!(record.source, Source::Hook);
    let registry = server.registry.clone();
    assert_eq!(registry.by_cgroup_id(record.cgroup_id).unwrap().id, id);
    assert_eq!(registry.by_pid(record.pid).unwrap().unwrap().id, id);
    assert_eq!(registry.by_ns(record.pidns, record.mntns).unwrap().id, id);
    let identity = record.identity();
    assert_eq!(identity.name, "web");
    assert_eq!(identity.namespace, DEFAULT_NAMESPACE);

    // still held: the container cannot have started
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !marker.exists(),
        "the container started while the hook was held"
    );
    assert!(!runner.is_finished());
    let held_until = SystemTime::now();

    release.add_permits(1);
    let out = runner.join().unwrap();
    assert!(out.status.success(), "runc run: {}", log_text(&log));
    assert!(
        wait_until(Duration::from_secs(20), || marker.exists()
            && std::fs::metadata(&marker).unwrap().len() > 0),
        "the container never ran"
    );
    let started_ns = std::fs::metadata(&marker)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let registered_ns = record
        .registered_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let held_ns = held_until
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // The proof of ordering is above (no marker while the reply was held). File times come
    // from the kernel's coarse clock, up to a tick behind SystemTime::now(): compare with that
    // slack, or the check flakes by microseconds.
    const COARSE_CLOCK_SLACK_NS: u128 = 10_000_000;
    assert!(
        registered_ns < held_ns && held_ns <= started_ns + COARSE_CLOCK_SLACK_NS,
        "registered {registered_ns}, released after {held_ns}, first command at {started_ns}"
    );
    println!(
        "registered {:.1} ms before the container's first command",
        started_ns.saturating_sub(registered_ns) as f64 / 1e6
    );
    // the same process, now running the user command, is the container's init for runc. The
    // marker is written before the exec of `sleep`: wait for that exec (the comm is `sh` or
    // runc's `exe` until then), then check it is this very process.
    assert!(
        kubearmor_testkit::wait_until(Duration::from_secs(10), || comm(record.pid) == "sleep"),
        "the container's init never ran sleep: comm {:?}",
        comm(record.pid)
    );
    assert_eq!(runc.state(&id).unwrap()["pid"], record.pid);
    assert_eq!(registry.by_pid(record.pid).unwrap().unwrap().id, id);

    // poststop (runc delete) unregisters
    let out = runc.kill_and_delete(&id);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(10), || registry
            .by_container_id(&id)
            .is_none()),
        "still registered after poststop"
    );
    assert!(registry.by_cgroup_id(record.cgroup_id).is_none());
    let cg = kubearmor_containers::procfs::HostProc::default()
        .cgroup2_mount()
        .unwrap()
        .join(record.cgroup_path.trim_start_matches('/'));
    assert!(!cg.exists(), "runc removed the cgroup");
}

#[test]
fn restart_rediscovers_running_containers() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("ka.sock");
    let hook = hook_config(&socket, &[]);

    // A: started while the daemon runs
    let server = TestServer::start(&socket, Readiness::Open);
    let a = unique_id("a");
    let ba = make_bundle(
        tmp.path(),
        &a,
        &["/bin/sleep", "600"],
        Some(&hook),
        &[("app", "a")],
    );
    let _ga = ContainerGuard {
        runc: runc.clone(),
        id: a.clone(),
    };
    let out = runc.run(&a, &ba.dir, true, &tmp.path().join("a.log"));
    assert!(
        out.status.success(),
        "{}",
        log_text(&tmp.path().join("a.log"))
    );
    let before = server.registry.by_container_id(&a).unwrap();

    // the daemon stops
    drop(server.stop());
    assert!(!socket.exists());

    // B: started while the daemon is down (fail-open: it starts, unregistered)
    let b = unique_id("b");
    let bb = make_bundle(
        tmp.path(),
        &b,
        &["/bin/sleep", "600"],
        Some(&hook),
        &[("app", "b")],
    );
    let _gb = ContainerGuard {
        runc: runc.clone(),
        id: b.clone(),
    };
    let out = runc.run(&b, &bb.dir, true, &tmp.path().join("b.log"));
    assert!(
        out.status.success(),
        "{}",
        log_text(&tmp.path().join("b.log"))
    );

    // the daemon restarts: bind, rescan, serve
    let registry = Arc::new(Registry::default());
    let report = rescan::rescan(
        &registry,
        &RescanConfig {
            roots: vec![runc.root.clone()],
        },
    );
    assert_eq!(report.registered.len(), 2, "{report:?}");
    let server = TestServer::start_with(&socket, Readiness::Open, registry.clone(), None);

    let ra = registry.by_container_id(&a).unwrap();
    assert_eq!(ra.source, Source::Rescan);
    assert_eq!(ra.cgroup_id, before.cgroup_id);
    assert_eq!(
        (ra.pid, ra.pidns, ra.mntns),
        (before.pid, before.pidns, before.mntns)
    );
    assert_eq!(ra.labels, before.labels);
    assert_eq!(ra.rootfs, before.rootfs);
    let rb = registry.by_container_id(&b).unwrap();
    assert_eq!(rb.cgroup_id, cgroup_inode(&rb.cgroup_path));
    assert_eq!(rb.labels["app"], "b");
    assert_eq!(rb.pidns, ns_id(rb.pid, "pid"));

    // poststop reaches the new server
    runc.kill_and_delete(&a);
    runc.kill_and_delete(&b);
    assert!(wait_until(Duration::from_secs(10), || registry.is_empty()));
    drop(server);
}

#[test]
fn fail_open_and_fail_closed_without_a_daemon() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("no-daemon/ka.sock");

    // fail-open (default): the container runs
    let id = unique_id("open");
    let b = make_bundle(
        tmp.path(),
        &id,
        &["/bin/sh", "-c", "echo ran > /out/ran"],
        Some(&hook_config(&socket, &["--timeout-ms", "1000"])),
        &[],
    );
    let _g = ContainerGuard {
        runc: runc.clone(),
        id: id.clone(),
    };
    let log = tmp.path().join("open.log");
    let out = runc.run(&id, &b.dir, false, &log);
    assert!(
        out.status.success(),
        "fail-open run failed: {}",
        log_text(&log)
    );
    assert_eq!(std::fs::read_to_string(b.out.join("ran")).unwrap(), "ran\n");

    // fail-closed: runc run fails and the command never runs
    for (tag, args) in [
        ("closed-flag", vec!["--fail-closed"]),
        ("closed-env", vec![]),
    ] {
        let id = unique_id(tag);
        let b = make_bundle(
            tmp.path(),
            &id,
            &["/bin/sh", "-c", "echo ran > /out/ran"],
            Some(&hook_config(&socket, &args).args(["--timeout-ms", "1000"])),
            &[],
        );
        if tag == "closed-env" {
            // the environment variable instead of the flag
            let path = b.dir.join("config.json");
            let mut c: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            c["hooks"]["createRuntime"][0]["env"] =
                serde_json::json!(["KUBEARMOR_HOOK_FAIL_CLOSED=1"]);
            std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
        }
        let _g = ContainerGuard {
            runc: runc.clone(),
            id: id.clone(),
        };
        let log = tmp.path().join(format!("{tag}.log"));
        let out = runc.run(&id, &b.dir, false, &log);
        let text = log_text(&log);
        assert!(!out.status.success(), "{tag}: runc run succeeded: {text}");
        assert!(text.contains("not reachable"), "{tag}: {text}");
        assert!(!b.out.join("ran").exists(), "{tag}: the command ran");
        assert!(runc.state(&id).is_none_or(|s| s["status"] != "running"));
    }
}

#[test]
fn fail_closed_when_the_daemon_rejects() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("ka.sock");
    // upstream's gate, never opened: every hook message gets err
    let server = TestServer::start(
        &socket,
        Readiness::AwaitDetached {
            max_wait: Duration::from_secs(3600),
        },
    );
    let id = unique_id("rejected");
    let b = make_bundle(
        tmp.path(),
        &id,
        &["/bin/sh", "-c", "echo ran > /out/ran"],
        Some(&hook_config(
            &socket,
            &["--fail-closed", "--timeout-ms", "500"],
        )),
        &[],
    );
    let _g = ContainerGuard {
        runc: runc.clone(),
        id: id.clone(),
    };
    let log = tmp.path().join("run.log");
    let out = runc.run(&id, &b.dir, false, &log);
    assert!(!out.status.success(), "{}", log_text(&log));
    assert!(log_text(&log).contains("rejected"), "{}", log_text(&log));
    assert!(!b.out.join("ran").exists());
    assert!(server.registry.is_empty());
}

fn exchange(socket: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // the server may close early (oversized input): the reply is still there to read
    let _ = s.write_all(bytes);
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn malformed_messages_get_err_and_change_nothing() {
    require_prerequisites();
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("ka.sock");
    let server = TestServer::start(&socket, Readiness::Open);
    let id = unique_id("victim");
    let b = make_bundle(
        tmp.path(),
        &id,
        &["/bin/sleep", "600"],
        Some(&hook_config(&socket, &[])),
        &[("app", "victim")],
    );
    let _g = ContainerGuard {
        runc: runc.clone(),
        id: id.clone(),
    };
    let out = runc.run(&id, &b.dir, true, &tmp.path().join("run.log"));
    assert!(out.status.success());
    let before = server.registry.by_container_id(&id).unwrap();

    let delete = HookRequest::delete(&id).to_bytes().unwrap();
    let mut oversized = b"{\"operation\":1,\"container\":{\"containerID\":\"".to_vec();
    oversized.extend(id.as_bytes());
    oversized.extend(b"\",\"labels\":\"");
    oversized.extend(vec![b'x'; 70 * 1024]);
    oversized.extend(b"\"}}");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"hello".to_vec()),
        ("truncated then garbage", [&delete[..14], b"]]]"].concat()),
        (
            "garbage before a valid delete",
            [b"xx".as_slice(), &delete].concat(),
        ),
        (
            "unknown operation",
            format!(r#"{{"operation":5,"container":{{"containerID":"{id}"}}}}"#).into_bytes(),
        ),
        (
            "wrong type",
            format!(r#"{{"operation":1,"container":{{"containerID":{}}}}}"#, 7).into_bytes(),
        ),
        (
            "empty id",
            br#"{"operation":1,"container":{"containerID":""}}"#.to_vec(),
        ),
        (
            "container as array",
            br#"{"operation":1,"container":["x"]}"#.to_vec(),
        ),
        ("oversized delete", oversized),
        (
            "top-level array",
            format!("[{}]", String::from_utf8_lossy(&delete)).into_bytes(),
        ),
    ];
    for (what, bytes) in bad {
        assert_eq!(exchange(&socket, &bytes), b"err", "{what}");
        let now = server
            .registry
            .by_container_id(&id)
            .unwrap_or_else(|| panic!("{what}: container removed"));
        assert_eq!(*now, *before, "{what}");
        assert_eq!(server.registry.len(), 1, "{what}");
    }
    // a create claiming the victim's cgroup id for another id (with a pid in another cgroup)
    // is refused as a forgery and does not steal its identity
    let mut fake = kubearmor_containers::Container {
        container_id: "impostor".into(),
        pid: std::process::id(),
        cgroup_id: before.cgroup_id,
        ..Default::default()
    };
    fake.labels_map.insert("app".into(), "impostor".into());
    assert_eq!(
        exchange(&socket, &HookRequest::create(fake).to_bytes().unwrap()),
        b"err"
    );
    assert_eq!(
        server.registry.by_cgroup_id(before.cgroup_id).unwrap().id,
        id
    );
    assert!(server.registry.by_container_id("impostor").is_none());

    // the real delete still works
    runc.kill_and_delete(&id);
    assert!(wait_until(Duration::from_secs(10), || server
        .registry
        .is_empty()));
}

#[test]
fn fifty_parallel_containers_are_all_registered() {
    require_prerequisites();
    const N: usize = 50;
    // runc run is CPU-bound (fork/exec, mounts): 2 cores, so a handful at a time
    const PARALLEL: usize = 6;
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("ka.sock");
    let server = TestServer::start(&socket, Readiness::Open);
    let hook = hook_config(&socket, &["--fail-closed", "--timeout-ms", "30000"]);
    let ids: Vec<String> = (0..N).map(|i| unique_id(&format!("p{i}"))).collect();
    let _guards: Vec<ContainerGuard> = ids
        .iter()
        .map(|id| ContainerGuard {
            runc: runc.clone(),
            id: id.clone(),
        })
        .collect();
    let bundles: Vec<_> = ids
        .iter()
        .map(|id| {
            make_bundle(
                tmp.path(),
                id,
                &["/bin/sleep", "600"],
                Some(&hook),
                &[("batch", "fifty")],
            )
        })
        .collect();

    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    break;
                }
                let log = tmp.path().join(format!("p{i}.log"));
                let out = runc.run(&ids[i], &bundles[i].dir, true, &log);
                if !out.status.success() {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {}", ids[i], log_text(&log)));
                }
            });
        }
    });
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );

    let registry = server.registry.clone();
    assert_eq!(registry.len(), N);
    let mut cgroups = std::collections::HashSet::new();
    for id in &ids {
        let r = registry.by_container_id(id).unwrap();
        assert_eq!(r.cgroup_id, cgroup_inode(&r.cgroup_path), "{id}");
        assert_eq!(r.pidns, ns_id(r.pid, "pid"), "{id}");
        assert_eq!(r.labels["batch"], "fifty");
        assert!(cgroups.insert(r.cgroup_id), "duplicate cgroup id");
        assert_eq!(registry.by_cgroup_id(r.cgroup_id).unwrap().id, *id);
    }

    std::thread::scope(|s| {
        for chunk in ids.chunks(N.div_ceil(PARALLEL)) {
            let runc = &runc;
            s.spawn(move || {
                for id in chunk {
                    runc.kill_and_delete(id);
                }
            });
        }
    });
    assert!(
        wait_until(Duration::from_secs(20), || registry.is_empty()),
        "{} left after poststop",
        registry.len()
    );
}

/// What the hook adds to container start. Not a pass/fail test (speed lives in benchmarks):
/// `scripts/bench-hook.sh` runs it in release mode and prints the numbers.
#[test]
#[ignore = "benchmark; run with scripts/bench-hook.sh"]
fn hook_overhead() {
    require_prerequisites();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let runc = Runc::new(tmp.path().join("runc-root"));
    let socket = tmp.path().join("ka.sock");
    let server = TestServer::start(&socket, Readiness::Open);
    let hook = hook_config(&socket, &[]);
    let mut with = Vec::new();
    let mut without = Vec::new();
    // warm-up (page cache, binaries)
    for hooked in [false, true] {
        let id = unique_id("warm");
        let b = make_bundle(
            tmp.path(),
            &id,
            &["/bin/true"],
            hooked.then_some(&hook),
            &[],
        );
        let _g = ContainerGuard {
            runc: runc.clone(),
            id: id.clone(),
        };
        assert!(runc
            .run(&id, &b.dir, false, &tmp.path().join("w.log"))
            .status
            .success());
    }
    for i in 0..rounds {
        // interleave, alternating which goes first
        let order = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for hooked in order {
            let id = unique_id(if hooked { "h" } else { "n" });
            let b = make_bundle(
                tmp.path(),
                &id,
                &["/bin/true"],
                hooked.then_some(&hook),
                &[],
            );
            let _g = ContainerGuard {
                runc: runc.clone(),
                id: id.clone(),
            };
            let log = tmp.path().join("b.log");
            let t = std::time::Instant::now();
            let out = runc.run(&id, &b.dir, false, &log);
            let dt = t.elapsed();
            assert!(out.status.success(), "{}", log_text(&log));
            if hooked {
                with.push(dt);
            } else {
                without.push(dt);
            }
        }
    }
    assert!(
        server.registry.is_empty(),
        "poststop unregistered every container"
    );
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        (ms(v[v.len() / 2]), ms(v[0]), ms(v[(v.len() * 9) / 10]))
    };
    let (m0, lo0, p90_0) = stats(&mut without);
    let (m1, lo1, p90_1) = stats(&mut with);
    println!(
        "runc run /bin/true (create + start + exit + delete), {rounds} runs each, interleaved:"
    );
    println!(
        "  {:<32} median {m0:7.1} ms   min {lo0:7.1} ms   p90 {p90_0:7.1} ms",
        "without hook"
    );
    println!(
        "  {:<32} median {m1:7.1} ms   min {lo1:7.1} ms   p90 {p90_1:7.1} ms",
        "with kubearmor-hook (2 calls)"
    );
    println!(
        "  hook overhead: {:+.1} ms per container ({:+.1} %), i.e. about {:.1} ms per hook call",
        m1 - m0,
        (m1 / m0 - 1.0) * 100.0,
        (m1 - m0) / 2.0
    );
}
