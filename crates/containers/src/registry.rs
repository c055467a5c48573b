//! The container registry: every known container, keyed by container id and indexed by cgroup
//! id (the inode of its cgroup-v2 directory, `bpf_get_current_cgroup_id()`), by
//! `(pidns, mntns)` (the upstream `NsMap`, spec §7.4) and, through `/proc`, by pid.
//!
//! Lookups take a read lock that is never held across I/O, so the fanotify decision thread can
//! call them. Changes are broadcast to subscribers ([`Registry::subscribe`]); a subscriber gets a
//! snapshot and the change stream atomically, so it never misses or double-counts a container.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use kubearmor_policy::ContainerIdentity;
use tokio::sync::broadcast;

use crate::labels::{self, LabelInput, CONTAINER_NAME_LABEL};
use crate::procfs::{self, HostProc, ProcError, ProcSource};
use crate::protocol::{Container, HookRequest, Operation, Owner};

/// How many changes a subscriber may fall behind before it gets `Lagged` (it should then
/// re-read [`Registry::snapshot`]).
pub const EVENT_CAPACITY: usize = 1024;

/// Most containers the registry holds; creates beyond it are rejected (a runaway or hostile
/// client must not exhaust the daemon's memory).
pub const MAX_CONTAINERS: usize = 65_536;

/// Where a registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A ka.sock message from an OCI hook.
    Hook,
    /// A ka.sock message from a detached replay session (`detached: true`).
    Detached,
    /// The start-up scan of runc state directories.
    Rescan,
    /// The `hookPath` file.
    HookPath,
}

/// One container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// Inode of the container's cgroup-v2 directory; 0 when unknown (e.g. an upstream hook that
    /// sends no pid).
    pub cgroup_id: u64,
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// Pod name for Kubernetes containers, else the container name.
    pub endpoint: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub pid: u32,
    pub pidns: u32,
    pub mntns: u32,
    pub cgroup_path: String,
    pub rootfs: String,
    pub bundle: String,
    pub apparmor_profile: String,
    pub privileged: bool,
    pub owner: Owner,
    pub source: Source,
    pub registered_at: SystemTime,
}

impl ContainerRecord {
    /// Build a record from a create message, deriving name, namespace and labels
    /// (see [`crate::labels`]).
    pub fn from_container(c: &Container, source: Source) -> Self {
        let d = labels::derive(&LabelInput {
            container_id: &c.container_id,
            name: &c.container_name,
            namespace: &c.namespace_name,
            endpoint: &c.endpoint_name,
            image: &c.container_image,
            labels: &c.labels,
            labels_map: Some(&c.labels_map),
            annotations: Some(&c.annotations),
        });
        ContainerRecord {
            cgroup_id: c.cgroup_id,
            id: c.container_id.clone(),
            name: d.name,
            namespace: d.namespace,
            endpoint: d.endpoint,
            image: d.image,
            labels: d.labels,
            annotations: c.annotations.clone(),
            pid: c.pid,
            pidns: c.pidns,
            mntns: c.mntns,
            cgroup_path: c.cgroup_path.clone(),
            rootfs: c.rootfs.clone(),
            bundle: c.bundle.clone(),
            apparmor_profile: c.apparmor_profile.clone(),
            privileged: c.privileged,
            owner: c.owner.clone(),
            source,
            registered_at: SystemTime::now(),
        }
    }

    /// What policy selectors are matched against. The name is the value of
    /// `kubearmor.io/container.name` (the container name unless a label overrides it), which is
    /// what upstream's selector regex is applied to.
    pub fn identity(&self) -> ContainerIdentity {
        ContainerIdentity {
            namespace: self.namespace.clone(),
            name: self
                .labels
                .get(CONTAINER_NAME_LABEL)
                .cloned()
                .unwrap_or_else(|| self.name.clone()),
            labels: self.labels.clone(),
        }
    }

    /// The upstream `tp.Container` for this record (state agent `Object`, spec §6), with
    /// `status` (`running` / `terminated`).
    pub fn to_container(&self, status: &str) -> Container {
        Container {
            container_id: self.id.clone(),
            container_name: self.name.clone(),
            container_image: self.image.clone(),
            namespace_name: self.namespace.clone(),
            owner: self.owner.clone(),
            endpoint_name: self.endpoint.clone(),
            labels: labels::label_string(&self.labels),
            apparmor_profile: self.apparmor_profile.clone(),
            privileged: self.privileged,
            pidns: self.pidns,
            mntns: self.mntns,
            pid: self.pid,
            status: status.to_string(),
            cgroup_id: self.cgroup_id,
            cgroup_path: self.cgroup_path.clone(),
            rootfs: self.rootfs.clone(),
            bundle: self.bundle.clone(),
            labels_map: self.labels.clone(),
            annotations: self.annotations.clone(),
            ..Container::default()
        }
    }

