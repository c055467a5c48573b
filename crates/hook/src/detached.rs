//! `--detached`: upstream's replay of pre-existing containers (spec §4.5), from runc's state
//! directories instead of a CRI client. Waits for the daemon (dialling every 500 ms, giving up
//! after a minute like upstream), sends every running container as `detached: true` on one
//! connection, then closes it, which opens an upstream-style readiness gate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubearmor_containers::procfs::ProcSource;
use kubearmor_containers::protocol::HookRequest;
use kubearmor_containers::rescan::{self, RescanConfig};

use crate::client::{SendError, Session};

/// Upstream's detached process exits after one minute.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const DIAL_INTERVAL: Duration = Duration::from_millis(500);

/// Returns how many containers the daemon acknowledged.
pub fn replay(
    socket: &std::path::Path,
    roots: Vec<PathBuf>,
    proc: &dyn ProcSource,
    give_up_after: Duration,
) -> Result<usize, SendError> {
    let started = Instant::now();
    let mut session = loop {
        let left = give_up_after.saturating_sub(started.elapsed());
        match Session::connect(socket, left.max(Duration::from_millis(1))) {
            Ok(s) => break s,
            Err(SendError::Absent { .. }) if started.elapsed() + DIAL_INTERVAL < give_up_after => {
                std::thread::sleep(DIAL_INTERVAL);
            }
            Err(e) => return Err(e),
        }
    };
    let config = if roots.is_empty() {
        RescanConfig::default()
    } else {
        RescanConfig { roots }
    };
    let (containers, skipped) = rescan::discover(&config, proc);
    for s in &skipped {
        tracing::debug!(path = %s.path.display(), reason = %s.reason, "replay skipped");
    }
    let mut sent = 0;
    for c in containers {
        let mut req = HookRequest::create(c);
        req.detached = true;
        let bytes = req.to_bytes().map_err(SendError::Encode)?;
        // upstream ignores the reply content of detached messages
        session.exchange(&bytes)?;
        sent += 1;
    }
    tracing::info!(sent, "replayed running containers");
    Ok(sent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use kubearmor_containers::procfs::HostProc;
    use kubearmor_containers::server::{HookServer, Readiness, ServerConfig};
    use kubearmor_containers::{Registry, Source};

    use super::*;

    #[test]
    fn replay_opens_the_gate() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ka.sock");
        // a fake runc root whose only container is this test process
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let start = kubearmor_containers::procfs::parse_stat_start_time(&stat).unwrap();
        let root = dir.path().join("runc");
        std::fs::create_dir_all(root.join("self")).unwrap();
        std::fs::write(
            root.join("self/state.json"),
            serde_json::json!({"id": "self", "init_process_pid": me, "init_process_start": start,
                "config": {"labels": ["bundle=/nonexistent"]}})
            .to_string(),
        )
        .unwrap();

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
        let gate = server.gate();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));

        let n = replay(
            &socket,
            vec![root],
            &HostProc::default(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            registry.by_container_id("self").unwrap().source,
            Source::Detached
        );
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), gate.wait())
                .await
                .unwrap()
        });
        let _ = stop.send(());
        rt.block_on(task).unwrap().unwrap();
    }

    #[test]
    fn replay_gives_up_without_a_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let e = replay(
            &dir.path().join("ka.sock"),
            vec![],
            &HostProc::default(),
            Duration::from_millis(600),
        )
        .unwrap_err();
        assert!(matches!(e, SendError::Absent { .. }), "{e}");
    }
}
