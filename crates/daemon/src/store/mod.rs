//! The policy store: the policies in force, where they come from, and how they change.
//!
//! Sources: the policy directory (`policyDir`, loaded at start and watched) and PolicyService
//! over gRPC (persisted into the same directory). Every change is a transaction: the new set is
//! parsed, validated and compiled off to the side and swapped in whole ([`arc_swap`]); a bad
//! input changes nothing.
//!
//! Directory semantics, per file: a file whose new content is invalid (or defines a policy
//! another file already defines) is reported with the policy crate's diagnostics and its last
//! good content stays in force; the other files' changes in the same scan are applied.
//!
//! PolicyService status codes follow upstream (`spec/kubearmor-policy.md` §1.5):
//!
//! | request | status |
//! |---|---|
//! | kind disabled (`enableKubeArmorPolicy` / `enableKubeArmorHostPolicy` false), `immutablePolicies`, `networkPolicy` | `NotEnabled` |
//! | not JSON, no `metadata.name`, policy invalid | `Invalid` |
//! | host `ADDED`/`MODIFIED`: new, or identical to the one in force | `Applied` |
//! | host `ADDED`/`MODIFIED` replacing a different policy of that name | `Modified` |
//! | container `ADDED` (new or replacing) | `Applied` |
//! | container `MODIFIED` | `Modified` |
//! | `DELETED` | `Deleted`, or `NotExist` for an unknown name |
//! | the policy file cannot be written or removed; the policy lives in a multi-policy file | `Failure` |

pub mod document;
pub mod files;
pub mod snapshot;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use kubearmor_policy::{parse_policy_change, ChangeType, PolicyKind};
use kubearmor_proto::policy::PolicyStatus;

pub use document::{PolicyKey, StoredPolicy};
pub use snapshot::{PolicySnapshot, Scope};

use files::Fingerprint;

/// Policies in force at once, over all files.
pub const MAX_POLICIES: usize = 10_000;

/// Store settings from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub dir: PathBuf,
    pub scope: Scope,
    pub immutable: bool,
}

#[derive(Debug, Clone)]
struct FileState {
    fingerprint: Fingerprint,
    /// The policies of this file in force: its current content, or its last good content when
    /// the current one is rejected.
    policies: Vec<Arc<StoredPolicy>>,
    /// Why the current content is rejected.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, FileState>,
    generation: u64,
}

/// What a directory scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub added: Vec<PolicyKey>,
    pub modified: Vec<PolicyKey>,
    pub removed: Vec<PolicyKey>,
    /// Files whose new content was rejected (the message names file, document and field).
    pub rejected: Vec<(PathBuf, String)>,
    /// Whether a new snapshot was swapped in.
    pub swapped: bool,
}

impl ScanReport {
    pub fn is_noop(&self) -> bool {
        self.added.is_empty()
            && self.modified.is_empty()
            && self.removed.is_empty()
            && self.rejected.is_empty()
    }
}

/// The outcome of a PolicyService request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub status: PolicyStatus,
    /// Log text: what happened and why.
    pub detail: String,
}

impl ChangeOutcome {
    fn new(status: PolicyStatus, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

/// Which PolicyService method a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `containerPolicy`: KubeArmorPolicy (and KubeArmorClusterPolicy).
    Container,
    /// `hostPolicy`: KubeArmorHostPolicy.
    Host,
}

impl Channel {
    fn kinds(self) -> &'static [PolicyKind] {
        match self {
            Channel::Container => &[PolicyKind::Container, PolicyKind::Cluster],
            Channel::Host => &[PolicyKind::Host],
        }
    }

    fn method(self) -> &'static str {
        match self {
            Channel::Container => "containerPolicy",
            Channel::Host => "hostPolicy",
        }
    }
}

