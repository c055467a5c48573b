//! scripts/usb-escape-hatch.sh against a fake sysfs tree: nothing while the daemon runs;
//! keyboards, mice and hubs (only) let through when it does not; `restore` gives the buses
//! their recorded defaults back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kubearmor_usb::state::{BusDefaults, State};
use kubearmor_usb::sysfs::{Attr, FakeTree};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/usb-escape-hatch.sh")
}

struct Rig {
    _tmp: tempfile::TempDir,
    tree: FakeTree,
    state: PathBuf,
}

/// A held bus with: a keyboard interface, a storage interface, a hub, a composite device with
/// a HID interface, one without, all waiting unauthorized.
fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let tree = FakeTree::create(tmp.path().join("sys")).unwrap();
    tree.add_root_hub(1).unwrap();
    tree.set("usb1", Attr::AuthorizedDefault, "0").unwrap();
    tree.set("usb1", Attr::InterfaceAuthorizedDefault, "0")
        .unwrap();
    tree.add_device("1-1", 0, 0, 0, true).unwrap();
    tree.add_interface("1-1:1.0", 3, 1, 1, false).unwrap();
    tree.add_interface("1-1:1.1", 8, 6, 80, false).unwrap();
    tree.add_device("1-2", 9, 0, 1, false).unwrap();
    // Device descriptor, configuration descriptor, then one interface descriptor.
    let desc = |class: u8| {
        let mut d = vec![
            18, 1, 0, 2, 0, 0, 0, 64, 0x81, 0x07, 0x67, 0x55, 0, 1, 1, 2, 3, 1,
        ];
        d.extend([9, 2, 25, 0, 1, 1, 0, 0x80, 50]);
        d.extend([9, 4, 0, 0, 1, class, 1, 1, 0]);
        d.extend([7, 5, 0x81, 3, 8, 0, 10]);
        d
    };
    tree.add_device("1-3", 0, 0, 0, false).unwrap();
    std::fs::write(tree.dir("1-3").join("descriptors"), desc(3)).unwrap();
    tree.add_device("1-4", 0, 0, 0, false).unwrap();
    std::fs::write(tree.dir("1-4").join("descriptors"), desc(8)).unwrap();
    let state = tmp.path().join("run/usb-handler.state");
    Rig {
        _tmp: tmp,
        tree,
        state,
    }
}

impl Rig {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("sh")
            .arg(script())
            .args(args)
            .env("KUBEARMOR_USB_STATE", &self.state)
            .env_remove("SYSFS_ROOT")
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A state file naming a process that is not running, holding usb1 (originals 1).
    fn dead_daemon_state(&self) {
        std::fs::create_dir_all(self.state.parent().unwrap()).unwrap();
        std::fs::write(
            &self.state,
            format!(
                "# test\npid 2147483646 12345\nsysfs {}\ndefault usb1 authorized_default 1\ndefault usb1 interface_authorized_default 1\n",
                self.tree.root().display()
            ),
        )
        .unwrap();
    }

    /// A state file written by this (live) process, as the daemon writes it.
    fn live_daemon_state(&self) {
        let mut s = State::default();
        s.defaults.insert(
            1,
            BusDefaults {
                authorized_default: Some("1".into()),
                interface_authorized_default: Some("1".into()),
            },
        );
        s.save(&self.state, self.tree.root()).unwrap();
    }

    fn authorized(&self, name: &str) -> String {
        self.tree.get(name, Attr::Authorized).unwrap()
    }

    fn all(&self) -> Vec<String> {
        ["1-1:1.0", "1-1:1.1", "1-2", "1-3", "1-4"]
            .iter()
            .map(|n| self.authorized(n))
            .collect()
    }
}

#[test]
fn nothing_while_the_daemon_runs() {
    let r = rig();
    r.live_daemon_state();
    for n in ["1-1:1.0", "1-1:1.1", "1-2", "1-3", "1-4"] {
        r.run(&["device", n]);
    }
    r.run(&["restore"]);
    assert_eq!(r.all(), ["0", "0", "0", "0", "0"]);
    assert_eq!(r.tree.get("usb1", Attr::AuthorizedDefault).unwrap(), "0");
    let out = r.run(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("USB handler running"));
}

#[test]
fn nothing_without_a_state_file() {
    let r = rig();
    r.run(&["device", "1-1:1.0"]);
    r.run(&["restore"]);
    assert_eq!(r.authorized("1-1:1.0"), "0");
}

#[test]
fn udev_mode_lets_only_keyboards_and_hubs_through() {
    let r = rig();
    r.dead_daemon_state();
    for n in ["1-1:1.0", "1-1:1.1", "1-2", "1-3", "1-4"] {
        r.run(&["device", n]);
    }
    // keyboard interface, storage interface, hub, composite with HID, composite without.
    assert_eq!(r.all(), ["1", "0", "1", "1", "0"]);
    assert_eq!(r.tree.last_probe().unwrap(), "1-3");
    // Defaults are left to `restore`; the state file stays for the next daemon start.
    assert_eq!(r.tree.get("usb1", Attr::AuthorizedDefault).unwrap(), "0");
    assert!(r.state.exists());
    let out = r.run(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT running"));
}

#[test]
fn restore_mode_gives_back_defaults() {
    let r = rig();
    r.dead_daemon_state();
    r.run(&["restore"]);
    assert_eq!(r.tree.get("usb1", Attr::AuthorizedDefault).unwrap(), "1");
    assert_eq!(
        r.tree
            .get("usb1", Attr::InterfaceAuthorizedDefault)
            .unwrap(),
        "1"
    );
    assert_eq!(r.all(), ["1", "0", "1", "1", "0"]);
    assert!(r.state.exists(), "kept for the next daemon start");
}

#[test]
fn hostile_input_rejected() {
    let r = rig();
    r.dead_daemon_state();
    let out = Command::new("sh")
        .arg(script())
        .args(["device", "../../../etc"])
        .env("KUBEARMOR_USB_STATE", &r.state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Damaged default lines are skipped, good ones applied.
    std::fs::write(
        &r.state,
        format!(
            "pid 2147483646 1\nsysfs {}\ndefault ../x authorized_default 1\ndefault usb1 authorized 1\ndefault usb1 authorized_default 7\ndefault usb1 interface_authorized_default 1\n",
            r.tree.root().display()
        ),
    )
    .unwrap();
    r.run(&["restore"]);
    assert_eq!(r.tree.get("usb1", Attr::AuthorizedDefault).unwrap(), "0");
    assert_eq!(
        r.tree
            .get("usb1", Attr::InterfaceAuthorizedDefault)
            .unwrap(),
        "1"
    );
    assert_eq!(r.tree.get("usb1", Attr::Authorized).unwrap(), "1");
}
