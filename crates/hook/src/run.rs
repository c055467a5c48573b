//! What one hook invocation does, and how its outcome maps to an exit status.
//!
//! * `status == "stopped"` (poststop): send a delete carrying the container id. A failure is
//!   logged and the hook still exits 0: the container is gone either way, and a failing
//!   poststop hook only produces runtime warnings.
//! * otherwise (createRuntime, prestart): read `<bundle>/config.json`, gather pid, namespaces,
//!   cgroup, rootfs, annotations and labels, append the record to `--hook-path` when given,
//!   send a create and wait for `ok`.
//! * fail-open (default): any failure is logged and the hook exits 0, so the container starts
//!   (upstream exits 0 when ka.sock cannot be dialled). fail-closed: any failure on create
//!   (daemon absent, timeout, `err`, unreadable state or `/proc`) exits 1, which makes the
//!   runtime abort the container.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubearmor_containers::hookpath;
use kubearmor_containers::oci::{self, GatherInput};
use kubearmor_containers::procfs::ProcSource;
use kubearmor_containers::protocol::HookRequest;

use crate::client::{self, SendError};

#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub hook_path: Option<PathBuf>,
}

/// How an invocation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon acknowledged.
    Registered,
    /// Poststop done (or attempted).
    Unregistered,
    /// Something failed; `.0` says what.
    Failed(String),
}

impl Outcome {
    /// Exit status under the configured fail mode.
    pub fn exit_code(&self, fail_closed: bool) -> i32 {
        match self {
            Outcome::Failed(_) if fail_closed => 1,
            _ => 0,
        }
    }
}

