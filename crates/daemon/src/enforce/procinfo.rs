//! Process facts for events, read from procfs (never from a filesystem a plane marks).

use std::fs;
use std::path::{Path, PathBuf};

/// What an event says about the acting process. Reads are best effort: a process that has
/// already exited leaves fields empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// pid in the host's pid namespace.
    pub host_pid: u32,
    pub host_ppid: u32,
    /// pid and ppid as the process's own pid namespace sees them.
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Executable path (ProcessName).
    pub exe: String,
    /// Parent's executable path (ParentProcessName).
    pub parent_exe: String,
    /// Command line, space separated (Source for non-exec events).
    pub cmdline: String,
    pub tty: bool,
}

#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl Procfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn process(&self, host_pid: u32) -> ProcessInfo {
        let dir = self.root.join(host_pid.to_string());
        let status = fs::read_to_string(dir.join("status")).unwrap_or_default();
        let field = |name: &str| -> Option<&str> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        let host_ppid = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
        let uid = field("Uid:")
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        ProcessInfo {
            host_pid,
            host_ppid,
            pid: ns_pid(&status, host_pid),
            ppid: if host_ppid == 0 {
                0
            } else {
                let parent =
                    fs::read_to_string(self.root.join(host_ppid.to_string()).join("status"))
                        .unwrap_or_default();
                ns_pid(&parent, host_ppid)
            },
            uid,
            exe: self.exe(host_pid),
            parent_exe: if host_ppid == 0 {
                String::new()
            } else {
                self.exe(host_ppid)
            },
            cmdline: fs::read(dir.join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            tty: tty_nr(&dir) != 0,
        }
    }

    /// The executable as the process sees it (`/proc/<pid>/exe`, container-relative for a
    /// process in a container's mount namespace).
    pub fn exe(&self, pid: u32) -> String {
        fs::read_link(self.root.join(pid.to_string()).join("exe"))
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// The innermost pid of `NSpid:` in a status file, else `host_pid`.
fn ns_pid(status: &str, host_pid: u32) -> u32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(host_pid)
}

fn tty_nr(dir: &Path) -> i64 {
    let stat = fs::read_to_string(dir.join("stat")).unwrap_or_default();
    // Fields after the command name, which may contain spaces, closed by the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let info = Procfs::default().process(me);
        assert_eq!(info.host_pid, me);
        assert!(info.exe.ends_with(
            std::env::current_exe()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        ));
        assert!(!info.cmdline.is_empty());
        assert_ne!(info.host_ppid, 0);
    }

    #[test]
    fn gone_process_is_empty() {
        let info = Procfs::default().process(u32::MAX - 1);
        assert!(info.exe.is_empty() && info.cmdline.is_empty());
    }
}
