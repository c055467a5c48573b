//! The decision logic, without threads or sockets: uevents and policy changes in, sysfs
//! writes and [`DeviceEvent`]s out. [`crate::UsbHandler`] runs it behind a mutex.
//!
//! Who owns an unauthorized device: the engine authorizes only devices it is responsible for
//! ("ours"): those it deauthorized, and those on a bus whose `authorized_default` it holds at
//! 0 (they arrived unauthorized because of it), including buses a killed predecessor held (from
//! the state file). A device that was unauthorized at start-up on any other bus belongs to
//! someone else (an administrator, another tool) and is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use kubearmor_policy::{Action, Decision, Report, Verdict};

use crate::event::{Attribution, DeviceAction, DeviceEvent, DeviceResult, Trigger};
use crate::policy::DevicePolicy;
use crate::state::{BusDefaults, State};
use crate::sysfs::{parse_hex_u8, Attr, Sysfs};
use crate::uevent::{
    parse_usb_name, ClassTriple, NodeKind, RootHubUevent, UeventAction, UsbName, UsbUevent,
};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Hold `authorized_default` (and `interface_authorized_default`) at 0 while a rule can
    /// block. Off: KubeArmor's behaviour (deauthorize after the driver bound).
    pub race_free: bool,
    /// Where the state file lives; `None` keeps no state (tests, or no writable /run).
    pub state_file: Option<PathBuf>,
    /// Written into the state file for the escape hatch script.
    pub sysfs_root: PathBuf,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            race_free: true,
            state_file: None,
            sysfs_root: PathBuf::from("/sys"),
        }
    }
}

/// Counters, shared with the listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams read from the uevent socket.
    pub received: AtomicU64,
    /// Datagrams dropped because a userspace process sent them.
    pub rejected_sender: AtomicU64,
    /// Datagrams that did not parse.
    pub malformed: AtomicU64,
    /// Well-formed uevents of no interest (other subsystems, bind/unbind/change, udev).
    pub ignored: AtomicU64,
    /// USB add/remove uevents handled.
    pub usb_events: AtomicU64,
    /// Device or interface decisions taken (uevents and re-scans).
    pub decisions: AtomicU64,
    /// Successful writes to `authorized`.
    pub writes: AtomicU64,
    /// Failed sysfs writes.
    pub write_errors: AtomicU64,
    /// Receive-queue overflows (ENOBUFS), each followed by a full re-scan.
    pub overflows: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub rejected_sender: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub usb_events: u64,
    pub decisions: u64,
    pub writes: u64,
    pub write_errors: u64,
    pub overflows: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            received: g(&self.received),
            rejected_sender: g(&self.rejected_sender),
            malformed: g(&self.malformed),
            ignored: g(&self.ignored),
            usb_events: g(&self.usb_events),
            decisions: g(&self.decisions),
            writes: g(&self.writes),
            write_errors: g(&self.write_errors),
            overflows: g(&self.overflows),
        }
    }
}

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A device or interface being decided.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    kind: NodeKind,
    codes: ClassTriple,
    level: u8,
    bus: u32,
}

/// The decision logic. Not thread-safe by itself: one caller at a time.
pub struct Engine<S> {
    sysfs: S,
    policy: DevicePolicy,
    opts: EngineOptions,
    /// Buses whose defaults are held at 0, with the values to give back.
    held: BTreeMap<u32, BusDefaults>,
    /// Nodes this engine deauthorized.
    blocked: BTreeSet<String>,
    /// Nodes that were unauthorized at start-up on buses nobody of ours held.
    foreign: BTreeSet<String>,
    stats: std::sync::Arc<Stats>,
}

