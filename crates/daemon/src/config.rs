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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubearmor_policy::{Posture, Postures};

/// Environment variable naming the config file when no positional argument is given.
pub const CONFIG_ENV: &str = "KUBEARMOR_CFG";
/// File name looked up beside the binary.
pub const CONFIG_FILE_NAME: &str = "kubearmor.yaml";
/// TEST ONLY: a Unix socket path on which the daemon accepts JSON-lines events and injects them
/// into the event pipeline (see `test_source`). Never set this in production.
pub const TEST_EVENT_SOCKET_ENV: &str = "KUBEARMOR_TEST_EVENT_SOCKET";
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Value type of a key, which decides how it is parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Port,
    Posture,
    /// An integer >= 1.
    Positive,
    Visibility,
    /// `visibility` words, or `default`.
    HostVisibility,
    Text,
    /// A non-empty path.
    Path,
    /// A path, or empty for "off".
    OptionalPath,
    /// `none`, `stdout` or a file path.
    LogPath,
    /// `bpf,apparmor,selinux` words, or `none`.
    Lsm,
    /// Empty, or `unix://...`.
    CriSocket,
    /// 0..=99.
    NriIndex,
    /// A Go duration: `60s`, `1m30s`, `500ms`.
    Duration,
    /// `self` or `external`.
    TlsProvider,
    /// A comma-separated list.
    List,
}

/// Whether the daemon acts on a key today. Keys of planes that do not exist yet are accepted
/// (so upstream configuration files keep working) and the startup log says they do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Active,
    /// Accepted; acted on once the named part of the daemon exists.
    NotYet(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    Str(&'static str),
    /// The machine's host name.
    Hostname,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    pub effect: Effect,
    pub help: &'static str,
}

const fn key(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    effect: Effect,
    help: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        kind,
        default: DefaultValue::Str(default),
        effect,
        help,
    }
}

const MONITOR: Effect = Effect::NotYet("the system monitor");
const ENFORCER: Effect = Effect::NotYet("an enforcement plane");
const REGISTRY: Effect = Effect::NotYet("the container registry");
const K8S: Effect = Effect::NotYet("Kubernetes mode");

