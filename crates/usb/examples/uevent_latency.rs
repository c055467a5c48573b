//! Measures the USB handler's reaction time: from the receipt of a uevent (right after
//! `recvmsg`) to the completion of the sysfs write that enforces the decision (`authorized`
//! 0 for a block, 1 for a held device that is allowed), over 10,000 events, one at a time and
//! as a burst. Fake sysfs tree in a temp dir, fake uevents multicast inside a private network
//! namespace. Needs root.
//!
//! `sudo -E cargo run --release -p kubearmor-usb --example uevent_latency [N]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubearmor_policy::{parse_policies, HostIdentity, Postures, SelectorMode};
use kubearmor_usb::listener::{enter_new_netns, UeventSender};
use kubearmor_usb::sysfs::FakeTree;
use kubearmor_usb::{uevent, DeviceEvent, DevicePolicy, HandlerConfig, UsbHandler};

const POLICY: &str = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-block-usb-storage
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: \"*\"
  device:
    matchDevice:
    - class: MASS-STORAGE
  action: Block
";

fn msg(name: &str, storage: bool) -> Vec<u8> {
    let bus = name.split('-').next().unwrap_or("1");
    let devpath = format!("/devices/pci0000:00/0000:00:14.0/usb{bus}/{name}");
    let (c, s, p) = if storage { (8, 6, 80) } else { (3, 1, 1) };
    uevent::encode_usb("add", &devpath, c, s, p)
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let n = v.len();
    println!(
        "{what}: n={n} median {:?} p90 {:?} p99 {:?} max {:?}",
        v[n / 2],
        v[n * 9 / 10],
        v[n * 99 / 100],
        v[n - 1]
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("uevent_latency needs root (private network namespace, uevent multicast)");
        std::process::exit(1);
    }
    enter_new_netns().expect("unshare(CLONE_NEWNET)");

    // A tmpfs is closer to sysfs (in-memory attributes) than a disk filesystem, where
    // truncate-and-rewrite triggers writeback (ext4 auto_da_alloc) and adds milliseconds.
    let tmp = tempfile::Builder::new()
        .prefix("usb-latency")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    println!("fake sysfs tree: {}", tmp.path().display());
    let tree = FakeTree::create(tmp.path()).unwrap();
    for b in 1..=8 {
        tree.add_root_hub(b).unwrap();
    }
    let policies = parse_policies(POLICY, "policy").unwrap().policies;
    let host = HostIdentity {
        hostname: "bench".into(),
        labels: Default::default(),
    };
    let policy = DevicePolicy::for_host(
        &policies,
        &host,
        SelectorMode::default(),
        Postures::default(),
    );
    let (tx, rx) = mpsc::channel::<DeviceEvent>();
    let tx = Mutex::new(tx);
    let cfg = HandlerConfig {
        sysfs_root: tmp.path().to_path_buf(),
        state_file: None,
        allow_userspace_senders: true,
        ..Default::default()
    };
    let handler = UsbHandler::start(cfg, policy, move |e| {
        let _ = tx.lock().unwrap().send(e);
    })
    .unwrap();
    let sender = UeventSender::open().unwrap();

    let name = |round: usize, i: usize| {
        let bus = i % 8 + 1;
        let j = i / 8;
        format!("{bus}-{}.{}.{}:1.0", round + 1, j / 100 + 1, j % 100 + 1)
    };
    for round in 0..2 {
        for i in 0..n {
            // Held buses: interfaces arrive unauthorized, as the kernel would create them.
            tree.add_interface(&name(round, i), 8, 6, 80, false)
                .unwrap();
        }
    }

    // One at a time: send, wait for the decision.
    let mut lat = Vec::with_capacity(n);
    let mut rtt = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        sender.send(&msg(&name(0, i), i % 2 == 0)).unwrap();
        let e = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        rtt.push(t.elapsed());
        lat.push(e.latency.unwrap());
    }
    report("one at a time, uevent receipt -> sysfs write done", lat);
    report("one at a time, send -> event delivered to the sink", rtt);

    // Burst: all at once.
    let t = Instant::now();
    for i in 0..n {
        sender.send(&msg(&name(1, i), i % 2 == 0)).unwrap();
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let e = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        lat.push(e.latency.unwrap());
    }
    let total = t.elapsed();
    report("burst, uevent receipt -> sysfs write done", lat);
    println!(
        "burst of {n}: all decided in {total:?} ({:.0} decisions/s); stats {:?}",
        n as f64 / total.as_secs_f64(),
        handler.stats()
    );
    handler.stop().unwrap();
}
