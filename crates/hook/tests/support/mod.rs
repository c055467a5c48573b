//! Shared pieces of the runc integration tests: the generic runc helpers come from
//! `kubearmor-testkit` (prerequisites, cached busybox rootfs, runc with a private `--root`,
//! container guards, bundles); this adds our hook binary and an in-test ka.sock server (the
//! containers crate's `server` + `registry`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubearmor_containers::server::{ChangeHandler, HookServer, Readiness, ServerConfig};
use kubearmor_containers::Registry;
pub use kubearmor_testkit::*;

pub const HOOK: &str = env!("CARGO_BIN_EXE_kubearmor-hook");

/// `kubearmor-hook` (this crate's binary) on `socket`, with extra arguments.
pub fn hook_config(socket: &Path, extra_args: &[&str]) -> HookConfig {
    HookConfig::new(HOOK, socket).args(extra_args.iter().copied())
}

/// The in-test ka.sock server: a real Unix socket served by the crate's server and registry.
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub registry: Arc<Registry>,
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), kubearmor_containers::ServerError>>>,
}

impl TestServer {
    pub fn start(socket: &Path, readiness: Readiness) -> TestServer {
        Self::start_with(socket, readiness, Arc::new(Registry::default()), None)
    }

    pub fn start_with(
        socket: &Path,
        readiness: Readiness,
        registry: Arc<Registry>,
        handler: Option<Arc<dyn ChangeHandler>>,
    ) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut server = HookServer::bind(
            ServerConfig {
                readiness,
                ..ServerConfig::with_socket(socket)
            },
            registry.clone(),
        )
        .unwrap();
        if let Some(h) = handler {
            server = server.with_handler(h);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        TestServer {
            rt,
            registry,
            socket: socket.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn stop(mut self) -> Arc<Registry> {
        self.shutdown();
        self.registry.clone()
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = self.rt.block_on(t);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
