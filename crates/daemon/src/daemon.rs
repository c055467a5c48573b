//! Wiring: start every part in order, say what is (and is not) active, wait for SIGINT/SIGTERM,
//! stop in order.

use std::sync::Arc;

use kubearmor_policy::{HostIdentity, PolicyKind};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{self, ConfigLocation, Effect, Resolved, KEYS};
use crate::enforce::{self, network::NetworkPlane, usb::UsbPlane, Enforcer, RefreshOnHook};
use crate::grpc::{self, GrpcError, Services};
use crate::host_info::HostInfo;
use crate::logging::MessageSink;
use crate::pipeline::{self, Pipeline, PipelineError, Stamp};
use crate::probe;
use crate::state::StateHub;
use crate::store::{self, PolicyStore, Scope, StoreSettings};

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
    #[error("cannot listen on TCP port {port} (metricsPort): {source}")]
    Metrics { port: u16, source: std::io::Error },
    #[error("OCI hook socket: {0}")]
    Hooks(#[from] kubearmor_containers::server::ServerError),
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(
    resolved: Resolved,
    location: ConfigLocation,
    sink: MessageSink,
) -> Result<(), DaemonError> {
    let config = Arc::new(resolved.config.clone());
    log_config(&resolved, &location);
    if config::TEST_HOOKS {
        tracing::warn!("this is a TEST build: test hooks are compiled in (event injection, usbAcceptUserspaceUevents); never use it in production");
    }

    let host = HostInfo::gather(&config.machine_id_path, &config.host);

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

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // Containers, then the planes that enforce the policies on them and on the host.
    let registry = Arc::new(kubearmor_containers::Registry::new(Arc::new(
        kubearmor_containers::procfs::HostProc::new(&config.procfs_mount),
    )));
    let enforcer = Enforcer::new(store.clone(), registry.clone());
    let reasons = start_planes(&config, &host, &enforcer, &pipeline);
    if config.hooks.use_oci_hooks {
        tasks.extend(start_hooks(
            &config.hooks,
            &registry,
            &enforcer,
            &pipeline,
            &shutdown_rx,
        )?);
    } else {
        tracing::info!(
            "useOCIHooks is false: containers are not registered; container policies apply to none"
        );
    }
    enforcer.refresh();
    // Computed again at every read (probe, metrics): a plane that goes down says so live.
    let live = Arc::new(crate::planes::LiveEnforcement::new(
        enforcer.clone(),
        reasons.clone(),
    ));
    let enforcement = live.now();
    tasks.push(tokio::spawn(enforce::follow_changes(
        enforcer.clone(),
        store.subscribe(),
        registry.clone(),
        shutdown_rx.clone(),
    )));

    let enforcement = Arc::new(enforcement);
    if config.metrics_port != 0 {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.metrics_port))
            .await
            .map_err(|source| DaemonError::Metrics {
                port: config.metrics_port,
                source,
            })?;
        tracing::info!(addr = ?listener.local_addr().ok(), "metrics listening on /metrics");
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            live.clone(),
            pipeline.clone(),
            enforcer.clone(),
            shutdown_rx.clone(),
        )));
    }

    let state = Arc::new(StateHub::new(&config, &host, &enforcement));
    if config.state_agent {
        tasks.push(tokio::spawn(crate::state::follow_registry(
            state.clone(),
            registry.clone(),
            shutdown_rx.clone(),
        )));
    }

    let g = &config.grpc;
    let listeners = grpc::Listeners {
        api: grpc::bind(g.listen_address, g.port, "gRPC")?,
        health: grpc::bind(g.listen_address, g.health_port, "gRPCHealthPort")?,
        unix: match &g.unix_socket {
            Some(p) => Some((grpc::bind_unix(p)?, p.clone())),
            None => None,
        },
        tls: if g.tls_enabled {
            Some(grpc::load_tls(&g.tls_cert_path)?)
        } else {
            None
        },
    };
    let running = grpc::start(
        Services {
            config: config.clone(),
            pipeline: pipeline.clone(),
            store: store.clone(),
            state: state.clone(),
            registry: registry.clone(),
            enforcement: live.clone(),
        },
        listeners,
        shutdown_rx.clone(),
    )
    .await
    .map_err(DaemonError::Serve)?;
    tracing::info!(addr = %running.api_addr, tls = g.tls_enabled, services = ?running.services, "gRPC API listening");
    if let Some(p) = &running.unix_socket {
        tracing::info!(socket = %p.display(), "gRPC API listening on the Unix socket (root only)");
    }
    tracing::info!(
        "{}",
        grpc::auth::policy_access_summary(
            config.immutable_policies,
            running.unix_socket.as_deref(),
            g.tls_enabled
                .then(|| g.tls_cert_path.join("ca.crt"))
                .as_deref(),
        )
    );
    tracing::info!(addr = %running.health_addr, "gRPC health listening");
    if config.state_agent {
        state.announce_node();
    }

    if let Some(path) = &config.probe_data_path {
        probe::write_probe_file(path, &probe::probe_file_json(&config, &host, &enforcement));
    }

    tasks.extend(running.tasks);
    tasks.push(tokio::spawn(store::watch::run(
        store.clone(),
        shutdown_rx.clone(),
    )));
    #[cfg(feature = "test-hooks")]
    if let Some(path) = &config.test_event_socket {
        use crate::test_source;
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

    if enforcement.unenforced.is_empty() {
        tracing::info!("enforcement: {}", enforcement.summary());
    } else {
        tracing::warn!("enforcement: {}", enforcement.summary());
    }
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
    let e = enforcer.clone();
    let _ = tokio::task::spawn_blocking(move || e.stop()).await;
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
            "config: {} = {} (from {source})",
            key.name(),
            resolved.text(key)
        );
    }
    let inert: Vec<String> = KEYS
        .iter()
        .filter_map(|k| match k.effect {
            Effect::NotYet(what)
                if resolved
                    .sources
                    .get(&k.key)
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

/// Starts every plane this kernel and configuration allow; returns, for the families left
/// uncovered, why.
fn start_planes(
    config: &Arc<config::Config>,
    host: &HostInfo,
    enforcer: &Arc<Enforcer>,
    pipeline: &Pipeline,
) -> Vec<(&'static str, String)> {
    let mut reasons = vec![
        (
            "DNS",
            "matchDNSQueries rules are decided by the policy engine but no plane in this version sees DNS queries"
                .to_string(),
        ),
        (
            "Syscall",
            "syscall rules are matched on system-monitor events, which this version does not produce"
                .to_string(),
        ),
    ];
    let wanted = |name: &str| config.planes.iter().any(|p| p == name);
    for p in &config.planes {
        if !["bpf-lsm", "cgroup-bpf", "fanotify", "usb"].contains(&p.as_str()) {
            tracing::warn!(
                "planes: unknown plane {p:?} (bpf-lsm, cgroup-bpf, fanotify, usb) ignored"
            );
        }
    }
    // Kernel probing picks the plane per family: BPF-LSM where it loads (process, file,
    // network protocols, capabilities); fanotify and cgroup-BPF otherwise.
    let lsm_started = if !wanted("bpf-lsm") {
        reasons.push((
            "Capabilities",
            "needs the bpf-lsm plane, which is not in the planes setting".to_string(),
        ));
        false
    } else {
        let protect = config.self_protection.then(|| {
            let mut paths = vec![
                config.policy_dir.display().to_string(),
                config
                    .bpf_fs_path
                    .join("kubearmor-rs")
                    .display()
                    .to_string(),
            ];
            if let Ok(exe) = std::env::current_exe() {
                paths.push(exe.display().to_string());
            }
            paths
        });
        match enforce::lsm::BpfLsmPlane::start(
            &config.bpf_fs_path,
            Arc::downgrade(enforcer),
            pipeline.clone(),
            protect.as_deref(),
        ) {
            Ok(p) => {
                tracing::info!("BPF-LSM plane started: it enforces Process, File, Network and Capabilities rules; fanotify and cgroup-BPF are not started");
                if let Some(paths) = &protect {
                    tracing::info!(
                        "self-protection on: no other process (root included) may signal or ptrace the daemon or write {}",
                        paths.join(", ")
                    );
                }
                enforcer.add(Box::new(p));
                true
            }
            Err(e) => {
                tracing::info!("BPF-LSM plane not available ({e}); using fanotify and cgroup-BPF");
                if config.self_protection {
                    tracing::warn!(
                        "selfProtection is set but needs the bpf-lsm plane: NOT in effect"
                    );
                }
                reasons.push((
                    "Capabilities",
                    format!("needs a BPF-LSM plane (the capable hook), which did not load: {e}"),
                ));
                false
            }
        }
    };
    if lsm_started {
        // Network is covered by the BPF-LSM plane.
    } else if !wanted("cgroup-bpf") {
        reasons.push((
            "Network",
            "the cgroup-bpf plane is not in the planes setting".to_string(),
        ));
    } else {
        match NetworkPlane::start(
            &config.bpf_fs_path,
            Arc::downgrade(enforcer),
            pipeline.clone(),
        ) {
            Ok(p) => enforcer.add(Box::new(p)),
            Err(e) => {
                tracing::error!("network plane (cgroup-BPF) did not start: {e}");
                reasons.push((
                    "Network",
                    format!("the cgroup-BPF plane failed to start: {e}"),
                ));
            }
        }
    }
    if lsm_started {
        // Process and File are covered by the BPF-LSM plane.
    } else if !wanted("fanotify") {
        reasons.push((
            "Process",
            "the fanotify plane is not in the planes setting".to_string(),
        ));
        reasons.push((
            "File",
            "the fanotify plane is not in the planes setting".to_string(),
        ));
    } else {
        match enforce::fanotify::FanotifyPlane::start(
            Arc::downgrade(enforcer),
            pipeline.clone(),
            config.fanotify,
        ) {
            Ok(p) => enforcer.add(Box::new(p)),
            Err(e) => {
                tracing::error!("fanotify plane did not start: {e}");
                reasons.push((
                    "Process",
                    format!("the fanotify plane failed to start: {e}"),
                ));
                reasons.push(("File", format!("the fanotify plane failed to start: {e}")));
            }
        }
    }
    if !wanted("usb") {
        reasons.push((
            "Device",
            "the usb plane is not in the planes setting".to_string(),
        ));
    } else if kubearmor_usb::wanted(config.usb.enabled, config.host_policy) {
        let ctx = kubearmor_usb::HostContext {
            cluster_name: config.cluster.clone(),
            host_name: config.host.clone(),
            node_id: host.node_id.clone(),
        };
        match UsbPlane::start(&config.usb, &enforcer.world(), ctx, pipeline.clone()) {
            Ok(p) => enforcer.add(Box::new(p)),
            Err(e) => {
                tracing::error!("USB device handler did not start: {e}");
                reasons.push((
                    "Device",
                    format!("the USB device handler failed to start: {e}"),
                ));
            }
        }
    } else {
        reasons.push((
            "Device",
            "the USB device handler needs enableUSBDeviceHandler and enableKubeArmorHostPolicy"
                .to_string(),
        ));
    }
    reasons
}

/// The ka.sock server (after a rescan of running runc containers) and the hookPath reader.
fn start_hooks(
    config: &config::HookConfig,
    registry: &Arc<kubearmor_containers::Registry>,
    enforcer: &Arc<Enforcer>,
    pipeline: &Pipeline,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, DaemonError> {
    use kubearmor_containers::{hookpath::HookPathReader, rescan, server};
    let mut tasks = Vec::new();
    let srv = server::HookServer::bind(
        server::ServerConfig {
            socket_mode: config.ka_socket_mode,
            ..server::ServerConfig::with_socket(&config.ka_socket)
        },
        registry.clone(),
    )?
    .with_handler(Arc::new(RefreshOnHook {
        enforcer: enforcer.clone(),
        pipeline: pipeline.clone(),
    }));
    let report = rescan::rescan(
        registry,
        &rescan::RescanConfig {
            roots: config.runc_state_dirs.clone(),
        },
    );
    for s in &report.skipped {
        tracing::debug!(path = %s.path.display(), reason = %s.reason, "rescan: skipped");
    }
    tracing::info!(
        registered = registry.len(),
        skipped = report.skipped.len(),
        roots = ?config.runc_state_dirs,
        socket = %config.ka_socket.display(),
        "OCI hooks: running containers rescanned; listening for kubearmor-hook"
    );
    let mut rx = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        if let Err(e) = srv.serve(stop).await {
            tracing::error!("OCI hook server: {e}");
        }
    }));
    if let Some(path) = &config.hook_path {
        let mut rx = shutdown.clone();
        let reader = HookPathReader::new(path, registry.clone());
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            reader
                .watch(std::time::Duration::from_millis(500), stop)
                .await;
        }));
    }
    Ok(tasks)
}
