//! The key table: every key once, with its type, default, effect and help.
//!
//! [`Key`] names each key in code, so a misspelt key does not compile; [`KEYS`] holds the specs
//! in the order of `examples/kubearmor.yaml`, indexed by `Key as usize` (the [`keys!`] macro
//! builds both from one list, so they cannot drift apart).

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
    pub key: Key,
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    pub effect: Effect,
    pub help: &'static str,
}

impl Key {
    /// The key's spec.
    pub const fn spec(self) -> &'static KeySpec {
        &KEYS[self as usize]
    }

    /// The upstream (viper) name, e.g. `defaultFilePosture`.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }
}

/// A spec whose `key` the [`keys!`] macro fills in.
const fn key(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    effect: Effect,
    help: &'static str,
) -> KeySpec {
    KeySpec {
        key: Key::Cluster,
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

/// Declares [`Key`] and [`KEYS`] from one list of `Variant => spec` pairs.
macro_rules! keys {
    ($($(#[$doc:meta])* $variant:ident => $spec:expr,)*) => {
        /// Every configuration key, by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key {
            $($(#[$doc])* $variant,)*
        }

        /// Every key, in the order of `examples/kubearmor.yaml` (and of [`Key`]).
        pub const KEYS: &[KeySpec] = &[
            $(KeySpec { key: Key::$variant, ..$spec },)*
        ];
    };
}

keys! {
    Cluster => key(
        "cluster",
        Kind::Text,
        "default",
        Effect::Active,
        "cluster name in events",
    ),
    Host => KeySpec {
        default: DefaultValue::Hostname,
        ..key(
            "host",
            Kind::Text,
            "",
            Effect::Active,
            "host name in events; the host's policy identity is kubearmor.io/hostname=<host>",
        )
    },
    K8s => key(
        "k8s",
        Kind::Bool,
        "false",
        Effect::Active,
        "Kubernetes mode (only false is supported)",
    ),
    Grpc => key(
        "gRPC",
        Kind::Port,
        "32767",
        Effect::Active,
        "port of the gRPC API (0 = pick one)",
    ),
    GrpcHealthPort => key(
        "gRPCHealthPort",
        Kind::Port,
        "32766",
        Effect::Active,
        "port of grpc.health.v1 (plaintext)",
    ),
    GrpcListenAddress => key(
        "gRPCListenAddress",
        Kind::Text,
        "",
        Effect::Active,
        "IP address the gRPC API and health servers listen on (empty = every address, IPv6 and IPv4)",
    ),
    GrpcSocket => key(
        "gRPCSocket",
        Kind::OptionalPath,
        "/var/run/kubearmor/grpc.sock",
        Effect::Active,
        "Unix socket serving the gRPC API to root on this host (0600, directory 0750 root; none = off)",
    ),
    TlsEnabled => key(
        "tlsEnabled",
        Kind::Bool,
        "false",
        Effect::Active,
        "gRPC API over mutual TLS (clients need a certificate signed by tlsCertPath/ca.crt)",
    ),
    TlsCertPath => key(
        "tlsCertPath",
        Kind::Path,
        "/var/lib/kubearmor/tls",
        Effect::Active,
        "TLS certificate directory: ca.crt, server.crt, server.key",
    ),
    TlsCertProvider => key(
        "tlsCertProvider",
        Kind::TlsProvider,
        "self",
        Effect::Active,
        "self or external (only external is implemented: the files in tlsCertPath)",
    ),
    LogPath => key(
        "logPath",
        Kind::LogPath,
        "none",
        Effect::Active,
        "JSON lines of every event: none, stdout or a file",
    ),
    Debug => key(
        "debug",
        Kind::Bool,
        "false",
        Effect::Active,
        "debug logs, also streamed by WatchMessages",
    ),
    EnableKubeArmorPolicy => key(
        "enableKubeArmorPolicy",
        Kind::Bool,
        "true",
        Effect::Active,
        "accept container policies",
    ),
    EnableKubeArmorHostPolicy => key(
        "enableKubeArmorHostPolicy",
        Kind::Bool,
        "true",
        Effect::Active,
        "accept host policies",
    ),
    EnableKubeArmorVm => key(
        "enableKubeArmorVm",
        Kind::Bool,
        "false",
        Effect::Active,
        "KVM-service agent mode (only false is supported)",
    ),
    EnableKubeArmorStateAgent => key(
        "enableKubeArmorStateAgent",
        Kind::Bool,
        "false",
        Effect::Active,
        "serve state_agent.StateAgent",
    ),
    Visibility => key(
        "visibility",
        Kind::Visibility,
        "process,file,network,capabilities",
        MONITOR,
        "container visibility",
    ),
    HostVisibility => key(
        "hostVisibility",
        Kind::HostVisibility,
        "default",
        MONITOR,
        "host visibility (default: as visibility words process,file,network,capabilities)",
    ),
    DefaultFilePosture => key(
        "defaultFilePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container file posture",
    ),
    DefaultNetworkPosture => key(
        "defaultNetworkPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container network posture",
    ),
    DefaultCapabilitiesPosture => key(
        "defaultCapabilitiesPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "container capabilities posture",
    ),
    HostDefaultFilePosture => key(
        "hostDefaultFilePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host file posture",
    ),
    HostDefaultNetworkPosture => key(
        "hostDefaultNetworkPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host network posture",
    ),
    HostDefaultCapabilitiesPosture => key(
        "hostDefaultCapabilitiesPosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host capabilities posture",
    ),
    HostDefaultDevicePosture => key(
        "hostDefaultDevicePosture",
        Kind::Posture,
        "audit",
        Effect::Active,
        "host USB device posture",
    ),
    AlertThrottling => key(
        "alertThrottling",
        Kind::Bool,
        "true",
        Effect::Active,
        "throttle alerts per container / host",
    ),
    MaxAlertPerSec => key(
        "maxAlertPerSec",
        Kind::Positive,
        "10",
        Effect::Active,
        "alerts per second before throttling",
    ),
    ThrottleSec => key(
        "throttleSec",
        Kind::Positive,
        "30",
        Effect::Active,
        "seconds alerts are dropped once throttled",
    ),
    Lsm => key(
        "lsm",
        Kind::Lsm,
        "bpf,apparmor,selinux",
        ENFORCER,
        "enforcer preference, or none",
    ),
    BpfFsPath => key(
        "bpfFsPath",
        Kind::Path,
        "/sys/fs/bpf",
        Effect::Active,
        "BPF filesystem for pinned maps",
    ),
    EnforcerAlerts => key(
        "enforcerAlerts",
        Kind::Bool,
        "true",
        ENFORCER,
        "the BPF-LSM enforcer raises its own alerts",
    ),
    DefaultPostureLogs => key(
        "defaultPostureLogs",
        Kind::Bool,
        "true",
        ENFORCER,
        "keep default-posture logs",
    ),
    ProcfsMount => key(
        "procfsMount",
        Kind::Path,
        "/proc",
        Effect::Active,
        "procfs mount point",
    ),
    MachineIdPath => key(
        "machineIDPath",
        Kind::Path,
        "/etc/machine-id",
        Effect::Active,
        "machine id file (NodeID in events)",
    ),
    UseOciHooks => key(
        "useOCIHooks",
        Kind::Bool,
        "false",
        Effect::Active,
        "register containers from the OCI hook",
    ),
    HookPath => key(
        "hookPath",
        Kind::OptionalPath,
        "",
        Effect::Active,
        "hook records file read at start, e.g. /run/output.json (CoCo)",
    ),
    CriSocket => key(
        "criSocket",
        Kind::CriSocket,
        "",
        REGISTRY,
        "container runtime socket (unix://...)",
    ),
    NriSocket => key("nriSocket", Kind::Text, "", REGISTRY, "NRI socket"),
    NriIndex => key(
        "nriIndex",
        Kind::NriIndex,
        "99",
        REGISTRY,
        "NRI plugin index",
    ),
    EnableNri => key(
        "enableNRI",
        Kind::Bool,
        "false",
        REGISTRY,
        "register containers through NRI",
    ),
    UntrackedNs => key(
        "untrackedNs",
        Kind::List,
        "kube-system,kubearmor",
        K8S,
        "namespaces where new policies are not enforced",
    ),
    SeLinuxProfileDir => key(
        "seLinuxProfileDir",
        Kind::Path,
        "/tmp/kubearmor.selinux",
        ENFORCER,
        "SELinux profiles",
    ),
    InitTimeout => key(
        "initTimeout",
        Kind::Duration,
        "60s",
        Effect::NotYet("the init stage"),
        "init stage timeout",
    ),
    EnableIma => key(
        "enableIMA",
        Kind::Bool,
        "false",
        MONITOR,
        "file hashes in events",
    ),
    EnableUsbDeviceHandler => key(
        "enableUSBDeviceHandler",
        Kind::Bool,
        "false",
        Effect::Active,
        "enforce USB device rules",
    ),
    DropResourceFromProcessLogs => key(
        "dropResourceFromProcessLogs",
        Kind::Bool,
        "false",
        Effect::Active,
        "omit Resource in process logs",
    ),
    MatchArgs => key(
        "matchArgs",
        Kind::Bool,
        "true",
        ENFORCER,
        "match allowedArgs",
    ),
    EnableNetworkPolicyEnforcer => key(
        "enableNetworkPolicyEnforcer",
        Kind::Bool,
        "true",
        Effect::NotYet("KubeArmorNetworkPolicy support"),
        "KubeArmorNetworkPolicy enforcer",
    ),
    AnnotateResources => key(
        "annotateResources",
        Kind::Bool,
        "false",
        K8S,
        "annotate pods without a controller",
    ),
    CoverageTest => key(
        "coverageTest",
        Kind::Bool,
        "false",
        Effect::NotYet("coverage builds"),
        "test only",
    ),
    // Ours.
    PolicyDir => key(
        "policyDir",
        Kind::Path,
        "/opt/kubearmor/policies",
        Effect::Active,
        "policy directory: loaded at start, watched, written by PolicyService",
    ),
    ImmutablePolicies => key(
        "immutablePolicies",
        Kind::Bool,
        "false",
        Effect::Active,
        "refuse policy changes over gRPC (baked-in policies)",
    ),
    SelfProtection => key(
        "selfProtection",
        Kind::Bool,
        "false",
        Effect::Active,
        "with the bpf-lsm plane: only the daemon may signal or ptrace itself or write its binary, config, policy directory and pins (root included)",
    ),
    Planes => key(
        "planes",
        Kind::Text,
        "bpf-lsm,cgroup-bpf,fanotify,usb",
        Effect::Active,
        "enforcement planes to start (bpf-lsm, cgroup-bpf, fanotify, usb), or none; bpf-lsm, where it loads, replaces cgroup-bpf and fanotify",
    ),
    FanotifyFailMode => key(
        "fanotifyFailMode",
        Kind::Text,
        "open",
        Effect::Active,
        "what the fanotify plane answers when it cannot decide (process gone, /proc unreadable): open or closed",
    ),
    MetricsPort => key(
        "metricsPort",
        Kind::Port,
        "0",
        Effect::Active,
        "port of /metrics (Prometheus text: enforced families, pipeline counters); 0 = off",
    ),
    KaSocket => key(
        "kaSocket",
        Kind::Path,
        "/var/run/kubearmor/ka.sock",
        Effect::Active,
        "socket the OCI hook (kubearmor-hook) registers containers on",
    ),
    KaSocketMode => key(
        "kaSocketMode",
        Kind::Text,
        "0600",
        Effect::Active,
        "file mode of kaSocket, octal (0600: root only; rootless runtimes need more)",
    ),
    RuncStateDirs => key(
        "runcStateDirs",
        Kind::List,
        "/run/runc,/run/containerd/runc,/run/docker/runtime-runc",
        Effect::Active,
        "runc state roots rescanned at start for running containers (useOCIHooks), or none",
    ),
    UsbSysfsRoot => key(
        "usbSysfsRoot",
        Kind::Path,
        "/sys",
        Effect::Active,
        "sysfs the USB device handler reads and writes (tests use a fake tree)",
    ),
    UsbStateFile => key(
        "usbStateFile",
        Kind::OptionalPath,
        kubearmor_usb::DEFAULT_STATE_FILE,
        Effect::Active,
        "USB handler state file, read by the escape hatch and the next start (none = no file)",
    ),
    UsbAcceptUserspaceUevents => key(
        "usbAcceptUserspaceUevents",
        Kind::Bool,
        "false",
        Effect::Active,
        "TEST ONLY: the USB handler accepts uevents from userspace senders (forgeable by any root process)",
    ),
    ProbeDataPath => key(
        "probeDataPath",
        Kind::OptionalPath,
        "/tmp/karmorProbeData.cfg",
        Effect::Active,
        "karmor probe file (empty or none = do not write)",
    ),
}

/// Upstream keys that this daemon reads only from the environment under another name.
pub(super) const SPECIAL_ENV: &[(&str, Key)] = &[
    ("CRI_SOCKET", Key::CriSocket),
    ("NRI_SOCKET", Key::NriSocket),
];

/// Looks a key up by name, case-insensitively.
pub fn find_key(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

// `Key as usize` indexes KEYS.
const _: () = {
    let mut i = 0;
    while i < KEYS.len() {
        assert!(KEYS[i].key as usize == i);
        i += 1;
    }
};
