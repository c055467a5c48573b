//! The USB plane end to end through the real daemon binary.
//!
//! Each test creates a private network namespace (`ip netns add`), starts the daemon inside it
//! (`ip netns exec`) on a fake sysfs tree in a temp dir (`usbSysfsRoot`), with
//! `usbAcceptUserspaceUevents: true` (test only) and a temp `usbStateFile`. Fake uevents are
//! multicast from a socket opened by a thread that entered the same namespace (`setns`), so
//! they never reach the host's udevd; and the kernel's own uevents only go to the initial
//! namespace, so real devices never reach this daemon. The real `karmor` binary (next to the
//! daemon binary) reads alerts and logs over gRPC from inside the namespace and sends policies.
//!
//! Needs root and `ip` (iproute2). Without them the tests fail and say so; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Options, TestDir, BIN};
use kubearmor_usb::listener::UeventSender;
use kubearmor_usb::sysfs::{Attr, FakeTree};
use kubearmor_usb::uevent;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const HOSTNAME: &str = "test-vm";

fn block_mass_storage() -> String {
    "apiVersion: security.kubearmor.com/v1\n\
     kind: KubeArmorHostPolicy\n\
     metadata:\n  name: hsp-block-usb-storage\n\
     spec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n  \
     severity: 5\n  message: no USB storage\n  \
     device:\n    matchDevice:\n    - class: MASS-STORAGE\n  action: Block\n"
        .to_string()
}

// ---- prerequisites ------------------------------------------------------------------------

