//! Container identity for kubearmor-rs.
//!
//! A container is keyed by its **cgroup id**: the inode of its cgroup-v2 directory, which is
//! what `bpf_get_current_cgroup_id()` returns for its tasks (ids are never reused; namespace
//! inode numbers are, so they are kept as attributes and a secondary index).
//!
//! * [`protocol`]: KubeArmor's ka.sock `HookRequest` JSON (spec §4.3) plus our extra fields, a
//!   streaming decoder with a size cap, the `ok` / `err` replies.
//! * [`registry`]: the containers, with lookups by cgroup id, container id, namespace pair and
//!   pid, and a change subscription for the planes and the state agent.
//! * [`server`]: the ka.sock server feeding the registry (readiness gate of §4.3–4.5).
//! * [`verify`]: the proof a ka.sock message must carry (peer credentials, a live process in
//!   the claimed cgroup, a stopped container for a delete).
//! * [`rescan`]: running runc containers found at start-up.
//! * [`hookpath`]: the CoCo `hookPath` file (§4.7).
//! * [`oci`], [`procfs`], [`labels`]: what the hook and the rescan share: OCI state and
//!   `config.json`, `/proc` parsing, and how name, namespace and labels are derived.
//!
//! Typical daemon wiring:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kubearmor_containers::{hookpath, rescan, server, Registry};
//!
//! let registry = Arc::new(Registry::default());
//! let mut sub = registry.subscribe(); // before anything is registered: see every change
//! let srv = server::HookServer::bind(server::ServerConfig::default(), registry.clone())?;
//! rescan::rescan(&registry, &rescan::RescanConfig::default());
//! let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! tokio::spawn(srv.serve(async { let _ = stopped.await; }));
//! tokio::spawn(hookpath::HookPathReader::new("/run/output.json", registry.clone())
//!     .watch(std::time::Duration::from_millis(500), std::future::pending()));
//! while let Ok(change) = sub.changes.recv().await {
//!     let _identity = change.record().identity();
//! }
//! # Ok(()) }
//! ```

pub mod hookpath;
pub mod labels;
pub mod oci;
pub mod procfs;
pub mod protocol;
pub mod registry;
pub mod rescan;
pub mod server;
pub mod verify;

pub use protocol::{Container, HookRequest, Operation};
pub use registry::{Change, ContainerRecord, Registry, RegistryError, Source, Subscription};
pub use server::{ChangeHandler, HookServer, Readiness, ServerConfig, ServerError};
