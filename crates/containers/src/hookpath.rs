//! The `hookPath` file (spec §4.7, the Confidential Containers / Kata pod-VM mechanism,
//! default `/run/output.json`): hooks write container records to a file, and the daemon reads
//! it at start and whenever it changes. This covers containers created before the daemon runs
//! (in the pod VM the daemon is started *because* the file appeared).
//!
//! Format: `HookRequest` objects (spec §4.3), as one object, a JSON array, or a sequence of
//! objects (JSON lines, which is what `kubearmor-hook --hook-path` appends). A bare `Container`
//! object (no `container` key) is accepted as a create. Records apply in order, so a delete
//! after a create removes the container. A missing file means "no containers".
//!
//! Writers take an exclusive `flock` on the file while appending and the reader a shared one,
//! so a half-written record is never seen; if one is (a writer that does not lock), the
//! incomplete tail is left for the next read.
//!
//! Reloads are incremental while the file only grows; when it is replaced or rewritten, the
//! whole file is re-read and containers that came from it and are no longer in it are removed.
//! Records are applied through the same registry path as ka.sock messages, bypassing the
//! readiness gate; a create whose pid no longer exists is ignored.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::procfs;
#[cfg(test)]
use crate::protocol::Container;
use crate::protocol::{request_from_value, HookRequest, Operation};
use crate::registry::{Registry, Source};

/// Upstream's CoCo default.
pub const DEFAULT_HOOK_PATH: &str = "/run/output.json";
/// Largest hookPath file we read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HookPathError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
}

/// One record of the file, or why it was rejected (with its byte offset).
#[derive(Debug)]
pub enum Record {
    Request(Box<HookRequest>),
    Invalid { offset: usize, reason: String },
}

/// Parse file contents. Returns the records and how many bytes were consumed (an incomplete
/// trailing record is not consumed).
pub fn parse_records(text: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let ws = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        if ws == rest.len() {
            pos = text.len();
            break;
        }
        let mut stream =
            serde_json::Deserializer::from_slice(&rest[ws..]).into_iter::<serde_json::Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let start = pos + ws;
                pos = start + stream.byte_offset();
                match value {
                    serde_json::Value::Array(items) => {
                        for item in items {
                            out.push(record_from_value(item, start));
                        }
                    }
                    v => out.push(record_from_value(v, start)),
                }
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => {
                // skip to the next line and carry on (JSON lines with one bad line)
                let start = pos + ws;
                out.push(Record::Invalid {
                    offset: start,
                    reason: e.to_string(),
                });
                match rest[ws..].iter().position(|&c| c == b'\n') {
                    Some(nl) => pos = start + nl + 1,
                    None => {
                        pos = text.len();
                        break;
                    }
                }
            }
            None => break,
        }
    }
    (out, pos)
}

fn record_from_value(v: serde_json::Value, offset: usize) -> Record {
    let bare = v
        .as_object()
        .is_some_and(|o| !o.contains_key("container") && o.contains_key("containerID"));
    let parsed = if bare {
        let mut top = serde_json::Map::new();
        top.insert("container".to_string(), v);
        request_from_value(serde_json::Value::Object(top))
    } else {
        request_from_value(v)
    };
    match parsed {
        Ok(r) if r.container.container_id.is_empty() => Record::Invalid {
            offset,
            reason: "record without a containerID".to_string(),
        },
        Ok(r) => Record::Request(Box::new(r)),
        Err(reason) => Record::Invalid { offset, reason },
    }
}

/// Append one record as a JSON line, under an exclusive lock (used by `kubearmor-hook
/// --hook-path`). The file is created with mode 0600.
pub fn append_record(path: &Path, req: &HookRequest) -> Result<(), HookPathError> {
    let what = || path.display().to_string();
    let mut line = serde_json::to_vec(req).map_err(|e| HookPathError::Io {
        what: what(),
        source: std::io::Error::other(e),
    })?;
    line.push(b'\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| HookPathError::Io {
            what: dir.display().to_string(),
            source,
        })?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| HookPathError::Io {
            what: what(),
            source,
        })?;
    f.lock().map_err(|source| HookPathError::Io {
        what: what(),
        source,
    })?;
    let r = f.write_all(&line);
    let _ = f.unlock();
    r.map_err(|source| HookPathError::Io {
        what: what(),
        source,
    })
}

