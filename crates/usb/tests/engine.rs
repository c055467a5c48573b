//! Decision logic on an in-memory sysfs (no root, no sockets): KubeArmor's documented
//! examples, composite devices, removal, pre-existing devices, re-evaluation on policy
//! changes, allow-list mode, race-free `authorized_default` handling and restore, state
//! recovery after a killed daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use kubearmor_policy::Posture;
use kubearmor_usb::engine::Stats;
use kubearmor_usb::sysfs::{Attr, MemSysfs, Op};
use kubearmor_usb::uevent::{self, Parsed};
use kubearmor_usb::{
    Attribution, DeviceAction, DeviceEvent, DevicePolicy, DeviceResult, Engine, EngineOptions,
    Trigger,
};

struct Rig {
    sysfs: Arc<MemSysfs>,
    engine: Engine<Arc<MemSysfs>>,
    events: Vec<DeviceEvent>,
}

fn sysfs_with_buses(buses: &[u32]) -> Arc<MemSysfs> {
    let s = Arc::new(MemSysfs::new());
    for b in buses {
        s.add_root_hub(*b);
    }
    s
}

fn start(sysfs: Arc<MemSysfs>, policy: DevicePolicy) -> Rig {
    start_with(sysfs, policy, EngineOptions::default())
}

fn start_with(sysfs: Arc<MemSysfs>, policy: DevicePolicy, opts: EngineOptions) -> Rig {
    let (engine, events) = Engine::start(sysfs.clone(), policy, opts, Arc::new(Stats::default()));
    Rig {
        sysfs,
        engine,
        events,
    }
}

impl Rig {
    /// The kernel side of a plug: the node appears in sysfs with the bus default, then the
    /// uevent arrives.
    fn plug(&mut self, devpath_tail: &str, c: u8, s: u8, p: u8) -> Vec<DeviceEvent> {
        let name = devpath_tail.rsplit('/').next().unwrap();
        let bus = name.split('-').next().unwrap();
        let hub = format!("usb{bus}");
        let interface = name.contains(':');
        let default = if interface {
            Attr::InterfaceAuthorizedDefault
        } else {
            Attr::AuthorizedDefault
        };
        let authorized = self.sysfs.get(&hub, default).as_deref() != Some("0");
        if interface {
            self.sysfs.add_interface(name, c, s, p, authorized);
        } else {
            self.sysfs.add_device(name, c, s, p, authorized);
        }
        self.uevent("add", devpath_tail, c, s, p)
    }

    fn unplug(&mut self, devpath_tail: &str, c: u8, s: u8, p: u8) -> Vec<DeviceEvent> {
        let name = devpath_tail.rsplit('/').next().unwrap();
        self.sysfs.remove(name);
        self.uevent("remove", devpath_tail, c, s, p)
    }

    fn uevent(&mut self, action: &str, tail: &str, c: u8, s: u8, p: u8) -> Vec<DeviceEvent> {
        let msg = uevent_msg(action, tail, c, s, p);
        let mut out = Vec::new();
        match uevent::parse(&msg).unwrap() {
            Parsed::Usb(u) => self.engine.on_uevent(&u, Instant::now(), &mut out),
            Parsed::RootHub(u) => self.engine.on_root_hub(&u),
            Parsed::Ignored(i) => panic!("ignored: {i}"),
        }
        out
    }

    fn set_policy(&mut self, p: DevicePolicy) -> Vec<DeviceEvent> {
        let mut out = Vec::new();
        self.engine.set_policy(p, &mut out);
        out
    }

    fn stop(&mut self) -> Vec<DeviceEvent> {
        let mut out = Vec::new();
        self.engine.release(&mut out);
        out
    }

    fn authorized(&self, name: &str) -> String {
        self.sysfs.get(name, Attr::Authorized).unwrap()
    }
}

pub fn uevent_msg(action: &str, tail: &str, c: u8, s: u8, p: u8) -> Vec<u8> {
    uevent::encode_usb(
        action,
        &format!("/devices/pci0000:00/0000:00:14.0/{tail}"),
        c,
        s,
        p,
    )
}

