//! The gRPC servers (runtime spec §2.1).
//!
//! * Main server on `gRPC` (32767): `feeder.LogService` and reflection always;
//!   `policy.PolicyService` and `policy.ProbeService` when container or host policies are
//!   enabled; `state_agent.StateAgent` when `enableKubeArmorStateAgent`.
//! * A separate plaintext server on `gRPCHealthPort` (32766) with `grpc.health.v1.Health` only,
//!   reporting SERVING for each service as it starts.
//!
//! Both listen on `gRPCListenAddress`, by default every address, IPv6 and IPv4 (Go's
//! `":port"`). With `tlsEnabled` the main port speaks mutual TLS only (upstream's
//! `RequireAndVerifyClientCert`). The same API is also served on the Unix socket
//! `gRPCSocket` (0600, root-owned 0750 directory) for root on this host. Who may change
//! policy: see [`auth`]. Keepalive as upstream: a
//! ping every second on idle connections, 5 s timeout. Message size limits are explicit;
//! a larger request fails with `OUT_OF_RANGE` ("decoded message length too large") and changes
//! nothing.

pub mod auth;
pub mod log;
pub mod policy;
pub mod probe;
pub mod state;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kubearmor_policy::limits::MAX_INPUT_BYTES;
use kubearmor_proto::feeder::log_service_server::LogServiceServer;
use kubearmor_proto::policy::policy_service_server::PolicyServiceServer;
use kubearmor_proto::probe::probe_service_server::ProbeServiceServer;
use kubearmor_proto::state_agent::state_agent_server::StateAgentServer;
use kubearmor_proto::values::service;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::planes::LiveEnforcement;
use crate::state::StateHub;
use crate::store::PolicyStore;

/// Largest PolicyService request: a policy at the policy crate's limit plus the envelope.
pub const MAX_POLICY_REQUEST: usize = MAX_INPUT_BYTES + 64 * 1024;
/// Largest request of the other services (their requests are a nonce, a filter or empty).
pub const MAX_SMALL_REQUEST: usize = 64 * 1024;
/// Largest event sent on a stream.
pub const MAX_EVENT: usize = 4 * 1024 * 1024;
/// Largest getProbeData / GetState answer.
pub const MAX_SNAPSHOT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot listen on TCP port {port} ({what}): {error}")]
    Bind {
        port: u16,
        what: &'static str,
        error: io::Error,
    },
    #[error("gRPC Unix socket (gRPCSocket) {path}: {error}")]
    Unix { path: PathBuf, error: String },
    #[error("TLS (tlsEnabled, tlsCertPath): {file}: {error}")]
    Tls { file: PathBuf, error: String },
}

/// What the servers serve.
pub struct Services {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub store: Arc<PolicyStore>,
    pub state: Arc<StateHub>,
    /// The containers (ProbeService lists them).
    pub registry: Arc<kubearmor_containers::Registry>,
    /// What the planes enforce (ProbeService's `policyEnabled`).
    pub enforcement: Arc<LiveEnforcement>,
}

/// The running servers.
pub struct Running {
    pub api_addr: SocketAddr,
    pub unix_socket: Option<PathBuf>,
    pub health_addr: SocketAddr,
    pub health: tonic_health::server::HealthReporter,
    pub tasks: Vec<JoinHandle<()>>,
    /// Service names registered on the main server.
    pub services: Vec<&'static str>,
}

/// Binds `ip:port`, or every address when `ip` is `None` (see [`bind_all`]).
pub fn bind(ip: Option<IpAddr>, port: u16, what: &'static str) -> Result<TcpListener, GrpcError> {
    let Some(ip) = ip else {
        return bind_all(port, what);
    };
    let err = |error| GrpcError::Bind { port, what, error };
    let listener = bind_one(SocketAddr::new(ip, port), false).map_err(err)?;
    TcpListener::from_std(listener).map_err(err)
}

/// Binds `[::]:port` with IPv4 mapped in (dual stack), or `0.0.0.0:port` when IPv6 is off.
pub fn bind_all(port: u16, what: &'static str) -> Result<TcpListener, GrpcError> {
    let err = |error| GrpcError::Bind { port, what, error };
    let listener = match bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(err(e)),
        Err(_) => bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false).map_err(err)?,
    };
    TcpListener::from_std(listener).map_err(err)
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds the API's Unix socket: the directory is made root-only (0750), a stale socket is
/// removed, and the socket is 0600.
pub fn bind_unix(path: &Path) -> Result<UnixListener, GrpcError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |error: String| GrpcError::Unix {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        kubearmor_containers::server::ensure_private_dir(dir, 0o750)
            .map_err(|e| err(e.to_string()))?;
    }
    kubearmor_containers::server::remove_stale_socket(path).map_err(|e| err(e.to_string()))?;
    let listener = UnixListener::bind(path).map_err(|e| err(format!("bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("chmod 0600: {e}")))?;
    Ok(listener)
}

/// The server side of mutual TLS from `dir`: `ca.crt` (client certificates must chain to
/// it), `server.crt` and `server.key` (upstream's external provider file names).
pub fn load_tls(dir: &Path) -> Result<ServerTlsConfig, GrpcError> {
    let read = |name: &str| {
        let file = dir.join(name);
        std::fs::read(&file).map_err(|e| GrpcError::Tls {
            file: file.clone(),
            error: e.to_string(),
        })
    };
    let (ca, cert, key) = (read("ca.crt")?, read("server.crt")?, read("server.key")?);
    for (name, pem, tag) in [
        ("ca.crt", &ca, "CERTIFICATE"),
        ("server.crt", &cert, "CERTIFICATE"),
        ("server.key", &key, "PRIVATE KEY"),
    ] {
        if !String::from_utf8_lossy(pem).contains(tag) {
            return Err(GrpcError::Tls {
                file: dir.join(name),
                error: format!("not a PEM file with a {tag}"),
            });
        }
    }
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca)))
}

