//! Facts about the machine the daemon runs on: node id, OS image, kernel, architecture.
//! Read once at start; every lookup has a fallback, none fails the start.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `NodeID` of events: the machine id, else the host name.
    pub node_id: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    pub kernel_version: String,
    /// Go's names (`amd64`, `arm64`), as upstream reports them.
    pub architecture: String,
    pub kernel_headers: bool,
}

impl HostInfo {
    pub fn gather(machine_id_path: &Path, host: &str) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let node_id = [machine_id_path, Path::new("/var/lib/dbus/machine-id")]
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| host.to_string());
        let kernel_version = read("/proc/sys/kernel/osrelease").trim().to_string();
        let os_image = os_pretty_name(&read("/etc/os-release"));
        let kernel_headers = !kernel_version.is_empty()
            && Path::new(&format!("/lib/modules/{kernel_version}/build")).exists();
        Self {
            node_id,
            os_image,
            kernel_version,
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            kernel_headers,
        }
    }
}

/// `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` -> `Debian GNU/Linux 12 (bookworm)`.
pub fn os_pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The machine's host name (default of the `host` key).
pub fn hostname() -> String {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = text.trim();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(os_pretty_name(text), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_pretty_name(""), "");
    }

    #[test]
    fn gather_never_fails() {
        let h = HostInfo::gather(Path::new("/nonexistent/machine-id"), "vm-1");
        assert!(!h.node_id.is_empty());
        assert!(!h.architecture.is_empty());
    }
}