fn policy_name(e: &DeviceEvent) -> Option<&str> {
    match &e.matched {
        Attribution::Policy(m) => Some(&m.policy),
        Attribution::DefaultPosture => Some("DefaultPosture"),
        Attribution::None => None,
    }
}

fn one(events: Vec<DeviceEvent>) -> DeviceEvent {
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

const STICK_DEV: &str = "usb2/2-4/2-4.1";
const STICK: &str = "usb2/2-4/2-4.1/2-4.1:1.0";

#[test]
fn audit_all_mass_storage() {
    let mut r = start(
        sysfs_with_buses(&[1, 2]),
        device_policy(&audit_mass_storage(), Posture::Audit),
    );
    // Audit rules alone never hold new devices.
    assert!(!r.engine.is_holding());
    assert!(r.sysfs.take_ops().is_empty());
    assert!(r.plug(STICK_DEV, 0, 0, 0).is_empty());
    let e = one(r.plug(STICK, 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Audit);
    assert_eq!(e.result, DeviceResult::Passed);
    assert_eq!(policy_name(&e), Some("hsp-audit-usb-storage"));
    let Attribution::Policy(m) = &e.matched else {
        panic!()
    };
    assert_eq!(m.severity, 3);
    assert_eq!(e.level, 2);
    assert_eq!(e.name, "2-4.1:1.0");
    assert_eq!(e.sys_path, "/sys/bus/usb/devices/2-4.1:1.0");
    assert_eq!(e.trigger, Trigger::Uevent);
    assert_eq!(e.latency, None);
    // Other classes: a plain host log.
    let e = one(r.plug("usb1/1-1/1-1:1.0", 3, 1, 1));
    assert_eq!(e.action, DeviceAction::Audit);
    assert_eq!(e.matched, Attribution::None);
    assert!(r.sysfs.take_ops().is_empty(), "audit never writes");
}

#[test]
fn block_mass_storage_race_free() {
    let mut r = start(
        sysfs_with_buses(&[1, 2]),
        device_policy(&block_mass_storage(), Posture::Audit),
    );
    assert!(r.engine.is_holding());
    let ops = r.sysfs.take_ops();
    for hub in ["usb1", "usb2"] {
        assert!(ops.contains(&Op::write(hub, Attr::AuthorizedDefault, "0")));
        assert!(ops.contains(&Op::write(hub, Attr::InterfaceAuthorizedDefault, "0")));
    }
    // The device node (class per interface) arrives unauthorized and is authorized silently
    // so that its interfaces appear; they arrive unauthorized too.
    assert!(r.plug(STICK_DEV, 0, 0, 0).is_empty());
    assert_eq!(
        r.sysfs.take_ops(),
        [
            Op::write("2-4.1", Attr::Authorized, "1"),
            Op::Probe("2-4.1".into())
        ]
    );
    let e = one(r.plug(STICK, 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Block);
    assert_eq!(e.result, DeviceResult::PermissionDenied);
    assert_eq!(policy_name(&e), Some("hsp-block-usb-storage"));
    assert!(e.latency.is_some());
    assert_eq!(r.authorized("2-4.1:1.0"), "0");
    assert_eq!(
        r.sysfs.take_ops(),
        [Op::write("2-4.1:1.0", Attr::Authorized, "0")]
    );
    assert_eq!(r.engine.blocked().collect::<Vec<_>>(), ["2-4.1:1.0"]);
    // A keyboard is authorized after its decision (audited as a host log).
    let e = one(r.plug("usb1/1-2/1-2:1.0", 3, 1, 1));
    assert_eq!(
        (e.action, e.result.clone()),
        (DeviceAction::Audit, DeviceResult::Passed)
    );
    assert_eq!(e.matched, Attribution::None);
    assert!(e.latency.is_some());
    assert_eq!(r.authorized("1-2:1.0"), "1");
    assert_eq!(
        r.sysfs.take_ops(),
        [
            Op::write("1-2:1.0", Attr::Authorized, "1"),
            Op::Probe("1-2:1.0".into())
        ]
    );
    // A device whose class is on the device descriptor is decided at the device node.
    let e = one(r.plug("usb1/1-3", 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Block);
    assert_eq!(r.authorized("1-3"), "0");
}

#[test]
fn block_without_race_free_is_after_the_fact() {
    let opts = EngineOptions {
        race_free: false,
        ..Default::default()
    };
    let mut r = start_with(
        sysfs_with_buses(&[1]),
        device_policy(&block_mass_storage(), Posture::Audit),
        opts,
    );
    assert!(!r.engine.is_holding());
    assert!(r.sysfs.take_ops().is_empty());
    assert!(r.plug("usb1/1-1", 0, 0, 0).is_empty());
    let e = one(r.plug("usb1/1-1/1-1:1.0", 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Block);
    assert_eq!(r.authorized("1-1:1.0"), "0");
    let e = one(r.plug("usb1/1-2/1-2:1.0", 3, 1, 1));
    assert_eq!(e.action, DeviceAction::Audit);
    assert_eq!(
        r.sysfs.take_ops(),
        [Op::write("1-1:1.0", Attr::Authorized, "0")],
        "nothing to authorize when devices arrive authorized"
    );
}

#[test]
fn block_hid_keyboards() {
    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&block_keyboard(), Posture::Audit),
    );
    let e = one(r.plug("usb1/1-1/1-1:1.0", 3, 1, 1));
    assert_eq!(e.action, DeviceAction::Block);
    assert_eq!(policy_name(&e), Some("hsp-block-keybd"));
    let Attribution::Policy(m) = &e.matched else {
        panic!()
    };
    assert_eq!(m.severity, 5);
    assert_eq!(e.resource(), "USB HID");
    // A mouse (3/1/2) and a boot-less HID (3/0/0) pass.
    for (n, s, p) in [("1-2:1.0", 1, 2), ("1-3:1.0", 0, 0)] {
        let e = one(r.plug(&format!("usb1/{}/{n}", &n[..3]), 3, s, p));
        assert_eq!(e.action, DeviceAction::Audit, "{n}");
        assert_eq!(r.authorized(n), "1");
    }
}

#[test]
fn allow_stick_under_mass_storage_block() {
    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&allow_stick_under_block(), Posture::Audit),
    );
    // 8/6/80 (SCSI bulk-only) is allowed by the more specific rule.
    let e = one(r.plug("usb1/1-1/1-1:1.0", 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Allow);
    assert_eq!(e.result, DeviceResult::Passed);
    assert_eq!(r.authorized("1-1:1.0"), "1");
    // 8/6/98 (UAS) falls to the class-wide Block.
    let e = one(r.plug("usb1/1-2/1-2:1.0", 8, 6, 98));
    assert_eq!(e.action, DeviceAction::Block);
    let Attribution::Policy(m) = &e.matched else {
        panic!()
    };
    assert_eq!(m.message, "no storage");
    assert_eq!(m.tags, ["USB"]);
    assert_eq!(r.authorized("1-2:1.0"), "0");
    // Allow-list mode, posture audit: anything else is audited as DefaultPosture, and passes.
    let e = one(r.plug("usb1/1-3/1-3:1.0", 3, 1, 1));
    assert_eq!(e.action, DeviceAction::Audit);
    assert_eq!(e.matched, Attribution::DefaultPosture);
    assert_eq!(r.authorized("1-3:1.0"), "1");
}

#[test]
fn allow_list_with_default_posture_block() {
    // Spec §7.24: `{class: HID, Allow}` only, posture block: any non-HID device is
    // deauthorized with PolicyName DefaultPosture.
    let yaml = hsp(
        "hsp-hid-only",
        "  device:\n    matchDevice:\n    - class: HID\n      action: Allow\n",
    );
    let mut r = start(sysfs_with_buses(&[1]), device_policy(&yaml, Posture::Block));
    assert!(r.engine.is_holding());
    let e = one(r.plug("usb1/1-1/1-1:1.0", 3, 1, 1));
    assert_eq!(
        (e.action, e.result.clone()),
        (DeviceAction::Allow, DeviceResult::Passed)
    );
    assert_eq!(r.authorized("1-1:1.0"), "1");
    for (n, c) in [("1-2:1.0", 8u8), ("1-3:1.0", 14), ("1-4:1.0", 224)] {
        let e = one(r.plug(&format!("usb1/{}/{n}", &n[..3]), c, 1, 1));
        assert_eq!(e.action, DeviceAction::Block, "class {c}");
        assert_eq!(e.result, DeviceResult::PermissionDenied);
        assert_eq!(e.matched, Attribution::DefaultPosture);
        assert_eq!(r.authorized(n), "0");
    }
    // The root hub's own interface (1-0:1.0, class 9) is never decided, or the bus would die.
    r.sysfs.add_interface("1-0:1.0", 9, 0, 0, true);
    let mut out = Vec::new();
    r.engine
        .rescan(Trigger::PolicyChange, &BTreeSet::new(), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(r.authorized("1-0:1.0"), "1");
    // A hub is a device too: without a HUB rule it is blocked (docs/usb.md warns).
    let e = one(r.plug("usb1/1-5", 9, 0, 1));
    assert_eq!(e.action, DeviceAction::Block);
    // With HUB allowed as well, the hub passes.
    r.set_policy(device_policy(&allow_hid_only(), Posture::Block));
    assert_eq!(r.authorized("1-5"), "1");
}

#[test]
fn all_with_audit_and_with_allow() {
    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&all_with("Audit"), Posture::Block),
    );
    assert!(!r.engine.is_holding());
    for (i, c) in [1u8, 3, 8, 9, 14, 224, 255].into_iter().enumerate() {
        let n = format!("1-{}:1.0", i + 1);
        let e = one(r.plug(&format!("usb1/1-{}/{n}", i + 1), c, 0, 0));
        assert_eq!(e.action, DeviceAction::Audit, "class {c}");
        assert_eq!(policy_name(&e), Some("hsp-usb-all-audit"));
    }
    assert!(r.sysfs.take_ops().is_empty());

    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&all_with("Allow"), Posture::Block),
    );
    // ALL with Allow is allow-list mode: held, every class allowed, nothing left for the posture.
    assert!(r.engine.is_holding());
    for (i, c) in [1u8, 3, 8, 9, 255].into_iter().enumerate() {
        let n = format!("1-{}:1.0", i + 1);
        let e = one(r.plug(&format!("usb1/1-{}/{n}", i + 1), c, 0, 0));
        assert_eq!(e.action, DeviceAction::Allow, "class {c}");
        assert_eq!(r.authorized(&n), "1");
    }
}