pub struct PolicyStore {
    settings: StoreSettings,
    scope: Arc<Scope>,
    state: Mutex<State>,
    current: ArcSwap<PolicySnapshot>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl PolicyStore {
    /// An empty store; call [`Self::rescan`] to load the directory (creating it, mode 0700, if it
    /// does not exist).
    pub fn new(settings: StoreSettings) -> Self {
        let scope = Arc::new(settings.scope.clone());
        match files::ensure_dir(&settings.dir) {
            Ok(true) => tracing::info!("created the policy directory {}", settings.dir.display()),
            Ok(false) => {
                for stale in files::remove_stale_temp_files(&settings.dir) {
                    tracing::info!("removed {} (left by an interrupted write)", stale.display());
                }
            }
            Err(e) => tracing::warn!(
                "cannot create the policy directory {}: {e}; policies received over gRPC cannot be persisted",
                settings.dir.display()
            ),
        }
        let (changes, _) = tokio::sync::watch::channel(0);
        Self {
            current: ArcSwap::from_pointee(PolicySnapshot::empty(scope.clone())),
            scope,
            settings,
            state: Mutex::new(State::default()),
            changes,
        }
    }

    /// The policies in force. Lock-free; safe from any thread, including a decision loop.
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// Notified with the new generation after every swap.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Files whose current content is rejected, with the reason.
    pub fn rejected_files(&self) -> Vec<(PathBuf, String)> {
        self.lock()
            .files
            .iter()
            .filter_map(|(p, f)| f.error.clone().map(|e| (p.clone(), e)))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation replaces whole values; a panic cannot leave a torn state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the directory and applies what changed since the last scan. Blocking (file I/O):
    /// call it from a blocking context.
    pub fn rescan(&self) -> ScanReport {
        let mut state = self.lock();
        let listing = match files::list(&self.settings.dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "cannot read the policy directory {}: {e}; policies in force are unchanged",
                    self.settings.dir.display()
                );
                return ScanReport::default();
            }
        };
        let mut next: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        let mut changed: Vec<PathBuf> = Vec::new();
        let mut report = ScanReport::default();
        for (path, fp) in &listing {
            match state.files.get(path) {
                Some(f) if f.fingerprint == *fp => {
                    next.insert(path.clone(), f.clone());
                }
                _ => changed.push(path.clone()),
            }
        }
        // Keys held by files that did not change: they win conflicts.
        let mut owners: BTreeMap<PolicyKey, PathBuf> = BTreeMap::new();
        for (path, f) in &next {
            for p in &f.policies {
                owners.insert(p.key(), path.clone());
            }
        }
        for path in changed {
            let Some(fp) = listing.get(&path).copied() else {
                continue;
            };
            let old = state
                .files
                .get(&path)
                .map(|f| f.policies.clone())
                .unwrap_or_default();
            let (policies, error) = match load(&path) {
                Ok(new) => match conflict(&new, &path, &owners) {
                    None => (new, None),
                    Some(msg) => (keep_free(old, &path, &owners), Some(msg)),
                },
                Err(msg) => (keep_free(old, &path, &owners), Some(msg)),
            };
            if let Some(msg) = &error {
                let previous = state.files.get(&path).and_then(|f| f.error.as_ref());
                if previous != Some(msg) {
                    tracing::error!(
                        "policy file rejected; its previous content (if any) stays in force:\n{msg}"
                    );
                }
                report.rejected.push((path.clone(), msg.clone()));
            }
            for p in &policies {
                owners.insert(p.key(), path.clone());
            }
            next.insert(
                path.clone(),
                FileState {
                    fingerprint: fp,
                    policies,
                    error,
                },
            );
        }
        let total: usize = next.values().map(|f| f.policies.len()).sum();
        if total > MAX_POLICIES {
            let msg = format!(
                "the policy directory {} holds {total} policies; the limit is {MAX_POLICIES}; policies in force are unchanged",
                self.settings.dir.display()
            );
            tracing::error!("{msg}");
            report.rejected.push((self.settings.dir.clone(), msg));
            return report;
        }
        let old_map = self.current.load().map().clone();
        let new_map = collect(&next);
        diff(&old_map, &new_map, &mut report);
        state.files = next;
        if !(report.added.is_empty() && report.modified.is_empty() && report.removed.is_empty()) {
            self.swap(&mut state, new_map);
            report.swapped = true;
            tracing::info!(
                added = ?names(&report.added),
                modified = ?names(&report.modified),
                removed = ?names(&report.removed),
                "policy directory changes applied (generation {})",
                state.generation
            );
        }
        report
    }

    fn swap(&self, state: &mut State, map: BTreeMap<PolicyKey, Arc<StoredPolicy>>) {
        state.generation += 1;
        let snap = PolicySnapshot::build(state.generation, map, self.scope.clone());
        self.current.store(Arc::new(snap));
        self.changes.send_replace(state.generation);
    }