    /// Equal in everything but bookkeeping (source, time).
    fn same_container(&self, other: &ContainerRecord) -> bool {
        let mut o = other.clone();
        o.source = self.source;
        o.registered_at = self.registered_at;
        *self == o
    }

    /// The first 12 characters of the id, as upstream logs it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// A registry change.
#[derive(Debug, Clone)]
pub enum Change {
    Added(Arc<ContainerRecord>),
    /// Same container id, new data (a repeated create, or the rescan refreshing a hook record).
    Updated {
        old: Arc<ContainerRecord>,
        new: Arc<ContainerRecord>,
    },
    Removed(Arc<ContainerRecord>),
}

impl Change {
    /// The record as it is after the change (the removed one for `Removed`).
    pub fn record(&self) -> &Arc<ContainerRecord> {
        match self {
            Change::Added(r) | Change::Removed(r) => r,
            Change::Updated { new, .. } => new,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("hook message without a container id")]
    EmptyId,
    #[error("container id {0:?} is longer than 1024 bytes or holds control characters")]
    BadId(String),
    #[error("the registry holds {MAX_CONTAINERS} containers already")]
    Full,
}

/// A snapshot plus the stream of later changes.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: Vec<Arc<ContainerRecord>>,
    pub changes: broadcast::Receiver<Change>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Arc<ContainerRecord>>,
    by_cgroup: HashMap<u64, String>,
    by_ns: HashMap<(u32, u32), String>,
}

impl Inner {
    fn index(&mut self, r: &ContainerRecord) {
        if r.cgroup_id != 0 {
            if let Some(prev) = self.by_cgroup.insert(r.cgroup_id, r.id.clone()) {
                if prev != r.id {
                    tracing::warn!(cgroup_id = r.cgroup_id, old = %prev, new = %r.id,
                        "two containers claim one cgroup; the newer wins the index");
                }
            }
        }
        if r.pidns != 0 || r.mntns != 0 {
            // namespace inode numbers are recycled: the newest container owns the pair
            self.by_ns.insert((r.pidns, r.mntns), r.id.clone());
        }
    }

    fn unindex(&mut self, r: &ContainerRecord) {
        if self.by_cgroup.get(&r.cgroup_id) == Some(&r.id) {
            self.by_cgroup.remove(&r.cgroup_id);
        }
        if self.by_ns.get(&(r.pidns, r.mntns)) == Some(&r.id) {
            self.by_ns.remove(&(r.pidns, r.mntns));
        }
    }
}

/// The container registry. Cheap to share behind an `Arc`.
pub struct Registry {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Change>,
    proc: Arc<dyn ProcSource>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("containers", &self.len())
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(Arc::new(HostProc::default()))
    }
}