#[test]
fn host_selector() {
    // `kubearmor.io/hostname: "*"` selects this host; a policy for another host does not;
    // `kubernetes.io/hostname` is honoured outside Kubernetes too.
    let other = hsp_on(
        "hsp-other",
        "kubernetes.io/hostname: aryan",
        "  device:\n    matchDevice:\n    - class: ALL\n  action: Block\n",
    );
    let p = device_policy(&other, Posture::Audit);
    assert!(!p.needs_race_free());
    assert!(!p.rules().decide_device(8, 6, 80, 1).is_denied());
    let mine = hsp_on(
        "hsp-mine",
        &format!("kubernetes.io/hostname: {HOST}"),
        "  device:\n    matchDevice:\n    - class: ALL\n  action: Block\n",
    );
    assert!(device_policy(&mine, Posture::Audit)
        .rules()
        .decide_device(8, 6, 80, 1)
        .is_denied());
    assert!(device_policy(&block_mass_storage(), Posture::Audit).needs_race_free());
    // from_rule_set: any device rule holds (it cannot tell audit-only sets apart).
    assert!(
        DevicePolicy::from_rule_set(rule_set(&audit_mass_storage(), Posture::Audit))
            .needs_race_free()
    );
    assert!(!DevicePolicy::from_rule_set(rule_set(&other, Posture::Audit)).needs_race_free());
}

