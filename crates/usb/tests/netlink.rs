//! End to end: a real `NETLINK_KOBJECT_UEVENT` socket, fake uevents multicast from a
//! userspace socket, and a fake sysfs tree in a temp dir. Every test runs inside its own
//! network namespace so the fake events never reach the host's udevd. Needs root (fails, never
//! skips, without it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kubearmor_policy::Posture;
use kubearmor_usb::listener::UeventSender;
use kubearmor_usb::sysfs::{Attr, FakeTree};
use kubearmor_usb::uevent;
use kubearmor_usb::{
    to_kubearmor, Attribution, DeviceAction, DeviceEvent, DevicePolicy, DeviceResult,
    HandlerConfig, HostContext, KubeArmorEvent, Trigger, UsbHandler,
};

const WAIT: Duration = Duration::from_secs(20);

struct Live {
    tmp: tempfile::TempDir,
    tree: FakeTree,
    handler: Option<UsbHandler>,
    rx: Receiver<DeviceEvent>,
    sender: UeventSender,
    state: PathBuf,
}

/// On a tmpfs when there is one: closer to sysfs, and much faster than a disk filesystem.
fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("usb-test")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

fn config(tmp: &tempfile::TempDir, allow_userspace: bool) -> HandlerConfig {
    HandlerConfig {
        sysfs_root: tmp.path().join("sys"),
        state_file: Some(tmp.path().join("run/usb-handler.state")),
        allow_userspace_senders: allow_userspace,
        ..Default::default()
    }
}

fn live(policy: DevicePolicy, buses: &[u32], setup: impl FnOnce(&FakeTree)) -> Live {
    live_with(policy, buses, setup, |c| c)
}

fn live_with(
    policy: DevicePolicy,
    buses: &[u32],
    setup: impl FnOnce(&FakeTree),
    tweak: impl FnOnce(HandlerConfig) -> HandlerConfig,
) -> Live {
    let tmp = tmpdir();
    let tree = FakeTree::create(tmp.path().join("sys")).unwrap();
    for b in buses {
        tree.add_root_hub(*b).unwrap();
    }
    setup(&tree);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let cfg = tweak(config(&tmp, true));
    let state = cfg.state_file.clone().unwrap();
    let handler = UsbHandler::start(cfg, policy, move |e| {
        let _ = tx.lock().unwrap().send(e);
    })
    .expect("start the USB handler");
    Live {
        tmp,
        tree,
        handler: Some(handler),
        rx,
        sender: UeventSender::open().unwrap(),
        state,
    }
}

/// Creates the node in the fake tree as the kernel would (authorized per the bus default).
fn appear(tree: &FakeTree, name: &str, c: u8, s: u8, p: u8) {
    let bus = name.split('-').next().unwrap();
    let hub = format!("usb{bus}");
    let interface = name.contains(':');
    let default = if interface {
        Attr::InterfaceAuthorizedDefault
    } else {
        Attr::AuthorizedDefault
    };
    let authorized = tree.get(&hub, default).as_deref() != Some("0");
    if interface {
        tree.add_interface(name, c, s, p, authorized).unwrap();
    } else {
        tree.add_device(name, c, s, p, authorized).unwrap();
    }
}

fn msg(action: &str, tail: &str, c: u8, s: u8, p: u8) -> Vec<u8> {
    uevent::encode_usb(
        action,
        &format!("/devices/pci0000:00/0000:00:14.0/{tail}"),
        c,
        s,
        p,
    )
}

impl Live {
    fn handler(&self) -> &UsbHandler {
        self.handler.as_ref().unwrap()
    }

    fn plug(&self, tail: &str, c: u8, s: u8, p: u8) {
        let name = tail.rsplit('/').next().unwrap();
        appear(&self.tree, name, c, s, p);
        self.sender.send(&msg("add", tail, c, s, p)).unwrap();
    }

    fn unplug(&self, tail: &str, c: u8, s: u8, p: u8) {
        let name = tail.rsplit('/').next().unwrap();
        self.tree.remove(name).unwrap();
        self.sender.send(&msg("remove", tail, c, s, p)).unwrap();
    }

    fn next(&self) -> DeviceEvent {
        match self.rx.recv_timeout(WAIT) {
            Ok(e) => e,
            Err(e) => panic!(
                "no device event within {WAIT:?}: {e}; stats {:?}",
                self.handler().stats()
            ),
        }
    }

    fn authorized(&self, name: &str) -> String {
        self.tree.get(name, Attr::Authorized).unwrap()
    }

    fn default(&self, hub: &str) -> String {
        self.tree.get(hub, Attr::AuthorizedDefault).unwrap()
    }

