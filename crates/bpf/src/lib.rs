//! BPF programs of kubearmor-rs and their typed loaders.
//!
//! Kernel side: C in `src/bpf/*.bpf.c`, compiled by clang from build.rs, sharing `abi.h` with
//! [`abi`]. User side: one module per object. The translation from policy rule sets to map
//! entries ([`net_table`]) is pure and tested without privileges.

pub mod abi;
mod error;
pub mod exe_identity;
pub mod execguard;
pub mod lsm;
pub mod lsm_abi;
pub mod lsm_table;
pub mod net;
pub mod net_table;
pub mod openflags;
mod pin;

pub use error::BpfError;
pub use exe_identity::{ExeIdentity, MountDevs, RootedIdentity};
pub use execguard::{ExecGuard, GuardEvent};
pub use lsm::{LsmEvent, LsmEvents, LsmPlane, LsmPlaneConfig};
pub use lsm_table::LsmTable;
pub use net::{NetEvent, NetEvents, NetPlane, NetPlaneConfig};
pub use net_table::NetTable;
pub use openflags::OpenIntentTracker;
pub use pin::{ensure_bpffs, ensure_tracefs};

/// Object files built by build.rs.
pub(crate) mod objects {
    pub static NET: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net.bpf.o"));
    pub static LSM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lsm.bpf.o"));
    pub static OPENFLAGS: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openflags.bpf.o"));
    pub static EXECGUARD: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/execguard.bpf.o"));
}
