//! A user who tries to stall the plane: an exec whose argv points into a FUSE mapping whose
//! server (this test) holds every read. Other processes' opens must keep being answered
//! within the documented bound, the plane must keep enforcing, and nothing may abort it.
//! Needs root (fanotify, a tmpfs and a FUSE mount, both made here); fails without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kubearmor_fanotify::*;
use kubearmor_testkit::fuse::StallFs;
use support::*;

#[test]
fn child_helper() {
    child_main();
}

/// The documented bound (docs/fanotify.md, "What a user can stall"): a stalled memory read
/// costs the decision thread at most the deadline, once per stall and user. The test allows
/// a wide margin over it for a loaded 2-core machine; without the deadline the open waits for
/// the stall itself (here: until the plane's stall watchdog aborts it, 10 s by default).
const BOUND: Duration = Duration::from_millis(1000);

fn open_loop(path: &Path, ms: u64) -> std::process::Child {
    helper(
        "open-loop",
        &[
            ("KA_FAN_PATH", &path.to_string_lossy()),
            ("KA_FAN_MS", &ms.to_string()),
        ],
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn open loop")
}

fn field(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in open-loop output {out:?}"))
}

/// A stalling exec, its first stdout line once it has one (`exec-errno=N`).
struct Staller {
    child: std::process::Child,
    line: std::sync::mpsc::Receiver<String>,
}

impl Staller {
    fn exec_errno(&self, limit: Duration) -> Option<i32> {
        let l = self.line.recv_timeout(limit).ok()?;
        l.trim().strip_prefix("exec-errno=")?.parse().ok()
    }
}

impl Drop for Staller {
    fn drop(&mut self) {
        // It can exit only once the stall is released: kill, never wait here (a panic
        // drops this before the FUSE filesystem).
        let _ = self.child.kill();
    }
}

fn stall_exec(fuse: &StallFs, n: u32, prog: &Path, uid: u32) -> Staller {
    let mut c = helper(
        "stall-exec",
        &[
            ("KA_FAN_PATH", &prog.to_string_lossy()),
            ("KA_FAN_FUSE", &fuse.file_n(n).to_string_lossy()),
        ],
    );
    c.uid(uid)
        .gid(uid)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn stalling exec");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            // libtest may have printed "test child_helper ... " on the same line.
            if let Some(i) = l.find("exec-errno=") {
                let _ = tx.send(l[i..].to_string());
                return;
            }
        }
    });
    Staller { child, line: rx }
}

#[test]
fn fuse_backed_argv_cannot_stall_other_opens() {
    let fs = TmpFs::new();
    let fuse = StallFs::mount("argv");
    // The plane refuses to watch the FUSE filesystem itself: the kernel would open its files
    // for every event inside our read() of the group.
    let data = fs.write("data", "data\n");
    let secret = fs.write("secret", "secret\n");
    let prog = fs.copy_bin("/bin/true", "bin/true");
    let rules = host_rules(
        &host_policy(
            "stall",
            &format!(
                "  process:\n    matchPaths:\n    - path: {}\n  file:\n    matchPaths:\n    - path: {}\n  action: Block\n",
                prog.display(),
                secret.display()
            ),
        ),
        AUDIT,
    );
    let mem = MemReader::new(MEM_READ_DEADLINE);
    let config = Config {
        // Every open of `data` must reach the decision thread to be measured.
        allow_cache: false,
        ..Config::default()
    };
    let (tx, rx) = channel(4096);
    let plane = Plane::builder(config)
        .sink(tx)
        .rules(rules)
        .intent(std::sync::Arc::new(ProcSyscallIntent::new(mem.clone())))
        .start()
        .expect("start plane");
    let _dog = Watchdog::new(
        "fuse_backed_argv",
        Duration::from_secs(60),
        plane.abort_handle(),
        fs.root.clone(),
    );
    plane
        .mark_filesystem(&fs.root)
        .expect("mark the test tmpfs");
    match plane.mark_filesystem(fuse.path()) {
        Err(Error::RefusedFilesystem { fs: "fuse", .. }) => {}
        other => panic!("marking a FUSE filesystem must be refused, got {other:?}"),
    }

    // Baseline: the same open loop without a staller.
    let base = wait_child(open_loop(&data, 500), LIMIT);
    assert!(base.ok(), "baseline open loop: {base:?}");

    // One unprivileged user starts three stalling execs while the loop runs.
    let probe = open_loop(&data, 1500);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let mut execs = Vec::new();
    let mut stallers = Vec::new();
    for n in 0..3 {
        let s = stall_exec(&fuse, n, &prog, 65534);
        execs.push(s.exec_errno(Duration::from_secs(5)));
        stallers.push(s);
    }
    let exec_time = t.elapsed();
    // Enforcement holds during the stall: the blocked file is still denied to others.
    assert_eq!(helper_open(&secret, "r"), Err(libc::EPERM));
    let during = wait_child(probe, LIMIT);
    assert!(during.ok(), "open loop during the stall: {during:?}");

    assert!(
        fuse.reads() >= 1 && fuse.held() >= 1,
        "the plane never touched the FUSE-backed argv (reads {}, held {}): the test shows nothing; execs: {execs:?}",
        fuse.reads(),
        fuse.held()
    );
    assert_eq!(
        execs,
        [Some(libc::EPERM); 3],
        "the blocked exec must be denied (EPERM) despite its unreadable argv; stats {:?}; reader {:?}; events {:?}",
        plane.stats(),
        mem.stats(),
        events(&rx)
    );
    let s = mem.stats();
    assert!(s.timeouts >= 1, "{s:?}");
    assert!(
        s.refused >= 1,
        "later reads of the same user are refused at once: {s:?}"
    );
    assert!(plane.is_running(), "{:?}", plane.stats().stopped_because);
    let max = Duration::from_micros(field(&during.stdout, "max_us"));
    let failures = field(&during.stdout, "failures");
    eprintln!(
        "open latency: baseline {} (p50 {} us, max {} us); during the stall {} (p50 {} us, max {} us); 3 stalling execs took {exec_time:?}; reader {s:?}",
        field(&base.stdout, "opens"),
        field(&base.stdout, "p50_us"),
        field(&base.stdout, "max_us"),
        field(&during.stdout, "opens"),
        field(&during.stdout, "p50_us"),
        max.as_micros(),
    );
    assert_eq!(
        failures, 0,
        "opens of an allowed file failed during the stall"
    );
    assert!(
        max < BOUND,
        "an open waited {max:?} while a user stalled the plane (bound {BOUND:?})"
    );

    // The stall ends: the helper comes back and the user's exec calls are read again.
    fuse.release();
    for mut s in stallers {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    assert!(kubearmor_testkit::wait_until(
        Duration::from_secs(5),
        || mem.stats().stuck == 0
    ));
    let ev_before = events(&rx).len();
    let r = run(std::process::Command::new(&prog).arg("x"), LIMIT);
    assert!(
        matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EPERM)),
        "{r:?}"
    );
    let evs = events(&rx);
    let exec_alert = evs
        .iter()
        .find(|e| e.path == prog.to_string_lossy() && e.hook == Hook::OpenExecPerm)
        .unwrap_or_else(|| panic!("no exec alert after the stall ({ev_before} before): {evs:?}"));
    assert_eq!(
        exec_alert.args.as_deref(),
        Some(&[prog.to_string_lossy().into_owned(), "x".to_string()][..]),
        "argv is read again once the stall is over; reader {:?}",
        mem.stats()
    );
    plane.shutdown();
}

/// `support` dispatches "plane" children here; this file has none.
pub fn child_plane() -> i32 {
    99
}