impl Registry {
    pub fn new(proc: Arc<dyn ProcSource>) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Registry {
            inner: RwLock::new(Inner::default()),
            events,
            proc,
        }
    }

    /// The `/proc` access this registry uses.
    pub fn proc(&self) -> &Arc<dyn ProcSource> {
        &self.proc
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // a panic while holding the lock cannot leave the maps half-updated (every update is a
        // few inserts), so poisoning is ignored
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply a hook message. A create with a pid is checked against `/proc`: the cgroup and
    /// namespaces come from the kernel, not from the message, whenever the process is visible.
    pub fn apply(
        &self,
        req: &HookRequest,
        source: Source,
    ) -> Result<Option<Change>, RegistryError> {
        let id = &req.container.container_id;
        if id.is_empty() {
            return Err(RegistryError::EmptyId);
        }
        if id.len() > 1024 || id.chars().any(char::is_control) {
            return Err(RegistryError::BadId(id.chars().take(64).collect()));
        }
        match req.operation {
            Operation::Delete => Ok(self.remove(id)),
            Operation::Create => {
                let mut record = ContainerRecord::from_container(&req.container, source);
                self.verify_with_proc(&mut record);
                {
                    let inner = self.read();
                    if inner.by_id.len() >= MAX_CONTAINERS && !inner.by_id.contains_key(id) {
                        return Err(RegistryError::Full);
                    }
                }
                Ok(self.upsert(record))
            }
        }
    }

    /// Fill in or correct pid-derived fields from `/proc` (outside any lock).
    fn verify_with_proc(&self, r: &mut ContainerRecord) {
        if r.pid == 0 {
            return;
        }
        match procfs::cgroup_of(self.proc.as_ref(), r.pid) {
            Ok((path, id)) => {
                if r.cgroup_id != 0 && r.cgroup_id != id {
                    tracing::warn!(container = %r.id, claimed = r.cgroup_id, actual = id,
                        "hook message cgroup id does not match /proc; using /proc");
                }
                r.cgroup_id = id;
                r.cgroup_path = path;
            }
            Err(e) => tracing::debug!(container = %r.id, pid = r.pid, error = %e,
                "cannot read the cgroup of the container process; keeping the message's"),
        }
        for (kind, field) in [("pid", &mut r.pidns), ("mnt", &mut r.mntns)] {
            if let Ok(ns) = procfs::ns_of(self.proc.as_ref(), r.pid, kind) {
                *field = ns;
            }
        }
    }

    /// Insert or replace a record (keyed by container id). Returns the change, or `None` when
    /// nothing changed.
    pub fn upsert(&self, record: ContainerRecord) -> Option<Change> {
        let mut inner = self.write();
        let change = match inner.by_id.get(&record.id).cloned() {
            Some(old) if old.same_container(&record) => return None,
            Some(old) => {
                inner.unindex(&old);
                let mut record = record;
                record.registered_at = old.registered_at;
                let new = Arc::new(record);
                inner.index(&new);
                inner.by_id.insert(new.id.clone(), new.clone());
                Change::Updated { old, new }
            }
            None => {
                let new = Arc::new(record);
                inner.index(&new);
                inner.by_id.insert(new.id.clone(), new.clone());
                Change::Added(new)
            }
        };
        log_change(&change);
        // sent under the lock so subscribe() can take a consistent snapshot
        let _ = self.events.send(change.clone());
        Some(change)
    }

    /// Remove a container by id. Unknown ids are not an error (a poststop for a container the
    /// daemon never saw).
    pub fn remove(&self, id: &str) -> Option<Change> {
        let mut inner = self.write();
        let old = inner.by_id.remove(id)?;
        inner.unindex(&old);
        let change = Change::Removed(old);
        log_change(&change);
        let _ = self.events.send(change.clone());
        Some(change)
    }

    /// Remove every record from `source` whose id is not in `keep` (used by the hookPath reload).
    pub fn retain_source(&self, source: Source, keep: &dyn Fn(&str) -> bool) -> Vec<Change> {
        let ids: Vec<String> = self
            .read()
            .by_id
            .values()
            .filter(|r| r.source == source && !keep(&r.id))
            .map(|r| r.id.clone())
            .collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    pub fn by_cgroup_id(&self, cgroup_id: u64) -> Option<Arc<ContainerRecord>> {
        let inner = self.read();
        let id = inner.by_cgroup.get(&cgroup_id)?;
        inner.by_id.get(id).cloned()
    }

    pub fn by_container_id(&self, id: &str) -> Option<Arc<ContainerRecord>> {
        self.read().by_id.get(id).cloned()
    }

    /// Upstream's `LookupContainerID(pidns, mntns)`. `(0, 0)` (host) is never a container.
    pub fn by_ns(&self, pidns: u32, mntns: u32) -> Option<Arc<ContainerRecord>> {
        if pidns == 0 && mntns == 0 {
            return None;
        }
        let inner = self.read();
        let id = inner.by_ns.get(&(pidns, mntns))?;
        inner.by_id.get(id).cloned()
    }

    /// The container a host pid belongs to: `/proc/PID/cgroup` → cgroup id, falling back to
    /// its namespace pair. `Ok(None)` for host processes and unknown containers; `Err` when the
    /// process cannot be read (gone, or `/proc` not visible).
    pub fn by_pid(&self, pid: u32) -> Result<Option<Arc<ContainerRecord>>, ProcError> {
        let proc = self.proc.as_ref();
        match procfs::cgroup_of(proc, pid) {
            Ok((_, cgid)) => {
                if let Some(r) = self.by_cgroup_id(cgid) {
                    return Ok(Some(r));
                }
            }
            Err(e) if e.is_not_found() && proc.stat_file(pid).is_err() => return Err(e),
            Err(_) => {}
        }
        let pidns = procfs::ns_of(proc, pid, "pid")?;
        let mntns = procfs::ns_of(proc, pid, "mnt")?;
        Ok(self.by_ns(pidns, mntns))
    }

    /// Every container, in no particular order.
    pub fn snapshot(&self) -> Vec<Arc<ContainerRecord>> {
        self.read().by_id.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Current containers plus every later change, with nothing lost in between.
    pub fn subscribe(&self) -> Subscription {
        // holding the write lock excludes concurrent upserts, which send under it
        let inner = self.write();
        let changes = self.events.subscribe();
        let snapshot = inner.by_id.values().cloned().collect();
        Subscription { snapshot, changes }
    }
}

fn log_change(change: &Change) {
    let (what, r) = match change {
        Change::Added(r) => ("added", r),
        Change::Updated { new, .. } => ("updated", new),
        Change::Removed(r) => ("removed", r),
    };
    // upstream: "Detected a container (added/<12 chars>/pidns=<n>/mntns=<n>)"
    tracing::info!(
        cgroup_id = r.cgroup_id,
        name = %r.name,
        namespace = %r.namespace,
        pid = r.pid,
        source = ?r.source,
        "Detected a container ({what}/{}/pidns={}/mntns={})",
        r.short_id(),
        r.pidns,
        r.mntns
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::procfs::fake::FakeProc;

    fn registry() -> (Arc<FakeProc>, Registry) {
        let proc = Arc::new(FakeProc::default());
        let reg = Registry::new(proc.clone());
        (proc, reg)
    }

    fn create(id: &str, pid: u32) -> HookRequest {
        HookRequest::create(Container {
            container_id: id.to_string(),
            pid,
            ..Container::default()
        })
    }

    #[test]
    fn create_resolves_cgroup_and_namespaces_from_proc() {
        let (proc, reg) = registry();
        proc.add(100, "/web", 82, 11, 12);
        let mut req = create("web", 100);
        req.container.cgroup_id = 999; // a lie: /proc wins
        let change = reg.apply(&req, Source::Hook).unwrap().unwrap();
        assert!(matches!(change, Change::Added(_)));
        let r = reg.by_cgroup_id(82).unwrap();
        assert_eq!(r.id, "web");
        assert_eq!((r.pidns, r.mntns), (11, 12));
        assert_eq!(r.cgroup_path, "/web");
        assert!(reg.by_cgroup_id(999).is_none());
        assert_eq!(reg.by_container_id("web").unwrap().cgroup_id, 82);
        assert_eq!(reg.by_ns(11, 12).unwrap().id, "web");
        assert_eq!(reg.by_pid(100).unwrap().unwrap().id, "web");
        assert!(reg.by_ns(0, 0).is_none());
    }

    #[test]
    fn upstream_message_without_pid_is_indexed_by_namespaces() {
        let (_, reg) = registry();
        let mut req = create("0123456789abcdef", 0);
        req.container.pidns = 4026532456;
        req.container.mntns = 4026532455;
        reg.apply(&req, Source::Hook).unwrap();
        assert_eq!(
            reg.by_ns(4026532456, 4026532455).unwrap().short_id(),
            "0123456789ab"
        );
        assert!(reg.by_cgroup_id(0).is_none());
    }

    #[test]
    fn by_pid_for_host_and_dead_processes() {
        let (proc, reg) = registry();
        proc.add(1, "/", 1, 1, 2);
        assert!(reg.by_pid(1).unwrap().is_none());
        assert!(reg.by_pid(4242).is_err());
    }

    #[test]
    fn delete_unregisters_and_unknown_delete_is_fine() {
        let (proc, reg) = registry();
        proc.add(100, "/web", 82, 11, 12);
        reg.apply(&create("web", 100), Source::Hook).unwrap();
        let change = reg
            .apply(&HookRequest::delete("web"), Source::Hook)
            .unwrap()
            .unwrap();
        assert!(matches!(change, Change::Removed(ref r) if r.id == "web"));
        assert!(reg.by_cgroup_id(82).is_none());
        assert!(reg.by_ns(11, 12).is_none());
        assert!(reg.is_empty());
        assert!(reg
            .apply(&HookRequest::delete("web"), Source::Hook)
            .unwrap()
            .is_none());
    }

    #[test]
    fn invalid_messages_change_nothing() {
        let (_, reg) = registry();
        assert_eq!(
            reg.apply(&create("", 0), Source::Hook).unwrap_err(),
            RegistryError::EmptyId
        );
        assert!(reg.apply(&create("a\nb", 0), Source::Hook).is_err());
        assert!(reg
            .apply(&create(&"x".repeat(2000), 0), Source::Hook)
            .is_err());
        assert!(reg.is_empty());
    }

    #[test]
    fn repeated_create_is_idempotent_and_changes_are_updates() {
        let (proc, reg) = registry();
        proc.add(100, "/web", 82, 11, 12);
        let mut sub = reg.subscribe();
        assert!(sub.snapshot.is_empty());
        reg.apply(&create("web", 100), Source::Hook).unwrap();
        assert!(reg
            .apply(&create("web", 100), Source::Rescan)
            .unwrap()
            .is_none());
        let mut again = create("web", 100);
        again.container.labels = "tier=db".into();
        let change = reg.apply(&again, Source::Rescan).unwrap().unwrap();
        assert!(matches!(change, Change::Updated { .. }));
        assert!(matches!(sub.changes.try_recv().unwrap(), Change::Added(_)));
        match sub.changes.try_recv().unwrap() {
            Change::Updated { old, new } => {
                assert!(!old.labels.contains_key("tier"));
                assert_eq!(new.labels["tier"], "db");
            }
            other => panic!("{other:?}"),
        }
        assert!(sub.changes.try_recv().is_err());
    }

    #[test]
    fn subscription_snapshot_and_stream_do_not_overlap() {
        let (proc, reg) = registry();
        proc.add(1, "/a", 10, 1, 1);
        proc.add(2, "/b", 20, 2, 2);
        reg.apply(&create("a", 1), Source::Hook).unwrap();
        let mut sub = reg.subscribe();
        reg.apply(&create("b", 2), Source::Hook).unwrap();
        reg.remove("a");
        assert_eq!(sub.snapshot.len(), 1);
        assert_eq!(sub.snapshot[0].id, "a");
        assert!(matches!(sub.changes.try_recv().unwrap(), Change::Added(r) if r.id == "b"));
        assert!(matches!(sub.changes.try_recv().unwrap(), Change::Removed(r) if r.id == "a"));
    }

    #[test]
    fn recycled_namespace_ids_point_to_the_newest_container() {
        let (proc, reg) = registry();
        proc.add(1, "/a", 10, 5, 6);
        reg.apply(&create("a", 1), Source::Hook).unwrap();
        proc.kill(1);
        proc.add(2, "/b", 20, 5, 6);
        reg.apply(&create("b", 2), Source::Hook).unwrap();
        assert_eq!(reg.by_ns(5, 6).unwrap().id, "b");
        // removing the old container leaves the new one's index alone
        reg.remove("a");
        assert_eq!(reg.by_ns(5, 6).unwrap().id, "b");
        assert_eq!(reg.by_cgroup_id(20).unwrap().id, "b");
    }

    #[test]
    fn identity_for_policy_selectors() {
        let (proc, reg) = registry();
        proc.add(1, "/a", 10, 1, 1);
        let mut req = create("wordpress-mysql", 1);
        req.container.annotations.insert("app".into(), "db".into());
        reg.apply(&req, Source::Hook).unwrap();
        let id = reg.by_cgroup_id(10).unwrap().identity();
        assert_eq!(id.namespace, "container_namespace");
        assert_eq!(id.name, "wordpress-mysql");
        assert_eq!(id.labels["app"], "db");
        assert_eq!(id.labels[CONTAINER_NAME_LABEL], "wordpress-mysql");

        // a KubeArmorPolicy selecting it by container name matches (policy crate semantics)
        let yaml = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: p}
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: wordpress-mysql
  process:
    matchPaths: [{path: /bin/sh}]
  action: Block
"#;
        let parsed = kubearmor_policy::parse_policies(yaml, "test.yaml").unwrap();
        let subject = kubearmor_policy::Subject::Container(id);
        assert!(parsed.policies[0].selects(&subject, kubearmor_policy::SelectorMode::default()));
    }

    #[test]
    fn state_agent_container_object() {
        let (proc, reg) = registry();
        proc.add(1, "/a", 10, 7, 8);
        reg.apply(&create("c1", 1), Source::Hook).unwrap();
        let c = reg.by_container_id("c1").unwrap().to_container("running");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["containerID"], "c1");
        assert_eq!(v["containerName"], "c1");
        assert_eq!(v["namespaceName"], "container_namespace");
        assert_eq!(v["status"], "running");
        assert_eq!(v["pidns"], 7);
        assert_eq!(v["labels"], "kubearmor.io/container.name=c1");
        assert_eq!(v["cgroupId"], 10);
    }

    #[test]
    fn retain_source_only_touches_that_source() {
        let (_, reg) = registry();
        reg.apply(&create("a", 0), Source::HookPath).unwrap();
        reg.apply(&create("b", 0), Source::HookPath).unwrap();
        reg.apply(&create("c", 0), Source::Hook).unwrap();
        let removed = reg.retain_source(Source::HookPath, &|id| id == "a");
        assert_eq!(removed.len(), 1);
        let mut ids: Vec<String> = reg.snapshot().iter().map(|r| r.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "c"]);
    }
}
