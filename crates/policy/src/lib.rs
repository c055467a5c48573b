//! The KubeArmor policy language and the decision function of kubearmor-rs.
//!
//! Pure: no I/O, no privileges, no async. Text goes in through [`parse_policies`] (or the gRPC
//! envelope, [`parse_policy_change`]) and comes out as validated [`Policy`] values; the
//! policies that select a [`Subject`] compile into a [`RuleSet`]; every enforcement plane then
//! asks the rule set the same question (`decide_exec`, `decide_open`, `decide_socket`, ...)
//! and gets a [`Decision`]: the verdict and what to report.
//!
//! Semantics follow `spec/kubearmor-policy.md`; where KubeArmor is buggy we follow its
//! documented intent, and `docs/compatibility.md` lists every such choice.

mod compile;
mod decide;
mod diag;
pub mod glob;
mod index;
pub mod limits;
mod model;
pub mod names;
mod parse;
mod raw;
mod subject;
mod validate;

pub use compile::{Family, NoResolve, PathResolver, Posture, Postures, RuleSet};
pub use decide::{
    Access, Decision, Matched, PathRequest, Report, SocketRequest, Verdict, SYSTEM_LIBRARY_DIRS,
    SYSTEM_LIBRARY_FILES,
};
pub use diag::{Diagnostic, Level};
pub use model::*;
pub use parse::{
    parse_policies, parse_policy_change, parse_policy_json, ChangeType, Parsed, PolicyChange,
    PolicyError,
};
pub use subject::{ContainerIdentity, HostIdentity, SelectorMode, Subject};
pub use validate::CONTAINER_NAME_LABEL;