/// Every key, in the order of `examples/kubearmor.yaml`.
pub const KEYS: &[KeySpec] = &[
    key(
        "cluster",
        Kind::Text,
        "default",
        Effect::Active,
        "cluster name in events",
    ),
    KeySpec {
        name: "host",
        kind: Kind::Text,
        default: DefaultValue::Hostname,
        effect: Effect::Active,
        help: "host name in events; the host's policy identity is kubearmor.io/hostname=<host>",
    },
    key(
        "k8s",
        Kind::Bool,
        "false",
        Effect::Active,
        "Kubernetes mode (only false is supported)",
    ),
    key(
        "gRPC",
        Kind::Port,
        "32767",
        Effect::Active,
        "port of the gRPC API (0 = pick one)",
    ),
    key(
        "gRPCHealthPort",
        Kind::Port,
        "32766",
        Effect::Active,
        "port of grpc.health.v1 (plaintext)",
    ),
    key(
        "tlsEnabled",
        Kind::Bool,
        "false",
        Effect::Active,
        "gRPC TLS (only false is supported)",
    ),
    key(
        "tlsCertPath",
        Kind::Path,
        "/var/lib/kubearmor/tls",
        Effect::NotYet("TLS"),
        "TLS certificate directory",
    ),
    key(
        "tlsCertProvider",
        Kind::TlsProvider,
        "self",
        Effect::NotYet("TLS"),
        "self or external",
    ),
    key(
        "logPath",
        Kind::LogPath,
        "none",
        Effect::Active,
        "JSON lines of every event: none, stdout or a file",
    ),
    key(
        "debug",
        Kind::Bool,
        "false",
        Effect::Active,
        "debug logs, also streamed by WatchMessages",
    ),
    key(
        "enableKubeArmorPolicy",
        Kind::Bool,
        "true",
        Effect::Active,
        "accept container policies",
    ),
    key(
        "enableKubeArmorHostPolicy",
        Kind::Bool,
        "true",
        Effect::Active,
        "accept host policies",
    ),
    key(
        "enableKubeArmorVm",
        Kind::Bool,
        "false",
        Effect::Active,
        "KVM-service agent mode (only false is supported)",
    ),
    key(
        "enableKubeArmorStateAgent",
        Kind::Bool,
        "false",
        Effect::Active,
        "serve state_agent.StateAgent",
    ),
    key(
        "visibility",
        Kind::Visibility,
        "process,file,network,capabilities",
        MONITOR,
        "container visibility",
    ),
    key(
        "hostVisibility",
        Kind::HostVisibility,
        "default",
        MONITOR,
        "host visibility (default: as visibility words process,file,network,capabilities)",
    ),
    key(
        "defaultFilePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container file posture",
    ),
    key(
        "defaultNetworkPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container network posture",
    ),
    key(
        "defaultCapabilitiesPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container capabilities posture",
    ),
    key(
        "hostDefaultFilePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host file posture",
    ),
    key(
        "hostDefaultNetworkPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host network posture",
    ),
    key(
        "hostDefaultCapabilitiesPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host capabilities posture",
    ),
    key(
        "hostDefaultDevicePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host USB device posture",
    ),
    key(
        "alertThrottling",
        Kind::Bool,
        "true",
        Effect::Active,
        "throttle alerts per container / host",
    ),
    key(
        "maxAlertPerSec",
        Kind::Positive,
        "10",
        Effect::Active,
        "alerts per second before throttling",
    ),
    key(
        "throttleSec",
        Kind::Positive,
        "30",
        Effect::Active,
        "seconds alerts are dropped once throttled",
    ),
    key(
        "lsm",
        Kind::Lsm,
        "bpf,apparmor,selinux",
        ENFORCER,
        "enforcer preference, or none",
    ),
    key(
        "bpfFsPath",
        Kind::Path,
        "/sys/fs/bpf",
        Effect::Active,
        "BPF filesystem for pinned maps",
    ),
    key(
        "enforcerAlerts",
        Kind::Bool,
        "true",
        ENFORCER,
        "the BPF-LSM enforcer raises its own alerts",
    ),
    key(
        "defaultPostureLogs",
        Kind::Bool,
        "true",
        ENFORCER,
        "keep default-posture logs",
    ),
    key(
        "procfsMount",
        Kind::Path,
        "/proc",
        Effect::Active,
        "procfs mount point",
    ),
    key(
        "machineIDPath",
        Kind::Path,
        "/etc/machine-id",
        Effect::Active,
        "machine id file (NodeID in events)",
    ),
    key(
        "useOCIHooks",
        Kind::Bool,
        "false",
        Effect::Active,
        "register containers from the OCI hook",
    ),
    key(
        "hookPath",
        Kind::OptionalPath,
        "",
        Effect::Active,
        "hook records file read at start, e.g. /run/output.json (CoCo)",
    ),
    key(
        "criSocket",
        Kind::CriSocket,
        "",
        REGISTRY,
        "container runtime socket (unix://...)",
    ),
    key("nriSocket", Kind::Text, "", REGISTRY, "NRI socket"),
    key(
        "nriIndex",
        Kind::NriIndex,
        "99",
        REGISTRY,
        "NRI plugin index",
    ),
    key(
        "enableNRI",
        Kind::Bool,
        "false",
        REGISTRY,
        "register containers through NRI",
    ),
    key(
        "untrackedNs",
        Kind::List,
        "kube-system,kubearmor",
        K8S,
        "namespaces where new policies are not enforced",
    ),
    key(
        "seLinuxProfileDir",
        Kind::Path,
        "/tmp/kubearmor.selinux",
        ENFORCER,
        "SELinux profiles",
    ),
    key(
        "initTimeout",
        Kind::Duration,
        "60s",
        Effect::NotYet("the init stage"),
        "init stage timeout",
    ),
    key(
        "enableIMA",
        Kind::Bool,
        "false",
        MONITOR,
        "file hashes in events",
    ),
    key(
        "enableUSBDeviceHandler",
        Kind::Bool,
        "false",
        Effect::Active,
        "enforce USB device rules",
    ),
    key(
        "dropResourceFromProcessLogs",
        Kind::Bool,
        "false",
        Effect::Active,
        "omit Resource in process logs",
    ),
    key(
        "matchArgs",
        Kind::Bool,
        "true",
        ENFORCER,
        "match allowedArgs",
    ),
    key(
        "enableNetworkPolicyEnforcer",
        Kind::Bool,
        "true",
        Effect::NotYet("KubeArmorNetworkPolicy support"),
        "KubeArmorNetworkPolicy enforcer",
    ),
    key(
        "annotateResources",
        Kind::Bool,
        "false",
        K8S,
        "annotate pods without a controller",
    ),
    key(
        "coverageTest",
        Kind::Bool,
        "false",
        Effect::NotYet("coverage builds"),
        "test only",
    ),
    // Ours.
    key(
        "policyDir",
        Kind::Path,
        "/opt/kubearmor/policies",
        Effect::Active,
        "policy directory: loaded at start, watched, written by PolicyService",
    ),
    key(
        "immutablePolicies",
        Kind::Bool,
        "false",
        Effect::Active,
        "refuse policy changes over gRPC (baked-in policies)",
    ),
    key(
        "planes",
        Kind::Text,
        "cgroup-bpf,fanotify,usb",
        Effect::Active,
        "enforcement planes to start (cgroup-bpf, fanotify, usb), or none",
    ),
    key(
        "fanotifyFailMode",
        Kind::Text,
        "open",
        Effect::Active,
        "what the fanotify plane answers when it cannot decide (process gone, /proc unreadable): open or closed",
    ),
    key(
        "metricsPort",
        Kind::Port,
        "0",
        Effect::Active,
        "port of /metrics (Prometheus text: enforced families, pipeline counters); 0 = off",
    ),
    key(
        "kaSocket",
        Kind::Path,
        "/var/run/kubearmor/ka.sock",
        Effect::Active,
        "socket the OCI hook (kubearmor-hook) registers containers on",
    ),
    key(
        "runcStateDirs",
        Kind::List,
        "/run/runc,/run/containerd/runc,/run/docker/runtime-runc",
        Effect::Active,
        "runc state roots rescanned at start for running containers (useOCIHooks), or none",
    ),
    key(
        "usbSysfsRoot",
        Kind::Path,
        "/sys",
        Effect::Active,
        "sysfs the USB device handler reads and writes (tests use a fake tree)",
    ),
    key(
        "usbStateFile",
        Kind::OptionalPath,
        kubearmor_usb::DEFAULT_STATE_FILE,
        Effect::Active,
        "USB handler state file, read by the escape hatch and the next start (none = no file)",
    ),
    key(
        "usbAcceptUserspaceUevents",
        Kind::Bool,
        "false",
        Effect::Active,
        "TEST ONLY: the USB handler accepts uevents from userspace senders (forgeable by any root process)",
    ),
    key(
        "probeDataPath",
        Kind::OptionalPath,
        "/tmp/karmorProbeData.cfg",
        Effect::Active,
        "karmor probe file (empty or none = do not write)",
    ),
];

/// Upstream keys that this daemon reads only from the environment under another name.
const SPECIAL_ENV: &[(&str, &str)] = &[("CRI_SOCKET", "criSocket"), ("NRI_SOCKET", "nriSocket")];

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

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub cluster: String,
    pub host: String,
    pub k8s: bool,
    pub grpc_port: u16,
    pub health_port: u16,
    pub tls_enabled: bool,
    pub tls_cert_path: PathBuf,
    pub tls_cert_provider: String,
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
    pub use_oci_hooks: bool,
    pub hook_path: Option<PathBuf>,
    pub cri_socket: String,
    pub nri_socket: String,
    pub nri_index: u8,
    pub enable_nri: bool,
    pub untracked_ns: Vec<String>,
    pub selinux_profile_dir: PathBuf,
    pub init_timeout: Duration,
    pub enable_ima: bool,
    pub enable_usb: bool,
    pub drop_resource_from_process_logs: bool,
    pub match_args: bool,
    pub network_policy_enforcer: bool,
    pub annotate_resources: bool,
    pub coverage_test: bool,
    pub policy_dir: PathBuf,
    pub immutable_policies: bool,
    pub probe_data_path: Option<PathBuf>,
    pub ka_socket: PathBuf,
    pub metrics_port: u16,
    /// `fanotifyFailMode: closed`: deny what cannot be decided.
    pub fanotify_fail_closed: bool,
    /// runc state roots the start-up rescan reads (`useOCIHooks`); empty: no rescan.
    pub runc_state_dirs: Vec<PathBuf>,
    /// Enforcement planes to start, by name.
    pub planes: Vec<String>,
    pub usb_sysfs_root: PathBuf,
    /// Where the USB handler keeps its state file (`None`: no state file, no escape hatch).
    pub usb_state_file: Option<PathBuf>,
    /// TEST ONLY: the USB handler accepts uevents that userspace processes send (any root
    /// process could then forge device events). Integration tests inject fake uevents this way.
    pub usb_accept_userspace_uevents: bool,
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
    /// Where each key's value came from, by canonical key name.
    pub sources: BTreeMap<&'static str, Source>,
    /// Unknown keys and other things worth a warning.
    pub warnings: Vec<String>,
    /// Keys whose resolved value differs from the built-in default.
    pub changed: Vec<&'static str>,
}

