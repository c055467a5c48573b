//! Symlink resolution inside a container's root filesystem, so a container rule on `/bin/ls`
//! also governs `/usr/bin/ls` when the image links `/bin` there (as the kernel reports paths).

use std::fs;
use std::path::{Component, Path, PathBuf};

use kubearmor_policy::PathResolver;

/// Resolves paths as seen from `root`: absolute symlinks are taken relative to `root`, and
/// `..` never climbs above it.
pub struct RootfsResolver {
    root: PathBuf,
}

const MAX_LINKS: usize = 40;

impl RootfsResolver {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn resolve_inner(&self, path: &str) -> Option<String> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => {}
                ".." => {
                    done.pop();
                }
                _ => {
                    let host = self.root.join(done.iter().collect::<PathBuf>()).join(&part);
                    match fs::symlink_metadata(&host) {
                        Ok(m) if m.file_type().is_symlink() => {
                            links += 1;
                            if links > MAX_LINKS {
                                return None;
                            }
                            let target = fs::read_link(&host).ok()?;
                            let target = target.to_str()?;
                            if target.starts_with('/') {
                                done.clear();
                            }
                            let mut more = components(target);
                            more.reverse();
                            pending.extend(more);
                        }
                        _ => done.push(part),
                    }
                }
            }
        }
        Some(format!("/{}", done.join("/")))
    }
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str().map(str::to_string),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

impl PathResolver for RootfsResolver {
    fn resolve(&self, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let resolved = self.resolve_inner(path)?;
        (resolved != path && resolved != "/").then_some(resolved)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolves_within_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/ls"), "").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/usr/bin/ls", root.join("usr/bin/dir")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        let r = RootfsResolver::new(root);
        assert_eq!(r.resolve("/bin/ls").as_deref(), Some("/usr/bin/ls"));
        assert_eq!(r.resolve("/usr/bin/dir").as_deref(), Some("/usr/bin/ls"));
        assert_eq!(r.resolve("/usr/bin/ls"), None, "already resolved");
        assert_eq!(
            r.resolve("/usr/escape/passwd").as_deref(),
            Some("/etc/passwd")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(r.resolve("/loop"), None);
    }
}