/// Run the hook with the OCI state on `stdin`.
pub fn run_hook(opts: &Options, stdin: impl Read, proc: &dyn ProcSource) -> Outcome {
    let state = match oci::read_state(stdin) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("reading the OCI state on stdin: {e}")),
    };
    if state.is_stopped() {
        let req = HookRequest::delete(&state.id);
        append(opts.hook_path.as_deref(), &req);
        if let Err(e) = client::send(&opts.socket, &req, opts.timeout) {
            tracing::warn!(container = %state.id, error = %e, "could not unregister the container");
        }
        return Outcome::Unregistered;
    }

    let spec = if state.bundle.is_empty() {
        None
    } else {
        match oci::read_spec(Path::new(&state.bundle)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "bundle config.json unreadable; using the state annotations");
                None
            }
        }
    };
    let gathered = oci::gather(
        &GatherInput {
            id: &state.id,
            pid: state.pid,
            bundle: &state.bundle,
            state_annotations: Some(&state.annotations),
            spec: spec.as_ref(),
        },
        proc,
    );
    let container = match gathered {
        Ok((c, warnings)) => {
            for w in warnings {
                tracing::warn!(container = %state.id, "{}", w.0);
            }
            c
        }
        Err(e) => {
            return Outcome::Failed(format!(
                "inspecting container {} (pid {}): {e}",
                state.id, state.pid
            ))
        }
    };
    let req = HookRequest::create(container);
    append(opts.hook_path.as_deref(), &req);
    match client::send(&opts.socket, &req, opts.timeout) {
        Ok(()) => {
            tracing::info!(container = %state.id, cgroup_id = req.container.cgroup_id, "registered");
            Outcome::Registered
        }
        Err(e @ SendError::Absent { .. }) => {
            Outcome::Failed(format!("{e} (is kubearmor running?)"))
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn append(path: Option<&Path>, req: &HookRequest) {
    if let Some(path) = path {
        if let Err(e) = hookpath::append_record(path, req) {
            tracing::warn!(error = %e, "could not write the hookPath record");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use kubearmor_containers::procfs::HostProc;
    use kubearmor_containers::server::{HookServer, Readiness, ServerConfig};
    use kubearmor_containers::Registry;

    use super::*;

    /// The test process plays the container: its own /proc entries are readable without root.
    fn state_json(id: &str, status: &str, bundle: &Path) -> String {
        serde_json::json!({
            "ociVersion": "1.0.2", "id": id, "status": status,
            "pid": std::process::id(), "bundle": bundle,
            "annotations": {"io.kubernetes.cri.container-name": "web", "app": "shop"}
        })
        .to_string()
    }

    fn opts(socket: &Path) -> Options {
        Options {
            socket: socket.to_path_buf(),
            timeout: Duration::from_secs(5),
            hook_path: None,
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::Registered.exit_code(true), 0);
        assert_eq!(Outcome::Unregistered.exit_code(true), 0);
        assert_eq!(Outcome::Failed("x".into()).exit_code(false), 0);
        assert_eq!(Outcome::Failed("x".into()).exit_code(true), 1);
    }

    #[test]
    fn bad_stdin_fails() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(&dir.path().join("ka.sock"));
        assert!(matches!(
            run_hook(&o, &b"nope"[..], &HostProc::default()),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            run_hook(&o, &b"{}"[..], &HostProc::default()),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn absent_daemon_fails_create_but_not_delete() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(&dir.path().join("ka.sock"));
        let out = run_hook(
            &o,
            state_json("c1", "creating", dir.path()).as_bytes(),
            &HostProc::default(),
        );
        assert!(
            matches!(&out, Outcome::Failed(m) if m.contains("not reachable")),
            "{out:?}"
        );
        assert_eq!(out.exit_code(true), 1);
        assert_eq!(out.exit_code(false), 0);
        let out = run_hook(
            &o,
            state_json("c1", "stopped", dir.path()).as_bytes(),
            &HostProc::default(),
        );
        assert_eq!(out, Outcome::Unregistered);
    }

    #[test]
    fn registers_and_unregisters_with_a_real_server() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"root":{"path":"rootfs"},"process":{"args":["/bin/sh"],"apparmorProfile":"prof"},"annotations":{"tier":"db"}}"#,
        )
        .unwrap();
        let socket = dir.path().join("run/ka.sock");
        let hook_path = dir.path().join("output.json");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let registry = Arc::new(Registry::default());
        let server = HookServer::bind(
            ServerConfig {
                readiness: Readiness::Open,
                ..ServerConfig::with_socket(&socket)
            },
            registry.clone(),
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));

        let o = Options {
            hook_path: Some(hook_path.clone()),
            ..opts(&socket)
        };
        let out = run_hook(
            &o,
            state_json("c1", "creating", &bundle).as_bytes(),
            &HostProc::default(),
        );
        assert_eq!(out, Outcome::Registered);
        let r = registry.by_container_id("c1").unwrap();
        assert_eq!(r.pid, std::process::id());
        assert_eq!(r.name, "web");
        assert_eq!(r.labels["app"], "shop");
        assert_eq!(r.labels["tier"], "db");
        assert_eq!(r.apparmor_profile, "prof");
        assert_eq!(r.rootfs, bundle.join("rootfs").display().to_string());
        assert!(r.pidns > 0 && r.mntns > 0);
        // the test process's cgroup (cgroup v2 present on this machine)
        if HostProc::default().cgroup2_mount().is_some() {
            assert!(r.cgroup_id > 0);
            assert_eq!(
                registry.by_pid(std::process::id()).unwrap().unwrap().id,
                "c1"
            );
        }

        let out = run_hook(
            &o,
            state_json("c1", "stopped", &bundle).as_bytes(),
            &HostProc::default(),
        );
        assert_eq!(out, Outcome::Unregistered);
        // The "container" here is this test process, still running, and the hook speaks from
        // inside its cgroup: the daemon refuses that delete as unproven (the end-to-end tests
        // in kubearmor-daemon show the real poststop delete).
        assert_eq!(registry.by_container_id("c1").unwrap().id, "c1");

        // both records went to the hookPath file too
        let text = std::fs::read_to_string(&hook_path).unwrap();
        assert_eq!(text.lines().count(), 2);

        let _ = stop.send(());
        rt.block_on(task).unwrap().unwrap();
    }

    #[test]
    fn closed_gate_times_out_as_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ka.sock");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let registry = Arc::new(Registry::default());
        let server = HookServer::bind(
            ServerConfig {
                readiness: Readiness::AwaitDetached {
                    max_wait: Duration::from_secs(3600),
                },
                ..ServerConfig::with_socket(&socket)
            },
            registry.clone(),
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        let o = Options {
            timeout: Duration::from_millis(400),
            ..opts(&socket)
        };
        let out = run_hook(
            &o,
            state_json("c1", "creating", dir.path()).as_bytes(),
            &HostProc::default(),
        );
        assert!(matches!(out, Outcome::Failed(_)), "{out:?}");
        assert!(registry.is_empty());
        let _ = stop.send(());
        rt.block_on(task).unwrap().unwrap();
    }
}
