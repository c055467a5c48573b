//! Real enforcement on a private tmpfs: real policies, real execs and opens by child
//! processes, real fanotify. Needs root; fails (does not skip) without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubearmor_fanotify::*;
use kubearmor_policy::Access;
use support::*;

struct Fixture {
    plane: Plane,
    rx: Receiver<PlaneEvent>,
    _dog: Watchdog,
    fs: TmpFs,
}

impl Fixture {
    /// A tmpfs with files, a plane marking only it, the rules in force.
    fn new(name: &str, fs: TmpFs, rules: Rules) -> Self {
        Self::with(name, fs, rules, Config::default(), |b| b)
    }

    fn with(
        name: &str,
        fs: TmpFs,
        rules: Rules,
        config: Config,
        f: impl FnOnce(PlaneBuilder) -> PlaneBuilder,
    ) -> Self {
        let (tx, rx) = channel(1024);
        let plane = f(Plane::builder(config).sink(tx).rules(rules))
            .start()
            .expect("start plane");
        let dog = Watchdog::new(
            name,
            Duration::from_secs(60),
            plane.abort_handle(),
            fs.root.clone(),
        );
        plane
            .mark_filesystem(&fs.root)
            .expect("mark the test tmpfs");
        Fixture {
            plane,
            rx,
            _dog: dog,
            fs,
        }
    }

    fn events(&self) -> Vec<PlaneEvent> {
        events(&self.rx)
    }
}

fn exec(path: &Path) -> std::io::Result<Ran> {
    run(&mut Command::new(path), LIMIT)
}

fn is_denied_errno(e: i32) -> bool {
    e == libc::EPERM || e == libc::EACCES
}

fn exec_denied(r: std::io::Result<Ran>) -> bool {
    match r {
        Err(e) => e.raw_os_error().is_some_and(is_denied_errno),
        Ok(ran) => {
            assert!(!ran.timed_out, "exec timed out");
            false
        }
    }
}

fn alert<'a>(evs: &'a [PlaneEvent], path: &Path) -> Option<&'a PlaneEvent> {
    let p = path.to_string_lossy();
    evs.iter().find(|e| e.path == p)
}

fn alert_action(e: &PlaneEvent) -> Option<(&'static str, String)> {
    match &e.outcome {
        Outcome::Alert {
            action,
            policy_name,
            ..
        } => Some((action, policy_name.clone())),
        _ => None,
    }
}

/// Host rules with one process rule that matches nothing here: the plane must identify
/// the subject (call the resolver) for every event.
fn unrelated_rule() -> Rules {
    host_rules(
        &host_policy(
            "unrelated",
            "  process:\n    matchPaths:\n    - path: /nonexistent/ka-fan-unrelated\n  action: Block\n",
        ),
        AUDIT,
    )
}

/// The helper entry point: a child re-run of this binary doing one syscall (or running a
/// plane). Does nothing in the parent.
#[test]
fn child_helper() {
    child_main();
}

