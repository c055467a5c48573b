//! Daemon configuration: every key of KubeArmor's `kubearmor.yaml` plus a few of ours.
//!
//! Resolution is a pure function, [`resolve`]: (config file text, environment, command-line
//! flags, host name) in, a typed [`Config`] (or every problem found) out. Precedence is
//! upstream's: **environment > config file > command-line flag > built-in default**; the
//! environment variable of a key is the key in upper case (`defaultFilePosture` ->
//! `DEFAULTFILEPOSTURE`). Keys are matched case-insensitively, as viper does.
//!
//! Unlike upstream, values are checked: a posture that is neither `audit` nor `block`, a port
//! that is not a number, a negative rate... stop the start with a message naming the key, the
//! value and where it came from. Unknown keys in the file are warnings that name the key and a
//! close match.
//!
//! Built-in defaults are those of a systemd (non-Kubernetes) install: `k8s: false` and host
//! policies enabled, unlike upstream's flag defaults (which target the Kubernetes DaemonSet).
//!
//! Layout: `keys` names every key once ([`Key`], [`KEYS`]); `sources` reads and merges the
//! command line, file and environment into raw text; `values` types that text (`Typer`, which
//! records each key's resolved text for the startup log); this module resolves and groups the
//! result into the sections each part of the daemon receives ([`GrpcConfig`], [`HookConfig`],
//! [`UsbConfig`], [`FanotifyConfig`], [`ThrottleConfig`]); `describe` renders `--help`.
//! Adding a key: a `keys!` entry, a line in `resolve` (or a section function), a field, and the
//! key in `examples/kubearmor.yaml` (a test checks it).

mod describe;
mod keys;
mod sources;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubearmor_policy::{Posture, Postures};

pub use describe::usage;
pub use keys::{find_key, DefaultValue, Effect, Key, KeySpec, Kind, KEYS};
pub use sources::{locate, parse_args, read_file, Args, ConfigLocation};
pub use values::{close_match, parse_bool, parse_go_duration, parse_visibility};

use values::Typer;

/// Environment variable naming the config file when no positional argument is given.
pub const CONFIG_ENV: &str = "KUBEARMOR_CFG";
/// File name looked up beside the binary.
pub const CONFIG_FILE_NAME: &str = "kubearmor.yaml";
/// TEST ONLY: a Unix socket path on which the daemon accepts JSON-lines events and injects them
/// into the event pipeline (see `test_source`). Never set this in production.
pub const TEST_EVENT_SOCKET_ENV: &str = "KUBEARMOR_TEST_EVENT_SOCKET";
/// Whether this build has the test-only hooks (`test-hooks` feature): the event-injection
/// socket and `usbAcceptUserspaceUevents`. Release builds do not; setting either is then a
/// configuration error.
pub const TEST_HOOKS: bool = cfg!(feature = "test-hooks");
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    Flag,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::Flag => f.write_str("command line"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// One bad value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub value: String,
    pub source: Source,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value {:?} (from {}): {}",
            self.key, self.value, self.source, self.reason
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("command line: {0}")]
    Args(String),
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(ps: &[Problem]) -> String {
    ps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which visibility scopes are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Visibility {
    pub process: bool,
    pub file: bool,
    pub network: bool,
    pub capabilities: bool,
    pub dns: bool,
    pub ima: bool,
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = [
            (self.process, "process"),
            (self.file, "file"),
            (self.network, "network"),
            (self.capabilities, "capabilities"),
            (self.dns, "dns"),
            (self.ima, "ima"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| *w)
        .collect();
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join(","))
        }
    }
}

/// Where the JSON lines of events go (`logPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPath {
    None,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub max_alerts_per_sec: u32,
    pub throttle_secs: u32,
}

/// The gRPC servers (`gRPC`, `gRPCHealthPort`, TLS keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcConfig {
    pub port: u16,
    pub health_port: u16,
    /// `gRPCListenAddress`; `None`: every address, IPv6 and IPv4.
    pub listen_address: Option<std::net::IpAddr>,
    /// `gRPCSocket`: the API on a root-only Unix socket; `None`: off.
    pub unix_socket: Option<PathBuf>,
    pub tls_enabled: bool,
    pub tls_cert_path: PathBuf,
    pub tls_cert_provider: String,
}

