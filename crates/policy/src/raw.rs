//! The policy documents exactly as written (YAML or JSON), before validation.
//!
//! Field names follow the `security.kubearmor.com/v1` CRDs. Unknown fields are rejected so a
//! typo (`matchDirectory`, `readonly`) is an error instead of a rule that silently does nothing.
//! Everything is optional here; `validate` decides what is required and what it means.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDocument {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<RawMetadata>,
    pub spec: Option<RawSpec>,
    /// Written back by Kubernetes controllers; accepted and ignored.
    #[allow(dead_code)]
    pub status: Option<serde_yaml::Value>,
}

/// Only `name` and `namespace` matter; the rest of Kubernetes metadata is accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawMetadata {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Upstream's JSON policy backups record a container policy's namespace here.
    pub namespace_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSpec {
    pub selector: Option<RawSelector>,
    pub node_selector: Option<RawNodeSelector>,
    pub process: Option<RawProcess>,
    pub file: Option<RawFile>,
    pub network: Option<RawNetwork>,
    pub capabilities: Option<RawCapabilities>,
    pub syscalls: Option<RawSyscalls>,
    pub device: Option<RawDevice>,
    pub presets: Option<Vec<serde_yaml::Value>>,
    pub apparmor: Option<String>,
    pub severity: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub message: Option<String>,
    pub action: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<RawExpression>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExpression {
    pub key: Option<String>,
    pub operator: Option<String>,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNodeSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// severity / tags / message / action, as given at family or rule level.
#[derive(Debug, Default, Clone)]
pub struct RawMeta {
    pub severity: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub message: Option<String>,
    pub action: Option<String>,
}

/// Declares a struct that also carries the four metadata fields. serde cannot combine
/// `flatten` with `deny_unknown_fields`, so the fields are spelled out by this macro instead.
macro_rules! with_meta {
    ($(#[$attr:meta])* pub struct $name:ident { $($(#[$fattr:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$attr])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fattr])* pub $field: $ty,)*
            pub severity: Option<i64>,
            pub tags: Option<Vec<String>>,
            pub message: Option<String>,
            pub action: Option<String>,
        }

        impl $name {
            pub fn meta(&self) -> RawMeta {
                RawMeta {
                    severity: self.severity,
                    tags: self.tags.clone(),
                    message: self.message.clone(),
                    action: self.action.clone(),
                }
            }
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSource {
    pub path: Option<String>,
}

with_meta! {
pub struct RawProcess {
    pub match_paths: Option<Vec<RawProcessPath>>,
    pub match_directories: Option<Vec<RawDirectory>>,
    pub match_patterns: Option<Vec<RawPattern>>,
}
}

with_meta! {
pub struct RawFile {
    pub match_paths: Option<Vec<RawFilePath>>,
    pub match_directories: Option<Vec<RawDirectory>>,
    pub match_patterns: Option<Vec<RawPattern>>,
}
}

with_meta! {
pub struct RawProcessPath {
    pub path: Option<String>,
    pub execname: Option<String>,
    pub owner_only: Option<bool>,
    pub pts: Option<bool>,
    pub allowed_args: Option<Vec<String>>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
pub struct RawFilePath {
    pub path: Option<String>,
    pub read_only: Option<bool>,
    pub owner_only: Option<bool>,
    pub pts: Option<bool>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
/// A directory rule; `readOnly` is only meaningful (and only accepted) for files.
pub struct RawDirectory {
    pub dir: Option<String>,
    pub recursive: Option<bool>,
    pub read_only: Option<bool>,
    pub owner_only: Option<bool>,
    pub pts: Option<bool>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
pub struct RawPattern {
    pub pattern: Option<String>,
    pub read_only: Option<bool>,
    pub owner_only: Option<bool>,
}
}

with_meta! {
pub struct RawNetwork {
    pub match_protocols: Option<Vec<RawProtocol>>,
    #[serde(rename = "matchDNSQueries")]
    pub match_dns_queries: Option<Vec<RawDns>>,
}
}

with_meta! {
pub struct RawProtocol {
    pub protocol: Option<String>,
    pub pts: Option<bool>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
pub struct RawDns {
    pub domain: Option<String>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
pub struct RawCapabilities {
    pub match_capabilities: Option<Vec<RawCapability>>,
}
}

with_meta! {
pub struct RawCapability {
    pub capability: Option<String>,
    pub from_source: Option<Vec<RawSource>>,
}
}

with_meta! {
pub struct RawSyscalls {
    pub match_syscalls: Option<Vec<RawSyscallRule>>,
    pub match_paths: Option<Vec<RawSyscallRule>>,
}
}

with_meta! {
pub struct RawSyscallRule {
    pub syscall: Option<Vec<String>>,
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub from_source: Option<Vec<RawSyscallSource>>,
}
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSyscallSource {
    pub path: Option<String>,
    pub dir: Option<String>,
    pub recursive: Option<bool>,
}

with_meta! {
pub struct RawDevice {
    pub match_device: Option<Vec<RawDeviceRule>>,
}
}

with_meta! {
pub struct RawDeviceRule {
    /// A class name (`MASS-STORAGE`, `ALL`) or a number; YAML may give either type.
    pub class: Option<serde_yaml::Value>,
    pub sub_class: Option<i64>,
    pub protocol: Option<i64>,
    pub level: Option<i64>,
}
}