impl Resolved {
    /// Keys whose value is not the built-in default, with their source, for the startup log.
    pub fn overrides(&self) -> Vec<(&'static str, &Source)> {
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

/// Looks a key up by name, case-insensitively.
pub fn find_key(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// The known key closest to `name`, if any is close enough to be a likely typo.
pub fn close_match(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let limit = (lower.len() / 4).clamp(1, 3);
    KEYS.iter()
        .map(|k| (levenshtein(&lower, &k.name.to_ascii_lowercase()), k.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key_message(name: &str, origin: &str) -> String {
    match close_match(name) {
        Some(m) => format!("{origin}: unknown key {name:?} (did you mean {m:?}?)"),
        None => format!("{origin}: unknown key {name:?}"),
    }
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// The positional config file path.
    pub config: Option<PathBuf>,
    pub flags: Vec<(String, String)>,
    pub help: bool,
    pub version: bool,
}

/// Parses `kubearmor [CONFIG] [-key=value | --key value ...]` (arguments after the program
/// name). Flags are the config keys, as upstream's Go flags; a bool flag alone means true.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ConfigError> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    let mut flags_done = false;
    while let Some(arg) = it.next() {
        let stripped = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !flags_done && !s.is_empty());
        let Some(flag) = stripped else {
            if arg == "--" && !flags_done {
                flags_done = true;
                continue;
            }
            if out.config.is_some() {
                return Err(ConfigError::Args(format!(
                    "more than one config file given ({:?} and {arg:?})",
                    out.config
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                        .to_string()
                )));
            }
            out.config = Some(PathBuf::from(arg));
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "h" | "help" => {
                out.help = true;
                continue;
            }
            "V" | "version" => {
                out.version = true;
                continue;
            }
            _ => {}
        }
        let Some(spec) = find_key(name) else {
            return Err(ConfigError::Args(
                unknown_key_message(name, "flag").replacen("flag: unknown key", "unknown flag", 1),
            ));
        };
        let value = match inline {
            Some(v) => v,
            None if spec.kind == Kind::Bool => "true".to_string(),
            None => it
                .next()
                .ok_or_else(|| ConfigError::Args(format!("flag -{} needs a value", spec.name)))?,
        };
        out.flags.push((spec.name.to_string(), value));
    }
    Ok(out)
}

/// Which config file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// The positional argument.
    Argument(PathBuf),
    /// `$KUBEARMOR_CFG`.
    Env(PathBuf),
    /// `kubearmor.yaml` beside the binary.
    BesideBinary(PathBuf),
    /// No file: built-in defaults (plus environment and flags).
    Embedded,
}

impl ConfigLocation {
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigLocation::Argument(p)
            | ConfigLocation::Env(p)
            | ConfigLocation::BesideBinary(p) => Some(p),
            ConfigLocation::Embedded => None,
        }
    }
}

impl fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigLocation::Argument(p) => write!(f, "{} (command line)", p.display()),
            ConfigLocation::Env(p) => write!(f, "{} (${CONFIG_ENV})", p.display()),
            ConfigLocation::BesideBinary(p) => write!(f, "{} (beside the binary)", p.display()),
            ConfigLocation::Embedded => f.write_str("none: built-in defaults"),
        }
    }
}

/// Picks the config file: the positional argument, else `$KUBEARMOR_CFG`, else
/// `kubearmor.yaml` beside the binary if it exists, else none.
pub fn locate(
    positional: Option<&Path>,
    env: &BTreeMap<String, String>,
    binary_dir: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> ConfigLocation {
    if let Some(p) = positional {
        return ConfigLocation::Argument(p.to_path_buf());
    }
    if let Some(p) = env.get(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return ConfigLocation::Env(PathBuf::from(p));
    }
    if let Some(dir) = binary_dir {
        let p = dir.join(CONFIG_FILE_NAME);
        if exists(&p) {
            return ConfigLocation::BesideBinary(p);
        }
    }
    ConfigLocation::Embedded
}

/// Reads a config file, with a size limit.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(text)
}

/// The value of each key and where it came from, before typing.
struct Raw {
    values: Vec<(String, Source)>,
}

fn file_values(
    file: FileInput<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(usize, String)>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: file.path.to_path_buf(),
        message,
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(file.text).map_err(|e| err(format!("not valid YAML: {e}")))?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(err(
                "must be a mapping of keys to values (key: value lines)".into(),
            ))
        }
    };
    let origin = file.path.display().to_string();
    let mut out: Vec<(usize, String)> = Vec::new();
    for (k, v) in map {
        let name = match k {
            serde_yaml::Value::String(s) => s,
            other => scalar_text(&other).unwrap_or_else(|| format!("{other:?}")),
        };
        let Some(idx) = KEYS.iter().position(|s| s.name.eq_ignore_ascii_case(&name)) else {
            warnings.push(unknown_key_message(&name, &origin));
            continue;
        };
        if out.iter().any(|(i, _)| *i == idx) {
            return Err(err(format!(
                "key {} is given twice (keys are case-insensitive)",
                KEYS[idx].name
            )));
        }
        let value = match v {
            // `key:` with no value: as if absent.
            serde_yaml::Value::Null => continue,
            other => scalar_text(&other).ok_or_else(|| {
                err(format!(
                    "{}: must be a single value (a string, number or boolean), not a list or mapping",
                    KEYS[idx].name
                ))
            })?,
        };
        out.push((idx, value));
    }
    Ok(out)
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

