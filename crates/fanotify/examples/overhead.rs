//! Per-operation overhead of the fanotify plane, side by side in one run, on a private tmpfs:
//! open+close and fork+exec+wait, with no listener, a listener whose rules do not match
//! (allow cache off and on), a matching Allow rule, and a matching Block rule.
//!
//! Run as root: `cargo run --release -p kubearmor-fanotify --example overhead [OPENS] [EXECS]`
//! (defaults 20000 and 400). The measuring side is a child process (the plane ignores its
//! own process); the plane runs in this process. Prints median and p99 per operation, and
//! the CPU time this process (the plane) spent per operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubearmor_fanotify::{Config, Plane, Rules};
use kubearmor_policy::{parse_policies, NoResolve, Postures, RuleSet};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        worker(&args[2..]);
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("overhead: needs root (fanotify permission events, a tmpfs mount)");
        std::process::exit(2);
    }
    let opens: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let execs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(400);
    let fs = TmpFs::new();
    let f_plain = fs.file("plain");
    let f_allow = fs.file("allowed");
    let f_block = fs.file("blocked");
    let b_plain = fs.bin("true-plain");
    let b_allow = fs.bin("true-allowed");
    let b_block = fs.bin("true-blocked");

    let block_rules = rules(&format!(
        "  file:\n    matchPaths:\n    - path: {fb}\n  process:\n    matchPaths:\n    - path: {bb}\n  action: Block\n",
        fb = f_block.display(),
        bb = b_block.display()
    ));
    let allow_rules = rules(&format!(
        "  file:\n    matchPaths:\n    - path: {fa}\n    - path: {ba}\n  process:\n    matchPaths:\n    - path: {ba}\n  action: Allow\n",
        fa = f_allow.display(),
        ba = b_allow.display()
    ));

    let scenarios = [
        Scenario {
            name: "no listener",
            plane: None,
            file: f_plain.clone(),
            bin: b_plain.clone(),
        },
        Scenario {
            name: "listener, no matching rule, cache off",
            plane: Some((block_rules.clone(), false)),
            file: f_plain.clone(),
            bin: b_plain.clone(),
        },
        Scenario {
            name: "listener, no matching rule, cache on",
            plane: Some((block_rules.clone(), true)),
            file: f_plain.clone(),
            bin: b_plain.clone(),
        },
        Scenario {
            name: "listener, matching Allow (allow-list)",
            plane: Some((allow_rules, true)),
            file: f_allow,
            bin: b_allow,
        },
        Scenario {
            name: "listener, matching Block (denied)",
            plane: Some((block_rules, true)),
            file: f_block,
            bin: b_block,
        },
    ];

    println!(
        "fanotify plane overhead: {opens} open+close, {execs} fork+exec+wait per scenario, tmpfs, {}",
        kernel()
    );
    let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    let placements: &[(&str, bool)] = &[
        ("plane and opener pinned to one CPU", true),
        ("free placement (cross-CPU wakeups)", false),
    ];
    for (label, pin) in placements {
        // Threads and children inherit the affinity set here.
        let mut set = cpus;
        if *pin {
            set = nix::sched::CpuSet::new();
            let first = (0..nix::sched::CpuSet::count())
                .find(|c| cpus.is_set(*c).unwrap_or(false))
                .unwrap_or(0);
            set.set(first).expect("cpu");
        }
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("affinity");
        println!("\n{label}:");
        table(&scenarios, &fs.root, opens, execs);
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).expect("affinity");
}

struct Scenario {
    name: &'static str,
    plane: Option<(Rules, bool)>,
    file: PathBuf,
    bin: PathBuf,
}