impl<S: Sysfs> Engine<S> {
    /// Starts: recovers a predecessor's state, holds the buses if the policy needs it, and
    /// evaluates every connected device (events with [`Trigger::Startup`]).
    pub fn start(
        sysfs: S,
        policy: DevicePolicy,
        opts: EngineOptions,
        stats: std::sync::Arc<Stats>,
    ) -> (Self, Vec<DeviceEvent>) {
        let mut e = Self {
            sysfs,
            policy,
            opts,
            held: BTreeMap::new(),
            blocked: BTreeSet::new(),
            foreign: BTreeSet::new(),
            stats,
        };
        let inherited = match &e.opts.state_file {
            Some(path) => match State::load(path) {
                Ok(s) => s.defaults,
                Err(err) => {
                    tracing::warn!("USB handler: cannot read state {}: {err}", path.display());
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        if !inherited.is_empty() {
            tracing::warn!(
                "USB handler: a previous instance did not stop cleanly; recovering the original \
                 authorized_default of {} bus(es) from its state file",
                inherited.len()
            );
        }
        let names = e.list();
        let buses: Vec<u32> = names
            .iter()
            .filter_map(|n| match parse_usb_name(n) {
                Ok(UsbName::RootHub { bus }) => Some(bus),
                _ => None,
            })
            .collect();
        for n in &names {
            if let Ok(UsbName::Node { bus, .. }) = parse_usb_name(n) {
                if !inherited.contains_key(&bus) && e.authorized(n) == Some(false) {
                    e.foreign.insert(n.clone());
                }
            }
        }
        if e.wants_hold() {
            for bus in &buses {
                e.hold_bus(*bus, inherited.get(bus));
            }
        } else {
            for (bus, d) in &inherited {
                if buses.contains(bus) {
                    e.restore_bus(*bus, d);
                }
            }
        }
        e.save_state();
        let extra: BTreeSet<u32> = inherited.keys().copied().collect();
        let mut out = Vec::new();
        e.rescan(Trigger::Startup, &extra, &mut out);
        (e, out)
    }

    pub fn policy(&self) -> &DevicePolicy {
        &self.policy
    }

    /// Whether new devices currently arrive unauthorized because of this engine.
    pub fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Nodes this engine keeps deauthorized.
    pub fn blocked(&self) -> impl Iterator<Item = &str> {
        self.blocked.iter().map(String::as_str)
    }

    pub fn sysfs(&self) -> &S {
        &self.sysfs
    }

    fn wants_hold(&self) -> bool {
        self.opts.race_free && self.policy.needs_race_free()
    }

    fn list(&self) -> Vec<String> {
        match self.sysfs.devices() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("USB handler: cannot list USB devices: {e}");
                Vec::new()
            }
        }
    }

    fn authorized(&self, name: &str) -> Option<bool> {
        self.sysfs
            .read(name, Attr::Authorized)
            .ok()
            .map(|v| v.trim() != "0")
    }

    fn read_codes(&self, name: &str, kind: NodeKind) -> Option<ClassTriple> {
        let attrs = match kind {
            NodeKind::Device => [
                Attr::BDeviceClass,
                Attr::BDeviceSubClass,
                Attr::BDeviceProtocol,
            ],
            NodeKind::Interface => [
                Attr::BInterfaceClass,
                Attr::BInterfaceSubClass,
                Attr::BInterfaceProtocol,
            ],
        };
        let mut v = [0u8; 3];
        for (slot, attr) in v.iter_mut().zip(attrs) {
            let text = self.sysfs.read(name, attr).ok()?;
            *slot = match parse_hex_u8(&text) {
                Some(x) => x,
                None => {
                    tracing::warn!(
                        "USB handler: {name}/{} is {text:?}, not a hex byte",
                        attr.file_name()
                    );
                    return None;
                }
            };
        }
        Some(ClassTriple {
            class: v[0],
            sub_class: v[1],
            protocol: v[2],
        })
    }

    // ---- buses -------------------------------------------------------------------------

    fn hold_bus(&mut self, bus: u32, original: Option<&BusDefaults>) {
        if self.held.contains_key(&bus) {
            return;
        }
        let hub = format!("usb{bus}");
        let mut saved = BusDefaults::default();
        for attr in [Attr::AuthorizedDefault, Attr::InterfaceAuthorizedDefault] {
            let current = self.sysfs.read(&hub, attr).ok();
            let Some(current) = current else {
                if attr == Attr::InterfaceAuthorizedDefault {
                    tracing::warn!(
                        "USB handler: {hub} has no interface_authorized_default (Linux < 4.4): \
                         interfaces of a newly authorized device bind before their decision"
                    );
                }
                continue;
            };
            let orig = original
                .and_then(|o| o.get(attr))
                .map_or(current.clone(), str::to_string);
            if current != "0" {
                if let Err(e) = self.sysfs.write(&hub, attr, "0") {
                    bump(&self.stats.write_errors);
                    tracing::error!("USB handler: cannot set {hub}/{}=0: {e}", attr.file_name());
                }
            }
            match attr {
                Attr::AuthorizedDefault => saved.authorized_default = Some(orig),
                _ => saved.interface_authorized_default = Some(orig),
            }
        }
        tracing::info!("USB handler: holding {hub}: new devices wait for a decision");
        self.held.insert(bus, saved);
    }

    fn restore_bus(&self, bus: u32, d: &BusDefaults) {
        let hub = format!("usb{bus}");
        // Interfaces first, so a device authorized meanwhile gets working interfaces.
        for attr in [Attr::InterfaceAuthorizedDefault, Attr::AuthorizedDefault] {
            if let Some(v) = d.get(attr) {
                if let Err(e) = self.sysfs.write(&hub, attr, v) {
                    bump(&self.stats.write_errors);
                    tracing::error!(
                        "USB handler: cannot restore {hub}/{}={v}: {e}",
                        attr.file_name()
                    );
                }
            }
        }
    }

    /// Gives back every held bus; returns their numbers.
    fn release_buses(&mut self) -> BTreeSet<u32> {
        let held = std::mem::take(&mut self.held);
        for (bus, d) in &held {
            self.restore_bus(*bus, d);
            tracing::info!("USB handler: released usb{bus}");
        }
        held.into_keys().collect()
    }

    fn save_state(&self) {
        let Some(path) = &self.opts.state_file else {
            return;
        };
        let state = State {
            defaults: self.held.clone(),
        };
        if let Err(e) = state.save(path, &self.opts.sysfs_root) {
            tracing::error!(
                "USB handler: cannot write state {}: {e}; the escape hatch cannot restore \
                 authorized_default if the daemon dies",
                path.display()
            );
        }
    }

    // ---- enforcement -------------------------------------------------------------------

    fn deauthorize(&mut self, name: &str) -> io::Result<()> {
        let r = self.sysfs.write(name, Attr::Authorized, "0");
        self.count_write(&r);
        if r.is_ok() {
            self.blocked.insert(name.to_string());
        }
        r
    }

    fn authorize(&mut self, name: &str) -> io::Result<()> {
        let r = self.sysfs.write(name, Attr::Authorized, "1");
        self.count_write(&r);
        r?;
        self.blocked.remove(name);
        // Authorizing an interface does not bind a driver; ask the driver core to probe.
        if let Err(e) = self.sysfs.probe(name) {
            tracing::warn!("USB handler: drivers_probe {name}: {e}");
        }
        Ok(())
    }

    fn count_write(&self, r: &io::Result<()>) {
        match r {
            Ok(()) => bump(&self.stats.writes),
            Err(_) => bump(&self.stats.write_errors),
        }
    }

    fn decide(&self, node: &Node) -> (bool, DeviceAction, Attribution) {
        bump(&self.stats.decisions);
        let d: Decision<'_> = self.policy.rules().decide_device(
            node.codes.class,
            node.codes.sub_class,
            node.codes.protocol,
            node.level,
        );
        let deny = d.verdict == Verdict::Deny;
        let (action, matched) = match d.report {
            Report::Silent => (DeviceAction::Allow, Attribution::None),
            Report::Log => (DeviceAction::Audit, Attribution::None),
            Report::Alert { action, matched } => (
                match action {
                    Action::Block => DeviceAction::Block,
                    Action::Audit | Action::AuditAllow | Action::AuditBlock => DeviceAction::Audit,
                    Action::Allow => DeviceAction::Allow,
                },
                matched.into(),
            ),
        };
        let action = if deny { DeviceAction::Block } else { action };
        (deny, action, matched)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        node: &Node,
        action: DeviceAction,
        result: DeviceResult,
        matched: Attribution,
        trigger: Trigger,
        latency: Option<std::time::Duration>,
    ) -> DeviceEvent {
        DeviceEvent {
            action,
            result,
            kind: node.kind,
            name: node.name.clone(),
            class: node.codes.class,
            sub_class: node.codes.sub_class,
            protocol: node.codes.protocol,
            level: node.level,
            sys_path: self.sysfs.display_path(&node.name),
            matched,
            trigger,
            latency,
            time: SystemTime::now(),
        }
    }

