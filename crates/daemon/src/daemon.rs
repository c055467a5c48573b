//! Wiring: start every part in order, say what is (and is not) active, wait for SIGINT/SIGTERM,
//! stop in order.

use std::sync::Arc;

use kubearmor_policy::{HostIdentity, PolicyKind};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{self, ConfigLocation, Effect, Resolved, KEYS};
use crate::grpc::{self, GrpcError, Services};
use crate::host_info::HostInfo;
use crate::logging::MessageSink;
use crate::pipeline::{self, Pipeline, PipelineError, Stamp};
use crate::planes::Enforcement;
use crate::probe;
use crate::state::StateHub;
use crate::store::{self, PolicyStore, Scope, StoreSettings};
use crate::test_source;

/// How long requests in flight get to finish at shutdown.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error("test event source {path}: {source}")]
    TestSource {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the gRPC servers: {0}")]
    Serve(std::io::Error),
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(
    resolved: Resolved,
    location: ConfigLocation,
    sink: MessageSink,
) -> Result<(), DaemonError> {
    let config = Arc::new(resolved.config.clone());
    log_config(&resolved, &location);

    let host = HostInfo::gather(&config.machine_id_path, &config.host);
    let enforcement = Enforcement::none();

    let pipeline = Pipeline::start(pipeline::Settings {
        stamp: Stamp {
            cluster: config.cluster.clone(),
            host: config.host.clone(),
            node_id: host.node_id.clone(),
        },
        throttle: config.throttle,
        log_path: config.log_path.clone(),
        debug: config.debug,
        drop_resource_from_process_logs: config.drop_resource_from_process_logs,
        subscriber_buffer: pipeline::SUBSCRIBER_BUFFER,
    })?;
    sink.attach(pipeline.clone());

    let store = Arc::new(PolicyStore::new(StoreSettings {
        dir: config.policy_dir.clone(),
        scope: Scope {
            host: HostIdentity {
                hostname: config.host.clone(),
                labels: Default::default(),
            },
            host_postures: config.host_postures,
            container_postures: config.container_postures,
            host_policies: config.host_policy,
            container_policies: config.container_policy,
        },
        immutable: config.immutable_policies,
    }));
    let s = store.clone();
    let report = tokio::task::spawn_blocking(move || s.rescan())
        .await
        .unwrap_or_default();
    log_policies(&store, &config, report.rejected.len());

    let state = Arc::new(StateHub::new(&config, &host, &enforcement));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = grpc::bind_all(config.grpc_port, "gRPC")?;
    let health = grpc::bind_all(config.health_port, "gRPCHealthPort")?;
    let running = grpc::start(
        Services {
            config: config.clone(),
            pipeline: pipeline.clone(),
            store: store.clone(),
            state: state.clone(),
        },
        api,
        health,
        shutdown_rx.clone(),
    )
    .await
    .map_err(DaemonError::Serve)?;
    tracing::info!(addr = %running.api_addr, services = ?running.services, "gRPC API listening");
    tracing::info!(addr = %running.health_addr, "gRPC health listening");
    if config.state_agent {
        state.announce_node();
    }

    if let Some(path) = &config.probe_data_path {
        probe::write_probe_file(path, &probe::probe_file_json(&config, &host, &enforcement));
    }

    let mut tasks = running.tasks;
    tasks.push(tokio::spawn(store::watch::run(
        store.clone(),
        shutdown_rx.clone(),
    )));
    if let Some(path) = &config.test_event_socket {
        let listener = test_source::bind(path).map_err(|source| DaemonError::TestSource {
            path: path.display().to_string(),
            source,
        })?;
        tracing::warn!(
            "TEST ONLY event source enabled on {} ({}): any local client that can open it injects events; never use this in production",
            path.display(),
            config::TEST_EVENT_SOCKET_ENV
        );
        tasks.push(tokio::spawn(test_source::run(
            listener,
            path.clone(),
            pipeline.clone(),
            shutdown_rx.clone(),
        )));
    }

    tracing::warn!("{}", enforcement.summary());
    tracing::info!("kubearmor is ready");

    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    running
        .health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = shutdown_tx.send(true);
    // Streams (WatchAlerts...) and idle client connections never end on their own: give the
    // servers a moment to finish requests in flight, then close what is left.
    let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for mut t in tasks {
        if tokio::time::timeout_at(grace, &mut t).await.is_err() {
            t.abort();
        }
    }
    let p = pipeline.clone();
    let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
    let stats = pipeline.stats();
    tracing::info!(?stats, "kubearmor stopped");
    Ok(())
}

fn log_config(resolved: &Resolved, location: &ConfigLocation) {
    tracing::info!(
        "kubearmor-rs {} starting; config file: {location}",
        env!("CARGO_PKG_VERSION")
    );
    for w in &resolved.warnings {
        tracing::warn!("config: {w}");
    }
    let (file, env, flags) = resolved.source_counts();
    tracing::info!(
        "config: {file} keys from the file, {env} from the environment, {flags} from flags; the rest built-in defaults"
    );
    for (key, source) in resolved.overrides() {
        tracing::info!(
            "config: {key} = {} (from {source})",
            config::describe(&resolved.config, key)
        );
    }
    let inert: Vec<String> = KEYS
        .iter()
        .filter_map(|k| match k.effect {
            Effect::NotYet(what)
                if resolved
                    .sources
                    .get(k.name)
                    .is_some_and(|s| *s != config::Source::Default) =>
            {
                Some(format!("{} (needs {what})", k.name))
            }
            _ => None,
        })
        .collect();
    if !inert.is_empty() {
        tracing::warn!(
            "config: accepted but not acted on by this version: {}",
            inert.join(", ")
        );
    }
}

fn log_policies(store: &PolicyStore, config: &config::Config, rejected: usize) {
    let snap = store.snapshot();
    let count = |k: PolicyKind| snap.policies().filter(|p| p.policy.kind == k).count();
    tracing::info!(
        dir = %store.dir().display(),
        host = count(PolicyKind::Host),
        container = count(PolicyKind::Container),
        cluster = count(PolicyKind::Cluster),
        host_selected = snap.host_policies().count(),
        host_rules = snap.host_rules().len(),
        rejected_files = rejected,
        "policies loaded"
    );
    if !config.host_policy && count(PolicyKind::Host) > 0 {
        tracing::warn!("enableKubeArmorHostPolicy is false: host policies are loaded and validated but not applied");
    }
    if !config.container_policy && snap.policies().any(|p| p.policy.kind != PolicyKind::Host) {
        tracing::warn!("enableKubeArmorPolicy is false: container policies are loaded and validated but not applied");
    }
}