#[test]
fn composite_device_interfaces_decided_one_by_one() {
    let mut r = start(
        sysfs_with_buses(&[3]),
        device_policy(&block_mass_storage(), Posture::Audit),
    );
    assert!(r.plug("usb3/3-2", 0, 0, 0).is_empty());
    assert_eq!(r.authorized("3-2"), "1");
    let kbd = one(r.plug("usb3/3-2/3-2:1.0", 3, 1, 1));
    let storage = one(r.plug("usb3/3-2/3-2:1.1", 8, 6, 80));
    let mouse = one(r.plug("usb3/3-2/3-2:1.2", 3, 1, 2));
    assert_eq!(kbd.action, DeviceAction::Audit);
    assert_eq!(storage.action, DeviceAction::Block);
    assert_eq!(mouse.action, DeviceAction::Audit);
    assert_eq!(r.authorized("3-2:1.0"), "1");
    assert_eq!(r.authorized("3-2:1.1"), "0");
    assert_eq!(r.authorized("3-2:1.2"), "1");
    assert_eq!(
        r.authorized("3-2"),
        "1",
        "only the interface is deauthorized"
    );
    assert_eq!(storage.level, 1);
}

#[test]
fn remove_events() {
    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&block_mass_storage(), Posture::Audit),
    );
    r.plug("usb1/1-1", 0, 0, 0);
    r.plug("usb1/1-1/1-1:1.0", 8, 6, 80);
    assert_eq!(r.engine.blocked().count(), 1);
    r.sysfs.take_ops();
    let e = one(r.unplug("usb1/1-1/1-1:1.0", 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Remove);
    assert_eq!(e.result, DeviceResult::Removed);
    assert_eq!(e.matched, Attribution::None);
    assert_eq!((e.class, e.sub_class, e.protocol, e.level), (8, 6, 80, 1));
    assert_eq!(r.engine.blocked().count(), 0);
    // Class 0 device node: nothing to report (its interfaces were reported).
    assert!(r.unplug("usb1/1-1", 0, 0, 0).is_empty());
    assert!(r.sysfs.take_ops().is_empty(), "removal writes nothing");
}

