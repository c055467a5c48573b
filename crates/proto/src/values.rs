//! String values and defaults of the KubeArmor API (spec §0, §1.6, §2, §6), so that other
//! crates do not spell them out. They must match upstream byte for byte: karmor, dashboards
//! and KubeArmor's tests compare them literally.

/// Default TCP port of the main gRPC server (config key `gRPC`).
pub const GRPC_PORT: u16 = 32767;
/// Default TCP port of the separate plaintext `grpc.health.v1.Health` server (`gRPCHealthPort`).
pub const HEALTH_PORT: u16 = 32766;

/// Full gRPC service names, as registered and as reported by the health server.
pub mod service {
    pub const LOG_SERVICE: &str = "feeder.LogService";
    pub const POLICY_SERVICE: &str = "policy.PolicyService";
    pub const PROBE_SERVICE: &str = "policy.ProbeService";
    pub const STATE_AGENT: &str = "state_agent.StateAgent";
}

/// `RequestMessage.Filter` values. WatchAlerts accepts `all`/`policy`, WatchLogs `all`/`system`;
/// anything else ends the stream with OK.
pub mod filter {
    pub const ALL: &str = "all";
    pub const POLICY: &str = "policy";
    pub const SYSTEM: &str = "system";
}

/// Event `Type` values.
pub mod event_type {
    pub const MATCHED_POLICY: &str = "MatchedPolicy";
    pub const MATCHED_HOST_POLICY: &str = "MatchedHostPolicy";
    pub const MATCHED_NETWORK_POLICY: &str = "MatchedNetworkPolicy";
    /// Throttle notice (Operation `AlertThreshold`).
    pub const SYSTEM_EVENT: &str = "SystemEvent";
    pub const CONTAINER_LOG: &str = "ContainerLog";
    pub const HOST_LOG: &str = "HostLog";
    pub const SYSTEM_LOG: &str = "SystemLog";
    /// `Message.Type` of the debug message stream.
    pub const MESSAGE: &str = "Message";
}

/// Event `Operation` values.
pub mod operation {
    pub const PROCESS: &str = "Process";
    pub const FILE: &str = "File";
    pub const NETWORK: &str = "Network";
    pub const CAPABILITIES: &str = "Capabilities";
    pub const SYSCALL: &str = "Syscall";
    pub const DEVICE: &str = "Device";
    pub const NETWORK_FIREWALL: &str = "NetworkFirewall";
    pub const ALERT_THRESHOLD: &str = "AlertThreshold";
}

/// Event `Result` values that the API itself names. Other failures carry the glibc
/// `strerror` text of the errno.
pub mod result {
    /// retval >= 0.
    pub const PASSED: &str = "Passed";
    /// EPERM (1).
    pub const OPERATION_NOT_PERMITTED: &str = "Operation not permitted";
    /// EACCES (13); also what the BPF-LSM enforcer reports for every denial.
    pub const PERMISSION_DENIED: &str = "Permission denied";
    pub const UNKNOWN_ERROR: &str = "Unknown error";
    /// USB unplug.
    pub const REMOVED: &str = "Removed";
}

/// Event `Enforcer` values.
pub mod enforcer {
    /// The feeder's default: userspace audit and default-posture decisions. Note the space.
    pub const EBPF_MONITOR: &str = "eBPF Monitor";
    pub const APPARMOR: &str = "AppArmor";
    pub const BPFLSM: &str = "BPFLSM";
    pub const SELINUX: &str = "SELinux";
    pub const USB_DEVICE_HANDLER: &str = "USBDeviceHandler";
    pub const NETWORK_POLICY_ENFORCER: &str = "NetworkPolicyEnforcer";
    /// Prefix of every preset enforcer; events whose Enforcer contains it skip policy matching.
    pub const PRESET_PREFIX: &str = "PRESET-";
    pub const PRESET_EXEC: &str = "PRESET-ExecPreset";
    pub const PRESET_PROTECT_PROC: &str = "PRESET-ProtectProcPreset";
    pub const PRESET_FILELESS_EXECUTION: &str = "PRESET-FilelessExecutionPreset";
    pub const PRESET_PROTECT_ENV: &str = "PRESET-ProtectEnvPreset";
    pub const PRESET_ANON_MAP_EXECUTION: &str = "PRESET-AnonMapExecutionPreset";
}

/// Event `Action` values.
pub mod action {
    pub const ALLOW: &str = "Allow";
    pub const AUDIT: &str = "Audit";
    pub const BLOCK: &str = "Block";
    /// Rule actions of a policy whose workload is in audited mode.
    pub const AUDIT_ALLOW: &str = "Audit (Allow)";
    pub const AUDIT_BLOCK: &str = "Audit (Block)";
    /// Device logs.
    pub const REMOVE: &str = "Remove";
}

/// `Message.Level` values.
pub mod level {
    pub const INFO: &str = "INFO";
    pub const DEBUG: &str = "DEBUG";
    pub const ERROR: &str = "ERROR";
    pub const WARN: &str = "WARN";
}

/// `PolicyName` of a default-posture decision.
pub const DEFAULT_POSTURE: &str = "DefaultPosture";
/// Namespace of every container in non-k8s mode.
pub const CONTAINER_NAMESPACE: &str = "container_namespace";
/// `HashAlgo` when any IMA hash is present.
pub const HASH_ALGO_SHA256: &str = "sha256";

/// `type` of the policy event JSON carried in `policy.policy` (§2.3).
pub mod policy_event {
    pub const ADDED: &str = "ADDED";
    pub const MODIFIED: &str = "MODIFIED";
    pub const DELETED: &str = "DELETED";
}

/// `StateEvent.Kind` and `StateEvent.Type` values (§6).
pub mod state {
    pub const KIND_NODE: &str = "node";
    pub const KIND_NAMESPACE: &str = "namespace";
    pub const KIND_CONTAINER: &str = "container";
    /// Defined upstream but never sent.
    pub const KIND_POD: &str = "pod";
    pub const TYPE_ADDED: &str = "added";
    /// Defined upstream but never sent.
    pub const TYPE_UPDATED: &str = "updated";
    pub const TYPE_DELETED: &str = "deleted";
}
