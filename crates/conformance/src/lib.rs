//! KubeArmor's own scenario suites, run against kubearmor-rs on real containers.
//!
//! * [`scenario`]: the scenario format (a policy and `cmdN` files);
//! * [`judge`]: how KubeArmor's runner judges a command (exit status, then alerts);
//! * [`lab`]: the daemon, the workload containers registered by kubearmor-hook, their networks;
//! * [`runner`]: apply, run, judge, delete;
//! * [`nonk8s`]: the non-Kubernetes suites (host policies on a scratch area, container
//!   policies on a container).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test tool: a panic is a failing run

pub mod judge;
pub mod lab;
pub mod nonk8s;
pub mod runner;
pub mod scenario;