#[test]
fn preexisting_devices_enforced_at_start() {
    let s = sysfs_with_buses(&[1, 2]);
    s.add_device("1-1", 0, 0, 0, true);
    s.add_interface("1-1:1.0", 8, 6, 80, true);
    s.add_device("2-1", 0, 0, 0, true);
    s.add_interface("2-1:1.0", 3, 1, 1, true);
    s.add_device("2-2", 8, 6, 80, true);
    let mut r = start(s, device_policy(&block_mass_storage(), Posture::Audit));
    let mut ev = std::mem::take(&mut r.events);
    ev.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<_> = ev
        .iter()
        .map(|e| (e.name.as_str(), e.action, e.trigger))
        .collect();
    assert_eq!(
        summary,
        [
            ("1-1:1.0", DeviceAction::Block, Trigger::Startup),
            ("2-1:1.0", DeviceAction::Audit, Trigger::Startup),
            ("2-2", DeviceAction::Block, Trigger::Startup),
        ]
    );
    assert_eq!(r.authorized("1-1:1.0"), "0");
    assert_eq!(r.authorized("2-2"), "0");
    assert_eq!(r.authorized("2-1:1.0"), "1");
    assert_eq!(r.authorized("1-1"), "1");
}

#[test]
fn reevaluation_on_policy_add_and_delete() {
    let s = sysfs_with_buses(&[1]);
    s.add_device("1-1", 0, 0, 0, true);
    s.add_interface("1-1:1.0", 8, 6, 80, true);
    s.add_interface("1-1:1.1", 3, 1, 1, true);
    let mut r = start(s, DevicePolicy::none());
    assert_eq!(r.events.len(), 2, "startup logs for both interfaces");
    assert!(r.sysfs.take_ops().is_empty());

    // Policy added: the connected stick is deauthorized, the bus held.
    let e = one(r.set_policy(device_policy(&block_mass_storage(), Posture::Audit)));
    assert_eq!(
        (e.name.as_str(), e.action),
        ("1-1:1.0", DeviceAction::Block)
    );
    assert_eq!(e.trigger, Trigger::PolicyChange);
    assert_eq!(r.authorized("1-1:1.0"), "0");
    assert!(r.engine.is_holding());
    // Re-applying the same policy changes nothing and says nothing.
    assert!(r
        .set_policy(device_policy(&block_mass_storage(), Posture::Audit))
        .is_empty());

    // Another Block policy now covers the keyboard: both directions in one update.
    let both = format!("{}\n---\n{}", block_mass_storage(), block_keyboard());
    let e = one(r.set_policy(device_policy(&both, Posture::Audit)));
    assert_eq!(
        (e.name.as_str(), e.action),
        ("1-1:1.1", DeviceAction::Block)
    );
    let e = one(r.set_policy(device_policy(&block_keyboard(), Posture::Audit)));
    assert_eq!(
        (e.name.as_str(), e.action),
        ("1-1:1.0", DeviceAction::Audit)
    );
    assert_eq!(e.result, DeviceResult::Passed);
    assert_eq!(r.authorized("1-1:1.0"), "1");
    assert_eq!(r.authorized("1-1:1.1"), "0");
    r.sysfs.take_ops();

    // Policy deleted: the keyboard comes back (authorize + drivers_probe), the bus is given
    // back before.
    let e = one(r.set_policy(DevicePolicy::none()));
    assert_eq!(
        (e.name.as_str(), e.action),
        ("1-1:1.1", DeviceAction::Audit)
    );
    assert_eq!(r.authorized("1-1:1.1"), "1");
    assert!(!r.engine.is_holding());
    assert_eq!(
        r.sysfs.take_ops(),
        [
            Op::write("usb1", Attr::InterfaceAuthorizedDefault, "1"),
            Op::write("usb1", Attr::AuthorizedDefault, "1"),
            Op::write("1-1:1.1", Attr::Authorized, "1"),
            Op::Probe("1-1:1.1".into()),
        ]
    );
}

