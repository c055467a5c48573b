//! `karmor policy validate FILE|DIR...`: offline lint of policy files with the same parser and
//! validator the daemon uses (`kubearmor-policy`).
//!
//! Output, one line each, in argument order (directories sorted):
//! * `OK  path (N policies)` for a valid file,
//! * `path: document N: field.path: message` for each error,
//! * `warning: path: document N: field.path: message` for each warning.
//!
//! The result is `false` (exit status 1) when any file has an error or cannot be read.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kubearmor_policy::{parse_policies, Diagnostic, Level};

/// File extensions picked up when walking a directory (case-insensitive).
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Validates every path and writes the report to `out`. Returns whether everything was valid.
pub fn run(paths: &[PathBuf], out: &mut impl Write) -> io::Result<bool> {
    let mut ok = true;
    for path in paths {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{}: {}", path.display(), io_reason(&e))?;
                ok = false;
                continue;
            }
        };
        if meta.is_dir() {
            let mut files = Vec::new();
            if let Err(e) = collect(path, &mut files) {
                writeln!(out, "{}: {}", path.display(), io_reason(&e))?;
                ok = false;
            }
            if files.is_empty() {
                writeln!(
                    out,
                    "warning: {}: no *.yaml, *.yml or *.json files",
                    path.display()
                )?;
            }
            for f in files {
                ok &= check_file(&f, out)?;
            }
        } else {
            ok &= check_file(path, out)?;
        }
    }
    Ok(ok)
}

/// Policy files under `dir`, recursively, sorted by path. Symlinked directories are not
/// followed (no loops); symlinked files are.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort();
    for p in entries {
        let Ok(link_meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if link_meta.is_dir() {
            collect(&p, files)?;
        } else if has_policy_extension(&p) && fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            files.push(p);
        }
    }
    Ok(())
}

fn has_policy_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn check_file(path: &Path, out: &mut impl Write) -> io::Result<bool> {
    let origin = path.display().to_string();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            writeln!(out, "{origin}: {}", io_reason(&e))?;
            return Ok(false);
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        writeln!(out, "{origin}: not valid UTF-8 text")?;
        return Ok(false);
    };
    match parse_policies(&text, &origin) {
        Ok(parsed) => {
            let n = parsed.policies.len();
            writeln!(
                out,
                "OK  {origin} ({n} {})",
                if n == 1 { "policy" } else { "policies" }
            )?;
            if n == 0 {
                writeln!(out, "warning: {origin}: no policy documents")?;
            }
            write_diagnostics(&parsed.warnings, out)?;
            Ok(true)
        }
        Err(e) => {
            write_diagnostics(&e.diagnostics, out)?;
            Ok(false)
        }
    }
}

/// Errors as they are, warnings with a `warning: ` prefix.
pub fn write_diagnostics(ds: &[Diagnostic], out: &mut impl Write) -> io::Result<()> {
    for d in ds {
        match d.level {
            Level::Error => writeln!(out, "{d}")?,
            Level::Warning => writeln!(out, "warning: {d}")?,
        }
    }
    Ok(())
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-block-ls
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: '*'
  process:
    matchPaths:
    - path: /usr/bin/ls
  action: Block
";

    fn report(paths: &[PathBuf]) -> (bool, String) {
        let mut out = Vec::new();
        let ok = run(paths, &mut out).unwrap();
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn good_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        fs::write(&p, GOOD).unwrap();
        let (ok, out) = report(std::slice::from_ref(&p));
        assert!(ok);
        assert_eq!(out, format!("OK  {} (1 policy)\n", p.display()));
    }

    #[test]
    fn bad_directory_entry_and_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("b.yml"), GOOD.replace("/usr/bin/ls", "ls")).unwrap();
        fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let missing = dir.path().join("missing.yaml");
        let (ok, out) = report(&[dir.path().to_path_buf(), missing.clone()]);
        assert!(!ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            format!("OK  {} (1 policy)", dir.path().join("a.yaml").display())
        );
        assert!(
            lines[1].starts_with(&format!(
                "{}: document 1: spec.process.matchPaths[0].path: ",
                sub.join("b.yml").display()
            )),
            "{out}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            format!("{}: No such file or directory", missing.display())
        );
        assert!(!out.contains("notes.txt"));
    }

    #[test]
    fn empty_inputs_warn() {
        let dir = tempfile::tempdir().unwrap();
        let (ok, out) = report(&[dir.path().to_path_buf()]);
        assert!(ok);
        assert!(out.starts_with("warning: "), "{out}");
        let p = dir.path().join("empty.yaml");
        fs::write(&p, "---\n").unwrap();
        let (ok, out) = report(std::slice::from_ref(&p));
        assert!(ok);
        assert_eq!(
            out,
            format!(
                "OK  {0} (0 policies)\nwarning: {0}: no policy documents\n",
                p.display()
            )
        );
    }

    #[test]
    fn extensions() {
        assert!(has_policy_extension(Path::new("a.YAML")));
        assert!(has_policy_extension(Path::new("d/a.json")));
        assert!(!has_policy_extension(Path::new("a.yaml.bak")));
        assert!(!has_policy_extension(Path::new("yaml")));
    }
}