    fn stop(&mut self) {
        self.handler.take().unwrap().stop().unwrap();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kubearmor_examples_end_to_end() {
    in_netns(|| {
        let mut l = live(
            device_policy(&block_mass_storage(), Posture::Audit),
            &[1, 2],
            |_| {},
        );
        assert!(l.handler().is_holding());
        assert_eq!(l.default("usb1"), "0");
        assert_eq!(
            l.tree
                .get("usb2", Attr::InterfaceAuthorizedDefault)
                .unwrap(),
            "0"
        );
        let state = std::fs::read_to_string(&l.state).unwrap();
        assert!(
            state.contains(&format!("pid {} ", std::process::id())),
            "{state}"
        );

        // A stick behind one hub: device node (class per interface), then its interface.
        l.plug("usb2/2-4/2-4.1", 0, 0, 0);
        l.plug("usb2/2-4/2-4.1/2-4.1:1.0", 8, 6, 80);
        let e = l.next();
        assert_eq!(l.authorized("2-4.1"), "1");
        assert_eq!(l.authorized("2-4.1:1.0"), "0");
        assert_eq!(
            (e.action, e.result.clone()),
            (DeviceAction::Block, DeviceResult::PermissionDenied)
        );
        assert!(e.latency.is_some());
        let host = HostContext {
            cluster_name: "default".into(),
            host_name: "vm-1".into(),
            node_id: "n".into(),
        };
        let Some(KubeArmorEvent::Alert(a)) = to_kubearmor(&e, &host) else {
            panic!("{e:?}")
        };
        assert_eq!(a.policy_name, "hsp-block-usb-storage");
        assert_eq!(a.severity, "5");
        assert_eq!(a.r#type, "MatchedHostPolicy");
        assert_eq!(a.operation, "Device");
        assert_eq!(a.resource, "USB MASS-STORAGE");
        assert_eq!(a.enforcer, "USBDeviceHandler");
        assert_eq!(a.action, "Block");
        assert_eq!(a.result, "Permission denied");
        let sys_path = format!("{}/sys/bus/usb/devices/2-4.1:1.0", l.tmp.path().display());
        assert_eq!(
            a.data,
            format!("Class=8 SubClass=6 Protocol=80 Level=2 SysPath={sys_path}")
        );

        // A keyboard on usb1 waits unauthorized, then is authorized and probed.
        l.plug("usb1/1-1", 0, 0, 0);
        l.plug("usb1/1-1/1-1:1.0", 3, 1, 1);
        let e = l.next();
        assert_eq!(
            (e.name.as_str(), e.action),
            ("1-1:1.0", DeviceAction::Audit)
        );
        assert_eq!(l.authorized("1-1:1.0"), "1");
        assert_eq!(l.tree.last_probe().unwrap(), "1-1:1.0");
        let Some(KubeArmorEvent::Log(log)) = to_kubearmor(&e, &host) else {
            panic!()
        };
        assert_eq!(log.r#type, "HostLog");
        assert_eq!(log.resource, "USB HID");

        // Policy update: the keyboard is now blocked too, the stick allowed (8/6/80).
        let both = format!("{}\n---\n{}", allow_stick_under_block(), block_keyboard());
        l.handler()
            .update_policy(device_policy(&both, Posture::Audit));
        let mut changed = [l.next(), l.next()];
        changed.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            changed
                .iter()
                .map(|e| (e.name.as_str(), e.action, e.trigger))
                .collect::<Vec<_>>(),
            [
                ("1-1:1.0", DeviceAction::Block, Trigger::PolicyChange),
                ("2-4.1:1.0", DeviceAction::Allow, Trigger::PolicyChange),
            ]
        );
        assert_eq!(l.authorized("1-1:1.0"), "0");
        assert_eq!(l.authorized("2-4.1:1.0"), "1");

        // Unplug.
        l.unplug("usb2/2-4/2-4.1/2-4.1:1.0", 8, 6, 80);
        let e = l.next();
        assert_eq!(
            (e.action, e.result.clone()),
            (DeviceAction::Remove, DeviceResult::Removed)
        );
        let Some(KubeArmorEvent::Log(log)) = to_kubearmor(&e, &host) else {
            panic!()
        };
        assert_eq!(log.result, "Removed");

        // Stop: defaults and the blocked keyboard given back, state file gone.
        l.stop();
        assert_eq!(l.default("usb1"), "1");
        assert_eq!(
            l.tree
                .get("usb2", Attr::InterfaceAuthorizedDefault)
                .unwrap(),
            "1"
        );
        assert_eq!(l.authorized("1-1:1.0"), "1");
        assert!(!l.state.exists());
        let e = l.next();
        assert_eq!((e.name.as_str(), e.trigger), ("1-1:1.0", Trigger::Stop));
    });
}

#[test]
fn preexisting_composite_device_and_allow_list() {
    in_netns(|| {
        let yaml = hsp(
            "hsp-hid-only",
            "  device:\n    matchDevice:\n    - class: HID\n      action: Allow\n",
        );
        let l = live(device_policy(&yaml, Posture::Block), &[1], |t| {
            // A composite keyboard + storage device plugged before the daemon started.
            t.add_device("1-3", 0, 0, 0, true).unwrap();
            t.add_interface("1-3:1.0", 3, 1, 1, true).unwrap();
            t.add_interface("1-3:1.1", 8, 6, 80, true).unwrap();
        });
        let mut ev = [l.next(), l.next()];
        ev.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(ev[0].action, DeviceAction::Allow);
        assert_eq!(ev[1].action, DeviceAction::Block);
        assert_eq!(ev[1].matched, Attribution::DefaultPosture);
        assert!(ev.iter().all(|e| e.trigger == Trigger::Startup));
        assert_eq!(l.authorized("1-3:1.0"), "1");
        assert_eq!(l.authorized("1-3:1.1"), "0");
        // A new webcam is blocked by the default posture before any driver could bind.
        l.plug("usb1/1-4", 0, 0, 0);
        l.plug("usb1/1-4/1-4:1.0", 14, 1, 0);
        let e = l.next();
        assert_eq!(
            (e.action, e.matched),
            (DeviceAction::Block, Attribution::DefaultPosture)
        );
        assert_eq!(l.authorized("1-4:1.0"), "0");
    });
}

#[test]
fn non_kernel_sender_ignored() {
    in_netns(|| {
        let l = live_with(
            device_policy(&block_mass_storage(), Posture::Audit),
            &[1],
            |_| {},
            |c| HandlerConfig {
                allow_userspace_senders: false,
                ..c
            },
        );
        // A forged "add" for a stick that does exist: must not be acted on.
        l.plug("usb1/1-1", 0, 0, 0);
        l.plug("usb1/1-1/1-1:1.0", 8, 6, 80);
        wait_until("both datagrams rejected", || {
            l.handler().stats().rejected_sender >= 2
        });
        let s = l.handler().stats();
        assert_eq!(s.usb_events, 0, "{s:?}");
        assert_eq!(s.decisions, 0);
        assert_eq!(
            l.authorized("1-1"),
            "0",
            "still waiting: nobody trusted decided"
        );
        assert!(matches!(
            l.rx.recv_timeout(Duration::from_millis(200)),
            Err(RecvTimeoutError::Timeout)
        ));
    });
}

#[test]
fn malformed_uevents_survived() {
    in_netns(|| {
        let l = live(
            device_policy(&block_mass_storage(), Posture::Audit),
            &[1],
            |_| {},
        );
        let long = vec![b'x'; uevent::MAX_UEVENT_BYTES + 100];
        let bad: Vec<Vec<u8>> = vec![
            b"garbage".to_vec(),
            b"add@/devices/x\0ACTION\0".to_vec(),
            msg("add", "usb1/1-1/..", 8, 6, 80),
            msg("add", "usb1/1-1/1-1:1.0", 8, 6, 80)
                .iter()
                .map(|b| if *b == b'/' { b'|' } else { *b })
                .collect(),
            uevent::encode(
                "add",
                "/devices/usb1/1-1",
                &[
                    ("SUBSYSTEM", "usb"),
                    ("DEVTYPE", "usb_device"),
                    ("TYPE", "999/0/0"),
                ],
            ),
            b"add@/devices/usb1/1-1\0ACTION=add\0SUBSYSTEM=usb\0DEVTYPE=usb_device\0TYPE=\xff\0"
                .to_vec(),
            long,
        ];
        for m in &bad {
            l.sender.send(m).unwrap();
        }
        // Ignored, not malformed: udev's re-broadcast and a bind.
        let mut udev = b"libudev\0".to_vec();
        udev.extend_from_slice(&[0u8; 40]);
        l.sender.send(&udev).unwrap();
        l.sender
            .send(&msg("bind", "usb1/1-1/1-1:1.0", 8, 6, 80))
            .unwrap();
        // Still working afterwards.
        l.plug("usb1/1-2/1-2:1.0", 8, 6, 80);
        let e = l.next();
        assert_eq!(
            (e.name.as_str(), e.action),
            ("1-2:1.0", DeviceAction::Block)
        );
        let s = l.handler().stats();
        assert_eq!(s.malformed, bad.len() as u64, "{s:?}");
        // Real kernel uevents (other subsystems) reach this namespace too.
        assert!(s.ignored >= 2, "{s:?}");
    });
}

/// 10,000 interfaces arriving at once: every one decided (half blocked, half authorized), no
/// decision lost. Prints the uevent-to-sysfs-write latency.
#[test]
fn storm_of_10000_uevents() {
    in_netns(|| {
        const N: usize = 10_000;
        let names: Vec<(String, String, bool)> = (0..N)
            .map(|i| {
                let bus = i % 8 + 1;
                let j = i / 8;
                let name = format!("{bus}-{}.{}:1.0", j / 50 + 1, j % 50 + 1);
                let tail = format!("usb{bus}/{name}");
                (name, tail, i % 2 == 0)
            })
            .collect();
        let buses: Vec<u32> = (1..=8).collect();
        let l = live(
            device_policy(&block_mass_storage(), Posture::Audit),
            &buses,
            |_| {},
        );
        for (name, _, storage) in &names {
            let (c, s, p) = if *storage { (8, 6, 80) } else { (3, 1, 1) };
            appear(&l.tree, name, c, s, p);
        }
        let msgs: Vec<Vec<u8>> = names
            .iter()
            .map(|(_, tail, storage)| {
                let (c, s, p) = if *storage { (8, 6, 80) } else { (3, 1, 1) };
                msg("add", tail, c, s, p)
            })
            .collect();
        let t0 = Instant::now();
        for m in &msgs {
            l.sender.send(m).unwrap();
        }
        let sent = t0.elapsed();
        let mut latencies = Vec::with_capacity(N);
        for _ in 0..N {
            let e = l.next();
            latencies.push(e.latency.expect("every decision wrote sysfs"));
        }
        let total = t0.elapsed();
        let s = l.handler().stats();
        assert_eq!(
            s.overflows,
            0,
            "receive buffer {} overflowed: {s:?}",
            l.handler().receive_buffer()
        );
        assert_eq!(s.usb_events, N as u64);
        for (name, _, storage) in &names {
            let want = if *storage { "0" } else { "1" };
            assert_eq!(l.authorized(name), want, "{name}");
        }
        latencies.sort();
        println!(
            "storm: {N} uevents sent in {sent:?}, all decided in {total:?}; uevent receipt -> sysfs write: median {:?}, p99 {:?}, max {:?} (debug build, tests running in parallel; see examples/uevent_latency.rs)",
            latencies[N / 2],
            latencies[N * 99 / 100],
            latencies[N - 1]
        );
    });
}

/// A receive queue too small for the burst: the kernel drops messages and reports ENOBUFS;
/// the handler re-scans sysfs and still decides every device.
#[test]
fn overflow_recovered_by_rescan() {
    in_netns(|| {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let tmp = tmpdir();
        let tree = FakeTree::create(tmp.path().join("sys")).unwrap();
        tree.add_root_hub(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let g = gate.clone();
        let cfg = HandlerConfig {
            receive_buffer: 1, // the kernel's minimum
            ..config(&tmp, true)
        };
        let handler = UsbHandler::start(
            cfg,
            device_policy(&block_mass_storage(), Posture::Audit),
            move |e| {
                // The first event stalls the listener until the burst is sent.
                drop(g.lock().unwrap());
                let _ = tx.lock().unwrap().send(e);
            },
        )
        .unwrap();
        let sender = UeventSender::open().unwrap();
        appear(&tree, "1-1:1.0", 3, 1, 1);
        sender
            .send(&msg("add", "usb1/1-1/1-1:1.0", 3, 1, 1))
            .unwrap();
        wait_until("the first decision", || handler.stats().decisions >= 1);
        let n = 300;
        for i in 0..n {
            let name = format!("1-2.{}:1.0", i + 1);
            let storage = i % 2 == 0;
            let (c, s, p) = if storage { (8, 6, 80) } else { (3, 1, 1) };
            appear(&tree, &name, c, s, p);
            sender
                .send(&msg("add", &format!("usb1/1-2/{name}"), c, s, p))
                .unwrap();
        }
        drop(held);
        wait_until("the overflow re-scan", || handler.stats().overflows >= 1);
        for i in 0..n {
            let name = format!("1-2.{}:1.0", i + 1);
            let want = if i % 2 == 0 { "0" } else { "1" };
            wait_until(&name, || {
                tree.get(&name, Attr::Authorized).as_deref() == Some(want)
            });
        }
        let s = handler.stats();
        assert!(s.received < n as u64, "nothing was dropped? {s:?}");
        loop {
            match rx.recv_timeout(WAIT) {
                Ok(e) if e.trigger == Trigger::Overflow => break,
                Ok(_) => {}
                Err(e) => panic!("no event from the overflow re-scan: {e}"),
            }
        }
        handler.stop().unwrap();
    });
}

/// Restart without a window: `detach` leaves the buses held and the stick blocked; a device
/// plugged while no handler runs waits; the next handler adopts all of it and, on `stop`,
/// restores the true original defaults.
#[test]
fn detach_and_restart_adopts_state() {
    in_netns(|| {
        let mut l = live(
            device_policy(&block_mass_storage(), Posture::Audit),
            &[1],
            |_| {},
        );
        l.plug("usb1/1-1/1-1:1.0", 8, 6, 80);
        assert_eq!(l.next().action, DeviceAction::Block);
        l.handler.take().unwrap().detach().unwrap();
        assert_eq!(l.default("usb1"), "0");
        assert!(l.state.exists());
        // Plugged while no daemon runs: waits unauthorized.
        appear(&l.tree, "1-2:1.0", 3, 1, 1);
        assert_eq!(l.authorized("1-2:1.0"), "0");

        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let h = UsbHandler::start(
            config(&l.tmp, true),
            device_policy(&block_mass_storage(), Posture::Audit),
            move |e| {
                let _ = tx.lock().unwrap().send(e);
            },
        )
        .unwrap();
        let mut ev: Vec<DeviceEvent> = (0..2).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
        ev.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            ev.iter()
                .map(|e| (e.name.as_str(), e.action, e.trigger))
                .collect::<Vec<_>>(),
            [
                ("1-1:1.0", DeviceAction::Block, Trigger::Startup),
                ("1-2:1.0", DeviceAction::Audit, Trigger::Startup),
            ]
        );
        assert_eq!(l.authorized("1-1:1.0"), "0");
        assert_eq!(l.authorized("1-2:1.0"), "1");
        assert_eq!(h.blocked(), ["1-1:1.0"]);
        h.stop().unwrap();
        assert_eq!(
            l.default("usb1"),
            "1",
            "the original, not the 0 found at start"
        );
        assert_eq!(l.authorized("1-1:1.0"), "1");
        assert!(!l.state.exists());
    });
}

/// Through the real handler: authorize first, then ask the driver core to probe.
#[test]
fn authorize_then_probe_in_order() {
    in_netns(|| {
        use kubearmor_usb::sysfs::{DirSysfs, Op, Recording};
        let tmp = tmpdir();
        let tree = FakeTree::create(tmp.path().join("sys")).unwrap();
        tree.add_root_hub(1).unwrap();
        let rec = Arc::new(Recording::new(DirSysfs::new(tree.root())));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let h = UsbHandler::start_with_sysfs(
            config(&tmp, true),
            rec.clone(),
            device_policy(&block_keyboard(), Posture::Audit),
            move |e| {
                let _ = tx.lock().unwrap().send(e);
            },
        )
        .unwrap();
        let sender = UeventSender::open().unwrap();
        appear(&tree, "1-1:1.0", 3, 1, 2);
        sender
            .send(&msg("add", "usb1/1-1/1-1:1.0", 3, 1, 2))
            .unwrap();
        let e = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(e.action, DeviceAction::Audit);
        let ops: Vec<Op> = rec
            .ops()
            .into_iter()
            .filter(|o| !matches!(o, Op::Write { name, .. } if name == "usb1"))
            .collect();
        assert_eq!(
            ops,
            [
                Op::write("1-1:1.0", Attr::Authorized, "1"),
                Op::Probe("1-1:1.0".into())
            ]
        );
        let timed = rec.timed_ops();
        assert!(timed.windows(2).all(|w| w[0].0 <= w[1].0));
        h.stop().unwrap();
    });
}

#[test]
fn start_without_usb_sysfs_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = UsbHandler::start(
        config(&tmp, false),
        DevicePolicy::none(),
        |_e: DeviceEvent| {},
    )
    .err()
    .expect("no bus/usb/devices");
    let text = e.to_string();
    assert!(text.contains("USB sysfs not found"), "{text}");
    assert!(text.contains("bus/usb/devices"), "{text}");
}

#[test]
fn enablement_follows_both_flags() {
    assert!(kubearmor_usb::wanted(true, true));
    assert!(!kubearmor_usb::wanted(true, false));
    assert!(!kubearmor_usb::wanted(false, true));
}