    fn outcome(r: io::Result<()>, ok: DeviceResult, what: &str, name: &str) -> DeviceResult {
        match r {
            Ok(()) => ok,
            Err(e) => {
                tracing::error!("USB handler: cannot {what} {name}: {e}");
                DeviceResult::Failed(format!("Enforcement failed: cannot {what}: {e}"))
            }
        }
    }

    // ---- uevents -----------------------------------------------------------------------

    /// Handles a USB `add` or `remove`. `received` is when the datagram was read.
    pub fn on_uevent(&mut self, u: &UsbUevent, received: Instant, out: &mut Vec<DeviceEvent>) {
        bump(&self.stats.usb_events);
        let node = Node {
            name: u.name.clone(),
            kind: u.kind,
            codes: u.codes,
            level: u.level,
            bus: u.bus,
        };
        match u.action {
            UeventAction::Remove => {
                self.blocked.remove(&u.name);
                self.foreign.remove(&u.name);
                // Class 0: the class is per interface, which has its own event.
                if u.codes.class != 0 {
                    out.push(self.event(
                        &node,
                        DeviceAction::Remove,
                        DeviceResult::Removed,
                        Attribution::None,
                        Trigger::Uevent,
                        None,
                    ));
                }
            }
            UeventAction::Add => self.on_add(&node, received, out),
        }
    }