#[test]
fn authorized_default_restored_to_original_values() {
    let s = sysfs_with_buses(&[1, 2, 3]);
    // Wireless-only (-1) and "internal only" (2) defaults must come back as they were.
    s.set("usb2", Attr::AuthorizedDefault, "-1");
    s.set("usb3", Attr::AuthorizedDefault, "2");
    s.set("usb3", Attr::InterfaceAuthorizedDefault, "0");
    let mut r = start(s, device_policy(&block_mass_storage(), Posture::Audit));
    for b in ["usb1", "usb2", "usb3"] {
        assert_eq!(r.sysfs.get(b, Attr::AuthorizedDefault).unwrap(), "0");
        assert_eq!(
            r.sysfs.get(b, Attr::InterfaceAuthorizedDefault).unwrap(),
            "0"
        );
    }
    // A bus that appears later is held too.
    r.sysfs.add_root_hub(4);
    assert!(r.uevent("add", "usb4", 9, 0, 1).is_empty());
    assert_eq!(r.sysfs.get("usb4", Attr::AuthorizedDefault).unwrap(), "0");
    // Audit-only policy: nothing needs holding; originals back.
    r.set_policy(device_policy(&audit_mass_storage(), Posture::Audit));
    assert!(!r.engine.is_holding());
    let sysfs = r.sysfs.clone();
    let d = |b: &str| sysfs.get(b, Attr::AuthorizedDefault).unwrap();
    assert_eq!(
        (d("usb1"), d("usb2"), d("usb3"), d("usb4")),
        ("1".into(), "-1".into(), "2".into(), "1".into())
    );
    assert_eq!(
        r.sysfs
            .get("usb3", Attr::InterfaceAuthorizedDefault)
            .unwrap(),
        "0"
    );
    // Held again, then stopped: restored again.
    r.set_policy(device_policy(&block_keyboard(), Posture::Audit));
    assert!(r.engine.is_holding());
    assert_eq!(d("usb2"), "0");
    r.stop();
    assert_eq!(
        (d("usb1"), d("usb2"), d("usb3")),
        ("1".into(), "-1".into(), "2".into())
    );
    assert!(!r.engine.is_holding());
}

