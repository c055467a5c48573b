//! Every sysfs read and write of the handler, behind [`Sysfs`], under a configurable root.
//!
//! [`DirSysfs`] works on a real directory tree: `/sys` in production, a temp-dir tree in
//! tests. [`MemSysfs`] is an in-memory fake that records every operation, and [`Recording`]
//! wraps any implementation to record what it did (with timestamps, for latency numbers).
//!
//! Device names are checked by [`crate::uevent::parse_usb_name`] before they reach a path, and
//! attributes are an enum, so no input can make the handler touch a file outside
//! `bus/usb/devices/<name>/` and `bus/usb/drivers_probe`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::uevent::parse_usb_name;

/// The attributes the handler reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    /// `0`/`1`, on devices and (since Linux 4.4) interfaces.
    Authorized,
    /// On root hubs (`usbN`): the `authorized` value new devices get.
    AuthorizedDefault,
    /// On root hubs (Linux 4.4+): the `authorized` value new interfaces get.
    InterfaceAuthorizedDefault,
    BDeviceClass,
    BDeviceSubClass,
    BDeviceProtocol,
    BInterfaceClass,
    BInterfaceSubClass,
    BInterfaceProtocol,
}

impl Attr {
    pub fn file_name(self) -> &'static str {
        match self {
            Attr::Authorized => "authorized",
            Attr::AuthorizedDefault => "authorized_default",
            Attr::InterfaceAuthorizedDefault => "interface_authorized_default",
            Attr::BDeviceClass => "bDeviceClass",
            Attr::BDeviceSubClass => "bDeviceSubClass",
            Attr::BDeviceProtocol => "bDeviceProtocol",
            Attr::BInterfaceClass => "bInterfaceClass",
            Attr::BInterfaceSubClass => "bInterfaceSubClass",
            Attr::BInterfaceProtocol => "bInterfaceProtocol",
        }
    }
}

/// Largest attribute value read (sysfs attributes are at most a page; ours are a few bytes).
pub const MAX_ATTR_BYTES: u64 = 4096;
/// Most entries listed under `bus/usb/devices` (127 devices per bus times interfaces times
/// buses is far below this).
pub const MAX_DEVICES: usize = 65_536;

/// sysfs as the handler sees it. Implementations must be cheap and non-blocking: sysfs
/// attribute I/O is in-memory in the kernel.
pub trait Sysfs: Send + Sync {
    /// Names under `bus/usb/devices` (root hubs, devices and interfaces).
    fn devices(&self) -> io::Result<Vec<String>>;
    /// The attribute's content with surrounding whitespace trimmed.
    fn read(&self, name: &str, attr: Attr) -> io::Result<String>;
    /// Writes `value` (no newline) to the attribute.
    fn write(&self, name: &str, attr: Attr, value: &str) -> io::Result<()>;
    /// Writes `name` to `bus/usb/drivers_probe`, asking the driver core to bind drivers.
    fn probe(&self, name: &str) -> io::Result<()>;
    /// The path shown in events (`SysPath=`), e.g. `/sys/bus/usb/devices/1-1:1.0`.
    fn display_path(&self, name: &str) -> String;
}

fn check_name(name: &str) -> io::Result<()> {
    parse_usb_name(name)
        .map(|_| ())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

/// sysfs on a directory tree (`/sys`, or a fake tree in tests).
#[derive(Debug, Clone)]
pub struct DirSysfs {
    root: PathBuf,
}

impl DirSysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn devices_dir(&self) -> PathBuf {
        self.root.join("bus/usb/devices")
    }

    fn attr_path(&self, name: &str, attr: Attr) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.devices_dir().join(name).join(attr.file_name()))
    }
}

