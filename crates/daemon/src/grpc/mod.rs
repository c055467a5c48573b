//! The gRPC servers (runtime spec §2.1).
//!
//! * Main server on `gRPC` (32767): `feeder.LogService` and reflection always;
//!   `policy.PolicyService` and `policy.ProbeService` when container or host policies are
//!   enabled; `state_agent.StateAgent` when `enableKubeArmorStateAgent`.
//! * A separate plaintext server on `gRPCHealthPort` (32766) with `grpc.health.v1.Health` only,
//!   reporting SERVING for each service as it starts.
//!
//! Both listen on all interfaces, IPv6 and IPv4 (Go's `":port"`). Keepalive as upstream: a
//! ping every second on idle connections, 5 s timeout. Message size limits are explicit;
//! a larger request fails with `OUT_OF_RANGE` ("decoded message length too large") and changes
//! nothing.

pub mod log;
pub mod policy;
pub mod probe;
pub mod state;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kubearmor_policy::limits::MAX_INPUT_BYTES;
use kubearmor_proto::feeder::log_service_server::LogServiceServer;
use kubearmor_proto::policy::policy_service_server::PolicyServiceServer;
use kubearmor_proto::probe::probe_service_server::ProbeServiceServer;
use kubearmor_proto::state_agent::state_agent_server::StateAgentServer;
use kubearmor_proto::values::service;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
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
    #[error("cannot listen on TCP port {port} ({what}): {source}")]
    Bind {
        port: u16,
        what: &'static str,
        source: io::Error,
    },
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
    pub health_addr: SocketAddr,
    pub health: tonic_health::server::HealthReporter,
    pub tasks: Vec<JoinHandle<()>>,
    /// Service names registered on the main server.
    pub services: Vec<&'static str>,
}

/// Binds `[::]:port` with IPv4 mapped in (dual stack), or `0.0.0.0:port` when IPv6 is off.
pub fn bind_all(port: u16, what: &'static str) -> Result<TcpListener, GrpcError> {
    let err = |source| GrpcError::Bind { port, what, source };
    let listener = match bind_one(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(err(e)),
        Err(_) => bind_one(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false).map_err(err)?,
    };
    TcpListener::from_std(listener).map_err(err)
}

fn bind_one(addr: SocketAddr, v6: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if v6 {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Starts both servers on already-bound listeners; they stop when `shutdown` turns true.
pub async fn start(
    services: Services,
    api: TcpListener,
    health_listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> io::Result<Running> {
    let api_addr = api.local_addr()?;
    let health_addr = health_listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let cfg = &services.config;

    let mut names = vec![service::LOG_SERVICE];
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
        PolicyServiceServer::new(policy::PolicySvc::new(services.store.clone()))
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
    if policies {
        names.push(service::POLICY_SERVICE);
        names.push(service::PROBE_SERVICE);
    }
    if cfg.state_agent {
        names.push(service::STATE_AGENT);
    }

    let mut tasks = Vec::new();
    let mut sd = shutdown.clone();
    let api_server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(log_svc)
        .add_optional_service(policy_svc)
        .add_optional_service(probe_svc)
        .add_optional_service(state_svc)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
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
        health_addr,
        health,
        tasks,
        services: names,
    })
}
