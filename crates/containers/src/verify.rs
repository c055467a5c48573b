//! Proof that a ka.sock message comes from the runtime of the container it names.
//!
//! The socket is 0600 root, so only root reaches it; on top of that every message is checked
//! against the kernel's view before it changes the registry:
//! * the peer (SO_PEERCRED) has the trusted uid (root) and does not run inside a registered
//!   container's cgroup (a confined workload with the socket mounted in cannot act as the
//!   runtime);
//! * a **create** names a live process (`pid`), and whatever it claims about it (`cgroupId`,
//!   `cgroupPath`, `pidns`, `mntns`) matches `/proc`; its cgroup is not already another
//!   registered container's;
//! * a **delete** of a known container is accepted only once that container has stopped: its
//!   recorded init process is gone or no longer in its cgroup (the runtime sends it from
//!   `poststop`). A delete for a running container is a forgery.
//!
//! A refused message changes nothing, is answered `err` and is reported as a [`Refusal`].

use crate::procfs::{self, ProcSource};
use crate::protocol::{HookRequest, Operation};
use crate::registry::Registry;

/// The connecting process, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: Option<u32>,
}

/// A message refused as unproven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub peer: Peer,
    pub operation: Operation,
    pub container_id: String,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.operation {
            Operation::Create => "create",
            Operation::Delete => "delete",
        };
        write!(
            f,
            "ka.sock {op} of container {:?} from pid {} uid {} refused: {}",
            self.container_id,
            self.peer.pid.map_or("?".into(), |p| p.to_string()),
            self.peer.uid.map_or("?".into(), |u| u.to_string()),
            self.reason
        )
    }
}

/// Checks `req` from `peer`; `trusted_uid` is the only uid allowed to speak for a runtime.
pub fn check(
    registry: &Registry,
    req: &HookRequest,
    peer: Peer,
    trusted_uid: u32,
) -> Result<(), Refusal> {
    let refuse = |reason: String| Refusal {
        peer,
        operation: req.operation,
        container_id: req.container.container_id.clone(),
        reason,
    };
    match peer.uid {
        Some(u) if u == trusted_uid => {}
        Some(u) => return Err(refuse(format!("the peer is uid {u}, not {trusted_uid}"))),
        None => return Err(refuse("the peer's credentials are unknown".into())),
    }
    let proc = registry.proc().as_ref();
    if let Some(pid) = peer.pid.and_then(|p| u32::try_from(p).ok()) {
        // A peer whose /proc entry cannot be read is not in a container we know of.
        if let Ok((path, id)) = procfs::cgroup_of(proc, pid) {
            if let Some(c) = container_holding(registry, &path, id) {
                return Err(refuse(format!(
                    "the peer runs inside container {} ({path})",
                    c
                )));
            }
        }
    }
    match req.operation {
        Operation::Create => check_create(registry, proc, req).map_err(refuse),
        Operation::Delete => check_delete(registry, proc, req).map_err(refuse),
    }
}

