//! OCI runtime state (what a hook reads on stdin), the parts of a bundle's `config.json` we use,
//! and [`gather`], which turns them plus `/proc` into the container record we send. The hook and
//! the runc rescan share it, so both describe a container the same way.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::labels::{self, LabelInput};
use crate::procfs::{self, ProcError, ProcSource};
use crate::protocol::Container;

/// Largest OCI state document we read from stdin.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;
/// Largest `config.json` we read (seccomp profiles make them tens of KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("reading {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// The OCI state document (runtime-spec `state`), as given to hooks on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub pid: u32,
    pub bundle: String,
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
}

impl OciState {
    pub fn is_stopped(&self) -> bool {
        self.status == "stopped"
    }
}

/// The subset of the OCI runtime `config.json` we use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    #[serde(deserialize_with = "nullable")]
    pub root: SpecRoot,
    #[serde(deserialize_with = "nullable")]
    pub process: SpecProcess,
    #[serde(deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SpecRoot {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct SpecProcess {
    #[serde(deserialize_with = "nullable")]
    pub args: Vec<String>,
    #[serde(rename = "apparmorProfile", deserialize_with = "nullable")]
    pub apparmor_profile: String,
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn read_capped(mut r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, OciError> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| OciError::Io {
            what: what.to_string(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(OciError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// Parse the OCI state a hook gets on stdin.
pub fn parse_state(bytes: &[u8]) -> Result<OciState, OciError> {
    let state: OciState = serde_json::from_slice(bytes).map_err(|source| OciError::Json {
        what: "OCI state".to_string(),
        source,
    })?;
    if state.id.is_empty() {
        return Err(OciError::Invalid {
            what: "OCI state".to_string(),
            reason: "empty container id".to_string(),
        });
    }
    Ok(state)
}

/// Read and parse the OCI state from a reader (stdin), with a size cap.
pub fn read_state(r: impl Read) -> Result<OciState, OciError> {
    parse_state(&read_capped(r, MAX_STATE_BYTES, "OCI state")?)
}

/// Read `<bundle>/config.json`.
pub fn read_spec(bundle: &Path) -> Result<Spec, OciError> {
    let path = bundle.join("config.json");
    let what = path.display().to_string();
    let file = std::fs::File::open(&path).map_err(|source| OciError::Io {
        what: what.clone(),
        source,
    })?;
    let bytes = read_capped(file, MAX_CONFIG_BYTES, &what)?;
    serde_json::from_slice(&bytes).map_err(|source| OciError::Json { what, source })
}

/// The root filesystem of a bundle (a relative `root.path` is relative to the bundle).
pub fn rootfs_of(bundle: &str, spec: &Spec) -> String {
    if spec.root.path.is_empty() {
        return String::new();
    }
    let p = Path::new(&spec.root.path);
    if p.is_absolute() || bundle.is_empty() {
        spec.root.path.clone()
    } else {
        PathBuf::from(bundle).join(p).display().to_string()
    }
}

/// What [`gather`] could not find; the record is still usable.
#[derive(Debug)]
pub struct GatherWarning(pub String);

/// The inputs of [`gather`].
#[derive(Debug, Clone, Default)]
pub struct GatherInput<'a> {
    pub id: &'a str,
    pub pid: u32,
    pub bundle: &'a str,
    /// Annotations from the OCI state (merged with the spec's, which they override).
    pub state_annotations: Option<&'a BTreeMap<String, String>>,
    /// The bundle's config.json, when it could be read.
    pub spec: Option<&'a Spec>,
}

/// Build the container record for a create message: id, annotations, rootfs, profile, pid,
/// namespaces, cgroup, and the derived name, namespace and labels.
///
/// Fails only when the process is gone or its namespaces cannot be read (nothing could then
/// identify the container's events); a missing cgroup id is a warning, the daemon resolves it
/// from the pid if it can.
pub fn gather(
    input: &GatherInput<'_>,
    proc: &dyn ProcSource,
) -> Result<(Container, Vec<GatherWarning>), ProcError> {
    let mut warnings = Vec::new();
    let mut annotations = input
        .spec
        .map(|s| s.annotations.clone())
        .unwrap_or_default();
    if let Some(a) = input.state_annotations {
        annotations.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    let pidns = procfs::ns_of(proc, input.pid, "pid")?;
    let mntns = procfs::ns_of(proc, input.pid, "mnt")?;
    let (cgroup_path, cgroup_id) = match procfs::cgroup_of(proc, input.pid) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(GatherWarning(format!("no cgroup id: {e}")));
            (String::new(), 0)
        }
    };

    let derived = labels::derive(&LabelInput {
        container_id: input.id,
        annotations: Some(&annotations),
        ..Default::default()
    });

    let mut profile = input
        .spec
        .map(|s| s.process.apparmor_profile.clone())
        .unwrap_or_default();
    if profile.is_empty() {
        // the k8s hook's fallback when config.json is unreadable
        let key = format!(
            "container.apparmor.security.beta.kubernetes.io/{}",
            derived.name
        );
        if let Some(v) = annotations.get(&key) {
            profile = v.strip_prefix("localhost/").unwrap_or(v).to_string();
        }
    }

    let container = Container {
        container_id: input.id.to_string(),
        container_name: derived.name.clone(),
        container_image: derived.image.clone(),
        namespace_name: derived.namespace.clone(),
        endpoint_name: derived.endpoint.clone(),
        labels: labels::label_string(&derived.labels),
        apparmor_profile: profile,
        pidns,
        mntns,
        pid: input.pid,
        status: "running".to_string(),
        cgroup_id,
        cgroup_path,
        rootfs: input
            .spec
            .map(|s| rootfs_of(input.bundle, s))
            .unwrap_or_default(),
        bundle: input.bundle.to_string(),
        labels_map: derived.labels,
        annotations,
        ..Container::default()
    };
    Ok((container, warnings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::procfs::fake::FakeProc;

    #[test]
    fn state_documents() {
        let s = parse_state(br#"{"ociVersion":"1.0.2-dev","id":"karx1","status":"creating","pid":16606,"bundle":"/tmp/b","annotations":{"foo":"bar"}}"#).unwrap();
        assert_eq!(s.id, "karx1");
        assert_eq!(s.pid, 16606);
        assert!(!s.is_stopped());
        assert_eq!(s.annotations["foo"], "bar");
        // poststop: no pid
        let s = parse_state(br#"{"ociVersion":"1.0.2-dev","id":"karx1","status":"stopped","bundle":"/tmp/b","annotations":null}"#).unwrap();
        assert!(s.is_stopped());
        assert_eq!(s.pid, 0);
        assert!(parse_state(b"").is_err());
        assert!(parse_state(b"{").is_err());
        assert!(parse_state(br#"{"id":""}"#).is_err());
        assert!(parse_state(br#"{"id":"x","pid":-4}"#).is_err());
        let big = vec![b' '; (MAX_STATE_BYTES + 10) as usize];
        assert!(matches!(
            read_state(&big[..]),
            Err(OciError::TooLarge { .. })
        ));
    }

    #[test]
    fn spec_subset() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2-dev","process":{"terminal":false,"args":["/bin/sh"],"apparmorProfile":"kubearmor_web"},
                "root":{"path":"rootfs","readonly":true},"hostname":"runc","annotations":{"a":"b"},
                "linux":{"namespaces":[{"type":"pid"}]}}"#,
        )
        .unwrap();
        assert_eq!(spec.process.apparmor_profile, "kubearmor_web");
        assert_eq!(rootfs_of("/b", &spec), "/b/rootfs");
        let abs = Spec {
            root: SpecRoot {
                path: "/abs/root".into(),
                readonly: false,
            },
            ..Spec::default()
        };
        assert_eq!(rootfs_of("/b", &abs), "/abs/root");
        assert_eq!(rootfs_of("/b", &Spec::default()), "");
    }

    #[test]
    fn gather_fills_upstream_and_extension_fields() {
        let proc = FakeProc::default();
        proc.add(77, "/web", 82, 4026532180, 4026532177);
        let spec: Spec = serde_json::from_str(
            r#"{"root":{"path":"rootfs"},"process":{"apparmorProfile":"p1"},"annotations":{"tier":"db","x":"spec"}}"#,
        )
        .unwrap();
        let state_ann: BTreeMap<String, String> = [("x".to_string(), "state".to_string())]
            .into_iter()
            .collect();
        let (c, warnings) = gather(
            &GatherInput {
                id: "web",
                pid: 77,
                bundle: "/bundles/web",
                state_annotations: Some(&state_ann),
                spec: Some(&spec),
            },
            &proc,
        )
        .unwrap();
        assert!(warnings.is_empty());
        assert_eq!(c.container_id, "web");
        assert_eq!(c.container_name, "web");
        assert_eq!(c.namespace_name, "container_namespace");
        assert_eq!(c.endpoint_name, "web");
        assert_eq!(c.apparmor_profile, "p1");
        assert_eq!((c.pid, c.pidns, c.mntns), (77, 4026532180, 4026532177));
        assert_eq!((c.cgroup_id, c.cgroup_path.as_str()), (82, "/web"));
        assert_eq!(c.rootfs, "/bundles/web/rootfs");
        assert_eq!(c.annotations["x"], "state");
        assert_eq!(c.labels_map["tier"], "db");
        assert_eq!(c.labels_map["kubearmor.io/container.name"], "web");
        assert_eq!(c.labels, "kubearmor.io/container.name=web,tier=db,x=state");
        assert_eq!(c.status, "running");
    }

    #[test]
    fn gather_without_spec_uses_annotation_profile() {
        let proc = FakeProc::default();
        proc.add(5, "/p", 9, 1, 2);
        let ann: BTreeMap<String, String> = [
            ("io.kubernetes.container.name", "nginx"),
            (
                "container.apparmor.security.beta.kubernetes.io/nginx",
                "localhost/prof",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (c, _) = gather(
            &GatherInput {
                id: "id1",
                pid: 5,
                state_annotations: Some(&ann),
                ..Default::default()
            },
            &proc,
        )
        .unwrap();
        assert_eq!(c.apparmor_profile, "prof");
        assert_eq!(c.container_name, "nginx");
    }

    #[test]
    fn gather_errors_and_warnings() {
        let proc = FakeProc::default();
        assert!(gather(
            &GatherInput {
                id: "gone",
                pid: 1234,
                ..Default::default()
            },
            &proc
        )
        .is_err());
        // namespaces readable, cgroup directory missing: a warning, cgroup id 0
        proc.add(6, "/c", 10, 1, 2);
        if let Ok(mut c) = proc.cgroups.lock() {
            c.clear();
        }
        let (c, warnings) = gather(
            &GatherInput {
                id: "c",
                pid: 6,
                ..Default::default()
            },
            &proc,
        )
        .unwrap();
        assert_eq!(c.cgroup_id, 0);
        assert_eq!(warnings.len(), 1);
    }
}