#[test]
fn root_hub_without_interface_authorized_default() {
    // Linux < 4.4: only authorized_default exists; holding still works for devices.
    let s = Arc::new(MemSysfs::new());
    s.set("usb1", Attr::Authorized, "1");
    s.set("usb1", Attr::AuthorizedDefault, "1");
    let mut r = start(s, device_policy(&block_mass_storage(), Posture::Audit));
    assert!(r.engine.is_holding());
    assert_eq!(r.sysfs.get("usb1", Attr::AuthorizedDefault).unwrap(), "0");
    r.stop();
    assert_eq!(r.sysfs.get("usb1", Attr::AuthorizedDefault).unwrap(), "1");
    assert_eq!(r.sysfs.get("usb1", Attr::InterfaceAuthorizedDefault), None);
}

#[test]
fn stop_gives_back_blocked_devices_and_state_file() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("usb.state");
    let opts = EngineOptions {
        state_file: Some(state.clone()),
        ..Default::default()
    };
    let mut r = start_with(
        sysfs_with_buses(&[1]),
        device_policy(&block_mass_storage(), Posture::Audit),
        opts,
    );
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("default usb1 authorized_default 1"), "{text}");
    assert!(
        text.contains("default usb1 interface_authorized_default 1"),
        "{text}"
    );
    r.plug("usb1/1-1", 0, 0, 0);
    r.plug("usb1/1-1/1-1:1.0", 8, 6, 80);
    assert_eq!(r.authorized("1-1:1.0"), "0");
    let ev = r.stop();
    let e = one(ev);
    assert_eq!(
        (e.name.as_str(), e.action, e.trigger),
        ("1-1:1.0", DeviceAction::Allow, Trigger::Stop)
    );
    assert_eq!(r.authorized("1-1:1.0"), "1");
    assert_eq!(r.sysfs.get("usb1", Attr::AuthorizedDefault).unwrap(), "1");
    assert!(!state.exists());
}

