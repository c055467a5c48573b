//! The handler's state file: which process holds the USB buses and the `authorized_default`
//! values to give back. `scripts/usb-escape-hatch.sh` reads it to know whether the daemon is
//! alive and what to restore; a restarted handler reads it to recover the original values and
//! to adopt the devices a killed predecessor left unauthorized.
//!
//! Format (line based, `#` comments):
//! ```text
//! pid 1234 987654            # pid and /proc/<pid>/stat start time of the holder
//! sysfs /sys
//! default usb1 authorized_default 1
//! default usb1 interface_authorized_default 1
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::sysfs::Attr;
use crate::uevent::{parse_usb_name, UsbName};

/// Largest state file read.
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// Original values of one root hub's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusDefaults {
    pub authorized_default: Option<String>,
    pub interface_authorized_default: Option<String>,
}

impl BusDefaults {
    pub fn get(&self, attr: Attr) -> Option<&str> {
        match attr {
            Attr::AuthorizedDefault => self.authorized_default.as_deref(),
            Attr::InterfaceAuthorizedDefault => self.interface_authorized_default.as_deref(),
            _ => None,
        }
    }

    fn slot(&mut self, attr: Attr) -> Option<&mut Option<String>> {
        match attr {
            Attr::AuthorizedDefault => Some(&mut self.authorized_default),
            Attr::InterfaceAuthorizedDefault => Some(&mut self.interface_authorized_default),
            _ => None,
        }
    }
}

/// The content of a state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Bus number to original defaults.
    pub defaults: BTreeMap<u32, BusDefaults>,
}

/// A value `authorized_default` can hold (-1 to 2) or `interface_authorized_default` (0, 1).
fn valid_value(v: &str) -> bool {
    matches!(v, "-1" | "0" | "1" | "2")
}

impl State {
    /// Reads a state file; a missing file is an empty state. Lines that do not parse are
    /// skipped with a warning (the file is ours, but a damaged one must not stop the daemon).
    pub fn load(path: &Path) -> io::Result<Self> {
        let text = match fs::metadata(path) {
            Ok(m) if m.len() > MAX_STATE_BYTES => {
                return Err(io::Error::other(format!(
                    "{} is {} bytes; the limit is {MAX_STATE_BYTES}",
                    path.display(),
                    m.len()
                )))
            }
            Ok(_) => fs::read_to_string(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        Ok(Self::parse(&text, path))
    }

    fn parse(text: &str, path: &Path) -> Self {
        let mut state = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] | ["pid", ..] | ["sysfs", ..] => {}
                ["default", bus, attr, value] => {
                    let bus = match parse_usb_name(bus) {
                        Ok(UsbName::RootHub { bus }) => bus,
                        _ => {
                            warn(path, n, line);
                            continue;
                        }
                    };
                    let attr = match *attr {
                        "authorized_default" => Attr::AuthorizedDefault,
                        "interface_authorized_default" => Attr::InterfaceAuthorizedDefault,
                        _ => {
                            warn(path, n, line);
                            continue;
                        }
                    };
                    if !valid_value(value) {
                        warn(path, n, line);
                        continue;
                    }
                    if let Some(slot) = state.defaults.entry(bus).or_default().slot(attr) {
                        *slot = Some((*value).to_string());
                    }
                }
                _ => warn(path, n, line),
            }
        }
        state
    }

    fn render(&self, sysfs_root: &Path) -> String {
        let mut out = String::from(
            "# kubearmor-rs USB device handler state; read by usb-escape-hatch.sh (docs/usb.md)\n",
        );
        out.push_str(&format!(
            "pid {} {}\n",
            std::process::id(),
            own_start_time()
        ));
        out.push_str(&format!("sysfs {}\n", sysfs_root.display()));
        for (bus, d) in &self.defaults {
            for attr in [Attr::AuthorizedDefault, Attr::InterfaceAuthorizedDefault] {
                if let Some(v) = d.get(attr) {
                    out.push_str(&format!("default usb{bus} {} {v}\n", attr.file_name()));
                }
            }
        }
        out
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path, sysfs_root: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.exists()) {
            // The daemon's run directory (/run/kubearmor) also holds ka.sock and the gRPC
            // socket: whoever creates it makes it root-only.
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750))?;
        }
        let tmp = tmp_path(path);
        fs::write(&tmp, self.render(sysfs_root))?;
        fs::rename(&tmp, path)
    }

    pub fn remove(path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn warn(path: &Path, n: usize, line: &str) {
    tracing::warn!(
        "{}:{}: ignoring unrecognised USB handler state line {:?}",
        path.display(),
        n + 1,
        line
    );
}

/// Field 22 of `/proc/self/stat` (start time in clock ticks), which with the pid identifies
/// this process even after pid reuse; 0 if unreadable.
fn own_start_time() -> u64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name (field 2) may hold spaces and parentheses; fields after the
            // last ')' start at field 3.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(19)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/usb.state");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut s = State::default();
        s.defaults.insert(
            1,
            BusDefaults {
                authorized_default: Some("1".into()),
                interface_authorized_default: Some("1".into()),
            },
        );
        s.defaults.insert(
            12,
            BusDefaults {
                authorized_default: Some("-1".into()),
                interface_authorized_default: None,
            },
        );
        s.save(&path, Path::new("/sys")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("default usb12 authorized_default -1\n"),
            "{text}"
        );
        assert!(text.contains(&format!("pid {} ", std::process::id())));
        assert!(!text.contains("pid 1 0\n"));
        assert_eq!(State::load(&path).unwrap(), s);
        State::remove(&path).unwrap();
        State::remove(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn damaged_lines_skipped() {
        let s = State::parse(
            "default usb1 authorized_default 1\ndefault usb2 authorized_default 7\ndefault 1-1 authorized_default 1\ndefault usb3 authorized 1\ngarbage\ndefault usb4 interface_authorized_default 0 # c\n",
            Path::new("x"),
        );
        assert_eq!(s.defaults.len(), 2);
        assert_eq!(s.defaults[&1].authorized_default.as_deref(), Some("1"));
        assert_eq!(
            s.defaults[&4].interface_authorized_default.as_deref(),
            Some("0")
        );
    }

    #[test]
    fn start_time_is_read() {
        assert!(own_start_time() > 0);
    }
}
