//! Cost of socket()+close() with the network plane, side by side in one run:
//! no programs attached; programs attached but no rule for this cgroup; a rule set that does
//! not match the socket (raw blocked, UDP opened); a matching Allow; 1,000 fromSource rules of
//! other executables. Median and p99 per operation, and the ratio to the baseline.
//!
//! Run as root: `cargo run --release -p kubearmor-bpf --example socket_overhead`. The process
//! moves itself into a cgroup of its own for the run and leaves it at the end; the programs
//! are pinned in a private bpffs that is unmounted at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use kubearmor_bpf::net::cgroup2_root;
use kubearmor_bpf::{NetPlane, NetPlaneConfig, NetTable};
use kubearmor_policy::{parse_policies, NoResolve, Posture, Postures, RuleSet};

const OPS: usize = 20_000;
const ROUNDS: usize = 5;

fn measure() -> Vec<f64> {
    let mut v = Vec::with_capacity(OPS);
    for _ in 0..OPS {
        let t = Instant::now();
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        assert!(fd >= 0, "socket failed");
        unsafe { libc::close(fd) };
        v.push(t.elapsed().as_nanos() as f64);
    }
    v
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn table(cg: u64, body: &str) -> NetTable {
    let yaml = format!("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: bench\n  namespace: b\nspec:\n  selector:\n    matchLabels:\n      app: b\n{body}");
    let p = parse_policies(&yaml, "bench").unwrap().policies;
    let set = RuleSet::compile(
        &p,
        Postures {
            network: Posture::Audit,
            ..Default::default()
        },
        &NoResolve,
    );
    let mut t = NetTable::new();
    t.add_container(
        cg,
        &set,
        &kubearmor_bpf::RootedIdentity::new(
            std::path::Path::new("/"),
            kubearmor_bpf::MountDevs::read(),
        ),
    );
    t
}

fn write(path: &std::path::Path, s: &str) {
    fs::write(path, s).unwrap();
}

fn main() {
    assert!(unsafe { libc::geteuid() } == 0, "run as root");
    let root = cgroup2_root().expect("cgroup2");
    let me = std::process::id();
    let original = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap();
    let cg_dir = root.join(format!("ka-bench-{me}"));
    fs::create_dir_all(&cg_dir).unwrap();
    let cg = fs::metadata(&cg_dir).unwrap().ino();
    write(&cg_dir.join("cgroup.procs"), &me.to_string());

    let scratch = std::env::temp_dir().join(format!("ka-bench-{me}"));
    let bpffs = scratch.join("bpffs");
    kubearmor_bpf::ensure_bpffs(&bpffs).unwrap();
    let many: String = (0..1000)
        .map(|i| format!("    - protocol: udp\n      fromSource:\n      - path: /opt/other-{i}\n"))
        .collect();
    let scenarios: Vec<(&str, Option<NetTable>)> = vec![
        ("no rule for this cgroup", Some(NetTable::new())),
        (
            "rules, none matching (raw blocked)",
            Some(table(
                cg,
                "  action: Block\n  network:\n    matchProtocols:\n    - protocol: raw\n",
            )),
        ),
        (
            "matching Allow (udp)",
            Some(table(
                cg,
                "  action: Allow\n  network:\n    matchProtocols:\n    - protocol: udp\n",
            )),
        ),
        (
            "1,000 fromSource rules of other binaries",
            Some(table(
                cg,
                &format!("  action: Block\n  network:\n    matchProtocols:\n{many}"),
            )),
        ),
    ];

    let mut results: Vec<(String, Vec<f64>)> = vec![("baseline (no programs)".into(), Vec::new())];
    results.extend(scenarios.iter().map(|(n, _)| (n.to_string(), Vec::new())));
    for _ in 0..ROUNDS {
        // Baseline with nothing attached (no pins, no links).
        results[0].1.extend(measure());
        let mut plane = NetPlane::load(&NetPlaneConfig {
            pin_dir: bpffs.join("kubearmor-rs"),
            cgroup_root: root.clone(),
        })
        .unwrap();
        for (i, (_, t)) in scenarios.iter().enumerate() {
            plane.sync(t.as_ref().unwrap()).unwrap();
            results[i + 1].1.extend(measure());
        }
        drop(plane);
        NetPlane::remove_pins(&bpffs.join("kubearmor-rs")).unwrap();
    }

    write(
        &root
            .join(original.trim_start_matches('/'))
            .join("cgroup.procs"),
        &me.to_string(),
    );
    let _ = fs::remove_dir(&cg_dir);
    let c = CString::new(bpffs.to_str().unwrap()).unwrap();
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    let _ = fs::remove_dir_all(&scratch);

    let base = stats(results[0].1.clone()).0;
    println!(
        "socket(AF_INET, SOCK_DGRAM)+close(), {} ops per case, {ROUNDS} interleaved rounds",
        OPS * ROUNDS
    );
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "case", "median ns", "p99 ns", "ratio"
    );
    for (name, v) in results {
        let (m, p) = stats(v);
        println!("{name:<44} {m:>10.0} {p:>10.0} {:>8.2}", m / base);
    }
}