    /// Applies a PolicyService request (`policy.policy` bytes). Blocking (writes and fsyncs the
    /// policy file): call it from a blocking context.
    pub fn apply(&self, channel: Channel, bytes: &[u8]) -> ChangeOutcome {
        let method = channel.method();
        let enabled = match channel {
            Channel::Container => self.scope.container_policies,
            Channel::Host => self.scope.host_policies,
        };
        if !enabled {
            let key = match channel {
                Channel::Container => "enableKubeArmorPolicy",
                Channel::Host => "enableKubeArmorHostPolicy",
            };
            return ChangeOutcome::new(
                PolicyStatus::NotEnabled,
                format!("{method}: refused: {key} is false"),
            );
        }
        if self.settings.immutable {
            return ChangeOutcome::new(
                PolicyStatus::NotEnabled,
                format!(
                    "{method}: refused: immutablePolicies is set; policies come only from {}",
                    self.settings.dir.display()
                ),
            );
        }
        let kind = match channel {
            Channel::Container => PolicyKind::Container,
            Channel::Host => PolicyKind::Host,
        };
        let change = match parse_policy_change(bytes, kind) {
            Ok(c) => c,
            Err(e) => {
                return ChangeOutcome::new(
                    PolicyStatus::Invalid,
                    format!("{method}: policy rejected:\n{e}"),
                )
            }
        };
        if change.name.contains('/') || change.name.starts_with('.') {
            return ChangeOutcome::new(
                PolicyStatus::Invalid,
                format!(
                    "{method}: policy rejected: metadata.name {:?} is not a valid name",
                    change.name
                ),
            );
        }
        let mut state = self.lock();
        let existing = channel.kinds().iter().find_map(|k| {
            let key = PolicyKey {
                kind: *k,
                name: change.name.clone(),
            };
            self.current.load().get(&key).cloned()
        });
        match change.change {
            ChangeType::Deleted => self.delete(&mut state, method, &change.name, existing),
            ChangeType::Added | ChangeType::Modified => {
                let Some(policy) = change.policy else {
                    return ChangeOutcome::new(
                        PolicyStatus::Invalid,
                        format!("{method}: no policy in the message"),
                    );
                };
                // The object as sent, for the persisted document.
                let object = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("object").cloned())
                    .unwrap_or_default();
                let doc = document::canonical(
                    &policy,
                    object.get("metadata"),
                    object.get("spec").cloned().unwrap_or_default(),
                );
                for w in &change.warnings {
                    tracing::warn!("{method}: {w}");
                }
                // The document includes the kind, so a kind change is never "identical".
                let identical = existing.as_ref().is_some_and(|old| old.document == doc);
                let status = match (channel, change.change, &existing) {
                    (Channel::Host, _, None) => PolicyStatus::Applied,
                    (Channel::Host, _, Some(_)) if identical => PolicyStatus::Applied,
                    (Channel::Host, _, Some(_)) => PolicyStatus::Modified,
                    (Channel::Container, ChangeType::Modified, _) => PolicyStatus::Modified,
                    (Channel::Container, _, _) => PolicyStatus::Applied,
                };
                if identical {
                    return ChangeOutcome::new(
                        status,
                        format!(
                            "{method}: {} {} unchanged (identical content)",
                            policy.kind, policy.name
                        ),
                    );
                }
                self.put(&mut state, method, policy, doc, existing, status)
            }
        }
    }

    fn delete(
        &self,
        state: &mut State,
        method: &str,
        name: &str,
        existing: Option<Arc<StoredPolicy>>,
    ) -> ChangeOutcome {
        let Some(old) = existing else {
            return ChangeOutcome::new(
                PolicyStatus::NotExist,
                format!("{method}: DELETED {name}: no such policy"),
            );
        };
        let path = old.file.clone();
        let sole = state
            .files
            .get(&path)
            .is_some_and(|f| f.policies.len() == 1 && f.error.is_none());
        if !sole {
            return ChangeOutcome::new(
                PolicyStatus::Failure,
                format!(
                    "{method}: DELETED {name}: {} holds other policies or rejected content; edit that file instead",
                    path.display()
                ),
            );
        }
        if let Err(e) = files::remove(&path) {
            return ChangeOutcome::new(
                PolicyStatus::Failure,
                format!(
                    "{method}: DELETED {name}: cannot remove {}: {e}; nothing changed",
                    path.display()
                ),
            );
        }
        state.files.remove(&path);
        let map = collect(&state.files);
        self.swap(state, map);
        ChangeOutcome::new(
            PolicyStatus::Deleted,
            format!(
                "{method}: {} {name} deleted (removed {})",
                old.policy.kind,
                path.display()
            ),
        )
    }

    fn put(
        &self,
        state: &mut State,
        method: &str,
        policy: kubearmor_policy::Policy,
        doc: serde_json::Value,
        existing: Option<Arc<StoredPolicy>>,
        status: PolicyStatus,
    ) -> ChangeOutcome {
        let name = policy.name.clone();
        let kind = policy.kind;
        // Update a policy in place when it has a file of its own; otherwise our own file name.
        let path = match &existing {
            Some(old) => {
                let sole = state
                    .files
                    .get(&old.file)
                    .is_some_and(|f| f.policies.len() == 1 && f.error.is_none());
                if !sole {
                    return ChangeOutcome::new(
                        PolicyStatus::Failure,
                        format!(
                            "{method}: {kind} {name}: {} holds other policies or rejected content; edit that file instead",
                            old.file.display()
                        ),
                    );
                }
                old.file.clone()
            }
            None => files::path_for(&self.settings.dir, kind, &name),
        };
        if existing.is_none() {
            if let Some(f) = state.files.get(&path) {
                return ChangeOutcome::new(
                    PolicyStatus::Failure,
                    format!(
                        "{method}: {kind} {name}: {} already exists with other content{}; not overwritten",
                        path.display(),
                        if f.error.is_some() { " (rejected)" } else { "" }
                    ),
                );
            }
        }
        let text = match serde_json::to_vec_pretty(&doc) {
            Ok(mut t) => {
                t.push(b'\n');
                t
            }
            Err(e) => return ChangeOutcome::new(PolicyStatus::Failure, format!("{method}: {e}")),
        };
        let started = std::time::Instant::now();
        let fingerprint = match files::write_atomic(&path, &text) {
            Ok(fp) => fp,
            Err(e) => {
                return ChangeOutcome::new(
                    PolicyStatus::Failure,
                    format!(
                        "{method}: {kind} {name}: cannot write {}: {e}; nothing changed",
                        path.display()
                    ),
                )
            }
        };
        let stored = Arc::new(StoredPolicy {
            policy,
            document: doc,
            file: path.clone(),
        });
        // A kind change under the same name (KubeArmorPolicy <-> ClusterPolicy) replaces too.
        state.files.insert(
            path.clone(),
            FileState {
                fingerprint,
                policies: vec![stored],
                error: None,
            },
        );
        let written = started.elapsed();
        let map = collect(&state.files);
        self.swap(state, map);
        let swapped = started.elapsed() - written;
        ChangeOutcome::new(
            status,
            format!(
                "{method}: {kind} {name} {} (written to {} in {:.1} ms, rules compiled and swapped in {:.1} ms)",
                status.as_str_name(),
                path.display(),
                written.as_secs_f64() * 1e3,
                swapped.as_secs_f64() * 1e3
            ),
        )
    }
}

