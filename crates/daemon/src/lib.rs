//! The kubearmor daemon (systemd / VM mode): configuration, policy store, event pipeline and
//! the KubeArmor-compatible gRPC API.
//!
//! Module map:
//! * [`config`]: every key of `kubearmor.yaml`, resolved purely from (file, environment, flags).
//! * [`store`]: the policies in force, loaded from and persisted to `policyDir`, changed by
//!   PolicyService and by edits of the directory, swapped in whole.
//! * [`pipeline`]: events in ([`pipeline::Pipeline::emit`]), `logPath` lines, throttling,
//!   bounded fan-out to gRPC subscribers out.
//! * [`throttle`]: KubeArmor's alert throttling state machine.
//! * [`grpc`]: LogService, PolicyService, ProbeService, StateAgent, health, reflection.
//! * [`state`], [`probe`], [`host_info`], [`planes`]: inventory, `karmor probe` data, machine
//!   facts, and what is enforced (nothing yet).
//! * [`test_source`]: TEST ONLY event injection over a Unix socket.
//! * [`daemon`]: the wiring.

pub mod config;
pub mod daemon;
pub mod enforce;
pub mod grpc;
pub mod host_info;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod planes;
pub mod probe;
pub mod state;
pub mod store;
#[cfg(feature = "test-hooks")]
pub mod test_source;
pub mod throttle;
