//! Start-up discovery of running runc containers, so a daemon (re)start loses nothing.
//!
//! We read runc's state directories (`<root>/<id>/state.json`) rather than running
//! `runc list --format json`:
//! * no process to spawn, and no dependency on a `runc` binary in the daemon's `PATH` (or in
//!   its container image);
//! * one pass covers every runc root on the host: plain runc (`/run/runc`), containerd's shim
//!   (`/run/containerd/runc/<namespace>`), Docker (`/run/docker/runtime-runc/moby`), each of
//!   which `runc list` would need a separate `--root` for;
//! * `state.json` is libcontainer's internal format, so we rely on four long-stable fields only
//!   (`id`, `init_process_pid`, `init_process_start`, `config.labels` for the bundle) and verify
//!   everything against `/proc`: the pid must be alive with the recorded start time (a stale
//!   state directory left by a crash, or a recycled pid, is skipped), and the namespaces and
//!   cgroup are read from `/proc/PID`, exactly as the hook does.
//!
//! The bundle's `config.json` gives annotations and the AppArmor profile when it still exists;
//! otherwise the annotations runc copied into `config.labels` are used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::oci::{self, GatherInput, OciError};
use crate::procfs::{self, ProcSource};
use crate::protocol::{Container, HookRequest};
use crate::registry::{Registry, Source};

/// Largest `state.json` we read.
pub const MAX_STATE_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// Where runc keeps state, by runtime. Each root holds `<id>/state.json`, or (containerd,
/// docker) namespace directories that hold them.
pub const DEFAULT_ROOTS: &[&str] = &[
    "/run/runc",
    "/run/containerd/runc",
    "/run/docker/runtime-runc",
];

#[derive(Debug, Clone)]
pub struct RescanConfig {
    pub roots: Vec<PathBuf>,
}