impl Sysfs for DirSysfs {
    fn devices(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.devices_dir())? {
            let entry = entry?;
            if out.len() >= MAX_DEVICES {
                return Err(io::Error::other(format!(
                    "more than {MAX_DEVICES} entries under {}",
                    self.devices_dir().display()
                )));
            }
            // Entries are symlinks on a real sysfs; names that are not USB names are skipped.
            if let Some(n) = entry.file_name().to_str() {
                if parse_usb_name(n).is_ok() {
                    out.push(n.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, name: &str, attr: Attr) -> io::Result<String> {
        let f = fs::File::open(self.attr_path(name, attr)?)?;
        let mut s = String::new();
        f.take(MAX_ATTR_BYTES).read_to_string(&mut s)?;
        Ok(s.trim().to_string())
    }

    fn write(&self, name: &str, attr: Attr, value: &str) -> io::Result<()> {
        // As `echo VALUE > attr`: no O_CREAT, so a missing attribute is an error, not a file.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.attr_path(name, attr)?)?;
        f.write_all(value.as_bytes())
    }

    fn probe(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        // The kernel looks the name up verbatim: no trailing newline.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.root.join("bus/usb/drivers_probe"))?;
        f.write_all(name.as_bytes())
    }

    fn display_path(&self, name: &str) -> String {
        self.devices_dir().join(name).display().to_string()
    }
}

/// One sysfs operation, as recorded by [`MemSysfs`] and [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write {
        name: String,
        attr: Attr,
        value: String,
    },
    Probe(String),
}

impl Op {
    pub fn write(name: &str, attr: Attr, value: &str) -> Self {
        Op::Write {
            name: name.into(),
            attr,
            value: value.into(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An in-memory sysfs that records every write and probe. Behaves like the kernel in one
/// respect only: writes to attributes that do not exist fail.
#[derive(Debug, Default)]
pub struct MemSysfs {
    attrs: Mutex<BTreeMap<(String, Attr), String>>,
    ops: Mutex<Vec<Op>>,
    /// Writes to these (name, attribute) pairs fail with EIO.
    failing: Mutex<Vec<(String, Attr)>>,
}

impl MemSysfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets an attribute without recording an operation (test setup).
    pub fn set(&self, name: &str, attr: Attr, value: &str) {
        lock(&self.attrs).insert((name.to_string(), attr), value.to_string());
    }

    pub fn get(&self, name: &str, attr: Attr) -> Option<String> {
        lock(&self.attrs).get(&(name.to_string(), attr)).cloned()
    }

    /// Removes every attribute of `name` (unplug).
    pub fn remove(&self, name: &str) {
        lock(&self.attrs).retain(|(n, _), _| n != name);
    }

    /// Adds a root hub with `authorized_default` and `interface_authorized_default` 1.
    pub fn add_root_hub(&self, bus: u32) {
        let n = format!("usb{bus}");
        self.set(&n, Attr::Authorized, "1");
        self.set(&n, Attr::AuthorizedDefault, "1");
        self.set(&n, Attr::InterfaceAuthorizedDefault, "1");
        self.set(&n, Attr::BDeviceClass, "09");
    }

    /// Adds a device with its class codes (hex in sysfs, as the kernel prints them).
    pub fn add_device(&self, name: &str, class: u8, sub: u8, proto: u8, authorized: bool) {
        self.set(name, Attr::Authorized, if authorized { "1" } else { "0" });
        self.set(name, Attr::BDeviceClass, &format!("{class:02x}"));
        self.set(name, Attr::BDeviceSubClass, &format!("{sub:02x}"));
        self.set(name, Attr::BDeviceProtocol, &format!("{proto:02x}"));
    }

    pub fn add_interface(&self, name: &str, class: u8, sub: u8, proto: u8, authorized: bool) {
        self.set(name, Attr::Authorized, if authorized { "1" } else { "0" });
        self.set(name, Attr::BInterfaceClass, &format!("{class:02x}"));
        self.set(name, Attr::BInterfaceSubClass, &format!("{sub:02x}"));
        self.set(name, Attr::BInterfaceProtocol, &format!("{proto:02x}"));
    }

    pub fn fail_writes(&self, name: &str, attr: Attr) {
        lock(&self.failing).push((name.to_string(), attr));
    }

    /// Operations so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        lock(&self.ops).clone()
    }

    /// Returns and clears the operations so far.
    pub fn take_ops(&self) -> Vec<Op> {
        std::mem::take(&mut *lock(&self.ops))
    }
}

impl Sysfs for MemSysfs {
    fn devices(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = lock(&self.attrs).keys().map(|(n, _)| n.clone()).collect();
        names.dedup();
        Ok(names)
    }

    fn read(&self, name: &str, attr: Attr) -> io::Result<String> {
        check_name(name)?;
        self.get(name, attr)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn write(&self, name: &str, attr: Attr, value: &str) -> io::Result<()> {
        check_name(name)?;
        if lock(&self.failing)
            .iter()
            .any(|(n, a)| n == name && *a == attr)
        {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut attrs = lock(&self.attrs);
        let slot = attrs
            .get_mut(&(name.to_string(), attr))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        *slot = value.to_string();
        lock(&self.ops).push(Op::write(name, attr, value));
        Ok(())
    }

    fn probe(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        lock(&self.ops).push(Op::Probe(name.to_string()));
        Ok(())
    }

    fn display_path(&self, name: &str) -> String {
        format!("/sys/bus/usb/devices/{name}")
    }
}

/// Wraps a [`Sysfs`] and records every successful write and probe with the instant it
/// completed.
#[derive(Debug)]
pub struct Recording<S> {
    inner: S,
    ops: Mutex<Vec<(Instant, Op)>>,
}

impl<S: Sysfs> Recording<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            ops: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn ops(&self) -> Vec<Op> {
        lock(&self.ops).iter().map(|(_, o)| o.clone()).collect()
    }

    pub fn timed_ops(&self) -> Vec<(Instant, Op)> {
        lock(&self.ops).clone()
    }

    pub fn clear(&self) {
        lock(&self.ops).clear();
    }
}

impl<S: Sysfs> Sysfs for Recording<S> {
    fn devices(&self) -> io::Result<Vec<String>> {
        self.inner.devices()
    }

    fn read(&self, name: &str, attr: Attr) -> io::Result<String> {
        self.inner.read(name, attr)
    }

    fn write(&self, name: &str, attr: Attr, value: &str) -> io::Result<()> {
        self.inner.write(name, attr, value)?;
        lock(&self.ops).push((Instant::now(), Op::write(name, attr, value)));
        Ok(())
    }

    fn probe(&self, name: &str) -> io::Result<()> {
        self.inner.probe(name)?;
        lock(&self.ops).push((Instant::now(), Op::Probe(name.to_string())));
        Ok(())
    }

    fn display_path(&self, name: &str) -> String {
        self.inner.display_path(name)
    }
}

impl<S: Sysfs + ?Sized> Sysfs for std::sync::Arc<S> {
    fn devices(&self) -> io::Result<Vec<String>> {
        (**self).devices()
    }
    fn read(&self, name: &str, attr: Attr) -> io::Result<String> {
        (**self).read(name, attr)
    }
    fn write(&self, name: &str, attr: Attr, value: &str) -> io::Result<()> {
        (**self).write(name, attr, value)
    }
    fn probe(&self, name: &str) -> io::Result<()> {
        (**self).probe(name)
    }
    fn display_path(&self, name: &str) -> String {
        (**self).display_path(name)
    }
}

/// Builds a fake sysfs tree under a directory (tests, examples): the same layout as
/// `/sys/bus/usb`, with plain files for attributes and for `drivers_probe`.
#[derive(Debug, Clone)]
pub struct FakeTree {
    root: PathBuf,
}

impl FakeTree {
    /// Creates `bus/usb/devices` and `bus/usb/drivers_probe` under `root`.
    pub fn create(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("bus/usb/devices"))?;
        fs::write(root.join("bus/usb/drivers_probe"), "")?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join("bus/usb/devices").join(name)
    }

    fn put(&self, name: &str, attrs: &[(Attr, String)]) -> io::Result<()> {
        let d = self.dir(name);
        fs::create_dir_all(&d)?;
        for (a, v) in attrs {
            fs::write(d.join(a.file_name()), format!("{v}\n"))?;
        }
        Ok(())
    }

    pub fn add_root_hub(&self, bus: u32) -> io::Result<()> {
        self.put(
            &format!("usb{bus}"),
            &[
                (Attr::Authorized, "1".into()),
                (Attr::AuthorizedDefault, "1".into()),
                (Attr::InterfaceAuthorizedDefault, "1".into()),
                (Attr::BDeviceClass, "09".into()),
            ],
        )
    }

    pub fn add_device(
        &self,
        name: &str,
        class: u8,
        sub: u8,
        proto: u8,
        authorized: bool,
    ) -> io::Result<()> {
        self.put(
            name,
            &[
                (Attr::Authorized, u8::from(authorized).to_string()),
                (Attr::BDeviceClass, format!("{class:02x}")),
                (Attr::BDeviceSubClass, format!("{sub:02x}")),
                (Attr::BDeviceProtocol, format!("{proto:02x}")),
            ],
        )
    }

    pub fn add_interface(
        &self,
        name: &str,
        class: u8,
        sub: u8,
        proto: u8,
        authorized: bool,
    ) -> io::Result<()> {
        self.put(
            name,
            &[
                (Attr::Authorized, u8::from(authorized).to_string()),
                (Attr::BInterfaceClass, format!("{class:02x}")),
                (Attr::BInterfaceSubClass, format!("{sub:02x}")),
                (Attr::BInterfaceProtocol, format!("{proto:02x}")),
            ],
        )
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_dir_all(self.dir(name))
    }

    /// An attribute's content, trimmed; `None` when missing.
    pub fn get(&self, name: &str, attr: Attr) -> Option<String> {
        fs::read_to_string(self.dir(name).join(attr.file_name()))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn set(&self, name: &str, attr: Attr, value: &str) -> io::Result<()> {
        fs::write(self.dir(name).join(attr.file_name()), value)
    }

    /// The last name written to `drivers_probe`.
    pub fn last_probe(&self) -> Option<String> {
        fs::read_to_string(self.root.join("bus/usb/drivers_probe")).ok()
    }
}

/// Parses a sysfs class attribute (`%02x`).
pub fn parse_hex_u8(s: &str) -> Option<u8> {
    let s = s.trim();
    if s.is_empty() || s.len() > 2 {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dir_sysfs_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let t = FakeTree::create(tmp.path()).unwrap();
        t.add_root_hub(1).unwrap();
        t.add_device("1-1", 0, 0, 0, true).unwrap();
        t.add_interface("1-1:1.0", 8, 6, 0x50, true).unwrap();
        std::fs::write(t.dir("not-usb-name"), "").unwrap();
        let s = DirSysfs::new(tmp.path());
        assert_eq!(s.devices().unwrap(), ["1-1", "1-1:1.0", "usb1"]);
        assert_eq!(s.read("1-1:1.0", Attr::BInterfaceProtocol).unwrap(), "50");
        s.write("1-1:1.0", Attr::Authorized, "0").unwrap();
        assert_eq!(t.get("1-1:1.0", Attr::Authorized).unwrap(), "0");
        s.probe("1-1:1.0").unwrap();
        assert_eq!(t.last_probe().unwrap(), "1-1:1.0");
        // No attribute is ever created, and no name leaves bus/usb/devices.
        assert!(s.write("1-1", Attr::BInterfaceClass, "1").is_err());
        assert!(!t.dir("1-1").join("bInterfaceClass").exists());
        assert!(s.read("../../..", Attr::Authorized).is_err());
        assert!(s.write("1-1/../1-1", Attr::Authorized, "1").is_err());
        assert!(s.probe("x/y").is_err());
        assert_eq!(
            s.display_path("1-1"),
            format!("{}/bus/usb/devices/1-1", tmp.path().display())
        );
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex_u8("08\n"), Some(8));
        assert_eq!(parse_hex_u8("ff"), Some(255));
        assert_eq!(parse_hex_u8("e0"), Some(224));
        assert_eq!(parse_hex_u8(""), None);
        assert_eq!(parse_hex_u8("100"), None);
        assert_eq!(parse_hex_u8("zz"), None);
    }

    #[test]
    fn mem_records() {
        let s = MemSysfs::new();
        s.add_device("1-1", 8, 6, 80, true);
        s.write("1-1", Attr::Authorized, "0").unwrap();
        s.probe("1-1").unwrap();
        assert!(s.write("1-2", Attr::Authorized, "0").is_err());
        assert_eq!(
            s.take_ops(),
            [
                Op::write("1-1", Attr::Authorized, "0"),
                Op::Probe("1-1".into())
            ]
        );
        assert!(s.ops().is_empty());
    }
}