fn collect_raw(inputs: &Inputs<'_>, warnings: &mut Vec<String>) -> Result<Raw, ConfigError> {
    let mut values: Vec<(String, Source)> = KEYS
        .iter()
        .map(|k| {
            let v = match k.default {
                DefaultValue::Str(s) => s.to_string(),
                DefaultValue::Hostname => inputs.hostname.to_string(),
            };
            (v, Source::Default)
        })
        .collect();
    // Lowest to highest precedence: flag, file, environment.
    for (name, value) in inputs.flags {
        let Some(idx) = KEYS.iter().position(|s| s.name.eq_ignore_ascii_case(name)) else {
            return Err(ConfigError::Args(unknown_key_message(name, "flag")));
        };
        values[idx] = (value.clone(), Source::Flag);
    }
    if let Some(file) = inputs.file {
        for (idx, value) in file_values(file, warnings)? {
            values[idx] = (value, Source::File(file.path.to_path_buf()));
        }
    }
    for (idx, spec) in KEYS.iter().enumerate() {
        let var = spec.name.to_ascii_uppercase();
        // viper ignores empty environment variables.
        if let Some(v) = inputs.env.get(&var).filter(|v| !v.is_empty()) {
            values[idx] = (v.clone(), Source::Env(var));
        }
    }
    for (var, name) in SPECIAL_ENV {
        if let Some(v) = inputs.env.get(*var).filter(|v| !v.is_empty()) {
            if let Some(idx) = KEYS.iter().position(|s| s.name == *name) {
                values[idx] = (v.clone(), Source::Env((*var).to_string()));
            }
        }
    }
    Ok(Raw { values })
}

/// Typed access to the raw values, collecting every problem.
struct Typer<'a> {
    raw: &'a Raw,
    problems: Vec<Problem>,
}

impl Typer<'_> {
    fn slot(&self, name: &str) -> (usize, &str, &Source) {
        // Every name passed here is a literal from KEYS; a miss is a bug caught by tests.
        let idx = KEYS.iter().position(|k| k.name == name).unwrap_or(0);
        let (v, s) = &self.raw.values[idx];
        (idx, v.as_str(), s)
    }

    fn problem(&mut self, name: &str, reason: impl Into<String>) {
        let (_, value, source) = self.slot(name);
        self.problems.push(Problem {
            key: name.to_string(),
            value: value.to_string(),
            source: source.clone(),
            reason: reason.into(),
        });
    }

    fn text(&self, name: &str) -> String {
        self.slot(name).1.trim().to_string()
    }

    fn bool(&mut self, name: &str) -> bool {
        let v = self.text(name);
        match parse_bool(&v) {
            Some(b) => b,
            None => {
                self.problem(name, "must be true or false");
                false
            }
        }
    }

    fn port(&mut self, name: &str) -> u16 {
        let v = self.text(name);
        match v.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                self.problem(name, "must be a TCP port number, 0 to 65535");
                0
            }
        }
    }

    /// `open` or `closed`, any case; true for closed.
    fn fail_closed(&mut self, name: &str) -> bool {
        match self.text(name).to_ascii_lowercase().as_str() {
            "open" => false,
            "closed" => true,
            _ => {
                self.problem(name, "must be open or closed");
                false
            }
        }
    }

    fn positive(&mut self, name: &str) -> u32 {
        let v = self.text(name);
        match v.parse::<i64>() {
            Ok(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
            Ok(_) => {
                self.problem(name, "must be a whole number of at least 1");
                1
            }
            Err(_) => {
                self.problem(name, "must be a whole number of at least 1");
                1
            }
        }
    }

    fn posture(&mut self, name: &str) -> Posture {
        let v = self.text(name);
        match Posture::parse(&v) {
            Some(p) => p,
            None => {
                self.problem(name, "must be audit or block");
                Posture::Audit
            }
        }
    }

    fn visibility(&mut self, name: &str, allow_default: bool) -> Option<Visibility> {
        let v = self.text(name);
        if allow_default && v.eq_ignore_ascii_case("default") {
            return None;
        }
        match parse_visibility(&v) {
            Ok(vis) => Some(vis),
            Err(word) => {
                let extra = if allow_default { ", or default" } else { "" };
                self.problem(
                    name,
                    format!(
                        "unknown word {word:?}: use a comma list of process, file, network, capabilities, dns, ima, or none{extra}"
                    ),
                );
                Some(Visibility::default())
            }
        }
    }

    fn path(&mut self, name: &str) -> PathBuf {
        let v = self.text(name);
        if v.is_empty() {
            self.problem(name, "must not be empty");
        }
        PathBuf::from(v)
    }

    fn optional_path(&self, name: &str) -> Option<PathBuf> {
        let v = self.text(name);
        if v.is_empty() || v.eq_ignore_ascii_case("none") {
            None
        } else {
            Some(PathBuf::from(v))
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A comma list of visibility words, or `none` / empty. On error returns the offending word.
pub fn parse_visibility(s: &str) -> Result<Visibility, String> {
    let mut v = Visibility::default();
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(v);
    }
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "process" => v.process = true,
            "file" => v.file = true,
            "network" => v.network = true,
            "capabilities" => v.capabilities = true,
            "dns" => v.dns = true,
            "ima" => v.ima = true,
            _ => return Err(word.to_string()),
        }
    }
    Ok(v)
}