impl Default for RescanConfig {
    fn default() -> Self {
        RescanConfig {
            roots: DEFAULT_ROOTS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// The parts of libcontainer's `state.json` we use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuncState {
    pub id: String,
    pub init_process_pid: u32,
    /// Start time of the init process in clock ticks (`/proc/PID/stat` field 22).
    pub init_process_start: u64,
    pub config: RuncStateConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuncStateConfig {
    pub rootfs: String,
    /// `bundle=<dir>` plus the OCI annotations as `k=v`.
    #[serde(deserialize_with = "nullable")]
    pub labels: Vec<String>,
}

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl RuncState {
    pub fn bundle(&self) -> Option<&str> {
        self.config
            .labels
            .iter()
            .find_map(|l| l.strip_prefix("bundle="))
    }

    /// The annotations runc recorded as labels (everything but `bundle=`).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.config
            .labels
            .iter()
            .filter(|l| !l.starts_with("bundle="))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Why a state directory was not registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct RescanReport {
    /// Container ids registered (or refreshed).
    pub registered: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Every `state.json` under the roots (two levels deep at most).
pub fn find_state_files(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for root in roots {
        // /var/run is usually /run: do not scan a root twice
        let key = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        if !seen.insert(key) {
            continue;
        }
        for dir in subdirs(root) {
            let state = dir.join("state.json");
            if state.is_file() {
                out.push(state);
                continue;
            }
            for inner in subdirs(&dir) {
                let state = inner.join("state.json");
                if state.is_file() {
                    out.push(state);
                }
            }
        }
    }
    out.sort();
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

pub fn read_runc_state(path: &Path) -> Result<RuncState, OciError> {
    use std::io::Read;
    let what = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| OciError::Io {
        what: what.clone(),
        source,
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_STATE_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| OciError::Io {
            what: what.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_STATE_JSON_BYTES {
        return Err(OciError::TooLarge {
            what,
            limit: MAX_STATE_JSON_BYTES,
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| OciError::Json { what, source })
}

/// Describe a runc container from its state, checked against `/proc`.
pub fn container_from_state(st: &RuncState, proc: &dyn ProcSource) -> Result<Container, String> {
    if st.id.is_empty() {
        return Err("no container id".to_string());
    }
    if st.init_process_pid == 0 {
        return Err("no init pid".to_string());
    }
    let start = procfs::start_time_of(proc, st.init_process_pid)
        .map_err(|e| format!("init process {} is gone: {e}", st.init_process_pid))?;
    if st.init_process_start != 0 && start != st.init_process_start {
        return Err(format!(
            "pid {} was recycled (start time {start}, state says {})",
            st.init_process_pid, st.init_process_start
        ));
    }
    let bundle = st.bundle().unwrap_or_default().to_string();
    let spec = if bundle.is_empty() {
        None
    } else {
        match oci::read_spec(Path::new(&bundle)) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(container = %st.id, error = %e, "bundle config unreadable; using state labels");
                None
            }
        }
    };
    let state_annotations = st.annotations();
    let (mut c, warnings) = oci::gather(
        &GatherInput {
            id: &st.id,
            pid: st.init_process_pid,
            bundle: &bundle,
            state_annotations: Some(&state_annotations),
            spec: spec.as_ref(),
        },
        proc,
    )
    .map_err(|e| e.to_string())?;
    for w in warnings {
        tracing::warn!(container = %st.id, "{}", w.0);
    }
    if c.rootfs.is_empty() {
        c.rootfs = st.config.rootfs.clone();
    }
    Ok(c)
}

/// Discover running containers (without touching a registry).
pub fn discover(config: &RescanConfig, proc: &dyn ProcSource) -> (Vec<Container>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for path in find_state_files(&config.roots) {
        let result = read_runc_state(&path)
            .map_err(|e| e.to_string())
            .and_then(|st| container_from_state(&st, proc));
        match result {
            Ok(c) => found.push(c),
            Err(reason) => skipped.push(Skipped { path, reason }),
        }
    }
    (found, skipped)
}

/// Register every running runc container. Call it after [`HookServer::bind`] and before
/// [`HookServer::serve`](crate::server::HookServer::serve): containers created meanwhile wait
/// in the socket backlog and are applied afterwards, in order.
///
/// [`HookServer::bind`]: crate::server::HookServer::bind
pub fn rescan(registry: &Registry, config: &RescanConfig) -> RescanReport {
    let (found, skipped) = discover(config, registry.proc().as_ref());
    let mut report = RescanReport {
        skipped,
        ..RescanReport::default()
    };
    for c in found {
        let id = c.container_id.clone();
        match registry.apply(&HookRequest::create(c), Source::Rescan) {
            Ok(_) => report.registered.push(id),
            Err(e) => report.skipped.push(Skipped {
                path: PathBuf::from(&id),
                reason: e.to_string(),
            }),
        }
    }
    for s in &report.skipped {
        tracing::debug!(path = %s.path.display(), reason = %s.reason, "rescan skipped");
    }
    tracing::info!(
        registered = report.registered.len(),
        skipped = report.skipped.len(),
        "rescanned runc containers"
    );
    report
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use super::*;
    use crate::procfs::fake::FakeProc;

    fn write_state(root: &Path, id: &str, pid: u32, start: u64, bundle: &Path) -> PathBuf {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let st = serde_json::json!({
            "id": id, "init_process_pid": pid, "init_process_start": start,
            "created": "2026-11-23T13:46:32.514054868Z",
            "config": {"rootfs": bundle.join("rootfs"), "labels": ["foo=bar", format!("bundle={}", bundle.display())],
                        "cgroups": {"path": format!("/{id}")}},
            "cgroup_paths": {"": format!("/sys/fs/cgroup/unified/{id}")},
            "namespace_paths": {"NEWPID": format!("/proc/{pid}/ns/pid")}
        });
        std::fs::write(dir.join("state.json"), st.to_string()).unwrap();
        dir.join("state.json")
    }

    #[test]
    fn discovers_live_containers_and_skips_stale_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let runc_root = tmp.path().join("runc");
        let containerd_root = tmp.path().join("containerd-runc");
        let bundle = tmp.path().join("bundle-a");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"root":{"path":"rootfs"},"process":{"apparmorProfile":"prof-a"},"annotations":{"foo":"bar","app":"web"}}"#,
        )
        .unwrap();
        let proc = Arc::new(FakeProc::default());
        proc.add(100, "/a", 82, 11, 12); // start time 1000
        proc.add(200, "/k8s/b", 90, 21, 22); // start time 2000
        proc.add(300, "/c", 95, 31, 32); // start time 3000
        write_state(&runc_root, "a", 100, 1000, &bundle);
        // containerd layout: <root>/<namespace>/<id>/state.json; bundle gone
        write_state(
            &containerd_root.join("k8s.io"),
            "b",
            200,
            2000,
            &tmp.path().join("gone"),
        );
        // stale: dead pid
        write_state(&runc_root, "dead", 4242, 1, &bundle);
        // stale: recycled pid (start time differs)
        write_state(&runc_root, "recycled", 300, 12345, &bundle);
        // garbage
        std::fs::create_dir_all(runc_root.join("junk")).unwrap();
        std::fs::write(runc_root.join("junk/state.json"), b"{not json").unwrap();

        let registry = Registry::new(proc.clone());
        let report = rescan(
            &registry,
            &RescanConfig {
                roots: vec![
                    runc_root.clone(),
                    containerd_root,
                    tmp.path().join("missing"),
                ],
            },
        );
        let mut ids = report.registered.clone();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(report.skipped.len(), 3, "{:?}", report.skipped);

        let a = registry.by_cgroup_id(82).unwrap();
        assert_eq!(a.id, "a");
        assert_eq!(a.pid, 100);
        assert_eq!((a.pidns, a.mntns), (11, 12));
        assert_eq!(a.apparmor_profile, "prof-a");
        assert_eq!(a.labels["app"], "web");
        assert_eq!(a.rootfs, bundle.join("rootfs").display().to_string());
        assert_eq!(a.source, Source::Rescan);

        let b = registry.by_cgroup_id(90).unwrap();
        assert_eq!(b.id, "b");
        assert_eq!(b.labels["foo"], "bar"); // from the state labels
        assert_eq!(b.cgroup_path, "/k8s/b");

        // a second rescan changes nothing
        let mut sub = registry.subscribe();
        rescan(
            &registry,
            &RescanConfig {
                roots: vec![runc_root],
            },
        );
        assert!(sub.changes.try_recv().is_err());
    }

    #[test]
    fn state_helpers() {
        let st: RuncState = serde_json::from_str(
            r#"{"id":"x","init_process_pid":5,"config":{"labels":["bundle=/b","k=v","noeq"]}}"#,
        )
        .unwrap();
        assert_eq!(st.bundle(), Some("/b"));
        assert_eq!(st.annotations().len(), 1);
        let st: RuncState = serde_json::from_str(r#"{"id":"x","config":{"labels":null}}"#).unwrap();
        assert_eq!(st.bundle(), None);
        assert!(container_from_state(&st, &FakeProc::default()).is_err());
    }
}
