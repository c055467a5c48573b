//! Process and file host policies enforced by the fanotify plane through the real daemon, with
//! real exec and open calls.
//!
//! Safety: every policy names paths on a tmpfs this test mounts, so the daemon marks only that
//! filesystem; nothing else on the machine waits for the daemon. The tmpfs is unmounted and
//! the daemon killed on drop, pass or fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A daemon with only the fanotify plane, and a tmpfs holding the files under policy.
struct Setup {
    daemon: Option<Daemon>,
    fs: PathBuf,
    _dir: TestDir,
}

impl Setup {
    /// `policy` is YAML with `@` standing for the tmpfs path.
    fn new(policy: &str, env: &[(&str, &str)]) -> Self {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the fanotify plane tests need root"
        );
        let dir = TestDir::new();
        let fs = dir.path().join("fs");
        std::fs::create_dir_all(&fs).unwrap();
        let c = CString::new(fs.to_str().unwrap()).unwrap();
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=64m".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        for d in ["bin", "data", "data/sub", "etc", "home"] {
            std::fs::create_dir_all(fs.join(d)).unwrap();
        }
        for (bin, from) in [
            ("bin/true", "/usr/bin/true"),
            ("bin/blocked", "/usr/bin/true"),
            ("bin/cat", "/usr/bin/cat"),
            ("bin/launcher", "/usr/bin/env"),
            ("bin/sh", "/usr/bin/dash"),
        ] {
            std::fs::copy(from, fs.join(bin)).unwrap();
        }
        for f in [
            "data/secret.txt",
            "data/sub/deep.txt",
            "data/plain.txt",
            "etc/shadow",
            "etc/passwd",
            "home/owned.txt",
        ] {
            std::fs::write(fs.join(f), "content\n").unwrap();
        }
        std::fs::set_permissions(
            fs.join("home/owned.txt"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::os::unix::fs::chown(fs.join("home/owned.txt"), Some(1000), Some(1000)).unwrap();
        std::fs::write(
            dir.policies().join("policy.yaml"),
            policy.replace('@', fs.to_str().unwrap()),
        )
        .unwrap();
        let mut opts = Options::default().env("PLANES", "fanotify");
        for (k, v) in env {
            opts = opts.env(k, v);
        }
        let daemon = Daemon::start(&dir, opts);
        assert!(
            daemon
                .stderr()
                .contains("fanotify (fanotify) enforces Process, File"),
            "{}",
            daemon.stderr()
        );
        Setup {
            daemon: Some(daemon),
            fs,
            _dir: dir,
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.fs.join(rel)
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.daemon.take());
        let c = CString::new(self.fs.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn host_policy(name: &str, body: &str) -> String {
    format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}")
}

fn exec_ok(path: &Path) -> bool {
    Command::new(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn denied(out: &Output) -> bool {
    !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted")
}

fn cat(with: &Path, file: &Path) -> Output {
    run_limited(Command::new(with).arg(file))
}

fn append(file: &Path) -> Output {
    run_limited(
        Command::new("/usr/bin/dash").args(["-c", &format!("echo x >> {}", file.display())]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_block_by_path() {
    let s = Setup::new(&host_policy("hsp-proc-path", "  severity: 4\n  process:\n    matchPaths:\n    - path: @/bin/blocked\n  action: Block\n"), &[]);
    let alert = first_alert(s.daemon()).await;
    let err = Command::new(s.p("bin/blocked")).status().unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EPERM),
        "exec of the blocked binary"
    );
    assert!(
        exec_ok(&s.p("bin/true")),
        "another binary on the same filesystem runs"
    );
    let a = alert.await.unwrap();
    assert_eq!(a.policy_name, "hsp-proc-path");
    assert_eq!(a.operation, "Process");
    assert_eq!(a.action, "Block");
    assert_eq!(a.enforcer, "fanotify");
    assert_eq!(a.result, "Operation not permitted");
    assert_eq!(a.r#type, "MatchedHostPolicy");
    assert_eq!(a.severity, "4");
    assert!(
        a.process_name.ends_with("/bin/blocked"),
        "{}",
        a.process_name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_block_by_directory() {
    let s = Setup::new(
        &host_policy(
            "hsp-proc-dir",
            "  process:\n    matchDirectories:\n    - dir: @/bin/\n  action: Block\n",
        ),
        &[],
    );
    assert_eq!(
        Command::new(s.p("bin/true"))
            .status()
            .map_err(|e| e.raw_os_error())
            .err(),
        Some(Some(libc::EPERM)),
        "exec of bin/true must fail with EPERM"
    );
    assert_eq!(
        Command::new(s.p("bin/blocked"))
            .status()
            .map_err(|e| e.raw_os_error())
            .err(),
        Some(Some(libc::EPERM)),
        "exec of bin/blocked must fail with EPERM"
    );
    assert!(
        exec_ok(Path::new("/usr/bin/true")),
        "binaries elsewhere run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_block_by_path_directory_and_pattern() {
    let s = Setup::new(
        &host_policy(
            "hsp-file",
            "  file:\n    matchPaths:\n    - path: @/data/secret.txt\n    matchDirectories:\n    - dir: @/data/sub/\n      recursive: true\n    matchPatterns:\n    - pattern: @/etc/*hado?\n  action: Block\n",
        ),
        &[],
    );
    let cat_bin = Path::new("/usr/bin/cat");
    assert!(denied(&cat(cat_bin, &s.p("data/secret.txt"))), "path");
    assert!(
        denied(&cat(cat_bin, &s.p("data/sub/deep.txt"))),
        "directory"
    );
    assert!(denied(&cat(cat_bin, &s.p("etc/shadow"))), "pattern");
    assert!(cat(cat_bin, &s.p("data/plain.txt")).status.success());
    assert!(cat(cat_bin, &s.p("etc/passwd")).status.success());
    let watch = first_alert(s.daemon()).await;
    assert!(denied(&cat(cat_bin, &s.p("etc/shadow"))));
    let a = watch.await.unwrap();
    assert_eq!(a.operation, "File");
    assert!(a.resource.ends_with("/etc/shadow"), "{}", a.resource);
    assert_eq!(a.policy_name, "hsp-file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_block_from_source() {
    let s = Setup::new(
        &host_policy("hsp-from-source", "  file:\n    matchPaths:\n    - path: @/data/secret.txt\n      fromSource:\n      - path: @/bin/cat\n  action: Block\n"),
        &[],
    );
    assert!(
        denied(&cat(&s.p("bin/cat"), &s.p("data/secret.txt"))),
        "the named source is denied"
    );
    assert!(
        cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"))
            .status
            .success(),
        "another source is not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_allows_reads_denies_writes() {
    let s = Setup::new(
        &host_policy("hsp-ro", "  file:\n    matchPaths:\n    - path: @/data/secret.txt\n      readOnly: true\n  action: Block\n"),
        &[],
    );
    assert!(
        cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"))
            .status
            .success(),
        "read"
    );
    let out = append(&s.p("data/secret.txt"));
    assert!(!out.status.success(), "write must fail: {out:?}");
    assert_eq!(
        std::fs::read_to_string(s.p("data/secret.txt")).unwrap(),
        "content\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_only() {
    let s = Setup::new(
        &host_policy("hsp-owner", "  file:\n    matchPaths:\n    - path: @/home/owned.txt\n      ownerOnly: true\n  action: Block\n"),
        &[],
    );
    assert!(
        denied(&cat(Path::new("/usr/bin/cat"), &s.p("home/owned.txt"))),
        "root is not the owner"
    );
    let out = run_limited(
        Command::new("/usr/bin/cat")
            .arg(s.p("home/owned.txt"))
            .uid(1000)
            .gid(1000),
    );
    assert!(out.status.success(), "the owner reads it: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_allows_and_alerts() {
    let s = Setup::new(
        &host_policy(
            "hsp-audit",
            "  file:\n    matchPaths:\n    - path: @/data/secret.txt\n  action: Audit\n",
        ),
        &[],
    );
    let watch = first_alert(s.daemon()).await;
    assert!(cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"))
        .status
        .success());
    let a = watch.await.unwrap();
    assert_eq!(a.policy_name, "hsp-audit");
    assert_eq!(a.action, "Audit");
    assert_eq!(a.result, "Passed");
    assert_eq!(a.enforcer, "fanotify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_with_block_posture() {
    let s = Setup::new(
        &host_policy(
            "hsp-allow",
            "  file:\n    matchDirectories:\n    - dir: @/data/\n      recursive: true\n    - dir: @/bin/\n  action: Allow\n",
        ),
        &[("HOSTDEFAULTFILEPOSTURE", "block")],
    );
    assert!(
        cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"))
            .status
            .success(),
        "listed"
    );
    assert!(
        denied(&cat(Path::new("/usr/bin/cat"), &s.p("etc/passwd"))),
        "not listed: block posture"
    );
}

/// fanotify has no timeout and no persistence: when the daemon dies, the kernel allows what
/// was pending and everything after (fail-open), unlike the pinned network plane. The daemon
/// documents this (docs/fanotify.md); this test pins it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_death_fails_open() {
    let mut s = Setup::new(
        &host_policy(
            "hsp-death",
            "  file:\n    matchPaths:\n    - path: @/data/secret.txt\n  action: Block\n",
        ),
        &[],
    );
    assert!(
        denied(&cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"))),
        "enforced while running"
    );
    s.daemon.take().unwrap().kill9();
    let out = cat(Path::new("/usr/bin/cat"), &s.p("data/secret.txt"));
    assert!(
        out.status.success(),
        "after kill -9 the file opens (fail-open): {out:?}"
    );
}