/// The registered container whose cgroup is `path` (or an ancestor of it), by id.
fn container_holding(registry: &Registry, path: &str, id: u64) -> Option<String> {
    if let Some(c) = registry.by_cgroup_id(id) {
        return Some(c.id.clone());
    }
    registry
        .snapshot()
        .into_iter()
        .find(|c| {
            !c.cgroup_path.is_empty()
                && c.cgroup_path != "/"
                && path
                    .strip_prefix(c.cgroup_path.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|c| c.id.clone())
}

fn check_create(
    registry: &Registry,
    proc: &dyn ProcSource,
    req: &HookRequest,
) -> Result<(), String> {
    let c = &req.container;
    if c.pid == 0 {
        return Err("no pid: a create must name the container's live init process".into());
    }
    let (path, id) = procfs::cgroup_of(proc, c.pid)
        .map_err(|e| format!("pid {} is not a live process ({e})", c.pid))?;
    if c.cgroup_id != 0 && c.cgroup_id != id {
        return Err(format!(
            "claims cgroup id {} but pid {} is in cgroup {id} ({path})",
            c.cgroup_id, c.pid
        ));
    }
    if !c.cgroup_path.is_empty() && c.cgroup_path != path {
        return Err(format!(
            "claims cgroup {} but pid {} is in {path}",
            c.cgroup_path, c.pid
        ));
    }
    for (kind, claimed) in [("pid", c.pidns), ("mnt", c.mntns)] {
        if claimed == 0 {
            continue;
        }
        let actual = procfs::ns_of(proc, c.pid, kind)
            .map_err(|e| format!("cannot read the {kind} namespace of pid {}: {e}", c.pid))?;
        if actual != claimed {
            return Err(format!(
                "claims {kind} namespace {claimed} but pid {} is in {actual}",
                c.pid
            ));
        }
    }
    if let Some(other) = registry.by_cgroup_id(id) {
        if other.id != c.container_id {
            return Err(format!(
                "cgroup {path} already belongs to container {}",
                other.id
            ));
        }
    }
    Ok(())
}

fn check_delete(
    registry: &Registry,
    proc: &dyn ProcSource,
    req: &HookRequest,
) -> Result<(), String> {
    let Some(known) = registry.by_container_id(&req.container.container_id) else {
        return Ok(()); // nothing to remove: a poststop for a container never registered
    };
    if known.pid == 0 {
        return Ok(());
    }
    match procfs::cgroup_of(proc, known.pid) {
        Ok((path, id)) if id == known.cgroup_id || path == known.cgroup_path => Err(format!(
            "the container is still running (pid {} in {path}); the runtime deletes it from poststop, once it has stopped",
            known.pid
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;
    use crate::procfs::fake::FakeProc;
    use crate::protocol::Container;
    use crate::registry::Source;

    const ROOT: Peer = Peer {
        pid: Some(1),
        uid: Some(0),
    };

    fn setup() -> (Arc<FakeProc>, Registry) {
        let proc = Arc::new(FakeProc::default());
        proc.add(100, "/ctr/a", 11, 4001, 5001);
        proc.add(200, "/ctr/b", 22, 4002, 5002);
        proc.add(300, "/ctr/a/child", 33, 4001, 5001);
        proc.add(1, "/init.scope", 1, 1, 1);
        let reg = Registry::new(proc.clone());
        (proc, reg)
    }

    fn create(id: &str, pid: u32) -> HookRequest {
        HookRequest::create(Container {
            container_id: id.into(),
            pid,
            ..Container::default()
        })
    }

    #[test]
    fn create_needs_a_live_process_matching_its_claims() {
        let (_p, reg) = setup();
        assert!(check(&reg, &create("a", 100), ROOT, 0).is_ok());
        let r = check(&reg, &create("a", 999), ROOT, 0).unwrap_err();
        assert!(r.reason.contains("not a live process"), "{r}");
        assert!(check(&reg, &create("a", 0), ROOT, 0).is_err());
        let mut req = create("a", 100);
        req.container.cgroup_path = "/ctr/b".into();
        assert!(check(&reg, &req, ROOT, 0)
            .unwrap_err()
            .reason
            .contains("claims cgroup /ctr/b"));
        let mut req = create("a", 100);
        req.container.pidns = 4002;
        assert!(check(&reg, &req, ROOT, 0).is_err());
        let mut req = create("a", 100);
        req.container.cgroup_id = 22;
        assert!(check(&reg, &req, ROOT, 0).is_err());
    }

    #[test]
    fn only_the_trusted_uid_outside_containers_speaks_for_the_runtime() {
        let (_p, reg) = setup();
        let user = Peer {
            pid: Some(1),
            uid: Some(1000),
        };
        assert!(check(&reg, &create("a", 100), user, 0)
            .unwrap_err()
            .reason
            .contains("uid 1000"));
        reg.apply(&create("a", 100), Source::Hook).unwrap();
        // root inside container a (or a child cgroup of it) cannot register b
        for pid in [100, 300] {
            let inside = Peer {
                pid: Some(pid),
                uid: Some(0),
            };
            let r = check(&reg, &create("b", 200), inside, 0).unwrap_err();
            assert!(r.reason.contains("inside container a"), "{r}");
        }
        // nor take over a's cgroup under another id
        let r = check(&reg, &create("evil", 100), ROOT, 0).unwrap_err();
        assert!(r.reason.contains("already belongs to container a"), "{r}");
    }

    #[test]
    fn delete_only_once_the_container_stopped() {
        let (proc, reg) = setup();
        reg.apply(&create("a", 100), Source::Hook).unwrap();
        let del = HookRequest::delete("a");
        let r = check(&reg, &del, ROOT, 0).unwrap_err();
        assert!(r.reason.contains("still running"), "{r}");
        proc.kill(100);
        assert!(check(&reg, &del, ROOT, 0).is_ok());
        // unknown ids: nothing to remove, nothing to prove
        assert!(check(&reg, &HookRequest::delete("never-seen"), ROOT, 0).is_ok());
    }
}