/// What one [`HookPathReader::load`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub applied: usize,
    pub removed: usize,
    pub invalid: Vec<(usize, String)>,
    /// Whether the whole file was re-read (replaced or rewritten).
    pub full_reload: bool,
}

/// Reads the hookPath file into a registry, remembering what it has applied.
#[derive(Debug)]
pub struct HookPathReader {
    path: PathBuf,
    registry: Arc<Registry>,
    /// (dev, ino) of the file last read.
    ident: Option<(u64, u64)>,
    /// Bytes of it already applied, and their hash.
    offset: usize,
    prefix_hash: u64,
    /// (len, mtime) at the last read, to skip unchanged files.
    seen: Option<(u64, i64, i64)>,
}

fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

impl HookPathReader {
    pub fn new(path: impl Into<PathBuf>, registry: Arc<Registry>) -> Self {
        HookPathReader {
            path: path.into(),
            registry,
            ident: None,
            offset: 0,
            prefix_hash: hash(&[]),
            seen: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the file if it changed and apply new records. A missing file changes nothing.
    pub fn load(&mut self) -> Result<LoadReport, HookPathError> {
        let what = || self.path.display().to_string();
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LoadReport::default());
            }
            Err(source) => {
                return Err(HookPathError::Io {
                    what: what(),
                    source,
                })
            }
        };
        let meta = f.metadata().map_err(|source| HookPathError::Io {
            what: what(),
            source,
        })?;
        let seen = (meta.len(), meta.mtime(), meta.mtime_nsec());
        let ident = (meta.dev(), meta.ino());
        if self.seen == Some(seen) && self.ident == Some(ident) {
            return Ok(LoadReport::default());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(HookPathError::TooLarge(self.path.clone()));
        }
        // a shared lock: appenders hold an exclusive one while writing
        let _ = f.lock_shared();
        let mut bytes = Vec::new();
        let read = (&mut f).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes);
        let _ = f.unlock();
        read.map_err(|source| HookPathError::Io {
            what: what(),
            source,
        })?;

        let incremental = self.ident == Some(ident)
            && bytes.len() >= self.offset
            && hash(&bytes[..self.offset]) == self.prefix_hash;
        let start = if incremental { self.offset } else { 0 };
        let (records, consumed) = parse_records(&bytes[start..]);
        let mut report = LoadReport {
            full_reload: !incremental,
            ..LoadReport::default()
        };

        let mut requests = Vec::new();
        for r in records {
            match r {
                Record::Request(req) => requests.push(*req),
                Record::Invalid { offset, reason } => {
                    tracing::warn!(file = %self.path.display(), offset = start + offset, %reason,
                        "invalid hookPath record ignored");
                    report.invalid.push((start + offset, reason));
                }
            }
        }

        if incremental {
            for req in &requests {
                report.applied += usize::from(self.apply(req));
            }
        } else {
            // fold to the net state: the last record per container wins
            let mut net: BTreeMap<String, &HookRequest> = BTreeMap::new();
            for req in &requests {
                net.insert(req.container.container_id.clone(), req);
            }
            let live: BTreeMap<&str, &HookRequest> = net
                .iter()
                .filter(|(_, r)| r.operation == Operation::Create)
                .map(|(k, r)| (k.as_str(), *r))
                .collect();
            for req in live.values() {
                report.applied += usize::from(self.apply(req));
            }
            report.removed += self
                .registry
                .retain_source(Source::HookPath, &|id| live.contains_key(id))
                .len();
        }

        self.ident = Some(ident);
        self.offset = start + consumed;
        self.prefix_hash = hash(&bytes[..self.offset]);
        self.seen = Some(seen);
        Ok(report)
    }

    fn apply(&self, req: &HookRequest) -> bool {
        if req.operation == Operation::Create && req.container.pid != 0 {
            let proc = self.registry.proc();
            if procfs::start_time_of(proc.as_ref(), req.container.pid).is_err() {
                tracing::debug!(container = %req.container.container_id, pid = req.container.pid,
                    "hookPath record for a process that is gone; ignored");
                return false;
            }
        }
        match self.registry.apply(req, Source::HookPath) {
            Ok(change) => change.is_some(),
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "hookPath record rejected");
                false
            }
        }
    }

    /// Load now, then poll for changes every `interval` until `shutdown` completes.
    pub async fn watch(
        mut self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.load() {
                tracing::warn!(error = %e, "reading hookPath file");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::procfs::fake::FakeProc;

    fn req(id: &str, pid: u32) -> HookRequest {
        HookRequest::create(Container {
            container_id: id.into(),
            pid,
            ..Container::default()
        })
    }

    fn ids(reg: &Registry) -> Vec<String> {
        let mut v: Vec<String> = reg.snapshot().iter().map(|r| r.id.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn parses_every_accepted_shape() {
        let one = serde_json::to_string(&req("a", 0)).unwrap();
        let (r, n) = parse_records(one.as_bytes());
        assert_eq!(r.len(), 1);
        assert_eq!(n, one.len());

        let arr = format!("[{one}, {}]", serde_json::to_string(&req("b", 0)).unwrap());
        let (r, _) = parse_records(arr.as_bytes());
        assert_eq!(r.len(), 2);

        let lines = format!(
            "{one}\n{}\n",
            serde_json::to_string(&HookRequest::delete("a")).unwrap()
        );
        let (r, n) = parse_records(lines.as_bytes());
        assert_eq!(r.len(), 2);
        assert_eq!(n, lines.len());
        assert!(matches!(&r[1], Record::Request(x) if x.operation == Operation::Delete));

        // bare Container object
        let (r, _) = parse_records(br#"{"containerID":"c","pidns":1,"mntns":2}"#);
        assert!(
            matches!(&r[0], Record::Request(x) if x.container.container_id == "c" && x.operation == Operation::Create)
        );

        assert!(parse_records(b"").0.is_empty());
        assert!(parse_records(b"  \n ").0.is_empty());
    }

    #[test]
    fn bad_lines_are_skipped_and_partial_tails_wait() {
        let good = serde_json::to_string(&req("a", 0)).unwrap();
        let text = format!(
            "{{oops\n{good}\n[1]\n{{\"container\":{{}}}}\n{}",
            &good[..10]
        );
        let (r, consumed) = parse_records(text.as_bytes());
        let valid: Vec<_> = r
            .iter()
            .filter_map(|x| match x {
                Record::Request(q) => Some(q.container.container_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(valid, ["a"]);
        assert_eq!(
            r.iter()
                .filter(|x| matches!(x, Record::Invalid { .. }))
                .count(),
            3
        );
        assert_eq!(text[consumed..].trim_start(), &good[..10]);
    }

    #[test]
    fn reader_applies_appends_incrementally_and_reconciles_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.json");
        let proc = Arc::new(FakeProc::default());
        proc.add(10, "/a", 1, 1, 1);
        proc.add(11, "/b", 2, 2, 2);
        let reg = Arc::new(Registry::new(proc.clone()));
        let mut reader = HookPathReader::new(&path, reg.clone());

        // missing file: nothing
        assert_eq!(reader.load().unwrap().applied, 0);

        append_record(&path, &req("a", 10)).unwrap();
        let rep = reader.load().unwrap();
        assert_eq!(rep.applied, 1);
        assert_eq!(reg.by_cgroup_id(1).unwrap().source, Source::HookPath);
        // unchanged: nothing re-read
        assert_eq!(reader.load().unwrap().applied, 0);

        append_record(&path, &req("b", 11)).unwrap();
        append_record(&path, &req("dead", 999)).unwrap(); // pid gone: ignored
        let rep = reader.load().unwrap();
        assert!(!rep.full_reload);
        assert_eq!(rep.applied, 1);
        assert_eq!(ids(&reg), ["a", "b"]);

        append_record(&path, &HookRequest::delete("a")).unwrap();
        reader.load().unwrap();
        assert_eq!(ids(&reg), ["b"]);

        // a socket-registered container is not touched by reloads
        reg.apply(&req("sock", 0), Source::Hook).unwrap();

        // the file is replaced with one array holding only "a": b (from the file) goes away
        let tmp = dir.path().join("new.json");
        std::fs::write(
            &tmp,
            format!("[{}]", serde_json::to_string(&req("a", 10)).unwrap()),
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let rep = reader.load().unwrap();
        assert!(rep.full_reload);
        assert_eq!(ids(&reg), ["a", "sock"]);

        // the file is deleted: nothing changes
        std::fs::remove_file(&path).unwrap();
        reader.load().unwrap();
        assert_eq!(ids(&reg), ["a", "sock"]);
    }

    #[test]
    fn appended_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/output.json");
        append_record(&path, &req("a", 0)).unwrap();
        append_record(&path, &req("b", 0)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
