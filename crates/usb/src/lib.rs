//! USB device audit and enforcement for KubeArmor host policies (`device.matchDevice`).
//!
//! The kernel announces every USB device and interface with a uevent; [`UsbHandler`] reads
//! them from a `NETLINK_KOBJECT_UEVENT` socket (kernel senders only), asks
//! [`kubearmor_policy::RuleSet::decide_device`], and enforces through sysfs: Block writes `0`
//! to the node's `authorized`, an authorized node gets `1` and a `drivers_probe`. Devices
//! already connected are decided at start and again at every policy change.
//!
//! Race-free mode: while a rule can block, every root hub's `authorized_default` (and
//! `interface_authorized_default`) is held at 0, so new devices and interfaces arrive
//! unauthorized and no driver binds before the decision. The original values come back when no
//! rule needs it or the handler stops; `scripts/usb-escape-hatch.sh` and the udev rule in
//! `packaging/udev/` keep keyboards working if the daemon dies (docs/usb.md).
//!
//! Modules: [`uevent`] (parser), [`listener`] (socket), [`sysfs`] (all file access, behind a
//! trait), [`engine`] (decisions, no threads), [`handler`] (thread + engine), [`event`]
//! (output, and the KubeArmor `Alert`/`Log` form), [`policy`] (rule input), [`state`] (state
//! file).

pub mod engine;
pub mod event;
pub mod handler;
pub mod listener;
pub mod policy;
pub mod state;
pub mod sysfs;
pub mod uevent;

pub use engine::{Engine, EngineOptions, StatsSnapshot};
pub use event::{
    to_alert, to_kubearmor, Attribution, DeviceAction, DeviceEvent, DeviceResult, HostContext,
    KubeArmorEvent, MatchedRule, Trigger,
};
pub use handler::{wanted, EventSink, HandlerConfig, UsbError, UsbHandler, DEFAULT_STATE_FILE};
pub use policy::DevicePolicy;
pub use sysfs::{DirSysfs, Sysfs};
