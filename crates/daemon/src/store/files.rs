//! The policy directory on disk: which files count, how they are fingerprinted, read, written
//! (atomically) and named.
//!
//! File naming: policies received over gRPC are written as `hsp-<name>.yaml` (host),
//! `ksp-<name>.yaml` (container) or `csp-<name>.yaml` (cluster), so a host and a container
//! policy of the same name never overwrite each other (upstream writes both to `<name>.yaml`).
//! A policy that already lives in a single-policy file (for example upstream's `<name>.yaml`
//! backup, or a hand-written manifest) is updated in place instead. The content is JSON (valid
//! YAML), the canonical document of [`super::document::canonical`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kubearmor_policy::limits::MAX_INPUT_BYTES;
use kubearmor_policy::PolicyKind;

/// Extensions of the files loaded from the policy directory.
pub const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];
/// Longest file name most Linux filesystems accept.
const NAME_MAX: usize = 255;

/// Changes when a file's content may have changed: a rename (new inode), a write (mtime,
/// size), a metadata change (ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    pub fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// Whether a directory entry is a policy file: not hidden (editors' and our own temporary
/// files start with `.`), with a policy extension.
pub fn is_policy_file_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    Path::new(name)
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The policy files of `dir` (symlinks followed, sub-directories ignored) and their
/// fingerprints.
pub fn list(dir: &Path) -> io::Result<BTreeMap<PathBuf, Fingerprint>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !is_policy_file_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // A dangling symlink or a file removed meanwhile is simply not there.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            out.insert(path, Fingerprint::of(&meta));
        }
    }
    Ok(out)
}

/// Reads a policy file, refusing files beyond the policy size limit without reading them whole.
pub fn read(path: &Path) -> Result<String, String> {
    let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if text.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "{}: larger than the {MAX_INPUT_BYTES}-byte policy limit",
            path.display()
        ));
    }
    Ok(text)
}

/// Creates the directory (mode 0700, as upstream) if it does not exist.
pub fn ensure_dir(dir: &Path) -> io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(true)
}

/// File name prefix of each kind.
pub fn prefix(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Host => "hsp",
        PolicyKind::Container => "ksp",
        PolicyKind::Cluster => "csp",
    }
}

/// `<dir>/<prefix>-<name>.yaml`. Names are validated DNS-1123 names (no `/`); one too long for
/// a file name is shortened and made unique with a hash of the full name.
pub fn path_for(dir: &Path, kind: PolicyKind, name: &str) -> PathBuf {
    let p = prefix(kind);
    let full = format!("{p}-{name}.yaml");
    if full.len() <= NAME_MAX {
        return dir.join(full);
    }
    let keep: String = name.chars().take(200).collect();
    dir.join(format!("{p}-{keep}-{:016x}.yaml", fnv1a(name.as_bytes())))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `content` to `path` atomically: a hidden temporary file in the same directory,
/// fsync, rename over the target, fsync the directory. Readers (and a crash) see the old or
/// the new content, never a mix. Returns the new file's fingerprint.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<Fingerprint> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path.file_name().and_then(OsStr::to_str).unwrap_or("policy");
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let short: String = base.chars().take(180).collect();
    let tmp = dir.join(format!(".{short}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)?;
        fs::metadata(path).map(|m| Fingerprint::of(&m))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is one of [`write_atomic`]'s temporary files: `.<name>.<pid>.<n>.tmp`.
fn is_temp_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let counter = parts.next().unwrap_or_default();
    let pid = parts.next().unwrap_or_default();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    numeric(counter) && numeric(pid) && parts.next().is_some_and(|b| !b.is_empty())
}

/// Removes temporary files a crash left behind in `dir`; returns their paths.
pub fn remove_stale_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_temp_file_name))
        .map(|e| e.path())
        .filter(|p| fs::remove_file(p).is_ok())
        .collect()
}

/// Removes a file and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn which_files_count() {
        for yes in ["a.yaml", "b.YML", "c.json", "hsp-x.yaml"] {
            assert!(is_policy_file_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            ".a.yaml",
            ".a.yaml.1.2.tmp",
            "a.yaml~",
            "a.swp",
            "README",
            "a.yaml.bak",
        ] {
            assert!(!is_policy_file_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn names() {
        let d = Path::new("/p");
        assert_eq!(
            path_for(d, PolicyKind::Host, "x"),
            PathBuf::from("/p/hsp-x.yaml")
        );
        assert_eq!(
            path_for(d, PolicyKind::Container, "x"),
            PathBuf::from("/p/ksp-x.yaml")
        );
        let long = "a".repeat(253);
        let p = path_for(d, PolicyKind::Cluster, &long);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 255);
        assert_ne!(p, path_for(d, PolicyKind::Cluster, &"a".repeat(252)));
    }

    #[test]
    fn atomic_write_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hsp-x.yaml");
        let fp1 = write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "one");
        let fp2 = write_atomic(&p, b"two").unwrap();
        assert_ne!(fp1, fp2);
        fs::write(dir.path().join("notes.txt"), "x").unwrap();
        fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.keys().collect::<Vec<_>>(), vec![&p]);
        assert_eq!(listed[&p], fp2);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn stale_temp_files() {
        assert!(is_temp_file_name(".hsp-x.yaml.123.0.tmp"));
        assert!(!is_temp_file_name(".hsp-x.yaml.tmp"));
        assert!(!is_temp_file_name("hsp-x.yaml.1.2.tmp"));
        assert!(!is_temp_file_name(".notes.tmp"));
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".hsp-x.yaml.99.3.tmp"), "partial").unwrap();
        fs::write(dir.path().join("hsp-x.yaml"), "{}").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).len(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_refuses_huge_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.yaml");
        fs::write(&p, vec![b' '; MAX_INPUT_BYTES + 10]).unwrap();
        assert!(read(&p).unwrap_err().contains("limit"));
    }
}