fn table(scenarios: &[Scenario], root: &Path, opens: usize, execs: usize) {
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>11} {:>11} {:>11}",
        "scenario", "open p50", "open p99", "plane CPU", "exec p50", "exec p99", "plane CPU"
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>11} {:>11} {:>11}",
        "", "(us)", "(us)", "(us/op)", "(us)", "(us)", "(us/op)"
    );
    for s in scenarios {
        let plane = s.plane.as_ref().map(|(r, cache)| {
            let config = Config {
                allow_cache: *cache,
                exec_tracking: std::env::var_os("KA_FAN_NO_EXEC_TRACKING").is_none(),
                ..Config::default()
            };
            let p = Plane::builder(config)
                .rules(r.clone())
                .start()
                .expect("start plane");
            p.mark_filesystem(root).expect("mark tmpfs");
            p
        });
        let cpu0 = cpu_time();
        let open = measure(&["open", &s.file.to_string_lossy(), &opens.to_string()]);
        let cpu1 = cpu_time();
        let exec = measure(&["exec", &s.bin.to_string_lossy(), &execs.to_string()]);
        let cpu2 = cpu_time();
        let stats = plane.map(|p| p.shutdown());
        println!(
            "{:<40} {:>10.2} {:>10.2} {:>10.2} {:>11.1} {:>11.1} {:>11.2}",
            s.name,
            open.0,
            open.1,
            (cpu1 - cpu0).as_secs_f64() * 1e6 / opens as f64,
            exec.0,
            exec.1,
            (cpu2 - cpu1).as_secs_f64() * 1e6 / execs as f64,
        );
        if let Some(st) = stats {
            eprintln!(
                "    events {} (exec {}, open {}), denied {}, cache marks {}, undecided {}, {:.1} us per event in the decision thread",
                st.events,
                st.exec_events,
                st.open_events,
                st.denied,
                st.cache_marks,
                st.undecided,
                st.decision_ns as f64 / 1e3 / st.events.max(1) as f64
            );
        }
    }
}

fn rules(body: &str) -> Rules {
    let yaml = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: bench\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}"
    );
    let parsed = parse_policies(&yaml, "bench.yaml").expect("bench policy parses");
    Rules {
        host: Some(Arc::new(RuleSet::compile(
            &parsed.policies,
            Postures::default(),
            &NoResolve,
        ))),
        ..Default::default()
    }
}

/// Runs the worker child and returns (median, p99) in microseconds.
fn measure(args: &[&str]) -> (f64, f64) {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .arg("--worker")
        .args(args)
        .output()
        .expect("run worker");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("worker failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

fn worker(args: &[String]) {
    let what = args.first().map(String::as_str).unwrap_or("");
    let path = args.get(1).cloned().unwrap_or_default();
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let warm = (n / 20).max(5);
    let mut samples = Vec::with_capacity(n);
    match what {
        "open" => {
            let c = CString::new(path).unwrap();
            for i in 0..n + warm {
                let t = Instant::now();
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd >= 0 {
                    unsafe { libc::close(fd) };
                }
                let d = t.elapsed();
                if i >= warm {
                    samples.push(d);
                }
            }
        }
        "exec" => {
            for i in 0..n + warm {
                let t = Instant::now();
                // A denied exec fails in spawn; both are one exec attempt.
                let _ = Command::new(&path).status();
                let d = t.elapsed();
                if i >= warm {
                    samples.push(d);
                }
            }
        }
        _ => std::process::exit(2),
    }
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!("{:.3} {:.3}", pct(0.5), pct(0.99));
}

/// CPU time of the plane's threads (`fanotify-*`), from schedstat (nanoseconds).
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("fanotify-") {
                continue;
            }
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| format!("Linux {}", u.release().to_string_lossy()))
        .unwrap_or_default()
}

struct TmpFs {
    root: PathBuf,
}

impl TmpFs {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ka-fan-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0755,size=64m"),
        )
        .expect("mount tmpfs");
        TmpFs { root: dir }
    }
    fn file(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, "x").unwrap();
        p
    }
    fn bin(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::copy(Path::new("/bin/true"), &p).unwrap();
        p
    }
}

impl Drop for TmpFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.root);
    }
}