/// A Go `time.ParseDuration` string (`60s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * nanos;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// Resolves the configuration. Pure: no I/O.
pub fn resolve(inputs: Inputs<'_>) -> Result<Resolved, ConfigError> {
    let mut warnings = Vec::new();
    let raw = collect_raw(&inputs, &mut warnings)?;
    let mut t = Typer {
        raw: &raw,
        problems: Vec::new(),
    };

    let k8s = t.bool("k8s");
    if k8s {
        t.problem(
            "k8s",
            "Kubernetes mode is not implemented by kubearmor-rs yet; set k8s: false (systemd / VM mode)",
        );
    }
    let vm_mode = t.bool("enableKubeArmorVm");
    if vm_mode {
        t.problem(
            "enableKubeArmorVm",
            "the KVM-service agent is not implemented by kubearmor-rs; use host policies through PolicyService or the policy directory",
        );
    }
    let tls_enabled = t.bool("tlsEnabled");
    if tls_enabled {
        t.problem(
            "tlsEnabled",
            "gRPC TLS is not implemented by kubearmor-rs yet",
        );
    }
    let tls_cert_provider = t.text("tlsCertProvider");
    if !matches!(tls_cert_provider.as_str(), "self" | "external") {
        t.problem("tlsCertProvider", "must be self or external");
    }

    let mut host = t.text("host");
    if host.is_empty() {
        // Upstream: an empty host means the short host name.
        host = inputs
            .hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    let grpc_port = t.port("gRPC");
    let health_port = t.port("gRPCHealthPort");
    if grpc_port != 0 && grpc_port == health_port {
        t.problem(
            "gRPCHealthPort",
            format!(
                "must differ from gRPC ({grpc_port}): the health server is a separate listener"
            ),
        );
    }

    let log_path = match t.text("logPath").as_str() {
        "" => {
            t.problem("logPath", "must be none, stdout or a file path");
            LogPath::None
        }
        v if v.eq_ignore_ascii_case("none") => LogPath::None,
        v if v.eq_ignore_ascii_case("stdout") => LogPath::Stdout,
        v => LogPath::File(PathBuf::from(v)),
    };

    let container_policy = t.bool("enableKubeArmorPolicy");
    let host_policy = t.bool("enableKubeArmorHostPolicy");
    let visibility = t.visibility("visibility", false).unwrap_or_default();
    let host_visibility = match t.visibility("hostVisibility", true) {
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

    let container_postures = Postures {
        file: t.posture("defaultFilePosture"),
        network: t.posture("defaultNetworkPosture"),
        capabilities: t.posture("defaultCapabilitiesPosture"),
        device: Posture::Audit,
    };
    let host_postures = Postures {
        file: t.posture("hostDefaultFilePosture"),
        network: t.posture("hostDefaultNetworkPosture"),
        capabilities: t.posture("hostDefaultCapabilitiesPosture"),
        device: t.posture("hostDefaultDevicePosture"),
    };
    let throttle = ThrottleConfig {
        enabled: t.bool("alertThrottling"),
        max_alerts_per_sec: t.positive("maxAlertPerSec"),
        throttle_secs: t.positive("throttleSec"),
    };

    let lsm_text = t.text("lsm");
    let lsm: Vec<String> = if lsm_text.is_empty() || lsm_text.eq_ignore_ascii_case("none") {
        Vec::new()
    } else {
        let words = t.list("lsm");
        if let Some(bad) = words.iter().find(|w| {
            !matches!(
                w.to_ascii_lowercase().as_str(),
                "bpf" | "apparmor" | "selinux"
            )
        }) {
            let bad = bad.clone();
            t.problem(
                "lsm",
                format!("unknown LSM {bad:?}: use a comma list of bpf, apparmor, selinux, or none"),
            );
        }
        words.iter().map(|w| w.to_ascii_lowercase()).collect()
    };

    let cri_socket = t.text("criSocket");
    if !cri_socket.is_empty() && !cri_socket.starts_with("unix://") {
        t.problem("criSocket", "must start with unix://");
    }
    let nri_index = match t.text("nriIndex").parse::<u8>() {
        Ok(n) if n <= 99 => n,
        _ => {
            t.problem("nriIndex", "must be a number from 0 to 99");
            99
        }
    };
    let init_timeout = match parse_go_duration(&t.text("initTimeout")) {
        Some(d) => d,
        None => {
            t.problem("initTimeout", "must be a duration such as 60s, 2m or 1m30s");
            Duration::from_secs(60)
        }
    };

    let usb_accept_userspace_uevents = t.bool("usbAcceptUserspaceUevents");
    if usb_accept_userspace_uevents {
        warnings.push(
            "usbAcceptUserspaceUevents is true: TEST ONLY, the USB device handler accepts uevents \
             from userspace senders, so any root process can forge USB device events; never use \
             this in production"
                .to_string(),
        );
    }

    let runc_state_dirs: Vec<PathBuf> = t
        .list("runcStateDirs")
        .into_iter()
        .filter(|d| !d.eq_ignore_ascii_case("none"))
        .map(PathBuf::from)
        .collect();
    if let Some(bad) = runc_state_dirs.iter().find(|d| !d.is_absolute()) {
        let bad = bad.display().to_string();
        t.problem(
            "runcStateDirs",
            format!("{bad:?} is not an absolute path: use a comma list of absolute paths, or none"),
        );
    }

    let config = Config {
        cluster: t.text("cluster"),
        host,
        k8s,
        grpc_port,
        health_port,
        tls_enabled,
        tls_cert_path: t.path("tlsCertPath"),
        tls_cert_provider,
        log_path,
        debug: t.bool("debug"),
        container_policy,
        host_policy,
        vm_mode,
        state_agent: t.bool("enableKubeArmorStateAgent"),
        visibility,
        host_visibility,
        container_postures,
        host_postures,
        throttle,
        lsm,
        bpf_fs_path: t.path("bpfFsPath"),
        enforcer_alerts: t.bool("enforcerAlerts"),
        default_posture_logs: t.bool("defaultPostureLogs"),
        procfs_mount: t.path("procfsMount"),
        machine_id_path: t.path("machineIDPath"),
        use_oci_hooks: t.bool("useOCIHooks"),
        hook_path: t.optional_path("hookPath"),
        cri_socket,
        nri_socket: t.text("nriSocket"),
        nri_index,
        enable_nri: t.bool("enableNRI"),
        untracked_ns: t.list("untrackedNs"),
        selinux_profile_dir: t.path("seLinuxProfileDir"),
        init_timeout,
        enable_ima: t.bool("enableIMA"),
        enable_usb: t.bool("enableUSBDeviceHandler"),
        drop_resource_from_process_logs: t.bool("dropResourceFromProcessLogs"),
        match_args: t.bool("matchArgs"),
        network_policy_enforcer: t.bool("enableNetworkPolicyEnforcer"),
        annotate_resources: t.bool("annotateResources"),
        coverage_test: t.bool("coverageTest"),
        policy_dir: t.path("policyDir"),
        immutable_policies: t.bool("immutablePolicies"),
        probe_data_path: t.optional_path("probeDataPath"),
        ka_socket: t.path("kaSocket"),
        metrics_port: t.port("metricsPort"),
        fanotify_fail_closed: t.fail_closed("fanotifyFailMode"),
        runc_state_dirs,
        planes: t
            .text("planes")
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty() && p != "none")
            .collect(),
        usb_sysfs_root: t.path("usbSysfsRoot"),
        usb_state_file: t.optional_path("usbStateFile"),
        usb_accept_userspace_uevents,
        test_event_socket: inputs
            .env
            .get(TEST_EVENT_SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    };
    if !t.problems.is_empty() {
        return Err(ConfigError::Invalid(t.problems));
    }
    let sources = KEYS
        .iter()
        .zip(raw.values.iter())
        .map(|(k, (_, s))| (k.name, s.clone()))
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
            .map(|k| k.name)
            .filter(|k| describe(&config, k) != describe(&defaults.config, k))
            .collect()
    };
    Ok(Resolved {
        config,
        sources,
        warnings,
        changed,
    })
}

/// The value of a key as resolved, as text (for the startup log).
pub fn describe(config: &Config, key: &str) -> String {
    let b = |v: bool| v.to_string();
    let p = |v: &Path| v.display().to_string();
    let op = |v: &Option<PathBuf>| v.as_deref().map(p).unwrap_or_default();
    match key {
        "cluster" => config.cluster.clone(),
        "host" => config.host.clone(),
        "k8s" => b(config.k8s),
        "gRPC" => config.grpc_port.to_string(),
        "gRPCHealthPort" => config.health_port.to_string(),
        "tlsEnabled" => b(config.tls_enabled),
        "tlsCertPath" => p(&config.tls_cert_path),
        "tlsCertProvider" => config.tls_cert_provider.clone(),
        "logPath" => match &config.log_path {
            LogPath::None => "none".into(),
            LogPath::Stdout => "stdout".into(),
            LogPath::File(f) => p(f),
        },
        "debug" => b(config.debug),
        "enableKubeArmorPolicy" => b(config.container_policy),
        "enableKubeArmorHostPolicy" => b(config.host_policy),
        "enableKubeArmorVm" => b(config.vm_mode),
        "enableKubeArmorStateAgent" => b(config.state_agent),
        "visibility" => config.visibility.to_string(),
        "hostVisibility" => config.host_visibility.to_string(),
        "defaultFilePosture" => config.container_postures.file.as_str().into(),
        "defaultNetworkPosture" => config.container_postures.network.as_str().into(),
        "defaultCapabilitiesPosture" => config.container_postures.capabilities.as_str().into(),
        "hostDefaultFilePosture" => config.host_postures.file.as_str().into(),
        "hostDefaultNetworkPosture" => config.host_postures.network.as_str().into(),
        "hostDefaultCapabilitiesPosture" => config.host_postures.capabilities.as_str().into(),
        "hostDefaultDevicePosture" => config.host_postures.device.as_str().into(),
        "alertThrottling" => b(config.throttle.enabled),
        "maxAlertPerSec" => config.throttle.max_alerts_per_sec.to_string(),
        "throttleSec" => config.throttle.throttle_secs.to_string(),
        "lsm" => {
            if config.lsm.is_empty() {
                "none".into()
            } else {
                config.lsm.join(",")
            }
        }
        "bpfFsPath" => p(&config.bpf_fs_path),
        "enforcerAlerts" => b(config.enforcer_alerts),
        "defaultPostureLogs" => b(config.default_posture_logs),
        "procfsMount" => p(&config.procfs_mount),
        "machineIDPath" => p(&config.machine_id_path),
        "useOCIHooks" => b(config.use_oci_hooks),
        "hookPath" => op(&config.hook_path),
        "criSocket" => config.cri_socket.clone(),
        "nriSocket" => config.nri_socket.clone(),
        "nriIndex" => config.nri_index.to_string(),
        "enableNRI" => b(config.enable_nri),
        "untrackedNs" => config.untracked_ns.join(","),
        "seLinuxProfileDir" => p(&config.selinux_profile_dir),
        "initTimeout" => format!("{:?}", config.init_timeout),
        "enableIMA" => b(config.enable_ima),
        "enableUSBDeviceHandler" => b(config.enable_usb),
        "dropResourceFromProcessLogs" => b(config.drop_resource_from_process_logs),
        "matchArgs" => b(config.match_args),
        "enableNetworkPolicyEnforcer" => b(config.network_policy_enforcer),
        "annotateResources" => b(config.annotate_resources),
        "coverageTest" => b(config.coverage_test),
        "policyDir" => p(&config.policy_dir),
        "immutablePolicies" => b(config.immutable_policies),
        "probeDataPath" => op(&config.probe_data_path),
        "kaSocket" => p(&config.ka_socket),
        "metricsPort" => config.metrics_port.to_string(),
        "fanotifyFailMode" => if config.fanotify_fail_closed {
            "closed"
        } else {
            "open"
        }
        .to_string(),
        "runcStateDirs" => {
            if config.runc_state_dirs.is_empty() {
                "none".into()
            } else {
                config
                    .runc_state_dirs
                    .iter()
                    .map(|d| p(d))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        "planes" => config.planes.join(","),
        "usbSysfsRoot" => p(&config.usb_sysfs_root),
        "usbStateFile" => op(&config.usb_state_file),
        "usbAcceptUserspaceUevents" => b(config.usb_accept_userspace_uevents),
        _ => String::new(),
    }
}

/// `--help` text: usage and every key with its default.
pub fn usage() -> String {
    let mut s = String::from(
        "Usage: kubearmor [CONFIG] [-KEY=VALUE ...]\n\n\
         CONFIG is a kubearmor.yaml; without it: $KUBEARMOR_CFG, else kubearmor.yaml beside the\n\
         binary, else built-in defaults. Every key can also be given as a flag (-gRPC=32767) or an\n\
         environment variable named after the key in upper case (GRPC=32767).\n\
         Precedence: environment > config file > flag > default.\n\nKeys:\n",
    );
    for k in KEYS {
        let default = match k.default {
            DefaultValue::Str("") => "\"\"".to_string(),
            DefaultValue::Str(d) => d.to_string(),
            DefaultValue::Hostname => "<host name>".to_string(),
        };
        s.push_str(&format!(
            "  {:<30} {} (default {})\n",
            k.name, k.help, default
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(
        file: Option<&str>,
        envs: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> Result<Resolved, ConfigError> {
        let env = env(envs);
        let flags: Vec<(String, String)> = flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let path = Path::new("/etc/kubearmor.yaml");
        resolve(Inputs {
            file: file.map(|text| FileInput { path, text }),
            env: &env,
            flags: &flags,
            hostname: "vm-1.example.com",
        })
    }

    fn problems(r: Result<Resolved, ConfigError>) -> Vec<Problem> {
        match r {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_safe_systemd_defaults() {
        let r = run(None, &[], &[]).unwrap();
        let c = &r.config;
        assert!(!c.k8s);
        assert!(c.host_policy);
        assert!(c.container_policy);
        assert_eq!(c.grpc_port, 32767);
        assert_eq!(c.health_port, 32766);
        assert_eq!(c.host, "vm-1.example.com");
        assert_eq!(c.cluster, "default");
        assert_eq!(c.container_postures, Postures::default());
        assert_eq!(c.host_postures, Postures::default());
        assert_eq!(c.log_path, LogPath::None);
        assert_eq!(c.policy_dir, PathBuf::from("/opt/kubearmor/policies"));
        assert!(!c.immutable_policies);
        assert_eq!(
            c.throttle,
            ThrottleConfig {
                enabled: true,
                max_alerts_per_sec: 10,
                throttle_secs: 30
            }
        );
        assert_eq!(
            c.host_visibility.to_string(),
            "process,file,network,capabilities"
        );
        assert_eq!(c.init_timeout, Duration::from_secs(60));
        assert!(r.overrides().is_empty());
        assert!(r.warnings.is_empty());
        // Setting a key to its default is not an override.
        let r = run(Some("gRPC: 32767\ncluster: lab\n"), &[], &[]).unwrap();
        assert_eq!(r.changed, vec!["cluster"]);
        assert_eq!(r.source_counts(), (2, 0, 0));
    }

    #[test]
    fn every_key_is_typed_and_described() {
        // Each key name used by resolve/describe must exist in KEYS and round-trip.
        let r = run(None, &[], &[]).unwrap();
        for k in KEYS {
            let d = describe(&r.config, k.name);
            if let DefaultValue::Str(s) = k.default {
                if !matches!(
                    k.name,
                    "hostVisibility" | "initTimeout" | "probeDataPath" | "hookPath"
                ) {
                    assert_eq!(d, s, "{}", k.name);
                }
            }
        }
    }

    #[test]
    fn precedence_env_over_file_over_flag_over_default() {
        let file = "gRPC: 4000\ncluster: from-file\n";
        let r = run(
            Some(file),
            &[("GRPC", "5000")],
            &[
                ("gRPC", "3000"),
                ("cluster", "from-flag"),
                ("host", "flag-host"),
            ],
        )
        .unwrap();
        assert_eq!(r.config.grpc_port, 5000);
        assert_eq!(r.sources["gRPC"], Source::Env("GRPC".into()));
        assert_eq!(r.config.cluster, "from-file");
        assert_eq!(
            r.sources["cluster"],
            Source::File(PathBuf::from("/etc/kubearmor.yaml"))
        );
        assert_eq!(r.config.host, "flag-host");
        assert_eq!(r.sources["host"], Source::Flag);
        assert_eq!(r.sources["throttleSec"], Source::Default);
    }

    #[test]
    fn upstream_packaged_config_is_accepted() {
        let file = r#"
cluster: "default"
gRPC: "32767"
hostVisibility: "process,file,network,capabilities"
enableKubeArmorHostPolicy: true
enableKubeArmorVm: false
k8s: false
alertThrottling: true
maxAlertPerSec: 10
throttleSec: 30
"#;
        let r = run(Some(file), &[], &[]).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.config.grpc_port, 32767);
    }

    #[test]
    fn coco_config_is_accepted() {
        let file = "k8s: false\nuseOCIHooks: true\nhookPath: /run/output.json\n\
                    enableKubeArmorStateAgent: true\nenableKubeArmorPolicy: true\n\
                    visibility: process,network\ndefaultFilePosture: audit\n\
                    defaultNetworkPosture: audit\ndefaultCapabilitiesPosture: audit\n\
                    alertThrottling: true\nmaxAlertPerSec: 10\nthrottleSec: 30\n";
        let c = run(Some(file), &[], &[]).unwrap().config;
        assert!(c.state_agent && c.use_oci_hooks);
        assert_eq!(c.hook_path, Some(PathBuf::from("/run/output.json")));
        assert_eq!(c.visibility.to_string(), "process,network");
    }

    #[test]
    fn keys_are_case_insensitive() {
        let c = run(Some("GRPC: 1234\ndefaultfileposture: Block\n"), &[], &[])
            .unwrap()
            .config;
        assert_eq!(c.grpc_port, 1234);
        assert_eq!(c.container_postures.file, Posture::Block);
    }

    #[test]
    fn bad_posture_names_key_value_and_file() {
        let p = problems(run(Some("defaultFilePosture: blok\n"), &[], &[]));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "defaultFilePosture");
        assert_eq!(p[0].value, "blok");
        let text = p[0].to_string();
        assert!(text.contains("defaultFilePosture"), "{text}");
        assert!(text.contains("\"blok\""), "{text}");
        assert!(text.contains("/etc/kubearmor.yaml"), "{text}");
        assert!(text.contains("audit or block"), "{text}");
    }

    #[test]
    fn bad_port_from_env_names_the_variable() {
        let p = problems(run(None, &[("GRPC", "abc")], &[]));
        assert_eq!(p[0].key, "gRPC");
        assert!(p[0].to_string().contains("environment variable GRPC"));
        let p = problems(run(Some("gRPCHealthPort: 70000"), &[], &[]));
        assert_eq!(p[0].key, "gRPCHealthPort");
    }

    #[test]
    fn negative_rate_is_rejected() {
        let p = problems(run(Some("maxAlertPerSec: -1\nthrottleSec: 0\n"), &[], &[]));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["maxAlertPerSec", "throttleSec"]);
        assert_eq!(p[0].value, "-1");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let p = problems(run(
            Some("defaultFilePosture: blok\nhostDefaultDevicePosture: deny\nk8s: maybe\n"),
            &[],
            &[],
        ));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn unsupported_modes_are_errors() {
        for (k, v) in [
            ("k8s", "true"),
            ("enableKubeArmorVm", "true"),
            ("tlsEnabled", "true"),
        ] {
            let p = problems(run(Some(&format!("{k}: {v}")), &[], &[]));
            assert_eq!(p[0].key, k);
        }
    }

    #[test]
    fn unknown_keys_warn_with_a_close_match() {
        let r = run(Some("defaultFilePostur: block\nfrobnicate: 1\n"), &[], &[]).unwrap();
        assert_eq!(r.warnings.len(), 2);
        assert!(r.warnings[0].contains("\"defaultFilePostur\""));
        assert!(r.warnings[0].contains("did you mean \"defaultFilePosture\""));
        assert!(r.warnings[1].contains("\"frobnicate\""));
        assert!(!r.warnings[1].contains("did you mean"));
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(matches!(
            run(Some("gRPC: [1, 2]"), &[], &[]),
            Err(ConfigError::File { .. })
        ));
        assert!(matches!(
            run(Some("- a\n- b\n"), &[], &[]),
            Err(ConfigError::File { .. })
        ));
        assert!(matches!(
            run(Some("gRPC: 1\ngrpc: 2\n"), &[], &[]),
            Err(ConfigError::File { .. })
        ));
        assert!(matches!(
            run(Some("a: : :\n  - ]"), &[], &[]),
            Err(ConfigError::File { .. })
        ));
        // Empty and comment-only files are fine.
        assert!(run(Some(""), &[], &[]).is_ok());
        assert!(run(Some("# nothing\n"), &[], &[]).is_ok());
    }

    #[test]
    fn host_visibility_default_depends_on_mode() {
        let c = run(Some("enableKubeArmorHostPolicy: false"), &[], &[])
            .unwrap()
            .config;
        assert_eq!(c.host_visibility, Visibility::default());
        let c = run(Some("hostVisibility: process"), &[], &[])
            .unwrap()
            .config;
        assert_eq!(c.host_visibility.to_string(), "process");
        let p = problems(run(Some("visibility: process,files"), &[], &[]));
        assert!(p[0].reason.contains("\"files\""));
    }

    #[test]
    fn empty_host_means_short_hostname() {
        let c = run(Some("host: \"\""), &[], &[]).unwrap().config;
        assert_eq!(c.host, "vm-1");
    }

    #[test]
    fn same_ports_are_rejected() {
        let p = problems(run(Some("gRPC: 5000\ngRPCHealthPort: 5000"), &[], &[]));
        assert_eq!(p[0].key, "gRPCHealthPort");
        // 0 means "pick a port" for both.
        assert!(run(Some("gRPC: 0\ngRPCHealthPort: 0"), &[], &[]).is_ok());
    }

    #[test]
    fn special_env_and_test_socket() {
        let c = run(
            None,
            &[
                ("CRI_SOCKET", "unix:///run/containerd/containerd.sock"),
                (TEST_EVENT_SOCKET_ENV, "/tmp/x.sock"),
            ],
            &[],
        )
        .unwrap()
        .config;
        assert_eq!(c.cri_socket, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.test_event_socket, Some(PathBuf::from("/tmp/x.sock")));
        let p = problems(run(Some("criSocket: /run/x.sock"), &[], &[]));
        assert_eq!(p[0].key, "criSocket");
    }

    #[test]
    fn empty_env_is_ignored() {
        let c = run(Some("gRPC: 4000"), &[("GRPC", "")], &[])
            .unwrap()
            .config;
        assert_eq!(c.grpc_port, 4000);
    }

    #[test]
    fn args_parse_like_go_flags() {
        let a = parse_args(
            [
                "/opt/kubearmor/kubearmor.yaml",
                "-gRPC=1",
                "--k8s",
                "-cluster",
                "c1",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(
            a.config,
            Some(PathBuf::from("/opt/kubearmor/kubearmor.yaml"))
        );
        assert_eq!(
            a.flags,
            vec![
                ("gRPC".to_string(), "1".to_string()),
                ("k8s".to_string(), "true".to_string()),
                ("cluster".to_string(), "c1".to_string())
            ]
        );
        let e = parse_args(["-defaultFilePostur=block".to_string()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean \"defaultFilePosture\""),
            "{e}"
        );
        assert!(parse_args(["a.yaml".to_string(), "b.yaml".to_string()]).is_err());
        assert!(parse_args(["-cluster".to_string()]).is_err());
        assert!(parse_args(["--help".to_string()]).unwrap().help);
    }

    #[test]
    fn location_order() {
        let env_with = env(&[(CONFIG_ENV, "/etc/ka.yaml")]);
        let none = env(&[]);
        let dir = Path::new("/opt/kubearmor");
        assert_eq!(
            locate(Some(Path::new("x.yaml")), &env_with, Some(dir), |_| true),
            ConfigLocation::Argument("x.yaml".into())
        );
        assert_eq!(
            locate(None, &env_with, Some(dir), |_| true),
            ConfigLocation::Env("/etc/ka.yaml".into())
        );
        assert_eq!(
            locate(None, &none, Some(dir), |_| true),
            ConfigLocation::BesideBinary("/opt/kubearmor/kubearmor.yaml".into())
        );
        assert_eq!(
            locate(None, &none, Some(dir), |_| false),
            ConfigLocation::Embedded
        );
    }

    #[test]
    fn usb_state_file_and_test_only_userspace_uevents() {
        let r = run(None, &[], &[]).unwrap();
        assert_eq!(
            r.config.usb_state_file.as_deref(),
            Some(Path::new(kubearmor_usb::DEFAULT_STATE_FILE))
        );
        assert!(!r.config.usb_accept_userspace_uevents);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let r = run(
            Some("usbStateFile: none\nusbAcceptUserspaceUevents: true\n"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(r.config.usb_state_file, None);
        assert!(r.config.usb_accept_userspace_uevents);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("usbAcceptUserspaceUevents") && w.contains("TEST ONLY")),
            "{:?}",
            r.warnings
        );
        let r = run(None, &[("USBSTATEFILE", "/tmp/x/usb.state")], &[]).unwrap();
        assert_eq!(
            r.config.usb_state_file.as_deref(),
            Some(Path::new("/tmp/x/usb.state"))
        );
    }

    #[test]
    fn runc_state_dirs_default_to_the_rescan_roots() {
        let r = run(None, &[], &[]).unwrap();
        let defaults: Vec<PathBuf> = kubearmor_containers::rescan::DEFAULT_ROOTS
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(r.config.runc_state_dirs, defaults);
        let r = run(None, &[("RUNCSTATEDIRS", "/tmp/a/runc, /run/runc")], &[]).unwrap();
        assert_eq!(
            r.config.runc_state_dirs,
            [PathBuf::from("/tmp/a/runc"), PathBuf::from("/run/runc")]
        );
        assert_eq!(
            describe(&r.config, "runcStateDirs"),
            "/tmp/a/runc,/run/runc"
        );
        let r = run(Some("runcStateDirs: none\n"), &[], &[]).unwrap();
        assert!(r.config.runc_state_dirs.is_empty());
        assert_eq!(describe(&r.config, "runcStateDirs"), "none");
        let p = problems(run(
            Some("runcStateDirs: /run/runc,relative/dir\n"),
            &[],
            &[],
        ));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "runcStateDirs");
        assert!(p[0].reason.contains("\"relative/dir\""), "{}", p[0].reason);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("60"), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("s"), None);
    }

    #[test]
    fn bools_as_go() {
        for t in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        assert_eq!(parse_bool("yes"), None);
        let p = problems(run(Some("debug: yes"), &[], &[]));
        assert_eq!(p[0].key, "debug");
    }

    #[test]
    fn example_config_names_every_key_and_resolves() {
        let text = include_str!("../../../examples/kubearmor.yaml");
        for k in KEYS {
            assert!(
                text.lines().any(|l| l
                    .trim_start_matches("# ")
                    .starts_with(&format!("{}:", k.name))),
                "examples/kubearmor.yaml does not mention {}",
                k.name
            );
        }
        let r = run(Some(text), &[], &[]).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
}