/// Container registration through OCI hooks (`useOCIHooks`, `hookPath`, `kaSocket`,
/// `runcStateDirs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    pub use_oci_hooks: bool,
    /// Hook records file read at start (CoCo).
    pub hook_path: Option<PathBuf>,
    pub ka_socket: PathBuf,
    /// `kaSocketMode`: the socket file's permission bits.
    pub ka_socket_mode: u32,
    /// runc state roots the start-up rescan reads; empty: no rescan.
    pub runc_state_dirs: Vec<PathBuf>,
}

/// The USB device handler (`enableUSBDeviceHandler`, `usb*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbConfig {
    pub enabled: bool,
    pub sysfs_root: PathBuf,
    /// Where the handler keeps its state file (`None`: no state file, no escape hatch).
    pub state_file: Option<PathBuf>,
    /// TEST ONLY: the handler accepts uevents that userspace processes send (any root process
    /// could then forge device events). Integration tests inject fake uevents this way.
    pub accept_userspace_uevents: bool,
}

/// The fanotify plane (`fanotifyFailMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FanotifyConfig {
    /// `fanotifyFailMode: closed`: deny what cannot be decided.
    pub fail_closed: bool,
}

/// The resolved configuration. Upstream key names stay flat (viper); the parts each plane or
/// server needs are grouped in sections it receives alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cluster: String,
    pub host: String,
    pub k8s: bool,
    pub grpc: GrpcConfig,
    pub log_path: LogPath,
    pub debug: bool,
    pub container_policy: bool,
    pub host_policy: bool,
    pub vm_mode: bool,
    pub state_agent: bool,
    pub visibility: Visibility,
    pub host_visibility: Visibility,
    pub container_postures: Postures,
    pub host_postures: Postures,
    pub throttle: ThrottleConfig,
    pub lsm: Vec<String>,
    pub bpf_fs_path: PathBuf,
    pub enforcer_alerts: bool,
    pub default_posture_logs: bool,
    pub procfs_mount: PathBuf,
    pub machine_id_path: PathBuf,
    pub hooks: HookConfig,
    pub cri_socket: String,
    pub nri_socket: String,
    pub nri_index: u8,
    pub enable_nri: bool,
    pub untracked_ns: Vec<String>,
    pub selinux_profile_dir: PathBuf,
    pub init_timeout: Duration,
    pub enable_ima: bool,
    pub usb: UsbConfig,
    pub fanotify: FanotifyConfig,
    pub drop_resource_from_process_logs: bool,
    pub match_args: bool,
    pub network_policy_enforcer: bool,
    pub annotate_resources: bool,
    pub coverage_test: bool,
    pub policy_dir: PathBuf,
    pub immutable_policies: bool,
    /// Self-protection through the bpf-lsm plane (no effect without it).
    pub self_protection: bool,
    pub probe_data_path: Option<PathBuf>,
    pub metrics_port: u16,
    /// Enforcement planes to start, by name.
    pub planes: Vec<String>,
    /// TEST ONLY, from [`TEST_EVENT_SOCKET_ENV`].
    pub test_event_socket: Option<PathBuf>,
}

/// A config file's text and the path it was read from (for messages).
#[derive(Debug, Clone, Copy)]
pub struct FileInput<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// Everything [`resolve`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub file: Option<FileInput<'a>>,
    pub env: &'a BTreeMap<String, String>,
    /// `(key, value)` pairs from the command line, as [`parse_args`] returns them.
    pub flags: &'a [(String, String)],
    /// The machine's host name (default of `host`).
    pub hostname: &'a str,
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    /// Where each key's value came from.
    pub sources: BTreeMap<Key, Source>,
    /// Unknown keys and other things worth a warning.
    pub warnings: Vec<String>,
    /// Keys whose resolved value differs from the built-in default.
    pub changed: Vec<Key>,
    /// Each key's resolved value as text, indexed like [`KEYS`].
    texts: Vec<String>,
}

impl Resolved {
    /// Keys whose value is not the built-in default, with their source, for the startup log.
    pub fn overrides(&self) -> Vec<(Key, &Source)> {
        self.changed
            .iter()
            .filter_map(|k| self.sources.get(k).map(|s| (*k, s)))
            .collect()
    }

    /// How many keys each source set (whatever their value).
    pub fn source_counts(&self) -> (usize, usize, usize) {
        let count = |f: fn(&Source) -> bool| self.sources.values().filter(|s| f(s)).count();
        (
            count(|s| matches!(s, Source::File(_))),
            count(|s| matches!(s, Source::Env(_))),
            count(|s| matches!(s, Source::Flag)),
        )
    }
}

