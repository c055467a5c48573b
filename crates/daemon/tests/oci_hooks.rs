//! Container identity from OCI hooks, end to end: the REAL daemon (`useOCIHooks`, its ka.sock
//! in a temp directory, `PLANES=none` so no kernel plane touches the machine), REAL runc
//! containers (private `--root`) whose `config.json` runs the REAL `kubearmor-hook`, and what
//! the daemon then says through `getProbeData` and the state agent.
//!
//! Needs root, runc, busybox-static and the hook binary (`cargo build --workspace`); fails, never
//! skips, with what is missing. Every container, cgroup, daemon and temp directory is removed on
//! drop, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use kubearmor_proto::state_agent::state_agent_client::StateAgentClient;
use kubearmor_proto::state_agent::StateEvent;
use kubearmor_testkit as kit;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// One test's world: a daemon directory, a private runc root, the socket and the hook.
struct Env {
    runc: kit::Runc,
    socket: PathBuf,
    hook: PathBuf,
    dir: TestDir,
}

impl Env {
    fn new() -> Env {
        kit::require_prerequisites();
        let hook = kit::sibling_binary(BIN, "kubearmor-hook");
        let dir = TestDir::new();
        let runc = kit::Runc::new(dir.path().join("runc-root"));
        let socket = dir.path().join("run/kubearmor/ka.sock");
        Env {
            runc,
            socket,
            hook,
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon with OCI hooks on our socket, rescanning only our runc root, with the state
    /// agent.
    fn start_daemon(&self) -> Daemon {
        Daemon::start(
            &self.dir,
            Options::default()
                .env("USEOCIHOOKS", "true")
                .env("KASOCKET", self.socket.to_str().unwrap())
                .env("RUNCSTATEDIRS", self.runc.root.to_str().unwrap())
                .env("ENABLEKUBEARMORSTATEAGENT", "true"),
        )
    }

    fn hook(&self, args: &[&str]) -> kit::HookConfig {
        kit::HookConfig::new(&self.hook, &self.socket).args(args.iter().copied())
    }

    /// A bundle whose container is named `name` (containerd's annotation) and labelled.
    fn bundle(
        &self,
        id: &str,
        name: &str,
        args: &[&str],
        hook: &kit::HookConfig,
        labels: &[(&str, &str)],
    ) -> kit::Bundle {
        let mut annotations = vec![("io.kubernetes.cri.container-name", name)];
        annotations.extend_from_slice(labels);
        kit::make_bundle(self.path(), id, args, Some(hook), &annotations)
    }

    fn run_detached(&self, id: &str, bundle: &kit::Bundle) -> std::process::Output {
        self.runc.run(
            id,
            &bundle.dir,
            true,
            &self.path().join(format!("{id}.log")),
        )
    }

    fn run_log(&self, id: &str) -> String {
        kit::log_text(&self.path().join(format!("{id}.log")))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // whatever a failing test left running under our root (guards remove the rest)
        self.runc.cleanup_all();
    }
}

async fn get_state(d: &Daemon) -> Vec<StateEvent> {
    let mut s = StateAgentClient::new(d.channel().await)
        .get_state(())
        .await
        .unwrap()
        .into_inner();
    let snap = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("GetState timed out")
        .unwrap()
        .expect("GetState sent nothing");
    snap.state_events
}

/// Container objects in GetState, by container id.
async fn state_containers(d: &Daemon) -> BTreeMap<String, Value> {
    get_state(d)
        .await
        .iter()
        .filter(|e| e.kind == "container")
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.object).unwrap();
            assert_eq!(e.name, v["containerName"], "event name = container name");
            (v["containerID"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Polls `f` until it returns something (30 s at most).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a container's GetState object.
async fn state_container(d: &Daemon, id: &str) -> Value {
    wait_for("the container in GetState", || async {
        state_containers(d).await.remove(id)
    })
    .await
}

async fn next_state(s: &mut tonic::Streaming<StateEvent>) -> (String, String, String, Value) {
    let e = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("WatchState timed out")
        .unwrap()
        .expect("WatchState ended");
    let v = serde_json::from_slice(&e.object).unwrap();
    (e.kind, e.r#type, e.name, v)
}

/// What the daemon must say about a running container, checked against the kernel.
fn assert_identity(obj: &Value, id: &str, name: &str, pid: u32) {
    let cgroup_path = kit::cgroup_path_of(pid);
    assert_eq!(obj["containerID"], id);
    assert_eq!(obj["containerName"], name);
    assert_eq!(obj["namespaceName"], "container_namespace");
    assert_eq!(obj["status"], "running");
    assert_eq!(obj["pid"], pid);
    assert_eq!(obj["cgroupPath"], cgroup_path.as_str());
    assert_eq!(obj["cgroupId"], kit::cgroup_inode(&cgroup_path));
    assert!(obj["cgroupId"].as_u64().unwrap() > 1);
    assert_eq!(obj["pidns"], kit::ns_id(pid, "pid"));
    assert_eq!(obj["mntns"], kit::ns_id(pid, "mnt"));
    assert_ne!(obj["pidns"], kit::ns_id(std::process::id(), "pid"));
    assert_eq!(
        obj["labelsMap"]["kubearmor.io/container.name"], name,
        "{obj}"
    );
    let labels = obj["labels"].as_str().unwrap();
    assert!(
        labels
            .split(',')
            .any(|l| l == format!("kubearmor.io/container.name={name}")),
        "{labels}"
    );
    assert_eq!(obj["node_name"], "test-vm");
    // PLANES=none: nothing enforces, and the daemon says so
    assert_eq!(obj["policyEnabled"], 0);
}

const SHOP_POLICIES: &str = r#"apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-shop
spec:
  selector:
    matchLabels:
      app: shop
  file:
    matchPaths:
    - path: /etc/shadow
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-other
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: other
  process:
    matchPaths:
    - path: /bin/sleep
  action: Block
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_before_first_instruction_then_unregistered_at_poststop() {
    let env = Env::new();
    std::fs::write(env.dir.policies().join("shop.yaml"), SHOP_POLICIES).unwrap();
    let d = env.start_daemon();
    let mut watch = StateAgentClient::new(d.channel().await)
        .watch_state(())
        .await
        .unwrap()
        .into_inner();

    let id = kit::unique_id("order");
    let name = "wordpress-mysql";
    let hook = env.hook(&["--fail-closed", "--timeout-ms", "30000"]);
    let bundle = env.bundle(
        &id,
        name,
        &[
            "/bin/sh",
            "-c",
            "echo started > /out/marker; exec sleep 600",
        ],
        &hook,
        &[("app", "shop"), ("tier", "front,back")],
    );
    // declared before the gate: dropped after it, so a failing test releases the container
    // before deleting it
    let _guard = kit::ContainerGuard::new(&env.runc, &id);
    // Runs once kubearmor-hook has exited (it exits after the daemon's ok) and before the
    // container's command: it records whether the daemon had logged the registration by then
    // (the registry logs it before the reply), then holds the container for the test.
    let short: String = id.chars().take(12).collect();
    let gate = kit::Gate::with_check(
        env.path(),
        &id,
        Some(&format!(
            "/bin/busybox grep -c -F 'Detected a container (added/{short}/' {}",
            d.log.display()
        )),
    );
    bundle.add_hook("createRuntime", gate.entry());
    let runner = {
        let (runc, id, dir, log) = (
            env.runc.clone(),
            id.clone(),
            bundle.dir.clone(),
            env.path().join(format!("{id}.log")),
        );
        std::thread::spawn(move || runc.run(&id, &dir, true, &log))
    };

    let oci = gate
        .wait_held(WAIT)
        .unwrap_or_else(|| panic!("never held; runc log: {}", env.run_log(&id)));
    let pid = u32::try_from(oci["pid"].as_u64().unwrap()).unwrap();
    let marker = bundle.out.join("marker");
    // the container has not run a single instruction of its own
    assert!(!marker.exists(), "the command ran before registration");
    assert_eq!(kit::comm(pid), "runc:[2:INIT]");
    // the registration was in the daemon before kubearmor-hook got its ok
    assert_eq!(
        gate.check_output().as_deref().map(str::trim),
        Some("1"),
        "registration not logged when the hook returned:\n{}",
        d.stderr()
    );

    // getProbeData reads the registry itself: no waiting
    let probe = d.probe().await;
    assert_eq!(probe.container_list, [name]);
    let data = &probe.container_map[name];
    assert_eq!(data.policy_list, ["ksp-shop"], "selected by app=shop only");
    assert_eq!(data.policy_enabled, 0, "PLANES=none");
    let doc: Value = serde_json::from_slice(&data.policy_data_list[0].policy).unwrap();
    assert_eq!(doc["metadata"]["name"], "ksp-shop");

    // the state agent: namespace then container, with the kernel's identity
    let (kind, t, ns, obj) = next_state(&mut watch).await;
    assert_eq!(
        (kind.as_str(), t.as_str(), ns.as_str()),
        ("namespace", "added", "container_namespace")
    );
    assert_eq!(obj["container_count"], 1);
    let (kind, t, n, obj) = next_state(&mut watch).await;
    assert_eq!(
        (kind.as_str(), t.as_str(), n.as_str()),
        ("container", "added", name)
    );
    assert_identity(&obj, &id, name, pid);
    assert_eq!(obj["labelsMap"]["app"], "shop");
    assert_eq!(obj["labelsMap"]["tier"], "front,back");
    assert_eq!(obj["rootfs"], kit::rootfs().display().to_string());
    assert_eq!(state_container(&d, &id).await, obj);

    // a policy added while it runs shows up for it (KubeArmor's smoke test)
    let mut policies = d.policy_client().await;
    assert_eq!(
        send_container(&mut policies, "ADDED", container_policy("ksp-block-policy")).await,
        kubearmor_proto::policy::PolicyStatus::Applied
    );
    let list = wait_for("ksp-block-policy listed for the container", || async {
        let list = d.probe().await.container_map[name].policy_list.clone();
        (list.len() == 2).then_some(list)
    })
    .await;
    assert_eq!(list, ["ksp-block-policy", "ksp-shop"]);

    // release: the command runs, as the same registered process
    gate.release();
    let out = runner.join().unwrap();
    assert!(out.status.success(), "runc run: {}", env.run_log(&id));
    assert!(
        kit::wait_until(WAIT, || std::fs::read_to_string(&marker)
            .is_ok_and(|m| m == "started\n")),
        "the container never ran"
    );
    // the marker is written just before `exec sleep`
    assert!(
        kit::wait_until(WAIT, || kit::comm(pid) == "sleep"),
        "{}",
        kit::comm(pid)
    );
    assert_eq!(env.runc.pid(&id), Some(pid));
    assert_identity(&state_container(&d, &id).await, &id, name, pid);

    // poststop (runc delete) unregisters; the last container out takes its namespace along
    let cgroup = kit::cgroup2_mount().join(kit::cgroup_path_of(pid).trim_start_matches('/'));
    let out = env.runc.kill_and_delete(&id);
    assert!(out.status.success(), "{out:?}");
    let (kind, t, n, obj) = next_state(&mut watch).await;
    assert_eq!(
        (kind.as_str(), t.as_str(), n.as_str()),
        ("container", "deleted", name)
    );
    assert_eq!(obj["status"], "terminated");
    assert_eq!(obj["containerID"], id);
    let (kind, t, ns, _) = next_state(&mut watch).await;
    assert_eq!(
        (kind.as_str(), t.as_str(), ns.as_str()),
        ("namespace", "deleted", "container_namespace")
    );
    let probe = d.probe().await;
    assert!(
        probe.container_list.is_empty(),
        "{:?}",
        probe.container_list
    );
    assert!(probe.container_map.is_empty());
    assert!(state_containers(&d).await.is_empty());
    assert!(!cgroup.exists(), "runc removed the cgroup");
    assert!(
        d.stderr()
            .contains(&format!("Detected a container (removed/{short}/")),
        "{}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_rediscovers_running_containers_and_the_hook_follows_its_fail_mode() {
    let env = Env::new();
    let d = env.start_daemon();

    // A: started while the daemon runs
    let a = kit::unique_id("a");
    let ba = env.bundle(
        &a,
        "alpha",
        &["/bin/sleep", "600"],
        &env.hook(&[]),
        &[("app", "a")],
    );
    let _ga = kit::ContainerGuard::new(&env.runc, &a);
    assert!(
        env.run_detached(&a, &ba).status.success(),
        "{}",
        env.run_log(&a)
    );
    let pid_a = env.runc.pid(&a).unwrap();
    let before = state_container(&d, &a).await;
    assert_identity(&before, &a, "alpha", pid_a);

    // kill -9: no cleanup at all (the socket file stays behind)
    drop(d);
    assert!(env.socket.exists(), "a killed daemon leaves its socket");

    // B: started while the daemon is down, fail-open (the default): it runs, unregistered
    let b = kit::unique_id("b");
    let bb = env.bundle(
        &b,
        "beta",
        &["/bin/sh", "-c", "echo ran > /out/ran; exec sleep 600"],
        &env.hook(&["--timeout-ms", "1000"]),
        &[("app", "b")],
    );
    let _gb = kit::ContainerGuard::new(&env.runc, &b);
    assert!(
        env.run_detached(&b, &bb).status.success(),
        "{}",
        env.run_log(&b)
    );
    assert!(kit::wait_until(WAIT, || bb.out.join("ran").exists()));

    // C: fail-closed while the daemon is down: runc fails and the command never runs
    let c = kit::unique_id("c");
    let bc = env.bundle(
        &c,
        "gamma",
        &["/bin/sh", "-c", "echo ran > /out/ran; exec sleep 600"],
        &env.hook(&["--fail-closed", "--timeout-ms", "1000"]),
        &[],
    );
    let _gc = kit::ContainerGuard::new(&env.runc, &c);
    let out = env.run_detached(&c, &bc);
    assert!(
        !out.status.success(),
        "fail-closed started without a daemon"
    );
    assert!(
        env.run_log(&c).contains("not reachable"),
        "{}",
        env.run_log(&c)
    );
    assert!(!bc.out.join("ran").exists());
    assert!(env.runc.state(&c).is_none_or(|s| s["status"] != "running"));

    // restart: the rescan of our runc root registers A and B before the daemon is ready
    let d = env.start_daemon();
    let probe = d.probe().await;
    assert_eq!(probe.container_list, ["alpha", "beta"]);
    assert!(
        d.stderr().contains("running containers rescanned") && d.stderr().contains("registered=2"),
        "{}",
        d.stderr()
    );
    let ra = state_container(&d, &a).await;
    for k in [
        "cgroupId",
        "cgroupPath",
        "pid",
        "pidns",
        "mntns",
        "labels",
        "labelsMap",
        "rootfs",
        "bundle",
    ] {
        assert_eq!(ra[k], before[k], "{k} changed across the restart");
    }
    let pid_b = env.runc.pid(&b).unwrap();
    let rb = state_container(&d, &b).await;
    assert_identity(&rb, &b, "beta", pid_b);
    assert_eq!(rb["labelsMap"]["app"], "b");
    assert_eq!(state_containers(&d).await.len(), 2, "C is not there");

    // poststop reaches the new daemon
    env.runc.kill_and_delete(&a);
    env.runc.kill_and_delete(&b);
    eventually("both unregistered", || async {
        d.probe().await.container_list.is_empty()
    })
    .await;
}

/// One request on a fresh connection; returns the reply.
fn exchange(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // the daemon may close early (oversized input): the reply is still there to read
    let _ = s.write_all(bytes);
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hook_messages_get_err_and_change_nothing() {
    let env = Env::new();
    let d = env.start_daemon();
    let id = kit::unique_id("victim");
    let b = env.bundle(&id, "victim", &["/bin/sleep", "600"], &env.hook(&[]), &[]);
    let _g = kit::ContainerGuard::new(&env.runc, &id);
    assert!(
        env.run_detached(&id, &b).status.success(),
        "{}",
        env.run_log(&id)
    );
    let before = state_container(&d, &id).await;
    let probe_before = d.probe().await;

    let delete = format!(r#"{{"operation":1,"container":{{"containerID":"{id}"}}}}"#);
    let mut oversized =
        format!(r#"{{"operation":1,"container":{{"containerID":"{id}","labels":""#).into_bytes();
    oversized.extend(vec![b'x'; 70 * 1024]);
    oversized.extend(b"\"}}");
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"hello".to_vec()),
        ("binary", vec![0xff, 0x00, 0xfe, b'{', 0x80]),
        (
            "truncated then garbage",
            [&delete.as_bytes()[..14], b"]]]"].concat(),
        ),
        (
            "garbage before a valid delete",
            [b"xx".as_slice(), delete.as_bytes()].concat(),
        ),
        (
            "unknown operation",
            format!(r#"{{"operation":5,"container":{{"containerID":"{id}"}}}}"#).into_bytes(),
        ),
        (
            "wrong type",
            br#"{"operation":1,"container":{"containerID":7}}"#.to_vec(),
        ),
        (
            "empty id",
            br#"{"operation":1,"container":{"containerID":""}}"#.to_vec(),
        ),
        (
            "control characters in the id",
            br#"{"operation":0,"container":{"containerID":"a\nb"}}"#.to_vec(),
        ),
        (
            "container as array",
            br#"{"operation":1,"container":["x"]}"#.to_vec(),
        ),
        ("oversized delete", oversized),
        ("top-level array", format!("[{delete}]").into_bytes()),
    ];
    for (what, bytes) in bad {
        assert_eq!(
            String::from_utf8_lossy(&exchange(&env.socket, &bytes)),
            "err",
            "{what}"
        );
    }
    // a delete of an unknown container is fine (a poststop for one the daemon never saw)
    assert_eq!(
        exchange(
            &env.socket,
            br#"{"operation":1,"container":{"containerID":"never-seen"}}"#
        ),
        b"ok"
    );
    // nothing changed, and the daemon still serves
    let probe_after = d.probe().await;
    assert_eq!(probe_after.container_list, probe_before.container_list);
    let after = state_containers(&d).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[&id], before);
    assert!(d.stderr().contains("kubearmor is ready"));
    env.runc.kill_and_delete(&id);
    eventually("unregistered", || async {
        d.probe().await.container_list.is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_containers_started_in_parallel_are_all_registered() {
    const N: usize = 50;
    // runc run is CPU-bound (fork/exec, mounts) and the machine has 2 cores shared with the
    // daemon and the other tests: a few at a time
    const PARALLEL: usize = 4;
    let env = Env::new();
    let d = env.start_daemon();
    let hook = env.hook(&["--fail-closed", "--timeout-ms", "30000"]);
    let ids: Vec<String> = (0..N).map(|i| kit::unique_id(&format!("p{i}"))).collect();
    let _guards: Vec<kit::ContainerGuard> = ids
        .iter()
        .map(|id| kit::ContainerGuard::new(&env.runc, id))
        .collect();
    let bundles: Vec<kit::Bundle> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            env.bundle(
                id,
                &format!("c{i:02}"),
                &["/bin/sleep", "600"],
                &hook,
                &[("batch", "fifty")],
            )
        })
        .collect();

    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    break;
                }
                if !env.run_detached(&ids[i], &bundles[i]).status.success() {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {}", ids[i], env.run_log(&ids[i])));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");

    // fail-closed hooks: every container that runs was registered before it started
    let probe = d.probe().await;
    let expected: Vec<String> = (0..N).map(|i| format!("c{i:02}")).collect();
    assert_eq!(probe.container_list, expected);
    let state = wait_for("all fifty in GetState", || async {
        let state = state_containers(&d).await;
        (state.len() == N).then_some(state)
    })
    .await;
    let mut cgroups = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let pid = env.runc.pid(id).unwrap();
        let obj = &state[id];
        assert_identity(obj, id, &format!("c{i:02}"), pid);
        assert_eq!(obj["labelsMap"]["batch"], "fifty");
        assert!(
            cgroups.insert(obj["cgroupId"].as_u64().unwrap()),
            "duplicate cgroup id"
        );
    }
    let ns = get_state(&d)
        .await
        .into_iter()
        .find(|e| e.kind == "namespace")
        .unwrap();
    let ns: Value = serde_json::from_slice(&ns.object).unwrap();
    assert_eq!(ns["container_count"], N);

    std::thread::scope(|s| {
        for chunk in ids.chunks(N.div_ceil(PARALLEL)) {
            let runc = &env.runc;
            s.spawn(move || {
                for id in chunk {
                    runc.kill_and_delete(id);
                }
            });
        }
    });
    eventually("all unregistered at poststop", || async {
        d.probe().await.container_list.is_empty()
    })
    .await;
    eventually("GetState empty", || async {
        get_state(&d).await.iter().all(|e| e.kind == "node")
    })
    .await;
}

/// Policies a workload might try to reach by labelling itself: `other`'s namespace (a cluster
/// policy on `namespace In [other]`) and the container named `victim`.
const CLAIMED_POLICIES: &str = r#"apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: csp-other-namespace
spec:
  selector:
    matchExpressions:
    - key: namespace
      operator: In
      values: [other]
  file:
    matchPaths:
    - path: /etc/shadow
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-victim
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: victim
  file:
    matchPaths:
    - path: /etc/shadow
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-web
spec:
  selector:
    matchLabels:
      app: web
  file:
    matchPaths:
    - path: /etc/passwd
  action: Block
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_socket_needs_proof_and_labels_cannot_claim_identity() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    std::fs::write(env.dir.policies().join("claims.yaml"), CLAIMED_POLICIES).unwrap();
    let events = env.path().join("events.jsonl");
    let d = Daemon::start(
        &env.dir,
        Options::default()
            .env("USEOCIHOOKS", "true")
            .env("KASOCKET", env.socket.to_str().unwrap())
            .env("RUNCSTATEDIRS", env.runc.root.to_str().unwrap())
            .env("ENABLEKUBEARMORSTATEAGENT", "true")
            .env("LOGPATH", events.to_str().unwrap()),
    );
    // Socket 0600 in a 0750 directory, both root's.
    let m = std::fs::metadata(&env.socket).unwrap();
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o600));
    let m = std::fs::metadata(env.socket.parent().unwrap()).unwrap();
    assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o750));

    // A pod labelled and annotated to land in `other` and to pass for `victim`.
    let id = kit::unique_id("claims");
    let bundle = env.bundle(
        &id,
        "web",
        &["/bin/sleep", "600"],
        &env.hook(&[]),
        &[
            ("kubearmor.io/namespace", "other"),
            ("kubearmor.io/container.name", "victim"),
            (
                "io.kubernetes.cri-o.Labels",
                r#"{"kubearmor.io/namespace":"other","app":"web"}"#,
            ),
        ],
    );
    let _g = kit::ContainerGuard::new(&env.runc, &id);
    assert!(
        env.run_detached(&id, &bundle).status.success(),
        "{}",
        env.run_log(&id)
    );
    let pid = env.runc.pid(&id).unwrap();
    let obj = state_container(&d, &id).await;
    assert_identity(&obj, &id, "web", pid);
    assert_eq!(obj["namespaceName"], "container_namespace", "{obj}");
    assert!(
        obj["labelsMap"].get("kubearmor.io/namespace").is_none(),
        "{obj}"
    );
    let probe = d.probe().await;
    assert_eq!(
        probe.container_map["web"].policy_list,
        ["ksp-web"],
        "only the policy its ordinary label selects"
    );

    // An unprivileged user cannot reach the socket: its hook cannot connect, nothing changes.
    let forged_stop = format!(
        r#"{{"ociVersion":"1.0.2","id":"{id}","status":"stopped","pid":0,"bundle":"/nonexistent"}}"#
    );
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&env.hook)
        .args(["--kubearmor-socket", env.socket.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(forged_stop.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ermission denied"), "hook as uid 65534: {err}");
    assert!(state_containers(&d).await.contains_key(&id));

    // Root, but forged: a delete while the container runs, a create for another id on its
    // process, a create on a host process claiming its cgroup.
    let del = kubearmor_containers::HookRequest::delete(id.clone());
    assert_eq!(exchange(&env.socket, &del.to_bytes().unwrap()), b"err");
    let steal = kubearmor_containers::HookRequest::create(kubearmor_containers::Container {
        container_id: "impostor".into(),
        pid,
        ..Default::default()
    });
    assert_eq!(exchange(&env.socket, &steal.to_bytes().unwrap()), b"err");
    let host = kubearmor_containers::HookRequest::create(kubearmor_containers::Container {
        container_id: "host-claim".into(),
        pid: std::process::id(),
        cgroup_path: kit::cgroup_path_of(pid),
        ..Default::default()
    });
    assert_eq!(exchange(&env.socket, &host.to_bytes().unwrap()), b"err");
    let now = state_containers(&d).await;
    assert!(now.contains_key(&id), "the forged delete changed nothing");
    assert!(!now.contains_key("impostor") && !now.contains_key("host-claim"));
    // Each refusal is an alert naming what was tried.
    let alerts = wait_for("three ContainerHook alerts", || async {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("\"ContainerHook\""))
            .map(str::to_string)
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert!(alerts[0].contains("still running"), "{}", alerts[0]);
    assert!(alerts[1].contains("already belongs"), "{}", alerts[1]);
    assert!(alerts[2].contains("claims cgroup"), "{}", alerts[2]);

    // The runtime's own poststop, once the container stopped, still removes it.
    env.runc.kill_and_delete(&id);
    wait_for("the container unregistered", || async {
        (!state_containers(&d).await.contains_key(&id)).then_some(())
    })
    .await;
}