    fn on_add(&mut self, node: &Node, received: Instant, out: &mut Vec<DeviceEvent>) {
        self.foreign.remove(&node.name);
        let held = self.held.contains_key(&node.bus);
        if node.codes.class == 0 {
            // No class to decide on; the interfaces are decided one by one. A held device
            // must be authorized for its interfaces to appear.
            if held {
                let _ = self.authorize(&node.name);
            }
            return;
        }
        let (deny, action, matched) = self.decide(node);
        if deny {
            let r = self.deauthorize(&node.name);
            let latency = r.is_ok().then(|| received.elapsed());
            let result =
                Self::outcome(r, DeviceResult::PermissionDenied, "deauthorize", &node.name);
            out.push(self.event(node, action, result, matched, Trigger::Uevent, latency));
        } else if held || self.blocked.contains(&node.name) {
            let r = self.authorize(&node.name);
            let latency = r.is_ok().then(|| received.elapsed());
            let result = Self::outcome(r, DeviceResult::Passed, "authorize", &node.name);
            out.push(self.event(node, action, result, matched, Trigger::Uevent, latency));
        } else {
            out.push(self.event(
                node,
                action,
                DeviceResult::Passed,
                matched,
                Trigger::Uevent,
                None,
            ));
        }
    }

    /// A root hub came or went: hold a new bus if holding, forget a removed one.
    pub fn on_root_hub(&mut self, u: &RootHubUevent) {
        bump(&self.stats.usb_events);
        match u.action {
            UeventAction::Add if self.wants_hold() => {
                self.hold_bus(u.bus, None);
                self.save_state();
            }
            UeventAction::Add => {}
            UeventAction::Remove => {
                if self.held.remove(&u.bus).is_some() {
                    self.save_state();
                }
            }
        }
    }

    // ---- policy ------------------------------------------------------------------------

    /// Swaps in a new policy and re-evaluates every connected device in both directions:
    /// newly blocked ones are deauthorized, ones no longer blocked are authorized again.
    /// Events are emitted only for changes ([`Trigger::PolicyChange`]).
    pub fn set_policy(&mut self, policy: DevicePolicy, out: &mut Vec<DeviceEvent>) {
        self.policy = policy;
        let want = self.wants_hold();
        let mut released = BTreeSet::new();
        if want && !self.is_holding() {
            let buses: Vec<u32> = self
                .list()
                .iter()
                .filter_map(|n| match parse_usb_name(n) {
                    Ok(UsbName::RootHub { bus }) => Some(bus),
                    _ => None,
                })
                .collect();
            for bus in buses {
                self.hold_bus(bus, None);
            }
            self.save_state();
        } else if !want && self.is_holding() {
            released = self.release_buses();
            self.save_state();
        }
        self.rescan(Trigger::PolicyChange, &released, out);
    }

    /// Full re-scan after lost uevents.
    pub fn on_overflow(&mut self, out: &mut Vec<DeviceEvent>) {
        bump(&self.stats.overflows);
        self.rescan(Trigger::Overflow, &BTreeSet::new(), out);
    }