/// The listeners and transport settings of [`start`].
pub struct Listeners {
    pub api: TcpListener,
    pub health: TcpListener,
    pub unix: Option<(UnixListener, PathBuf)>,
    /// Mutual TLS on `api`.
    pub tls: Option<ServerTlsConfig>,
}

/// Starts the servers on already-bound listeners; they stop when `shutdown` turns true.
pub async fn start(
    services: Services,
    listeners: Listeners,
    shutdown: watch::Receiver<bool>,
) -> io::Result<Running> {
    let Listeners {
        api,
        health: health_listener,
        unix,
        tls,
    } = listeners;
    let api_addr = api.local_addr()?;
    let health_addr = health_listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let cfg = &services.config;

    let mut names = vec![service::LOG_SERVICE];
    let policies = cfg.container_policy || cfg.host_policy;
    if policies {
        names.push(service::POLICY_SERVICE);
        names.push(service::PROBE_SERVICE);
    }
    if cfg.state_agent {
        names.push(service::STATE_AGENT);
    }

    let mut tasks = Vec::new();
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
    }
    let api_server = api_router(builder, &services);
    let mut sd = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let signal = async move {
            let _ = sd.wait_for(|s| *s).await;
        };
        if let Err(e) = api_server
            .serve_with_incoming_shutdown(TcpListenerStream::new(api), signal)
            .await
        {
            tracing::error!("gRPC API server failed: {e}");
        }
    }));
    let unix_socket = unix.as_ref().map(|(_, p)| p.clone());
    if let Some((listener, path)) = unix {
        let unix_server = api_router(Server::builder(), &services);
        let mut sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let signal = async move {
                let _ = sd.wait_for(|s| *s).await;
            };
            if let Err(e) = unix_server
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal)
                .await
            {
                tracing::error!("gRPC Unix-socket server failed: {e}");
            }
            let _ = std::fs::remove_file(&path);
        }));
    }
    let mut sd = shutdown;
    let health_server = Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service);
    tasks.push(tokio::spawn(async move {
        let signal = async move {
            let _ = sd.wait_for(|s| *s).await;
        };
        if let Err(e) = health_server
            .serve_with_incoming_shutdown(TcpListenerStream::new(health_listener), signal)
            .await
        {
            tracing::error!("gRPC health server failed: {e}");
        }
    }));
    for name in &names {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    Ok(Running {
        api_addr,
        unix_socket,
        health_addr,
        health,
        tasks,
        services: names,
    })
}

/// Every API service on one server (the TCP port and the Unix socket serve the same).
fn api_router(mut builder: Server, services: &Services) -> Router {
    let cfg = &services.config;
    let policies = cfg.container_policy || cfg.host_policy;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kubearmor_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kubearmor_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .ok();
    let log_svc = LogServiceServer::new(log::LogSvc::new(services.pipeline.clone()))
        .max_decoding_message_size(MAX_SMALL_REQUEST)
        .max_encoding_message_size(MAX_EVENT);
    let policy_svc = policies.then(|| {
        PolicyServiceServer::new(policy::PolicySvc::new(
            services.store.clone(),
            auth::Authorizer::default(),
        ))
        .max_decoding_message_size(MAX_POLICY_REQUEST)
        .max_encoding_message_size(MAX_SMALL_REQUEST)
    });
    let probe_svc = policies.then(|| {
        ProbeServiceServer::new(probe::ProbeSvc::new(
            services.config.clone(),
            services.store.clone(),
            services.registry.clone(),
            services.enforcement.clone(),
        ))
        .max_decoding_message_size(MAX_SMALL_REQUEST)
        .max_encoding_message_size(MAX_SNAPSHOT)
    });
    let state_svc = cfg.state_agent.then(|| {
        StateAgentServer::new(state::StateSvc::new(services.state.clone()))
            .max_decoding_message_size(MAX_SMALL_REQUEST)
            .max_encoding_message_size(MAX_SNAPSHOT)
    });
    builder
        .add_service(log_svc)
        .add_optional_service(policy_svc)
        .add_optional_service(probe_svc)
        .add_optional_service(state_svc)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
}