/// Resolves the configuration. Pure: no I/O.
pub fn resolve(inputs: Inputs<'_>) -> Result<Resolved, ConfigError> {
    use Key as K;
    let mut warnings = Vec::new();
    let raw = sources::collect_raw(&inputs, &mut warnings)?;
    let mut t = Typer::new(&raw);

    let k8s = t.bool(K::K8s.spec());
    if k8s {
        t.problem(
            K::K8s.spec(),
            "Kubernetes mode is not implemented by kubearmor-rs yet; set k8s: false (systemd / VM mode)",
        );
    }
    let vm_mode = t.bool(K::EnableKubeArmorVm.spec());
    if vm_mode {
        t.problem(
            K::EnableKubeArmorVm.spec(),
            "the KVM-service agent is not implemented by kubearmor-rs; use host policies through PolicyService or the policy directory",
        );
    }
    let grpc = grpc_section(&mut t);

    let mut host = t.peek(K::Host.spec());
    if host.is_empty() {
        // Upstream: an empty host means the short host name.
        host = inputs
            .hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    t.record(K::Host.spec(), host.clone());

    let log_path = match t.text(K::LogPath.spec()).as_str() {
        "" => {
            t.problem(K::LogPath.spec(), "must be none, stdout or a file path");
            LogPath::None
        }
        v if v.eq_ignore_ascii_case("none") => LogPath::None,
        v if v.eq_ignore_ascii_case("stdout") => LogPath::Stdout,
        v => LogPath::File(PathBuf::from(v)),
    };
    t.record(
        K::LogPath.spec(),
        match &log_path {
            LogPath::None => "none".to_string(),
            LogPath::Stdout => "stdout".to_string(),
            LogPath::File(f) => f.display().to_string(),
        },
    );

    let container_policy = t.bool(K::EnableKubeArmorPolicy.spec());
    let host_policy = t.bool(K::EnableKubeArmorHostPolicy.spec());
    let visibility = t
        .visibility(K::Visibility.spec(), false)
        .unwrap_or_default();
    let host_visibility = match t.visibility(K::HostVisibility.spec(), true) {
        Some(v) => v,
        // `default`: none in Kubernetes, the four scopes in systemd mode with host policies.
        None if !k8s && host_policy => Visibility {
            process: true,
            file: true,
            network: true,
            capabilities: true,
            ..Visibility::default()
        },
        None => Visibility::default(),
    };
    t.record(K::HostVisibility.spec(), host_visibility.to_string());

    let container_postures = Postures {
        file: t.posture(K::DefaultFilePosture.spec()),
        network: t.posture(K::DefaultNetworkPosture.spec()),
        capabilities: t.posture(K::DefaultCapabilitiesPosture.spec()),
        device: Posture::Audit,
    };
    let host_postures = Postures {
        file: t.posture(K::HostDefaultFilePosture.spec()),
        network: t.posture(K::HostDefaultNetworkPosture.spec()),
        capabilities: t.posture(K::HostDefaultCapabilitiesPosture.spec()),
        device: t.posture(K::HostDefaultDevicePosture.spec()),
    };
    let throttle = ThrottleConfig {
        enabled: t.bool(K::AlertThrottling.spec()),
        max_alerts_per_sec: t.positive(K::MaxAlertPerSec.spec()),
        throttle_secs: t.positive(K::ThrottleSec.spec()),
    };

    let lsm = lsm_words(&mut t);

    let cri_socket = t.text(K::CriSocket.spec());
    if !cri_socket.is_empty() && !cri_socket.starts_with("unix://") {
        t.problem(K::CriSocket.spec(), "must start with unix://");
    }
    let nri_index = match t.peek(K::NriIndex.spec()).parse::<u8>() {
        Ok(n) if n <= 99 => n,
        _ => {
            t.problem(K::NriIndex.spec(), "must be a number from 0 to 99");
            99
        }
    };
    t.record(K::NriIndex.spec(), nri_index.to_string());
    let init_timeout = match parse_go_duration(&t.peek(K::InitTimeout.spec())) {
        Some(d) => d,
        None => {
            t.problem(
                K::InitTimeout.spec(),
                "must be a duration such as 60s, 2m or 1m30s",
            );
            Duration::from_secs(60)
        }
    };
    t.record(K::InitTimeout.spec(), format!("{init_timeout:?}"));

    let usb = usb_section(&mut t, &mut warnings);
    let hooks = hook_section(&mut t);
    let planes: Vec<String> = t
        .peek(K::Planes.spec())
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty() && p != "none")
        .collect();
    t.record(K::Planes.spec(), planes.join(","));

    let config = Config {
        cluster: t.text(K::Cluster.spec()),
        host,
        k8s,
        grpc,
        log_path,
        debug: t.bool(K::Debug.spec()),
        container_policy,
        host_policy,
        vm_mode,
        state_agent: t.bool(K::EnableKubeArmorStateAgent.spec()),
        visibility,
        host_visibility,
        container_postures,
        host_postures,
        throttle,
        lsm,
        bpf_fs_path: t.path(K::BpfFsPath.spec()),
        enforcer_alerts: t.bool(K::EnforcerAlerts.spec()),
        default_posture_logs: t.bool(K::DefaultPostureLogs.spec()),
        procfs_mount: t.path(K::ProcfsMount.spec()),
        machine_id_path: t.path(K::MachineIdPath.spec()),
        hooks,
        cri_socket,
        nri_socket: t.text(K::NriSocket.spec()),
        nri_index,
        enable_nri: t.bool(K::EnableNri.spec()),
        untracked_ns: t.list(K::UntrackedNs.spec()),
        selinux_profile_dir: t.path(K::SeLinuxProfileDir.spec()),
        init_timeout,
        enable_ima: t.bool(K::EnableIma.spec()),
        usb,
        fanotify: FanotifyConfig {
            fail_closed: t.fail_closed(K::FanotifyFailMode.spec()),
        },
        drop_resource_from_process_logs: t.bool(K::DropResourceFromProcessLogs.spec()),
        match_args: t.bool(K::MatchArgs.spec()),
        network_policy_enforcer: t.bool(K::EnableNetworkPolicyEnforcer.spec()),
        annotate_resources: t.bool(K::AnnotateResources.spec()),
        coverage_test: t.bool(K::CoverageTest.spec()),
        policy_dir: t.path(K::PolicyDir.spec()),
        immutable_policies: t.bool(K::ImmutablePolicies.spec()),
        self_protection: t.bool(K::SelfProtection.spec()),
        probe_data_path: t.optional_path(K::ProbeDataPath.spec()),
        metrics_port: t.port(K::MetricsPort.spec()),
        planes,
        test_event_socket: inputs
            .env
            .get(TEST_EVENT_SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    let (mut problems, texts) = t.into_parts();
    if !TEST_HOOKS {
        if let Some(v) = inputs
            .env
            .get(TEST_EVENT_SOCKET_ENV)
            .filter(|v| !v.is_empty())
        {
            problems.push(Problem {
                key: TEST_EVENT_SOCKET_ENV.to_string(),
                value: v.clone(),
                source: Source::Env(TEST_EVENT_SOCKET_ENV.to_string()),
                reason: "this build has no test hooks (a test-only setting; build with the \
                         test-hooks feature)"
                    .to_string(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    // A key never typed is a bug in this function; its text is empty (the tests catch it).
    let texts: Vec<String> = texts.into_iter().map(Option::unwrap_or_default).collect();
    let sources = KEYS
        .iter()
        .zip(raw.values.iter())
        .map(|(k, (_, s))| (k.key, s.clone()))
        .collect();
    let changed = if raw.values.iter().all(|(_, s)| *s == Source::Default) {
        Vec::new()
    } else {
        let empty = BTreeMap::new();
        let defaults = resolve(Inputs {
            file: None,
            env: &empty,
            flags: &[],
            hostname: inputs.hostname,
        })?;
        KEYS.iter()
            .map(|k| k.key)
            .filter(|k| texts[*k as usize] != defaults.texts[*k as usize])
            .collect()
    };
    Ok(Resolved {
        config,
        sources,
        warnings,
        changed,
        texts,
    })
}

/// `gRPC`, `gRPCHealthPort` and the TLS keys.
fn grpc_section(t: &mut Typer<'_>) -> GrpcConfig {
    use Key as K;
    let tls_enabled = t.bool(K::TlsEnabled.spec());
    let tls_cert_provider = t.text(K::TlsCertProvider.spec());
    if !matches!(tls_cert_provider.as_str(), "self" | "external") {
        t.problem(K::TlsCertProvider.spec(), "must be self or external");
    } else if tls_enabled && tls_cert_provider == "self" {
        t.problem(
            K::TlsCertProvider.spec(),
            "self (a server certificate generated from ca.crt and ca.key) is not implemented by \
             kubearmor-rs; use external, with ca.crt, server.crt and server.key in tlsCertPath",
        );
    }
    let listen_text = t.text(K::GrpcListenAddress.spec());
    let listen_address = if listen_text.is_empty() {
        None
    } else {
        match listen_text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            Ok(ip) => Some(ip),
            Err(_) => {
                t.problem(
                    K::GrpcListenAddress.spec(),
                    "must be an IP address (127.0.0.1, ::1, 10.0.0.5), or empty for every address",
                );
                None
            }
        }
    };
    let port = t.port(K::Grpc.spec());
    let health_port = t.port(K::GrpcHealthPort.spec());
    if port != 0 && port == health_port {
        t.problem(
            K::GrpcHealthPort.spec(),
            format!("must differ from gRPC ({port}): the health server is a separate listener"),
        );
    }
    GrpcConfig {
        port,
        health_port,
        listen_address,
        unix_socket: t.optional_path(K::GrpcSocket.spec()),
        tls_enabled,
        tls_cert_path: t.path(K::TlsCertPath.spec()),
        tls_cert_provider,
    }
}

/// `lsm`: a comma list of bpf, apparmor, selinux, or none (empty).
fn lsm_words(t: &mut Typer<'_>) -> Vec<String> {
    let spec = Key::Lsm.spec();
    let text = t.peek(spec);
    let lsm: Vec<String> = if text.is_empty() || text.eq_ignore_ascii_case("none") {
        Vec::new()
    } else {
        let words = t.peek_list(spec);
        if let Some(bad) = words.iter().find(|w| {
            !matches!(
                w.to_ascii_lowercase().as_str(),
                "bpf" | "apparmor" | "selinux"
            )
        }) {
            let bad = bad.clone();
            t.problem(
                spec,
                format!("unknown LSM {bad:?}: use a comma list of bpf, apparmor, selinux, or none"),
            );
        }
        words.iter().map(|w| w.to_ascii_lowercase()).collect()
    };
    t.record(
        spec,
        if lsm.is_empty() {
            "none".to_string()
        } else {
            lsm.join(",")
        },
    );
    lsm
}

/// `enableUSBDeviceHandler` and the `usb*` keys.
fn usb_section(t: &mut Typer<'_>, warnings: &mut Vec<String>) -> UsbConfig {
    use Key as K;
    let accept_userspace_uevents = t.bool(K::UsbAcceptUserspaceUevents.spec());
    if accept_userspace_uevents && !TEST_HOOKS {
        t.problem(
            K::UsbAcceptUserspaceUevents.spec(),
            "this build has no test hooks (a test-only setting; build with the test-hooks feature)",
        );
    } else if accept_userspace_uevents {
        warnings.push(
            "usbAcceptUserspaceUevents is true: TEST ONLY, the USB device handler accepts uevents \
             from userspace senders, so any root process can forge USB device events; never use \
             this in production"
                .to_string(),
        );
    }
    UsbConfig {
        enabled: t.bool(K::EnableUsbDeviceHandler.spec()),
        sysfs_root: t.path(K::UsbSysfsRoot.spec()),
        state_file: t.optional_path(K::UsbStateFile.spec()),
        accept_userspace_uevents,
    }
}

/// `useOCIHooks`, `hookPath`, `kaSocket` and `runcStateDirs`.
fn hook_section(t: &mut Typer<'_>) -> HookConfig {
    use Key as K;
    let runc_state_dirs: Vec<PathBuf> = t
        .peek_list(K::RuncStateDirs.spec())
        .into_iter()
        .filter(|d| !d.eq_ignore_ascii_case("none"))
        .map(PathBuf::from)
        .collect();
    if let Some(bad) = runc_state_dirs.iter().find(|d| !d.is_absolute()) {
        let bad = bad.display().to_string();
        t.problem(
            K::RuncStateDirs.spec(),
            format!("{bad:?} is not an absolute path: use a comma list of absolute paths, or none"),
        );
    }
    t.record(
        K::RuncStateDirs.spec(),
        if runc_state_dirs.is_empty() {
            "none".to_string()
        } else {
            runc_state_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        },
    );
    let mode_text = t.text(K::KaSocketMode.spec());
    let ka_socket_mode = match u32::from_str_radix(mode_text.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            t.problem(
                K::KaSocketMode.spec(),
                "must be an octal file mode from 0 to 0777, such as 0600",
            );
            0o600
        }
    };
    t.record(K::KaSocketMode.spec(), format!("{ka_socket_mode:04o}"));
    HookConfig {
        use_oci_hooks: t.bool(K::UseOciHooks.spec()),
        hook_path: t.optional_path(K::HookPath.spec()),
        ka_socket: t.path(K::KaSocket.spec()),
        ka_socket_mode,
        runc_state_dirs,
    }
}