    /// Evaluates every connected node. `extra` are buses whose unauthorized devices count as
    /// ours although not held now (just released, or held by a killed predecessor).
    pub fn rescan(&mut self, trigger: Trigger, extra: &BTreeSet<u32>, out: &mut Vec<DeviceEvent>) {
        let names = self.list();
        let mut present = BTreeSet::new();
        for name in names {
            let (bus, level, interface) = match parse_usb_name(&name) {
                Ok(UsbName::Node {
                    bus,
                    level,
                    interface,
                }) => (bus, level, interface),
                Ok(UsbName::RootHub { bus }) => {
                    if self.wants_hold() && !self.held.contains_key(&bus) {
                        self.hold_bus(bus, None);
                        self.save_state();
                    }
                    continue;
                }
                // Never decided: deauthorizing it would cut off the whole bus.
                Ok(UsbName::RootHubInterface { .. }) | Err(_) => continue,
            };
            present.insert(name.clone());
            let kind = if interface {
                NodeKind::Interface
            } else {
                NodeKind::Device
            };
            // A node that vanished meanwhile is skipped; its remove uevent follows.
            let Some(authorized) = self.authorized(&name) else {
                continue;
            };
            if authorized {
                self.foreign.remove(&name);
            } else if self.foreign.contains(&name) {
                continue;
            }
            let Some(codes) = self.read_codes(&name, kind) else {
                continue;
            };
            let ours = self.blocked.contains(&name)
                || self.held.contains_key(&bus)
                || extra.contains(&bus);
            let node = Node {
                name,
                kind,
                codes,
                level,
                bus,
            };
            self.evaluate(&node, authorized, ours, trigger, out);
        }
        self.blocked.retain(|n| present.contains(n));
        self.foreign.retain(|n| present.contains(n));
    }

    fn evaluate(
        &mut self,
        node: &Node,
        authorized: bool,
        ours: bool,
        trigger: Trigger,
        out: &mut Vec<DeviceEvent>,
    ) {
        if node.codes.class == 0 {
            if !authorized && ours {
                let _ = self.authorize(&node.name);
            }
            return;
        }
        let (deny, action, matched) = self.decide(node);
        if deny {
            if authorized {
                let r = self.deauthorize(&node.name);
                let result =
                    Self::outcome(r, DeviceResult::PermissionDenied, "deauthorize", &node.name);
                out.push(self.event(node, action, result, matched, trigger, None));
            } else {
                self.blocked.insert(node.name.clone());
                if trigger == Trigger::Startup {
                    let result = DeviceResult::PermissionDenied;
                    out.push(self.event(node, action, result, matched, trigger, None));
                }
            }
        } else if !authorized && ours {
            let r = self.authorize(&node.name);
            let result = Self::outcome(r, DeviceResult::Passed, "authorize", &node.name);
            out.push(self.event(node, action, result, matched, trigger, None));
        } else if trigger == Trigger::Startup {
            out.push(self.event(node, action, DeviceResult::Passed, matched, trigger, None));
        }
    }

    /// Stops enforcing: restores the held defaults, authorizes every device this engine kept
    /// unauthorized (KubeArmor re-authorizes blocked devices on shutdown too) and removes the
    /// state file. Events have [`Trigger::Stop`] and action Allow.
    pub fn release(&mut self, out: &mut Vec<DeviceEvent>) {
        let released = self.release_buses();
        for name in self.list() {
            let Ok(UsbName::Node {
                bus,
                level,
                interface,
            }) = parse_usb_name(&name)
            else {
                continue;
            };
            if self.foreign.contains(&name) || self.authorized(&name) != Some(false) {
                continue;
            }
            if !(self.blocked.contains(&name) || released.contains(&bus)) {
                continue;
            }
            let kind = if interface {
                NodeKind::Interface
            } else {
                NodeKind::Device
            };
            let r = self.authorize(&name);
            if let Some(codes) = self.read_codes(&name, kind) {
                if codes.class != 0 {
                    let node = Node {
                        name,
                        kind,
                        codes,
                        level,
                        bus,
                    };
                    let result = Self::outcome(r, DeviceResult::Passed, "authorize", &node.name);
                    out.push(self.event(
                        &node,
                        DeviceAction::Allow,
                        result,
                        Attribution::None,
                        Trigger::Stop,
                        None,
                    ));
                }
            }
        }
        self.blocked.clear();
        if let Some(path) = &self.opts.state_file {
            if let Err(e) = State::remove(path) {
                tracing::error!("USB handler: cannot remove state {}: {e}", path.display());
            }
        }
    }
}
