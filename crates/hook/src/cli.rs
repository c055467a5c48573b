//! Command line. Upstream's hook uses Go's `flag` package, which also accepts single-dash long
//! flags (`-kubearmor-socket x`); [`normalize_args`] maps those to `--` so existing hook
//! configurations keep working.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Environment variable that turns on fail-closed mode (`1`, `true`, `yes`).
pub const FAIL_CLOSED_ENV: &str = "KUBEARMOR_HOOK_FAIL_CLOSED";

/// OCI hook (createRuntime / poststop; prestart accepted) that registers containers with the
/// kubearmor daemon over ka.sock. Reads the OCI state on stdin.
#[derive(Debug, Clone, Parser)]
#[command(name = "kubearmor-hook", version)]
pub struct Cli {
    /// The daemon's socket.
    #[arg(long, default_value = kubearmor_containers::server::DEFAULT_SOCKET)]
    pub kubearmor_socket: PathBuf,

    /// Accepted for compatibility with upstream hook configurations (CRI-O / containerd
    /// socket); not needed: everything is read from the OCI bundle and /proc.
    #[arg(long)]
    pub runtime_socket: Option<String>,

    /// Replay mode (upstream `--detached`): send every running runc container to the daemon as
    /// `detached` messages on one connection, which opens an upstream-style readiness gate.
    #[arg(long)]
    pub detached: bool,

    /// Fail container creation (exit 1) when the daemon cannot be reached or rejects the
    /// container. The default (fail-open) exits 0 so containers always start, as upstream.
    /// Also set by KUBEARMOR_HOOK_FAIL_CLOSED=1.
    #[arg(long)]
    pub fail_closed: bool,

    /// How long to wait for the daemon's reply (including retries while it answers `err`).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,

    /// Also append the container record (a JSON line) to this file, e.g. /run/output.json for
    /// the daemon's `hookPath`.
    #[arg(long)]
    pub hook_path: Option<PathBuf>,

    /// Append logs to this file instead of stderr (upstream podman hook flag).
    #[arg(long)]
    pub log_path: Option<PathBuf>,

    /// Where procfs is mounted.
    #[arg(long, default_value = "/proc")]
    pub procfs: PathBuf,

    /// runc state roots scanned in --detached mode (repeatable; default: runc, containerd and
    /// docker roots).
    #[arg(long)]
    pub runc_root: Vec<PathBuf>,
}

impl Cli {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `--fail-closed`, or the environment variable.
    pub fn fail_closed(&self, env: Option<&str>) -> bool {
        self.fail_closed
            || env.is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
    }
}

/// Go-style `-flag` → `--flag` for our long flags (single letters are left alone).
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.len() > 2 && a.starts_with('-') && !a.starts_with("--") {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(|s| s.to_string()))).unwrap()
    }

    #[test]
    fn upstream_hooks_d_arguments() {
        let c = parse(&[
            "/usr/share/kubearmor/hook",
            "--runtime-socket",
            "unix:///var/run/crio/crio.sock",
        ]);
        assert_eq!(
            c.kubearmor_socket,
            PathBuf::from("/var/run/kubearmor/ka.sock")
        );
        assert_eq!(
            c.runtime_socket.as_deref(),
            Some("unix:///var/run/crio/crio.sock")
        );
        assert!(!c.detached);
        assert!(!c.fail_closed(None));
        assert_eq!(c.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn go_style_single_dash_flags() {
        let c = parse(&[
            "hook",
            "-kubearmor-socket",
            "/tmp/ka.sock",
            "-detached",
            "-runtime-socket=/run/containerd/containerd.sock",
        ]);
        assert_eq!(c.kubearmor_socket, PathBuf::from("/tmp/ka.sock"));
        assert!(c.detached);
        assert_eq!(
            c.runtime_socket.as_deref(),
            Some("/run/containerd/containerd.sock")
        );
    }

    #[test]
    fn fail_mode() {
        let c = parse(&["hook", "--fail-closed", "--timeout-ms", "100"]);
        assert!(c.fail_closed(None));
        assert_eq!(c.timeout(), Duration::from_millis(100));
        let c = parse(&["hook"]);
        assert!(c.fail_closed(Some("1")));
        assert!(c.fail_closed(Some("TRUE")));
        assert!(!c.fail_closed(Some("0")));
        assert!(!c.fail_closed(Some("")));
    }

    #[test]
    fn hook_path_and_roots() {
        let c = parse(&[
            "hook",
            "--hook-path",
            "/run/output.json",
            "--runc-root",
            "/a",
            "--runc-root",
            "/b",
        ]);
        assert_eq!(c.hook_path, Some(PathBuf::from("/run/output.json")));
        assert_eq!(c.runc_root.len(), 2);
    }
}