#[test]
fn exec_of_a_blocked_binary_fails() {
    let fs = TmpFs::new();
    let blocked = fs.copy_bin("/bin/true", "bin/blocked");
    let ok = fs.copy_bin("/bin/true", "bin/true");
    let rules = host_rules(
        &host_policy(
            "block-exec",
            &format!(
                "  process:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                blocked.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("exec_block", fs, rules);
    assert!(exec_denied(exec(&blocked)), "blocked binary ran");
    let ran = exec(&ok).expect("allowed binary spawns");
    assert!(ran.ok(), "allowed binary failed: {ran:?}");
    let evs = fx.events();
    let e = alert(&evs, &blocked).expect("an alert for the blocked exec");
    assert_eq!(e.hook, Hook::OpenExecPerm);
    assert_eq!(e.operation(), "Process");
    assert!(!e.allowed);
    assert_eq!(e.result(), "Operation not permitted");
    assert_eq!(e.data(), "lsm=SECURITY_BPRM_CHECK");
    assert_eq!(alert_action(e), Some(("Block", "block-exec".into())));
    assert_eq!(e.subject, SubjectKey::Host);
    // The command line is reported (read from the exec call).
    assert_eq!(
        e.args.as_deref(),
        Some(&[blocked.to_string_lossy().into_owned()][..])
    );
    // The source is the image that called exec: this test binary.
    let me = std::env::current_exe().unwrap();
    assert_eq!(e.source.as_deref(), Some(&*me.to_string_lossy()));
    assert!(fx.plane.stats().denied >= 1);
}

#[test]
fn open_of_a_blocked_file_fails() {
    let fs = TmpFs::new();
    let secret = fs.write("secret", "s");
    let other = fs.write("other", "o");
    let rules = host_rules(
        &host_policy(
            "block-file",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                secret.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("open_block", fs, rules);
    assert_eq!(helper_open(&secret, "r"), Err(libc::EPERM));
    assert_eq!(helper_open(&other, "r"), Ok(()));
    // `cat` too, for good measure.
    let ran = run(Command::new("/bin/cat").arg(&secret), LIMIT).unwrap();
    assert!(
        !ran.ok() && ran.stderr.contains("Operation not permitted"),
        "{ran:?}"
    );
    let evs = fx.events();
    let e = alert(&evs, &secret).expect("alert");
    assert_eq!(e.operation(), "File");
    assert_eq!(e.hook, Hook::OpenPerm);
    assert_eq!(alert_action(e), Some(("Block", "block-file".into())));
    assert_eq!(e.owner, Some(0));
    assert!(e.pid > 0 && e.tid > 0 && e.ppid > 0);
}

fn read_only_rules(fs: &TmpFs) -> (Rules, std::path::PathBuf) {
    let ro = fs.write("ro", "r");
    let rules = host_rules(
        &host_policy(
            "ro",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n      readOnly: true\n  action: Block\n",
                ro.display()
            ),
        ),
        AUDIT,
    );
    (rules, ro)
}

/// Write intent from `/proc/<tid>/syscall` (ProcSyscallIntent): readOnly lets reads through
/// and denies every kind of write open, through every open syscall.
#[test]
fn read_only_allows_reads_and_denies_writes() {
    let fs = TmpFs::new();
    let (rules, ro) = read_only_rules(&fs);
    let fx = Fixture::new("read_only", fs, rules);
    assert_eq!(helper_open(&ro, "r"), Ok(()));
    assert_eq!(helper_open(&ro, "2r"), Ok(()));
    for mode in ["w", "a", "rw", "c", "2w"] {
        assert_eq!(helper_open(&ro, mode), Err(libc::EPERM), "mode {mode}");
    }
    let evs = fx.events();
    let writes: Vec<_> = evs
        .iter()
        .filter(|e| e.access.is_some_and(|a| a.write && a.known))
        .collect();
    assert_eq!(writes.len(), 5, "{evs:#?}");
}

/// Without an intent source the mode is unknown: decided as read by default (the write gets
/// through, as documented), or as write when configured.
#[test]
fn unknown_intent_is_decided_as_configured() {
    let fs = TmpFs::new();
    let (rules, ro) = read_only_rules(&fs);
    let fx = Fixture::with("unknown_read", fs, rules.clone(), Config::default(), |b| {
        b.intent(Arc::new(NoIntent))
    });
    assert_eq!(helper_open(&ro, "w"), Ok(()));
    assert_eq!(helper_open(&ro, "r"), Ok(()));
    assert_eq!(
        fx.plane.stats().cache_marks,
        0,
        "unknown intent must not be cached"
    );
    drop(fx);

    let fs = TmpFs::new();
    let (rules, ro) = read_only_rules(&fs);
    let config = Config {
        unknown_intent: UnknownIntent {
            decide_as: Access::Write,
            cache: false,
        },
        ..Config::default()
    };
    let _fx = Fixture::with("unknown_write", fs, rules, config, |b| {
        b.intent(Arc::new(NoIntent))
    });
    assert_eq!(helper_open(&ro, "w"), Err(libc::EPERM));
    assert_eq!(helper_open(&ro, "r"), Err(libc::EPERM));
}

#[test]
fn owner_only_denies_other_users() {
    let fs = TmpFs::new();
    let mine = fs.write("mine", "m");
    std::fs::set_permissions(&mine, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let rules = host_rules(
        &host_policy(
            "owner",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n      ownerOnly: true\n  action: Block\n",
                mine.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("owner_only", fs, rules);
    // Owner (root) passes silently.
    let ran = run(Command::new("/bin/cat").arg(&mine), LIMIT).unwrap();
    assert!(ran.ok(), "{ran:?}");
    // nobody (file mode allows it to read) is denied by the rule.
    let ran = run(
        Command::new("/bin/cat").arg(&mine).uid(65534).gid(65534),
        LIMIT,
    )
    .unwrap();
    assert!(
        !ran.ok() && ran.stderr.contains("Operation not permitted"),
        "{ran:?}"
    );
    let evs = fx.events();
    let e = alert(&evs, &mine).expect("alert for nobody");
    assert_eq!(e.uid, 65534);
    assert_eq!(e.owner, Some(0));
}

#[test]
fn audit_reports_and_allows() {
    let fs = TmpFs::new();
    let f = fs.write("audited", "a");
    let rules = host_rules(
        &host_policy(
            "audit-file",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n  action: Audit\n",
                f.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("audit", fs, rules);
    assert_eq!(helper_open(&f, "r"), Ok(()));
    let evs = fx.events();
    let e = alert(&evs, &f).expect("audit alert");
    assert!(e.allowed);
    assert_eq!(e.result(), "Passed");
    assert_eq!(alert_action(e), Some(("Audit", "audit-file".into())));
    // Audited files are never cached: the next open is reported again.
    assert_eq!(helper_open(&f, "r"), Ok(()));
    assert!(alert(&fx.events(), &f).is_some());
}

#[test]
fn allow_list_with_block_posture_denies_the_rest() {
    let fs = TmpFs::new();
    let allowed = fs.write("allowed", "a");
    let other = fs.write("other", "o");
    let t = fs.copy_bin("/bin/true", "bin/true");
    let f = fs.copy_bin("/bin/false", "bin/false");
    let rules = host_rules(
        &host_policy(
            "allow-list",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n    - path: {}\n    - path: {}\n  process:\n    matchPaths:\n    - path: {}\n  action: Allow\n",
                allowed.display(),
                t.display(),
                f.display(),
                t.display()
            ),
        ),
        BLOCK,
    );
    let fx = Fixture::new("allow_list", fs, rules);
    assert_eq!(helper_open(&allowed, "r"), Ok(()));
    assert_eq!(helper_open(&other, "r"), Err(libc::EPERM));
    assert!(exec(&t).unwrap().ok());
    assert!(exec_denied(exec(&f)), "unlisted binary ran");
    let evs = fx.events();
    let e = alert(&evs, &other).expect("posture alert");
    assert_eq!(alert_action(e), Some(("Block", "DefaultPosture".into())));
    assert!(
        alert(&evs, &allowed).is_none(),
        "allowed access must be silent"
    );
}

#[test]
fn from_source_scopes_file_and_process_rules() {
    let fs = TmpFs::new();
    let secret = fs.write("secret", "s");
    let cat = fs.copy_bin("/bin/cat", "bin/cat");
    let sh = fs.copy_bin("/bin/dash", "bin/sh");
    let env = fs.copy_bin("/usr/bin/env", "bin/env");
    let t = fs.copy_bin("/bin/true", "bin/true");
    let rules = host_rules(
        &host_policy(
            "from-source",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n      fromSource:\n      - path: {}\n  process:\n    matchPaths:\n    - path: {}\n      fromSource:\n      - path: {}\n      - path: {}\n  action: Block\n",
                secret.display(),
                cat.display(),
                t.display(),
                sh.display(),
                env.display()
            ),
        ),
        AUDIT,
    );
    let _fx = Fixture::new("from_source", fs, rules);
    let ran = run(Command::new(&cat).arg(&secret), LIMIT).unwrap();
    assert!(
        !ran.ok() && ran.stderr.contains("Operation not permitted"),
        "{ran:?}"
    );
    let ran = run(Command::new("/bin/cat").arg(&secret), LIMIT).unwrap();
    assert!(ran.ok(), "{ran:?}");
    // The shell copy may not start `true` (it forks, then execs).
    let script = format!("{}; exit $?", t.display());
    let ran = run(Command::new(&sh).args(["-c", &script]), LIMIT).unwrap();
    assert_eq!(ran.code(), Some(126), "{ran:?}");
    // `env` execs in place, without forking: the source is env's image (the caller of exec),
    // not env's parent (this test binary), which KubeArmor's `t->parent` would read.
    let ran = run(Command::new(&env).arg(&t), LIMIT).unwrap();
    assert_eq!(ran.code(), Some(126), "{ran:?}");
    // The host shell may.
    let ran = run(Command::new("/bin/sh").args(["-c", &script]), LIMIT).unwrap();
    assert!(ran.ok(), "{ran:?}");
}

#[test]
fn allowed_args_are_read_from_the_exec_call() {
    let fs = TmpFs::new();
    let echo = fs.copy_bin("/bin/echo", "bin/echo");
    let rules = host_rules(
        &host_policy(
            "args",
            &format!(
                "  process:\n    matchPaths:\n    - path: {}\n      allowedArgs: [hello]\n  action: Block\n",
                echo.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("allowed_args", fs, rules);
    let ran = run(Command::new(&echo).arg("hello"), LIMIT).unwrap();
    assert!(ran.ok() && ran.stdout == "hello\n", "{ran:?}");
    assert!(exec_denied(run(Command::new(&echo).arg("bye"), LIMIT)));
    let evs = fx.events();
    let e = alert(&evs, &echo).expect("alert");
    assert_eq!(
        e.args.as_deref(),
        Some(&[echo.to_string_lossy().into_owned(), "bye".into()][..])
    );
}

#[test]
fn own_process_is_ignored() {
    let fs = TmpFs::new();
    let secret = fs.write("secret", "s");
    let rules = host_rules(
        &host_policy(
            "block-all",
            &format!(
                "  file:\n    matchDirectories:\n    - dir: {}/\n      recursive: true\n  action: Block\n",
                fs.root.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("own_process", fs, rules);
    // This process (a thread that is not the decision thread) reads it fine.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s");
    assert_eq!(helper_open(&secret, "r"), Err(libc::EPERM));
    let st = fx.plane.stats();
    assert!(st.own_process >= 1, "{st:?}");
}

/// A slow resolver keeps events pending; shutdown still answers all of them and returns.
#[test]
fn shutdown_drains_pending_events() {
    struct Slow;
    impl SubjectResolver for Slow {
        fn resolve(&self, _tid: u32, _want: Want) -> Result<Identity, ResolveError> {
            std::thread::sleep(Duration::from_millis(100));
            Ok(Identity::default())
        }
    }
    let fs = TmpFs::new();
    let files: Vec<_> = (0..6).map(|i| fs.write(&format!("f{i}"), "x")).collect();
    // A Block rule: only a drained event is denied; one the plane left to the kernel at
    // close would be allowed. (With an allow rule this test passed without any draining.)
    let rules = host_rules(
        &host_policy(
            "drain",
            &format!(
                "  file:\n    matchDirectories:\n    - dir: {}/\n  action: Block\n",
                fs.root.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::with("drain", fs, rules, Config::default(), |b| {
        b.resolver(Arc::new(Slow))
    });
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            helper(
                "open",
                &[("KA_FAN_PATH", &f.to_string_lossy()), ("KA_FAN_MODE", "r")],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    // Let every open queue up behind the slow resolver: each child has a thread blocked in
    // open/openat (the permission event), and the plane has started on them.
    let t0 = Instant::now();
    let blocked_in_open = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("syscall"))
                        .is_ok_and(|s| s.starts_with("257 ") || s.starts_with("2 "))
                })
            })
            .unwrap_or(false)
    };
    while !(fx.plane.stats().events > 0 && children.iter().all(|c| blocked_in_open(c.id())))
        && t0.elapsed() < LIMIT
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        children.iter().all(|c| blocked_in_open(c.id())),
        "the opens never queued up"
    );
    let t = Instant::now();
    let stats = fx.plane.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(!stats.running);
    // Every queued open was decided by the rules (denied), none left to the kernel.
    for c in children {
        let ran = wait_child(c, LIMIT);
        assert!(!ran.timed_out, "{ran:?}");
        assert_eq!(ran.code(), Some(100 + libc::EPERM), "{ran:?}");
    }
}

/// An event the plane cannot decide (resolver error) gets the configured fail mode, and is
/// reported either way.
#[test]
fn undecidable_events_use_the_fail_mode() {
    struct Broken;
    impl SubjectResolver for Broken {
        fn resolve(&self, _tid: u32, _want: Want) -> Result<Identity, ResolveError> {
            Err(ResolveError("registry unavailable".into()))
        }
    }
    for (mode, expect) in [
        (FailMode::Closed, Err(libc::EPERM)),
        (FailMode::Open, Ok(())),
    ] {
        let fs = TmpFs::new();
        let f = fs.write("f", "x");
        let config = Config {
            fail_mode: mode,
            ..Config::default()
        };
        let fx = Fixture::with("fail_mode", fs, unrelated_rule(), config, |b| {
            b.resolver(Arc::new(Broken))
        });
        assert_eq!(helper_open(&f, "r"), expect, "{mode:?}");
        let evs = fx.events();
        let e = alert(&evs, &f).expect("undecided event");
        assert!(
            matches!(&e.outcome, Outcome::Undecided { reason } if reason.contains("registry unavailable")),
            "{e:?}"
        );
        assert_eq!(e.allowed, mode == FailMode::Open);
        assert!(fx.plane.stats().undecided >= 1);
    }
}

/// Allows are cached in the kernel (no more events for the inode); a rule swap flushes the
/// cache and the new rule applies at once.
#[test]
fn allow_cache_is_used_and_flushed_on_swap() {
    let fs = TmpFs::new();
    let f = fs.write("f", "x");
    let fx = Fixture::new("cache", fs, Rules::default());
    assert_eq!(helper_open(&f, "r"), Ok(()));
    let after_first = fx.plane.stats();
    assert!(after_first.cache_marks >= 1, "{after_first:?}");
    let before = fx.plane.stats().events;
    assert_eq!(helper_open(&f, "r"), Ok(()));
    assert_eq!(helper_open(&f, "w"), Ok(()));
    // The helper binary lives elsewhere; opens of `f` no longer reach the plane.
    assert_eq!(
        fx.plane.stats().events,
        before,
        "cached inode still sent events"
    );

    fx.plane
        .swap_rules(host_rules(
            &host_policy(
                "late-block",
                &format!(
                    "  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                    f.display()
                ),
            ),
            AUDIT,
        ))
        .unwrap();
    assert_eq!(helper_open(&f, "r"), Err(libc::EPERM));
    assert!(fx.plane.stats().cache_flushes >= 1);
    // flush_cache on its own works too.
    fx.plane.flush_cache().unwrap();
    assert_eq!(helper_open(&f, "r"), Err(libc::EPERM));
}

/// `ld.so /path/blocked` runs a blocked program without exec-ing it. The plane notices the
/// process runs the loader directly and checks its opens against the process rules.
#[test]
fn direct_loader_run_is_checked_against_process_rules() {
    for tracking in [true, false] {
        let fs = TmpFs::new();
        let blocked = fs.copy_bin("/bin/true", "bin/blocked");
        let fine = fs.copy_bin("/bin/true", "bin/fine");
        let ld = fs.copy_bin("/lib64/ld-linux-x86-64.so.2", "lib/ld.so");
        let rules = host_rules(
            &host_policy(
                "block-exec",
                &format!(
                    "  process:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                    blocked.display()
                ),
            ),
            AUDIT,
        );
        let config = Config {
            exec_tracking: tracking,
            ..Config::default()
        };
        let fx = Fixture::with("loader", fs, rules, config, |b| b);
        assert!(exec_denied(exec(&blocked)));
        // Allowed runs first: they must not leave ld.so in the allow cache.
        for _ in 0..2 {
            let ran = run(Command::new(&ld).arg(&fine), LIMIT).unwrap();
            assert!(ran.ok(), "{ran:?}");
        }
        let ran = run(Command::new(&ld).arg(&blocked), LIMIT).unwrap();
        if tracking {
            assert!(!ran.ok(), "ld.so ran the blocked binary: {ran:?}");
            assert!(fx.plane.stats().loader_denials >= 1);
            let evs = fx.events();
            assert!(evs.iter().any(|e| e.loader_check && !e.allowed), "{evs:#?}");
        } else {
            // The bypass, without the loader check.
            assert!(ran.ok(), "{ran:?}");
        }
    }
}

/// A process allow-list lists programs, not their ELF interpreter: the interpreter's exec
/// event (ld.so on a marked filesystem) must not fall to the block posture.
#[test]
fn elf_interpreter_is_not_put_to_the_posture() {
    for tracking in [true, false] {
        let fs = TmpFs::new();
        let t = fs.copy_bin("/bin/true", "bin/true");
        let ld = fs.copy_bin("/lib64/ld-linux-x86-64.so.2", "lib/ld.so");
        let mut rules = host_rules(
            &host_policy(
                "allow-true",
                &format!(
                    "  process:\n    matchPaths:\n    - path: {}\n  action: Allow\n",
                    t.display()
                ),
            ),
            BLOCK,
        );
        // Views limited to the path itself: `true` would be cacheable, and must not be
        // cached (its interpreter's event would then look like a new program).
        rules.cache_views = CacheViews::AliasesOnly;
        let config = Config {
            exec_tracking: tracking,
            ..Config::default()
        };
        let fx = Fixture::with("interp", fs, rules, config, |b| b);
        // Run `true` in a private mount namespace where its PT_INTERP is the tmpfs copy.
        let mut cmd = Command::new(&t);
        let ld2 = ld.clone();
        unsafe {
            cmd.pre_exec(move || {
                use nix::mount::{mount, MsFlags};
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )?;
                mount(
                    Some(&ld2),
                    "/lib64/ld-linux-x86-64.so.2",
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
                Ok(())
            });
        }
        let r = run(&mut cmd, LIMIT);
        if tracking {
            let ran = r.expect("true spawns");
            assert!(ran.ok(), "{ran:?}");
            let ran = run(&mut cmd, LIMIT).expect("true spawns again");
            assert!(ran.ok(), "second run: {ran:?}");
            let st = fx.plane.stats();
            assert!(st.elf_interpreter_events >= 2, "{st:?}");
        } else {
            // Without tracking the interpreter is checked as a program and not listed.
            assert!(exec_denied(r));
        }
    }
}

/// Events that do not fit in the sink are dropped and counted; the loop goes on.
#[test]
fn full_sink_drops_and_counts() {
    let fs = TmpFs::new();
    let f = fs.write("audited", "a");
    let rules = host_rules(
        &host_policy(
            "audit-file",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n  action: Audit\n",
                f.display()
            ),
        ),
        AUDIT,
    );
    let (tx, _rx_never_read) = channel(1);
    let plane = Plane::builder(Config::default())
        .sink(tx)
        .rules(rules)
        .start()
        .unwrap();
    let _dog = Watchdog::new(
        "sink",
        Duration::from_secs(60),
        plane.abort_handle(),
        fs.root.clone(),
    );
    plane.mark_filesystem(&fs.root).unwrap();
    for _ in 0..3 {
        assert_eq!(helper_open(&f, "r"), Ok(()));
    }
    let st = plane.stats();
    assert_eq!(st.emitted, 1, "{st:?}");
    assert!(st.dropped >= 2, "{st:?}");
    plane.shutdown();
}

#[test]
fn marks_are_counted_and_removable() {
    let fs = TmpFs::new();
    let secret = fs.write("secret", "s");
    std::fs::create_dir(fs.path("sub")).unwrap();
    let rules = host_rules(
        &host_policy(
            "block-file",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                secret.display()
            ),
        ),
        AUDIT,
    );
    let fx = Fixture::new("marks", fs, rules);
    // A second path on the same filesystem: one mark, two references.
    let m = fx.plane.mark_filesystem(fx.fs.path("sub")).unwrap();
    assert_eq!(m.paths.len(), 2);
    assert_eq!(m.fs_type, "tmpfs");
    assert!(!fx.plane.unmark_filesystem(fx.fs.path("sub")).unwrap());
    assert_eq!(helper_open(&secret, "r"), Err(libc::EPERM));
    assert!(fx.plane.unmark_filesystem(&fx.fs.root).unwrap());
    assert!(fx.plane.marked_filesystems().is_empty());
    assert_eq!(helper_open(&secret, "r"), Ok(()));
    // Filesystems the decision thread reads are refused.
    assert!(matches!(
        fx.plane.mark_filesystem("/proc"),
        Err(Error::RefusedFilesystem { .. })
    ));
}

#[test]
fn probe_reports_this_kernel() {
    let fs = TmpFs::new();
    let report = probe(Some(&fs.root));
    assert!(report.class_content.ok, "{report:#?}");
    assert!(report.filesystem_mark.ok, "{report:#?}");
    assert!(report.report_tid.ok, "{report:#?}");
    assert!(report.ignore_surv.ok, "{report:#?}");
    // proc_syscall probes pid 1: a sandboxed test runner (Landlock scopes ptrace) may not
    // read it, while the daemon as a plain root service can. Reported, not asserted.
    assert_eq!(
        report.proc_syscall.ok,
        report
            .notes
            .iter()
            .all(|n| !n.contains("/proc/<pid>/syscall"))
    );
    assert!(report.enforcing);
    // The unlimited flags need CAP_SYS_ADMIN, not CAP_SYS_RESOURCE (absent on the dev VM).
    assert_eq!(
        report.unlimited_queue.ok, report.cap_sys_admin,
        "{report:#?}"
    );
    assert_eq!(
        report.unlimited_marks.ok, report.cap_sys_admin,
        "{report:#?}"
    );
    let plane = Plane::builder(Config::default()).start().unwrap();
    let info = plane.group_info().clone();
    assert_eq!(info.unlimited_queue, report.unlimited_queue.ok);
    if !info.unlimited_queue {
        assert!(
            info.fallbacks
                .iter()
                .any(|f| f.contains("FAN_UNLIMITED_QUEUE")),
            "{info:?}"
        );
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("allowed by the kernel")));
    }
    assert!(info.report_tid);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// A child killed (SIGKILL) and reaped on drop, so a failing assertion leaves nothing behind.
struct KillOnDrop(Option<std::process::Child>);
impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child present")
    }
    fn take(mut self) -> std::process::Child {
        self.0.take().expect("child present")
    }
}
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The plane in a child process (see `child_plane`).
fn spawn_plane_child(fs: &TmpFs, policy: &str, hang: bool) -> KillOnDrop {
    let mut child = helper(
        "plane",
        &[
            ("KA_FAN_MOUNT", &fs.root.to_string_lossy()),
            ("KA_FAN_POLICY", policy),
            ("KA_FAN_HANG", if hang { "1" } else { "0" }),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("PLANE-READY") {
                let _ = tx.send(());
            }
        }
    });
    let child = KillOnDrop(Some(child));
    if rx.recv_timeout(LIMIT).is_err() {
        panic!("plane child did not get ready");
    }
    child
}

/// Runs in the helper child: a plane on the given tmpfs with the given policy, until killed
/// (or stdin closes). With KA_FAN_HANG=1 the resolver never returns.
pub fn child_plane() -> i32 {
    struct Hang;
    impl SubjectResolver for Hang {
        fn resolve(&self, _tid: u32, _want: Want) -> Result<Identity, ResolveError> {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    let mount = std::env::var("KA_FAN_MOUNT").unwrap_or_default();
    let policy = std::env::var("KA_FAN_POLICY").unwrap_or_default();
    let hang = std::env::var("KA_FAN_HANG").as_deref() == Ok("1");
    let config = Config {
        stall_timeout: None,
        ..Config::default()
    };
    let mut b = Plane::builder(config).rules(host_rules(&policy, AUDIT));
    if hang {
        b = b.resolver(Arc::new(Hang));
    }
    let plane = match b.start() {
        Ok(p) => p,
        Err(_) => return 98,
    };
    if plane.mark_filesystem(&mount).is_err() {
        return 97;
    }
    println!("PLANE-READY");
    // Parent-death safety: stop when the parent closes our stdin.
    let mut buf = String::new();
    let _ = std::io::stdin().read_line(&mut buf);
    plane.shutdown();
    0
}

/// fanotify fails open when the listener dies: a deny rule stops applying, and an open that
/// waits for an answer proceeds.
#[test]
fn listener_death_fails_open() {
    let fs = TmpFs::new();
    let secret = fs.write("secret", "s");
    let policy = host_policy(
        "block-file",
        &format!(
            "  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
            secret.display()
        ),
    );
    // 1. A deny rule is active; kill -9 the plane; the open succeeds.
    let mut plane = spawn_plane_child(&fs, &policy, false);
    assert_eq!(helper_open(&secret, "r"), Err(libc::EPERM));
    plane.get().kill().unwrap();
    plane.get().wait().unwrap();
    assert_eq!(helper_open(&secret, "r"), Ok(()));

    // 2. An open is pending (the plane's resolver hangs); kill -9 the plane; it proceeds.
    let mut plane = spawn_plane_child(&fs, &policy, true);
    let opener = helper(
        "open",
        &[
            ("KA_FAN_PATH", &secret.to_string_lossy()),
            ("KA_FAN_MODE", "r"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut opener = KillOnDrop(Some(opener));
    assert!(
        opener.get().try_wait().unwrap().is_none(),
        "the open should be waiting for the hung plane"
    );
    plane.get().kill().unwrap();
    plane.get().wait().unwrap();
    let ran = wait_child(opener.take(), LIMIT);
    assert!(
        !ran.timed_out,
        "the open stayed blocked after the listener died"
    );
    assert!(ran.ok(), "the pending open was not allowed: {ran:?}");
}

/// A resolver that blocks until released.
struct Gate(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);
impl SubjectResolver for Gate {
    fn resolve(&self, _tid: u32, _want: Want) -> Result<Identity, ResolveError> {
        let (m, cv) = &*self.0;
        let mut open = m.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        Ok(Identity::default())
    }
}

/// A decision that never ends trips the stall watchdog: the group is aborted, the waiting
/// open proceeds, and shutdown does not wait for the stuck thread forever.
#[test]
fn stalled_decision_fails_open() {
    let fs = TmpFs::new();
    let f = fs.write("f", "x");
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let config = Config {
        stall_timeout: Some(Duration::from_millis(300)),
        drain_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let g = gate.clone();
    let fx = Fixture::with("stall", fs, unrelated_rule(), config, |b| {
        b.resolver(Arc::new(Gate(g)))
    });
    let t = Instant::now();
    assert_eq!(helper_open(&f, "r"), Ok(()));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(!fx.plane.is_running());
    let st = fx.plane.stats();
    assert!(
        st.stopped_because
            .as_deref()
            .is_some_and(|s| s.contains("stall")),
        "{st:?}"
    );
    // Opens go straight through now: no listener.
    assert_eq!(helper_open(&f, "r"), Ok(()));
    let t = Instant::now();
    fx.plane.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5));
    // Release the stuck thread (it then finds its group gone and exits).
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

/// Shutdown with a stuck decision thread (no stall watchdog) aborts instead of hanging.
#[test]
fn shutdown_does_not_wait_for_a_stuck_thread() {
    let fs = TmpFs::new();
    let f = fs.write("f", "x");
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let config = Config {
        stall_timeout: None,
        drain_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let g = gate.clone();
    let fx = Fixture::with("stuck", fs, unrelated_rule(), config, |b| {
        b.resolver(Arc::new(Gate(g)))
    });
    let opener = helper(
        "open",
        &[("KA_FAN_PATH", &f.to_string_lossy()), ("KA_FAN_MODE", "r")],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    while fx.plane.stats().events == 0 && t0.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    let st = fx.plane.shutdown();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!st.running);
    let ran = wait_child(opener, LIMIT);
    assert!(ran.ok(), "{ran:?}");
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
}

/// A cgroup v2 directory made for the test, removed on drop.
struct TestCgroup(std::path::PathBuf);
impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Container rules are picked by the cgroup id of the acting task (read from
/// /proc/<tid>/cgroup by the default resolver); host rules apply to host tasks only.
#[test]
fn container_rules_apply_by_cgroup_id() {
    use std::os::unix::fs::MetadataExt;
    let fs = TmpFs::new();
    let root = ProcResolver::new()
        .cgroup2_root()
        .expect("a cgroup v2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
        .to_path_buf();
    let cg = TestCgroup(root.join(format!("ka-fan-test-{}", std::process::id())));
    std::fs::create_dir(&cg.0).expect("create test cgroup");
    let cgid = std::fs::metadata(&cg.0).unwrap().ino();
    let host_secret = fs.write("host-secret", "h");
    let ctr_secret = fs.write("ctr-secret", "c");
    let block = |name: &str, p: &Path| {
        host_rules(
            &host_policy(
                name,
                &format!(
                    "  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                    p.display()
                ),
            ),
            AUDIT,
        )
        .host
        .unwrap()
    };
    let mut rules = Rules {
        host: Some(block("host", &host_secret)),
        ..Default::default()
    };
    rules.containers.insert(cgid, block("ctr", &ctr_secret));
    let fx = Fixture::new("cgroup", fs, rules);
    let procs = cg.0.join("cgroup.procs");
    let in_container = |cmd: &mut Command| {
        let procs = procs.clone();
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, "0"));
        }
    };
    assert_eq!(
        helper_open_with(&ctr_secret, "r", in_container),
        Err(libc::EPERM)
    );
    assert_eq!(helper_open_with(&host_secret, "r", in_container), Ok(()));
    assert_eq!(helper_open(&host_secret, "r"), Err(libc::EPERM));
    assert_eq!(helper_open(&ctr_secret, "r"), Ok(()));
    let evs = fx.events();
    let e = alert(&evs, &ctr_secret).expect("container alert");
    assert_eq!(e.subject, SubjectKey::Container(cgid));
    assert_eq!(e.cgroup_id, Some(cgid));
    drop(fx);
}

/// A file allow-list that lists one data file, block posture.
fn file_allow_list(allowed: &Path) -> Rules {
    host_rules(
        &host_policy(
            "file-allow-list",
            &format!(
                "  file:\n    matchPaths:\n    - path: {}\n  action: Allow\n",
                allowed.display()
            ),
        ),
        BLOCK,
    )
}

/// Running a program is a Process decision only: the kernel's open of the binary for the
/// exec (the `FAN_OPEN_PERM` after the allowed `FAN_OPEN_EXEC_PERM`) is not a File access,
/// while opening the same file to read it still is.
#[test]
fn exec_open_is_not_a_file_access() {
    let fs = TmpFs::new();
    let allowed = fs.write("allowed", "a");
    let t = fs.copy_bin("/bin/true", "bin/true");
    let rules = file_allow_list(&allowed);
    let fx = Fixture::new("exec_open", fs, rules);
    let ran = exec(&t).expect("true spawns");
    assert!(
        ran.ok(),
        "a program not on the file allow-list must run: {ran:?}"
    );
    assert!(fx.plane.stats().exec_opens >= 1, "{:?}", fx.plane.stats());
    // Reading the binary is a File access: by this process, and by another program.
    assert_eq!(helper_open(&t, "r"), Err(libc::EPERM));
    let cat = run(Command::new("/bin/cat").arg(&t), LIMIT).expect("cat spawns");
    assert!(!cat.ok(), "cat read an unlisted binary: {cat:?}");
    let evs = fx.events();
    let e = alert(&evs, &t).expect("the read of the binary is reported");
    assert_eq!(e.hook, Hook::OpenPerm);
    assert_eq!(alert_action(e), Some(("Block", "DefaultPosture".into())));
}

/// The runtime at work in a container before the workload's first exec (a process whose
/// parent is outside its pid namespace, running a runtime binary) is not judged; a process
/// started inside the namespace running the same binary, or an outsider running another
/// binary, is.
#[test]
fn runtime_entering_a_container_is_not_the_workload() {
    use std::os::unix::fs::MetadataExt;
    let fs = TmpFs::new();
    let root = ProcResolver::new()
        .cgroup2_root()
        .expect("a cgroup v2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
        .to_path_buf();
    let cg = TestCgroup(root.join(format!("ka-fan-rt-{}", std::process::id())));
    std::fs::create_dir(&cg.0).expect("create test cgroup");
    let cgid = std::fs::metadata(&cg.0).unwrap().ino();
    let allowed = fs.write("allowed", "a");
    let passwd = fs.write("passwd", "root:x:0:0::/:/bin/sh\n");
    let rt = fs.copy_bin("/bin/cat", "bin/runtime");
    let other = fs.copy_bin("/bin/cat", "bin/other");
    let rules = Rules {
        containers: [(cgid, file_allow_list(&allowed).host.unwrap())].into(),
        ..Default::default()
    };
    let config = Config {
        runtime_binaries: vec![rt.clone()],
        ..Config::default()
    };
    let fx = Fixture::with("runtime", fs, rules, config, |b| b);
    let procs = cg.0.join("cgroup.procs");
    // `unshare --pid --fork ARGS`, joined to the container's cgroup before it runs.
    let in_container = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork"]).args(args);
        let procs = procs.clone();
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, "0"));
        }
        run(&mut cmd, LIMIT).expect("unshare spawns")
    };
    let ran = in_container(&[rt.as_os_str(), passwd.as_os_str()]);
    assert!(ran.ok(), "the runtime entering was judged: {ran:?}");
    assert!(
        fx.plane.stats().runtime_opens >= 1,
        "{:?}",
        fx.plane.stats()
    );
    // The file allow-list is in force in that container.
    let ran = in_container(&[other.as_os_str(), passwd.as_os_str()]);
    assert!(
        !ran.ok(),
        "another binary entering from outside is the workload: {ran:?}"
    );
    // The runtime binary started from inside the namespace is the workload too.
    // (`; exit $?`: the shell forks for it rather than exec it in place)
    let script = format!("{} {}; exit $?", rt.display(), passwd.display());
    let ran = in_container(&["/bin/sh".as_ref(), "-c".as_ref(), script.as_ref()]);
    assert!(!ran.ok(), "the runtime binary run by the workload: {ran:?}");
    let _ = fx.events();
}

// ---------------------------------------------------------------------------------------------
// Issue 10: namespaces and other names of a file. Children run as an unprivileged user
// (`setpriv` to nobody), as the threat model's attacker; the perl one-liners exit with the
// errno of the exec or open they try (0 when it worked).

const EXEC_ERRNO: &str = "exec {$ARGV[0]} $ARGV[0] or exit($!+0)";
const OPEN_ERRNO: &str = "open(my $f, '<', $ARGV[0]) or exit($!+0); exit 0";

/// `prefix... perl -e SCRIPT path` as nobody; returns perl's exit code.
fn errno_as_nobody(prefix: &[&str], script: &str, path: &Path) -> i32 {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(prefix)
        .args(["/usr/bin/perl", "-e", script])
        .arg(path);
    let ran = run(&mut c, LIMIT).expect("spawn setpriv (util-linux)");
    assert!(!ran.timed_out, "{c:?} timed out");
    ran.code().unwrap_or_else(|| panic!("{c:?} died: {ran:?}"))
}

fn block_exec_and_open(fs: &TmpFs) -> (Rules, std::path::PathBuf, std::path::PathBuf) {
    let blocked = fs.copy_bin("/bin/true", "bin/blocked");
    let secret = fs.write("secret", "s");
    let rules = host_rules(
        &host_policy(
            "block-names",
            &format!(
                "  process:\n    matchPaths:\n    - path: {}\n  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                blocked.display(),
                secret.display()
            ),
        ),
        AUDIT,
    );
    (rules, blocked, secret)
}

// Namespaces: a host process that enters new user, pid, mount or network namespaces is still
// the host.
#[test]
fn host_process_in_new_namespaces_stays_the_host() {
    let fs = TmpFs::new();
    let (rules, blocked, secret) = block_exec_and_open(&fs);
    let fx = Fixture::new("namespaces", fs, rules);
    let routes: &[&[&str]] = &[
        &[],
        &["unshare", "-Urpf"],
        &["unshare", "-Urpf", "--mount-proc"],
        &["unshare", "-Ur"],
        &["unshare", "-Urm"],
        &["unshare", "-Urn"],
        &["unshare", "-Urfp", "unshare", "-Urm"],
    ];
    for prefix in routes {
        assert_eq!(
            errno_as_nobody(prefix, EXEC_ERRNO, &blocked),
            libc::EPERM,
            "exec via {prefix:?}"
        );
        assert_eq!(
            errno_as_nobody(prefix, OPEN_ERRNO, &secret),
            libc::EPERM,
            "open via {prefix:?}"
        );
    }
    drop(fx);
}

// Other names of a blocked file: a hard link, a bind mount of the file and a bind of its
// directory made in a user + mount namespace.
#[test]
fn other_names_of_a_blocked_file_are_the_file() {
    let fs = TmpFs::new();
    let (rules, blocked, secret) = block_exec_and_open(&fs);
    let link = fs.path("bin/hardlink");
    std::fs::hard_link(&blocked, &link).unwrap();
    let slink = fs.path("secret-link");
    std::fs::hard_link(&secret, &slink).unwrap();
    let decoy = fs.copy_bin("/bin/true", "decoy");
    let decoy_file = fs.write("decoy-file", "d");
    let alt = fs.path("alt");
    std::fs::create_dir(&alt).unwrap();
    let fx = Fixture::new("names", fs, rules);

    assert_eq!(
        errno_as_nobody(&[], EXEC_ERRNO, &link),
        libc::EPERM,
        "exec via a hard link"
    );
    assert_eq!(
        errno_as_nobody(&[], OPEN_ERRNO, &slink),
        libc::EPERM,
        "open via a hard link"
    );

    // unshare -Urm, then bind the blocked file over a decoy (or its directory elsewhere).
    let bind = |from: &Path, to: &Path, script: &str, run_path: &Path| {
        let sh = format!(
            "mount --bind {} {} || exit 99; exec /usr/bin/perl -e \"$0\" {}",
            from.display(),
            to.display(),
            run_path.display()
        );
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["unshare", "-Urm", "sh", "-c", &sh, script]);
        let ran = run(&mut c, LIMIT).expect("spawn");
        assert!(!ran.timed_out);
        ran.code().unwrap_or_else(|| panic!("{ran:?}"))
    };
    let fsroot = blocked.parent().unwrap().parent().unwrap().to_path_buf();
    assert_eq!(
        bind(&blocked, &decoy, EXEC_ERRNO, &decoy),
        libc::EPERM,
        "exec via a bind mount"
    );
    assert_eq!(
        bind(&secret, &decoy_file, OPEN_ERRNO, &decoy_file),
        libc::EPERM,
        "open via a bind mount"
    );
    assert_eq!(
        bind(&fsroot.join("bin"), &alt, EXEC_ERRNO, &alt.join("blocked")),
        libc::EPERM,
        "exec via a bound directory"
    );
    assert_eq!(
        bind(&fsroot, &alt, OPEN_ERRNO, &alt.join("secret")),
        libc::EPERM,
        "open via a bound tree"
    );
    // Not a blanket denial: the decoy itself runs.
    assert_eq!(errno_as_nobody(&[], EXEC_ERRNO, &decoy), 0);
    drop(fx);
}