/// The `ip` binary (absolute: the daemon runs with a cleared environment).
fn ip_binary() -> String {
    if !is_root() {
        panic!(
            "the USB end-to-end tests need root: they create a network namespace (ip netns add), \
             run the daemon in it and multicast fake uevents (CAP_SYS_ADMIN, CAP_NET_ADMIN). \
             Run them as root, e.g. `sudo -E cargo test -p kubearmor-daemon --test usb`"
        );
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join("ip");
        if p.is_file() {
            return p.display().to_string();
        }
    }
    panic!(
        "the USB end-to-end tests need the `ip` command (iproute2) to create a network \
         namespace; install it (apt-get install iproute2)"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The `karmor` binary built next to the daemon binary.
fn karmor_binary() -> PathBuf {
    let p = Path::new(BIN).with_file_name("karmor");
    assert!(
        p.is_file(),
        "the karmor binary is missing at {}: build it first with `cargo build -p karmor` \
         (`cargo test --workspace` builds it)",
        p.display()
    );
    p
}

// ---- the network namespace ----------------------------------------------------------------

static NETNS_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace with `lo` up; deleted on drop.
struct Netns {
    ip: String,
    name: String,
}

fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Netns {
    fn create() -> Self {
        let ip = ip_binary();
        let name = format!(
            "kars-usb-{}-{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // A leftover of a killed run with the same pid: remove it first.
        let _ = Command::new(&ip)
            .args(["netns", "delete", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(&ip, &["netns", "add", &name]);
        let ns = Self { ip, name };
        run_ok(
            &ns.ip,
            &["netns", "exec", &ns.name, &ns.ip, "link", "set", "lo", "up"],
        );
        ns
    }

    /// `ip netns exec NAME`, to put before a command.
    fn wrapper(&self) -> Vec<String> {
        vec![
            self.ip.clone(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(&self.ip);
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// A uevent sender whose socket lives in this namespace: opened by a thread that entered
    /// it, so the calling thread stays where it is.
    fn uevent_sender(&self) -> UeventSender {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            // SAFETY: setns on a valid namespace fd; it moves only this (short-lived) thread.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns({}): {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            UeventSender::open().expect("a uevent socket in the test namespace")
        })
        .join()
        .expect("the setns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(&self.ip)
            .args(["netns", "delete", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

// ---- karmor -------------------------------------------------------------------------------

/// A running `karmor logs`, killed on drop.
struct Karmor {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Karmor {
    /// `karmor logs --json --operation device --logFilter all --limit N`, subscribed when
    /// this returns.
    fn logs(ns: &Netns, daemon: &Daemon, limit: usize) -> Self {
        let mut child = ns
            .command(&karmor_binary())
            .args([
                "logs",
                "--gRPC",
                &format!("127.0.0.1:{}", daemon.api_port),
                "--json",
                "--operation",
                "device",
                "--logFilter",
                "all",
                "--limit",
                &limit.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start karmor logs");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut k = Self {
            child,
            lines,
            stderr,
        };
        // WatchLogs is opened after WatchAlerts: both streams are registered.
        let start = Instant::now();
        while !k.stderr().contains("Started to watch logs") {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("karmor logs exited ({status}):\n{}", k.stderr());
            }
            assert!(
                start.elapsed() < WAIT,
                "karmor logs did not subscribe:\n{}",
                k.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next `n` JSON lines.
    fn take(&mut self, n: usize, daemon: &Daemon) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("karmor printed non-JSON {line:?}: {e}")),
                    Err(e) => panic!(
                        "karmor logs printed {i} of {n} events within {WAIT:?} ({e})\n\
                         karmor stderr:\n{}\ndaemon log:\n{}",
                        self.stderr(),
                        daemon.stderr()
                    ),
                }
            })
            .collect()
    }

    /// Waits for karmor to exit by itself (after `--limit` events), successfully.
    fn finish(mut self) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "karmor logs: {status}\n{}", self.stderr());
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "karmor logs did not exit after its --limit:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Karmor {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `karmor vm policy add|delete FILE` against the daemon, from inside the namespace.
fn karmor_vm_policy(ns: &Netns, daemon: &Daemon, verb: &str, file: &Path) -> String {
    let out = ns
        .command(&karmor_binary())
        .args(["vm", "policy", verb])
        .arg(file)
        .args(["--gRPC", &format!("127.0.0.1:{}", daemon.api_port)])
        .stdin(Stdio::null())
        .output()
        .expect("run karmor vm policy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "karmor vm policy {verb} failed ({}):\n{text}",
        out.status
    );
    text
}

// ---- the fake machine ---------------------------------------------------------------------

/// The fake sysfs, the uevent sender, and the daemon's environment.
struct Machine {
    tree: FakeTree,
    sender: UeventSender,
    state_file: PathBuf,
    events_file: PathBuf,
}

impl Machine {
    fn new(ns: &Netns, dir: &TestDir) -> Self {
        let tree = FakeTree::create(dir.path().join("sys")).unwrap();
        Self {
            tree,
            sender: ns.uevent_sender(),
            state_file: dir.path().join("run/usb-handler.state"),
            events_file: dir.path().join("events.jsonl"),
        }
    }

    fn options(&self, ns: &Netns) -> Options {
        let mut o = Options::default()
            .env("PLANES", "usb")
            .env("ENABLEUSBDEVICEHANDLER", "true")
            .env("ENABLEKUBEARMORHOSTPOLICY", "true")
            .env("USBSYSFSROOT", &self.tree.root().display().to_string())
            .env("USBSTATEFILE", &self.state_file.display().to_string())
            .env("USBACCEPTUSERSPACEUEVENTS", "true")
            .env("LOGPATH", &self.events_file.display().to_string())
            .env("HOST", HOSTNAME);
        o.wrapper = ns.wrapper();
        o
    }

    /// The node appears in the tree as the kernel creates it: authorized per its bus's
    /// `authorized_default` (devices) or `interface_authorized_default` (interfaces; missing
    /// before Linux 4.4, then authorized); then the `add` uevent goes out. Returns whether it
    /// arrived authorized.
    fn plug(&self, name: &str, c: u8, s: u8, p: u8) -> bool {
        let hub = format!("usb{}", name.split('-').next().unwrap());
        let interface = name.contains(':');
        let default = if interface {
            Attr::InterfaceAuthorizedDefault
        } else {
            Attr::AuthorizedDefault
        };
        let authorized = self.tree.get(&hub, default).as_deref() != Some("0");
        if interface {
            self.tree.add_interface(name, c, s, p, authorized).unwrap();
        } else {
            self.tree.add_device(name, c, s, p, authorized).unwrap();
        }
        self.sender.send(&uevent_msg("add", name, c, s, p)).unwrap();
        authorized
    }

    fn unplug(&self, name: &str, c: u8, s: u8, p: u8) {
        self.tree.remove(name).unwrap();
        self.sender
            .send(&uevent_msg("remove", name, c, s, p))
            .unwrap();
    }

    fn get(&self, name: &str, attr: Attr) -> Option<String> {
        self.tree.get(name, attr)
    }

    /// Waits until `name`'s `attr` reads `want`.
    fn wait_attr(&self, name: &str, attr: Attr, want: &str, daemon: &Daemon) {
        let start = Instant::now();
        loop {
            let got = self.get(name, attr);
            if got.as_deref() == Some(want) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{name}/{} is {got:?}, want {want:?}\ndaemon log:\n{}",
                attr.file_name(),
                daemon.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn probed(&self) -> String {
        self.tree.last_probe().unwrap_or_default()
    }
}

/// A uevent as the kernel sends it for a device (`TYPE=`) or an interface (`INTERFACE=`).
fn uevent_msg(action: &str, name: &str, c: u8, s: u8, p: u8) -> Vec<u8> {
    let device = name.split(':').next().unwrap();
    let bus = device.split('-').next().unwrap();
    let devpath = if name.contains(':') {
        format!("/devices/pci0000:00/0000:00:14.0/usb{bus}/{device}/{name}")
    } else {
        format!("/devices/pci0000:00/0000:00:14.0/usb{bus}/{name}")
    };
    uevent::encode_usb(action, &devpath, c, s, p)
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn sys_path(v: &Value) -> String {
    v.get("EventData")
        .and_then(|d| d.get("SysPath"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The event about node `name` (by its SysPath) among `events`.
fn about<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| sys_path(e).ends_with(&format!("/bus/usb/devices/{name}")))
        .unwrap_or_else(|| panic!("no event about {name} in {events:#?}"))
}

fn assert_block_alert(e: &Value, name: &str, result: &str) {
    assert_eq!(field(e, "Type"), "MatchedHostPolicy", "{e:#}");
    assert_eq!(field(e, "Operation"), "Device", "{e:#}");
    assert_eq!(field(e, "Resource"), "USB MASS-STORAGE", "{e:#}");
    assert_eq!(field(e, "Action"), "Block", "{e:#}");
    assert!(field(e, "Result").starts_with(result), "{e:#}");
    assert_eq!(field(e, "Enforcer"), "USBDeviceHandler", "{e:#}");
    assert_eq!(field(e, "PolicyName"), "hsp-block-usb-storage", "{e:#}");
    assert_eq!(field(e, "Severity"), "5", "{e:#}");
    assert_eq!(field(e, "Message"), "no USB storage", "{e:#}");
    assert_eq!(field(e, "HostName"), HOSTNAME, "{e:#}");
    assert!(
        field(e, "Data").starts_with("Class=8 SubClass=6 Protocol=80 Level=1 SysPath="),
        "{e:#}"
    );
    assert!(sys_path(e).ends_with(&format!("/{name}")), "{e:#}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---- tests --------------------------------------------------------------------------------

/// A host policy in policyDir blocks MASS-STORAGE: race-free holding of the buses, a plugged
/// stick's storage interface blocked (alert over gRPC and in logPath) while its HID interface
/// is authorized, a write to `authorized` on a bus without `interface_authorized_default`, a
/// failed sysfs write reported as `Enforcement failed`, unplug logs, and everything given
/// back on SIGTERM.
#[test]
fn host_policy_blocks_mass_storage_then_sigterm_restores() {
    let ns = Netns::create();
    let dir = TestDir::new();
    let m = Machine::new(&ns, &dir);
    m.tree.add_root_hub(1).unwrap();
    m.tree.add_root_hub(2).unwrap();
    // Bus 2 as on Linux < 4.4: new interfaces arrive authorized whatever the handler holds.
    std::fs::remove_file(m.tree.dir("usb2").join("interface_authorized_default")).unwrap();
    // A root hub's own interface is never decided, whatever class it claims (here one the
    // Block rule matches): deauthorizing it would cut off the whole bus.
    m.tree.add_interface("1-0:1.0", 8, 6, 80, true).unwrap();
    std::fs::write(
        dir.policies().join("hsp-block-usb-storage.yaml"),
        block_mass_storage(),
    )
    .unwrap();

    let daemon = Daemon::start(&dir, m.options(&ns));
    let log = daemon.stderr();
    assert!(
        log.contains("usbAcceptUserspaceUevents is true: TEST ONLY"),
        "the test-only switch is not warned about:\n{log}"
    );

    // Race-free: a Block rule exists, so both buses are held and the state file says so.
    for hub in ["usb1", "usb2"] {
        assert_eq!(
            m.get(hub, Attr::AuthorizedDefault).as_deref(),
            Some("0"),
            "{hub}\n{log}"
        );
    }
    assert_eq!(
        m.get("usb1", Attr::InterfaceAuthorizedDefault).as_deref(),
        Some("0")
    );
    let state = read(&m.state_file);
    assert!(
        state.contains(&format!("pid {} ", daemon.pid())),
        "state file names the daemon:\n{state}"
    );
    assert!(
        state.contains("default usb1 authorized_default 1")
            && state.contains("default usb1 interface_authorized_default 1")
            && state.contains("default usb2 authorized_default 1"),
        "state file keeps the original defaults:\n{state}"
    );

    // Plug: a stick with a mass-storage and a HID interface on bus 1, a stick on bus 2, and
    // a stick whose `authorized` cannot be written (a directory) on bus 2.
    // `!m.plug(..)`: held buses, so new nodes arrive unauthorized (no driver binds).
    let mut karmor = Karmor::logs(&ns, &daemon, 4);
    assert!(!m.plug("1-1", 0, 0, 0));
    // Class 0: not decided itself, but authorized so that the kernel creates its interfaces.
    m.wait_attr("1-1", Attr::Authorized, "1", &daemon);
    assert!(!m.plug("1-1:1.0", 8, 6, 80));
    assert!(!m.plug("1-1:1.1", 3, 1, 1));
    assert!(!m.plug("2-1", 0, 0, 0));
    m.wait_attr("2-1", Attr::Authorized, "1", &daemon);
    // It arrives authorized (no interface_authorized_default on bus 2): the handler writes 0.
    assert!(m.plug("2-1:1.0", 8, 6, 80));
    assert!(!m.plug("2-2", 0, 0, 0));
    m.wait_attr("2-2", Attr::Authorized, "1", &daemon);
    m.tree.add_interface("2-2:1.0", 8, 6, 80, true).unwrap();
    let authorized = m.tree.dir("2-2:1.0").join("authorized");
    std::fs::remove_file(&authorized).unwrap();
    std::fs::create_dir(&authorized).unwrap();
    m.sender
        .send(&uevent_msg("add", "2-2:1.0", 8, 6, 80))
        .unwrap();

    let plugged = karmor.take(4, &daemon);
    karmor.finish();
    assert_block_alert(about(&plugged, "1-1:1.0"), "1-1:1.0", "Permission denied");
    assert_block_alert(about(&plugged, "2-1:1.0"), "2-1:1.0", "Permission denied");
    let failed = about(&plugged, "2-2:1.0");
    assert_block_alert(failed, "2-2:1.0", "Enforcement failed: cannot deauthorize");
    let hid = about(&plugged, "1-1:1.1");
    assert_eq!(field(hid, "Type"), "HostLog", "{hid:#}");
    assert_eq!(field(hid, "Operation"), "Device", "{hid:#}");
    assert_eq!(field(hid, "Resource"), "USB HID", "{hid:#}");
    assert_eq!(field(hid, "Result"), "Passed", "{hid:#}");

    // sysfs: the storage interfaces are unauthorized (on bus 2 the handler wrote the 0), the
    // HID interface was held, then authorized and probed; the root hub interface untouched.
    assert_eq!(m.get("1-1:1.0", Attr::Authorized).as_deref(), Some("0"));
    assert_eq!(m.get("2-1:1.0", Attr::Authorized).as_deref(), Some("0"));
    assert_eq!(m.get("1-1:1.1", Attr::Authorized).as_deref(), Some("1"));
    assert_eq!(m.get("1-0:1.0", Attr::Authorized).as_deref(), Some("1"));

    // The same alerts in logPath.
    for name in ["1-1:1.0", "2-1:1.0"] {
        let start = Instant::now();
        loop {
            let lines = read(&m.events_file);
            if lines.lines().any(|l| {
                l.contains("Permission denied")
                    && l.contains("hsp-block-usb-storage")
                    && l.contains(&format!("/bus/usb/devices/{name}"))
            }) {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "logPath has no block alert for {name}:\n{lines}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Unplug the bus-1 stick: a Removed log per interface (the class-0 device has none).
    let mut karmor = Karmor::logs(&ns, &daemon, 2);
    m.unplug("1-1:1.0", 8, 6, 80);
    m.unplug("1-1:1.1", 3, 1, 1);
    m.unplug("1-1", 0, 0, 0);
    let removed = karmor.take(2, &daemon);
    karmor.finish();
    for (name, resource) in [("1-1:1.0", "USB MASS-STORAGE"), ("1-1:1.1", "USB HID")] {
        let e = about(&removed, name);
        assert_eq!(field(e, "Type"), "HostLog", "{e:#}");
        assert_eq!(field(e, "Operation"), "Device", "{e:#}");
        assert_eq!(field(e, "Resource"), resource, "{e:#}");
        assert_eq!(field(e, "Result"), "Removed", "{e:#}");
    }

    // SIGTERM: the defaults come back, the blocked interface is re-authorized and probed, and
    // the state file is gone.
    let status = daemon.stop();
    assert!(status.success(), "daemon exit: {status}");
    for hub in ["usb1", "usb2"] {
        assert_eq!(m.get(hub, Attr::AuthorizedDefault).as_deref(), Some("1"));
    }
    assert_eq!(
        m.get("usb1", Attr::InterfaceAuthorizedDefault).as_deref(),
        Some("1")
    );
    assert_eq!(m.get("2-1:1.0", Attr::Authorized).as_deref(), Some("1"));
    assert!(
        !m.state_file.exists(),
        "state file left after a clean stop:\n{}",
        read(&m.state_file)
    );
}

/// Devices connected before a policy exists: a Block policy added over gRPC
/// (`karmor vm policy add`) deauthorizes the connected stick at once and starts holding the
/// bus; deleting the policy authorizes it again (with a driver probe) and gives the bus back.
#[test]
fn policy_added_over_grpc_reevaluates_connected_devices() {
    let ns = Netns::create();
    let dir = TestDir::new();
    let m = Machine::new(&ns, &dir);
    m.tree.add_root_hub(1).unwrap();
    m.tree.add_device("1-2", 0, 0, 0, true).unwrap();
    m.tree.add_interface("1-2:1.0", 8, 6, 80, true).unwrap();
    m.tree.add_device("1-3", 0, 0, 0, true).unwrap();
    m.tree.add_interface("1-3:1.0", 3, 1, 2, true).unwrap();
    let policy = dir.path().join("block-usb-storage.yaml");
    std::fs::write(&policy, block_mass_storage()).unwrap();

    let daemon = Daemon::start(&dir, m.options(&ns));
    // No device rule: nothing is held, nothing blocked.
    assert_eq!(m.get("usb1", Attr::AuthorizedDefault).as_deref(), Some("1"));
    assert_eq!(m.get("1-2:1.0", Attr::Authorized).as_deref(), Some("1"));

    let mut karmor = Karmor::logs(&ns, &daemon, 1);
    let said = karmor_vm_policy(&ns, &daemon, "add", &policy);
    let blocked = karmor.take(1, &daemon);
    karmor.finish();
    assert_block_alert(&blocked[0], "1-2:1.0", "Permission denied");
    assert_eq!(
        m.get("1-2:1.0", Attr::Authorized).as_deref(),
        Some("0"),
        "karmor said: {said}"
    );
    assert_eq!(m.get("1-3:1.0", Attr::Authorized).as_deref(), Some("1"));
    assert_eq!(m.get("usb1", Attr::AuthorizedDefault).as_deref(), Some("0"));
    assert_eq!(
        m.get("usb1", Attr::InterfaceAuthorizedDefault).as_deref(),
        Some("0")
    );
    let kept: Vec<String> = std::fs::read_dir(dir.policies())
        .unwrap()
        .map(|e| read(&e.unwrap().path()))
        .collect();
    assert!(
        kept.iter().any(|t| t.contains("hsp-block-usb-storage")),
        "the policy added over gRPC is kept in policyDir: {kept:?}"
    );

    // Delete it: the stick is authorized again and its driver probed; the bus is released.
    let mut karmor = Karmor::logs(&ns, &daemon, 1);
    karmor_vm_policy(&ns, &daemon, "delete", &policy);
    let back = karmor.take(1, &daemon);
    karmor.finish();
    let e = about(&back, "1-2:1.0");
    assert_eq!(field(e, "Type"), "HostLog", "{e:#}");
    assert_eq!(field(e, "Resource"), "USB MASS-STORAGE", "{e:#}");
    assert_eq!(field(e, "Result"), "Passed", "{e:#}");
    m.wait_attr("1-2:1.0", Attr::Authorized, "1", &daemon);
    assert_eq!(m.probed(), "1-2:1.0");
    assert_eq!(m.get("usb1", Attr::AuthorizedDefault).as_deref(), Some("1"));
    assert_eq!(
        m.get("usb1", Attr::InterfaceAuthorizedDefault).as_deref(),
        Some("1")
    );
    let status = daemon.stop();
    assert!(status.success(), "daemon exit: {status}");
}