#[test]
fn recovery_after_killed_daemon() {
    // A killed predecessor left usb1 held (state file) with a device that arrived meanwhile
    // unauthorized; usb2 was never held and has a device an administrator deauthorized.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("usb.state");
    std::fs::write(
        &state,
        "pid 999999 1\ndefault usb1 authorized_default 1\ndefault usb1 interface_authorized_default 1\n",
    )
    .unwrap();
    let s = sysfs_with_buses(&[1, 2]);
    s.set("usb1", Attr::AuthorizedDefault, "0");
    s.set("usb1", Attr::InterfaceAuthorizedDefault, "0");
    s.add_device("1-1", 0, 0, 0, false);
    s.add_device("1-2", 3, 1, 1, false);
    s.add_device("1-3", 8, 6, 80, false);
    s.add_device("2-1", 3, 1, 1, false);
    let opts = EngineOptions {
        state_file: Some(state.clone()),
        ..Default::default()
    };

    // Restarted with the mass-storage block: usb1's true originals are kept (not the 0s).
    let mut r = start_with(
        s.clone(),
        device_policy(&block_mass_storage(), Posture::Audit),
        opts.clone(),
    );
    assert_eq!(
        r.authorized("1-1"),
        "1",
        "class-0 device on the held bus authorized"
    );
    assert_eq!(r.authorized("1-2"), "1", "keyboard decided and authorized");
    assert_eq!(r.authorized("1-3"), "0", "stick stays blocked");
    assert_eq!(
        r.authorized("2-1"),
        "0",
        "administrator's choice left alone"
    );
    assert!(r.engine.blocked().eq(["1-3"]));
    // The administrator's device stays alone through policy changes, too.
    r.set_policy(DevicePolicy::none());
    assert_eq!(r.authorized("2-1"), "0");
    assert_eq!(
        r.authorized("1-3"),
        "1",
        "ours: re-authorized when the rule went away"
    );
    assert_eq!(s.get("usb1", Attr::AuthorizedDefault).unwrap(), "1");
    drop(r);

    // Restarted with no device rules after a crash: originals restored, our devices freed.
    std::fs::write(&state, "pid 999999 1\ndefault usb1 authorized_default 1\n").unwrap();
    s.set("usb1", Attr::AuthorizedDefault, "0");
    s.add_device("1-4", 3, 1, 1, false);
    let r = start_with(s.clone(), DevicePolicy::none(), opts);
    assert_eq!(s.get("usb1", Attr::AuthorizedDefault).unwrap(), "1");
    assert_eq!(r.authorized("1-4"), "1");
    assert_eq!(r.authorized("2-1"), "0");
    // Not holding: the state file only names the process.
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(!text.contains("default"), "{text}");
}

#[test]
fn failed_write_is_not_reported_as_a_block() {
    let s = sysfs_with_buses(&[1]);
    s.fail_writes("1-1:1.0", Attr::Authorized);
    let mut r = start(s, device_policy(&block_mass_storage(), Posture::Audit));
    let e = one(r.plug("usb1/1-1/1-1:1.0", 8, 6, 80));
    assert_eq!(e.action, DeviceAction::Block);
    let DeviceResult::Failed(msg) = &e.result else {
        panic!("{e:?}")
    };
    assert!(msg.contains("deauthorize"), "{msg}");
    assert_eq!(e.latency, None);
    assert_eq!(r.engine.blocked().count(), 0);
}

#[test]
fn overflow_rescan_decides_what_was_missed() {
    let mut r = start(
        sysfs_with_buses(&[1]),
        device_policy(&block_mass_storage(), Posture::Audit),
    );
    // Devices arrived (unauthorized: bus held) but their uevents were lost.
    r.sysfs.add_device("1-1", 0, 0, 0, false);
    r.sysfs.add_interface("1-2:1.0", 8, 6, 80, false);
    r.sysfs.add_interface("1-3:1.0", 3, 1, 1, false);
    let mut out = Vec::new();
    r.engine.on_overflow(&mut out);
    assert_eq!(r.authorized("1-1"), "1");
    assert_eq!(r.authorized("1-2:1.0"), "0");
    assert_eq!(r.authorized("1-3:1.0"), "1");
    let e = one(out);
    assert_eq!((e.name.as_str(), e.trigger), ("1-3:1.0", Trigger::Overflow));
    assert!(r.engine.blocked().eq(["1-2:1.0"]));
}

#[test]
fn extra_buses_rescan() {
    let s = sysfs_with_buses(&[1]);
    s.add_interface("1-1:1.0", 3, 1, 1, false);
    let mut r = start(s, DevicePolicy::none());
    // Unauthorized at start on a bus nobody held: foreign, left alone by rescans...
    let mut out = Vec::new();
    r.engine
        .rescan(Trigger::PolicyChange, &BTreeSet::new(), &mut out);
    assert_eq!(r.authorized("1-1:1.0"), "0");
    // ...until someone authorizes it; then it is ours like any other.
    r.sysfs.set("1-1:1.0", Attr::Authorized, "1");
    r.set_policy(device_policy(&block_keyboard(), Posture::Audit));
    assert_eq!(r.authorized("1-1:1.0"), "0");
    r.set_policy(DevicePolicy::none());
    assert_eq!(r.authorized("1-1:1.0"), "1");
}
