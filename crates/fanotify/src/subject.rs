//! Who is acting: the rule sets the daemon swaps in, and how a thread maps to one of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use kubearmor_policy::RuleSet;

use crate::procfs;

/// The rule sets in force, as the daemon builds them. Swapped whole and atomically with
/// [`crate::Plane::swap_rules`]; the decision thread never waits for it.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Rules for host processes (tasks in the daemon's pid namespace that are not in a
    /// registered container), or none.
    pub host: Option<Arc<RuleSet>>,
    /// Rules per registered container, keyed by cgroup v2 id (the inode number of the
    /// container's cgroup directory, `bpf_get_current_cgroup_id()`).
    pub containers: HashMap<u64, Arc<RuleSet>>,
    /// Other names of the same files, for the allow cache (see [`PathAlias`]).
    pub aliases: Vec<PathAlias>,
    /// Which names of a file the allow cache considers besides the aliases.
    pub cache_views: CacheViews,
    /// The files exact-path rules name, by `(st_dev, st_ino)`, with the name each subject's
    /// rules give them. A file reached under another name (a hard link, a bind mount, a
    /// mount namespace's view of it) is also decided under its rule name, and never cached.
    /// Fill with [`Rules::add_rule_files`].
    pub file_names: HashMap<FileKey, Vec<(SubjectKey, Arc<str>)>>,
}

/// A file's identity: `(st_dev, st_ino)` as `fstat` reports them.
pub type FileKey = (u64, u64);

/// Which names of a file the allow cache asks every rule set about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheViews {
    /// The path seen, every `/`-suffix of it (as if a container root were anywhere above)
    /// and the aliases. Safe without any knowledge of container roots; caches little for
    /// rule sets in allow-list mode (a suffix is rarely listed).
    #[default]
    AllSuffixes,
    /// Only the path seen and its alias rewrites: the daemon promises that `aliases` name
    /// every container root (`from: <rootfs on the host>`, `to: "/"`) and volume.
    AliasesOnly,
}

/// "A file seen at `from/...` may also be reached as `to/...`": bind mounts and volumes
/// whose paths differ between host and container (`/var/lib/app/data` mounted at `/data`).
/// The allow cache ignores an inode for every process at once, so before caching the plane
/// asks every rule set about every name the file may have: each `/`-suffix of the path it saw
/// (a container root anywhere above it), plus these rewrites. Give one per volume mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAlias {
    pub from: String,
    pub to: String,
}

/// What a resolver knows about the acting task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    /// cgroup v2 id of the task, if known.
    pub cgroup_id: Option<u64>,
    /// Whether the task is in the daemon's pid namespace (host rules apply only there, as
    /// KubeArmor's host key `{0,0}`); `None` = unknown, treated as host.
    pub host_pidns: Option<bool>,
}

/// Which rule set decides for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SubjectKey {
    Host,
    Container(u64),
    /// Not decided: the task is not visible in the plane's pid namespace.
    Unmanaged,
}

impl Rules {
    /// The subject for an identity: a registered container by cgroup id, else the host. A
    /// task that enters new user, pid, mount or network namespaces stays in its cgroup, so it
    /// stays the host (or its container): namespaces a process can create for itself never
    /// take it out of its rules. The network plane follows the same rule.
    pub fn subject(&self, id: &Identity) -> SubjectKey {
        if let Some(cg) = id.cgroup_id {
            if self.containers.contains_key(&cg) {
                return SubjectKey::Container(cg);
            }
        }
        SubjectKey::Host
    }

    /// What a resolver must find out to pick a subject under these rules.
    pub fn want(&self) -> Want {
        Want {
            cgroup: !self.containers.is_empty(),
            pidns: false,
        }
    }

    /// Records the files that `subject`'s exact-path process and file rules name, as
    /// `identify` (a `stat` inside the subject's root) finds them. Paths that name no file
    /// now are skipped: their rules still apply by path.
    pub fn add_rule_files(
        &mut self,
        subject: SubjectKey,
        set: &RuleSet,
        identify: impl Fn(&str) -> Option<FileKey>,
    ) {
        for r in set.path_rules() {
            let kubearmor_policy::PathTarget::Path(p) = &r.target else {
                continue;
            };
            let Some(key) = identify(p) else {
                continue;
            };
            let names = self.file_names.entry(key).or_default();
            if !names.iter().any(|(s, n)| *s == subject && **n == **p) {
                names.push((subject, Arc::from(p.as_str())));
            }
        }
    }

    /// The name `subject`'s rules give the file `key`, if one does.
    pub fn rule_name(&self, subject: SubjectKey, key: FileKey) -> Option<&str> {
        self.file_names
            .get(&key)?
            .iter()
            .find(|(s, _)| *s == subject)
            .map(|(_, n)| &**n)
    }