fn load(path: &Path) -> Result<Vec<Arc<StoredPolicy>>, String> {
    let text = files::read(path)?;
    let (policies, warnings) = document::parse_file(&text, path).map_err(|e| e.to_string())?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(policies.into_iter().map(Arc::new).collect())
}

/// A message if `new` defines a policy another file already holds.
fn conflict(
    new: &[Arc<StoredPolicy>],
    path: &Path,
    owners: &BTreeMap<PolicyKey, PathBuf>,
) -> Option<String> {
    let clashes: Vec<String> = new
        .iter()
        .filter_map(|p| {
            let key = p.key();
            owners
                .get(&key)
                .filter(|owner| owner.as_path() != path)
                .map(|owner| {
                    format!(
                        "{}: {key} is already defined in {}",
                        path.display(),
                        owner.display()
                    )
                })
        })
        .collect();
    (!clashes.is_empty()).then(|| clashes.join("\n"))
}

/// The previous policies of a rejected file, minus any another file took meanwhile.
fn keep_free(
    old: Vec<Arc<StoredPolicy>>,
    path: &Path,
    owners: &BTreeMap<PolicyKey, PathBuf>,
) -> Vec<Arc<StoredPolicy>> {
    old.into_iter()
        .filter(|p| owners.get(&p.key()).is_none_or(|o| o == path))
        .collect()
}

fn collect(files: &BTreeMap<PathBuf, FileState>) -> BTreeMap<PolicyKey, Arc<StoredPolicy>> {
    files
        .values()
        .flat_map(|f| f.policies.iter())
        .map(|p| (p.key(), p.clone()))
        .collect()
}

fn diff(
    old: &BTreeMap<PolicyKey, Arc<StoredPolicy>>,
    new: &BTreeMap<PolicyKey, Arc<StoredPolicy>>,
    report: &mut ScanReport,
) {
    for (k, p) in new {
        match old.get(k) {
            None => report.added.push(k.clone()),
            Some(o) if !Arc::ptr_eq(o, p) && (o.document != p.document || o.file != p.file) => {
                report.modified.push(k.clone());
            }
            Some(_) => {}
        }
    }
    let new_keys: BTreeSet<&PolicyKey> = new.keys().collect();
    report
        .removed
        .extend(old.keys().filter(|k| !new_keys.contains(k)).cloned());
}

fn names(keys: &[PolicyKey]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

#[cfg(test)]
mod tests;
