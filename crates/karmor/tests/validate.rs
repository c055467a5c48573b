//! `karmor policy validate` run as a real binary: output lines and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const HOST_POLICY: &str = "\
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

const CONTAINER_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ksp-audit-etc
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: web
  file:
    matchDirectories:
    - dir: /etc/
      recursive: true
  action: Audit
";

fn karmor(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_karmor"))
        .current_dir(cwd)
        .args(args)
        .env_remove("KUBEARMOR_SERVICE")
        .output()
        .expect("run karmor")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn valid_files_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("host.yaml"), HOST_POLICY).unwrap();
    fs::write(
        dir.path().join("two.yml"),
        format!("{HOST_POLICY}---\n{CONTAINER_POLICY}"),
    )
    .unwrap();
    let o = karmor(dir.path(), &["policy", "validate", "host.yaml", "two.yml"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        "OK  host.yaml (1 policy)\nOK  two.yml (2 policies)\n"
    );
}

#[test]
fn error_line_format_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CONTAINER_POLICY.replace("dir: /etc/", "dir: /etc");
    fs::write(
        dir.path().join("x.yaml"),
        format!("{HOST_POLICY}---\n{bad}"),
    )
    .unwrap();
    let o = karmor(dir.path(), &["policy", "validate", "x.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        stdout(&o),
        "x.yaml: document 2: spec.file.matchDirectories[0].dir: must end with '/'\n"
    );
}

#[test]
fn directory_walk_mixes_ok_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    fs::create_dir_all(pol.join("nested")).unwrap();
    fs::write(pol.join("a.yaml"), HOST_POLICY).unwrap();
    fs::write(pol.join("nested/b.json"), r#"{"kind":"KubeArmorPolicy"}"#).unwrap();
    fs::write(pol.join("README.md"), "# not a policy").unwrap();
    let o = karmor(dir.path(), &["policy", "validate", "policies"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "OK  policies/a.yaml (1 policy)");
    assert!(lines.len() > 1, "{out}");
    for l in &lines[1..] {
        assert!(
            l.starts_with("policies/nested/b.json: document 1: "),
            "{out}"
        );
    }
    assert!(!out.contains("README"));
}

#[test]
fn warnings_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let no_rules = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-empty
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: '*'
  action: Block
";
    fs::write(dir.path().join("w.yaml"), no_rules).unwrap();
    let o = karmor(dir.path(), &["policy", "validate", "w.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(out.starts_with("OK  w.yaml (1 policy)\n"), "{out}");
    assert!(out.contains("\nwarning: w.yaml: document 1: "), "{out}");
}

#[test]
fn syntax_error_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("s.yaml"), "kind: [unclosed\n").unwrap();
    let o = karmor(dir.path(), &["policy", "validate", "s.yaml", "nope.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("s.yaml: document 1: not valid YAML or JSON: "),
        "{out}"
    );
    assert_eq!(lines[1], "nope.yaml: No such file or directory");
}

#[test]
fn usage_error_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let o = karmor(dir.path(), &["policy", "validate"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}