    pub fn rule_set(&self, key: SubjectKey) -> Option<&Arc<RuleSet>> {
        match key {
            SubjectKey::Host => self.host.as_ref(),
            SubjectKey::Container(cg) => self.containers.get(&cg),
            SubjectKey::Unmanaged => None,
        }
    }

    /// Every rule set, host first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<RuleSet>> {
        self.host.iter().chain(self.containers.values())
    }
}

/// A resolver failure: the plane decides such events by its fail mode.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

/// What the plane needs to know from a resolver for the current rules (it asks for nothing,
/// and does not call the resolver, when no rule set has process or file rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// Some container is registered: the cgroup id matters.
    pub cgroup: bool,
    /// Host rules exist: whether the task is in the host pid namespace matters.
    pub pidns: bool,
}

/// Maps a thread to an [`Identity`]. Called on the decision thread for every event that is
/// not cached: it must not block, must not take locks held across I/O and must not open files
/// on a marked filesystem. The lead's BPF map (`tid -> cgroup id`) is the fast path; fall
/// back to [`ProcResolver`].
pub trait SubjectResolver: Send + Sync {
    /// `want` says which fields matter now; a resolver may fill more (a BPF map lookup gives
    /// everything at once) or only those (the /proc reads cost 4-20 µs each).
    fn resolve(&self, tid: u32, want: Want) -> Result<Identity, ResolveError>;
}

/// Reads `/proc/<tid>/cgroup` (the `0::` line) and stats the directory in the cgroup v2
/// mount for its inode number (= cgroup id); compares `/proc/<tid>/ns/pid` with the
/// daemon's. About 20-25 µs.
#[derive(Debug, Clone)]
pub struct ProcResolver {
    cgroup2_root: Option<PathBuf>,
    own_pidns: Option<u64>,
}

impl Default for ProcResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcResolver {
    pub fn new() -> Self {
        Self {
            cgroup2_root: find_cgroup2_root(),
            own_pidns: procfs::pid_ns(std::process::id()).ok(),
        }
    }

    /// The cgroup v2 mount found at start (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
    pub fn cgroup2_root(&self) -> Option<&std::path::Path> {
        self.cgroup2_root.as_deref()
    }
}

impl SubjectResolver for ProcResolver {
    fn resolve(&self, tid: u32, want: Want) -> Result<Identity, ResolveError> {
        let cgroup = if want.cgroup {
            procfs::cgroup_v2_path(tid)
        } else {
            Ok(None)
        };
        let cgroup_id = match (&self.cgroup2_root, cgroup) {
            (Some(root), Ok(Some(rel))) => {
                let dir = root.join(rel.trim_start_matches('/'));
                match nix::sys::stat::stat(&dir) {
                    Ok(st) => Some(st.st_ino),
                    Err(e) => {
                        return Err(ResolveError(format!("stat {}: {e}", dir.display())));
                    }
                }
            }
            (_, Err(e)) => return Err(ResolveError(e.to_string())),
            _ => None,
        };
        let host_pidns = match self.own_pidns {
            Some(own) if want.pidns => {
                Some(procfs::pid_ns(tid).map_err(|e| ResolveError(e.to_string()))? == own)
            }
            _ => None,
        };
        Ok(Identity {
            cgroup_id,
            host_pidns,
        })
    }
}

/// cgroupfs v2 superblock magic.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[allow(clippy::unnecessary_cast)] // fs_type_t is c_long: i64 here, i32 elsewhere
fn find_cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p.as_path())
                .map(|s| s.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_selection() {
        let mut rules = Rules {
            host: Some(Arc::new(RuleSet::default())),
            ..Default::default()
        };
        rules.containers.insert(82, Arc::new(RuleSet::default()));
        let id = |cg, host| Identity {
            cgroup_id: cg,
            host_pidns: host,
        };
        assert_eq!(
            rules.subject(&id(Some(82), Some(false))),
            SubjectKey::Container(82)
        );
        assert_eq!(rules.subject(&id(Some(83), Some(true))), SubjectKey::Host);
        assert_eq!(rules.subject(&id(Some(83), None)), SubjectKey::Host);
        // Another pid namespace (unshare -Urpf) is still the host.
        assert_eq!(rules.subject(&id(Some(83), Some(false))), SubjectKey::Host);
        assert!(rules.rule_set(SubjectKey::Unmanaged).is_none());
        assert_eq!(rules.all().count(), 2);
    }

    #[test]
    fn resolves_own_process() {
        let r = ProcResolver::new();
        let all = Want {
            cgroup: true,
            pidns: true,
        };
        let id = r.resolve(std::process::id(), all);
        // Our own task is in our own pid namespace.
        assert_eq!(id.ok().and_then(|i| i.host_pidns), Some(true));
    }
}
