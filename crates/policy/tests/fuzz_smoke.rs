//! A bounded, deterministic fuzz run on the stable toolchain, for CI.
//!
//! The real fuzzers are the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`); they need
//! coverage instrumentation and run for as long as you let them. This test does what CI can
//! afford on every push: mutate the policy corpus (`shared/conformance`, plus a few built-in
//! seeds) with YAML-aware and byte-level mutations, parse every mutant, and compile and decide
//! the ones that parse, with requests aimed at the paths their rules name. A panic anywhere
//! fails the test with the seed, the iteration and the input.
//!
//! Budget: `FUZZ_SMOKE_ITERS` iterations (default 20,000) or `FUZZ_SMOKE_SECS` seconds
//! (default 20), whichever comes first. `FUZZ_SMOKE_SEED` picks another deterministic run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubearmor_policy::{
    parse_policies, parse_policy_change, Access, Action, Decision, NoResolve, PathRequest,
    PathTarget, PolicyError, PolicyKind, Posture, Postures, Report, RuleSet, SocketRequest,
    Verdict,
};

const SEEDS: &[&str] = &[
    r#"apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: seed-ksp
  namespace: multiubuntu
spec:
  severity: 5
  tags: [a, b]
  message: hi
  selector:
    matchLabels:
      container: ubuntu-1
      kubearmor.io/container.name: "[a, b]"
    matchExpressions:
      - key: label
        operator: NotIn
        values: [group=group-2]
  process:
    matchPaths:
      - path: /bin/sleep
        pts: false
      - execname: apt
        fromSource:
          - path: /bin/bash
      - path: /usr/bin/python3
        allowedArgs: [-m, random]
    matchDirectories:
      - dir: /sbin/
        recursive: true
        ownerOnly: true
    matchPatterns:
      - pattern: /usr/bin/apt*
  file:
    action: Allow
    matchPaths:
      - path: /credentials/password
        readOnly: true
    matchDirectories:
      - dir: /
        recursive: true
        fromSource:
          - path: /runc
      - dir: /run/secrets/
        recursive: true
        action: Block
    matchPatterns:
      - pattern: /etc/*hado?
  network:
    matchProtocols:
      - protocol: tcp,udp
        fromSource:
          - path: /usr/bin/curl
      - protocol: all
        action: Audit
    matchDNSQueries:
      - domain: example.com
  capabilities:
    matchCapabilities:
      - capability: net_raw
  syscalls:
    matchSyscalls:
      - syscall: [unlink, rmdir]
        fromSource:
          - dir: /bin/
            recursive: true
    matchPaths:
      - syscall: [unlink]
        path: /home/
        recursive: true
"#,
    r#"apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: seed-hsp
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  action: Block
  device:
    matchDevice:
      - class: MASS-STORAGE
        subClass: 6
        protocol: 80
        level: 2
        action: Allow
      - class: 0x3
      - class: ALL
        action: Audit
  file:
    matchDirectories:
      - dir: /etc/
        recursive: true
  capabilities:
    matchCapabilities:
      - capability: sys_admin
        fromSource:
          - path: /usr/bin/mount
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: seed-csp
spec:
  selector:
    matchExpressions:
      - key: namespace
        operator: In
        values: [nginx1]
  process:
    matchPaths:
      - path: /usr/bin/apt
"#,
    r#"{"apiVersion":"security.kubearmor.com/v1","kind":"KubeArmorPolicy","metadata":{"name":"j","namespace":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"file":{"matchPaths":[{"path":"/a/b","ownerOnly":true}]}}}"#,
];

/// Tokens that mutations insert.
const TOKENS: &[&str] = &[
    "matchPaths:",
    "matchDirectories:",
    "matchPatterns:",
    "- path: ",
    "- dir: ",
    "- pattern: ",
    "- execname: ",
    "recursive: true",
    "readOnly: true",
    "ownerOnly: true",
    "pts: false",
    "fromSource:",
    "  - path: /bin/sh",
    "action: Allow",
    "action: Audit",
    "action: Block",
    "action: bLoCk",
    "severity: 11",
    "severity: 0",
    "tags: [x]",
    "message: m",
    "allowedArgs: [-m]",
    "protocol: all",
    "protocol: tcp,udp",
    "capability: CAP_NET_RAW",
    "domain: .a..b.",
    "class: 010",
    "level: 0",
    "syscall: [unlink]",
    "kubearmor.io/container.name: '[a,,]'",
    "kubearmor.io/hostnamereg: 'node-*'",
    "apparmor: x",
    "presets: []",
    "nodeSelector:",
    "selector:",
    "kind: KubeArmorHostPolicy",
    "kind: KubeArmorClusterPolicy",
    "kind: KubeArmorNetworkPolicy",
    "/",
    "/**",
    "/*",
    "?",
    "[!a-z]",
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "<<: ",
    "---\n",
    "...\n",
    "\n",
    "  ",
    "\t",
    "'",
    "\"",
    "\\",
    "#",
    "|\n",
    ">-\n",
    "~",
    "null",
    "\0",
    "é",
    "🦀",
    "\u{202e}",
    "9223372036854775808",
    "-9223372036854775809",
    "1e999",
    ".nan",
    "0x10",
];

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn corpus() -> Vec<String> {
    let mut seeds: Vec<String> = SEEDS.iter().map(|s| s.to_string()).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    if !dir.is_dir() {
        // The corpus test (tests/corpus.rs) fails loudly when the folder is missing; here the
        // built-in seeds are enough to run.
        eprintln!(
            "fuzz_smoke: {} not found; mutating built-in seeds only",
            dir.display()
        );
        return seeds;
    }
    let mut files = Vec::new();
    walk(&dir, &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if text.lines().any(|l| l.starts_with("kind: KubeArmor")) {
            seeds.push(text);
        }
    }
    seeds
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

fn line_bounds(text: &[u8], rng: &mut Rng) -> (usize, usize) {
    let at = rng.below(text.len() + 1);
    let start = text[..at]
        .iter()
        .rposition(|&c| c == b'\n')
        .map_or(0, |i| i + 1);
    let end = text[at..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(text.len(), |i| at + i + 1);
    (start, end)
}

fn mutate(text: &mut Vec<u8>, seeds: &[String], rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let len = text.len();
        match rng.below(11) {
            // Insert a token.
            0..=2 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(len + 1);
                text.splice(at..at, t.iter().copied());
            }
            // Replace a random byte.
            3 if len > 0 => {
                let i = rng.below(len);
                text[i] = match rng.below(3) {
                    0 => (rng.next() & 0x7f) as u8,
                    1 => {
                        const SPECIAL: &[u8] = b" :-[]{}'\"#&*!|>\n\t/";
                        SPECIAL[rng.below(SPECIAL.len())]
                    }
                    _ => rng.next() as u8,
                };
            }
            // Delete a range.
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                text.drain(a..b);
            }
            // Duplicate a line.
            5 => {
                let (s, e) = line_bounds(text, rng);
                let line = text[s..e].to_vec();
                text.splice(s..s, line);
            }
            // Delete a line.
            6 => {
                let (s, e) = line_bounds(text, rng);
                text.drain(s..e);
            }
            // Splice in a line from another seed.
            7 => {
                let other = seeds[rng.below(seeds.len())].as_bytes();
                let (s, e) = line_bounds(other, rng);
                let at = line_bounds(text, rng).0;
                text.splice(at..at, other[s..e].iter().copied());
            }
            // Indent or dedent a line.
            8 => {
                let (s, _) = line_bounds(text, rng);
                if rng.chance(50) {
                    text.splice(s..s, *b"  ");
                } else if text[s..].starts_with(b"  ") {
                    text.drain(s..s + 2);
                }
            }
            // Swap two lines.
            9 => {
                let (a, b) = line_bounds(text, rng);
                let first = text[a..b].to_vec();
                text.drain(a..b);
                let (c, _) = line_bounds(text, rng);
                text.splice(c..c, first);
            }
            // Blow up a number or a string.
            _ => {
                if let Some(i) = text.iter().position(|c| c.is_ascii_digit()) {
                    let big = ["99999999999999999999", "-1", "256", "0", "1e308"][rng.below(5)];
                    text.splice(i..i + 1, big.bytes());
                } else {
                    let at = rng.below(len + 1);
                    let n = 1 + rng.below(5000);
                    text.splice(at..at, std::iter::repeat_n(b'a', n));
                }
            }
        }
    }
}

fn check_error(e: &PolicyError, origin: &str) {
    assert!(e.errors().next().is_some(), "an error without errors");
    for d in e.errors() {
        assert!(d.document >= 1, "{d}");
        assert!(!d.message.trim().is_empty(), "{d:?}");
        assert_eq!(d.origin, origin);
    }
}

/// A denial always comes with a Block alert; an allowed operation never with one.
fn consistent(d: &Decision<'_>) {
    match (d.verdict, d.report) {
        (Verdict::Deny, Report::Alert { action, .. }) => assert_eq!(action, Action::Block),
        (Verdict::Deny, _) => panic!("a denial without an alert: {d:?}"),
        (Verdict::Allow, Report::Alert { action, .. }) => assert_ne!(action, Action::Block),
        _ => {}
    }
}

fn exercise(set: &RuleSet, rng: &mut Rng) {
    let mut paths: Vec<(String, Option<String>)> = Vec::new();
    for r in set.path_rules().iter().take(64) {
        let base = match &r.target {
            PathTarget::Path(p) => p.clone(),
            PathTarget::ExecName(n) => format!("/usr/bin/{n}"),
            PathTarget::Dir { dir, .. } => dir.clone(),
            PathTarget::Pattern(g) => g.as_str().replace("**", "q/r").replace(['*', '?'], "x"),
        };
        paths.push((format!("{base}/f"), r.source.clone()));
        paths.push((format!("{base}/d/f"), r.source.clone()));
        paths.push((base, r.source.clone()));
    }
    paths.push(("/etc/shadow".into(), None));
    paths.push(("/".into(), Some("/bin/bash".into())));
    for (path, source) in &paths {
        let mut req = PathRequest::new(path);
        req.source = source.as_deref();
        req.uid = if rng.chance(50) { 0 } else { 1000 };
        req.owner = [None, Some(0), Some(1000)][rng.below(3)];
        req.tty = rng.chance(50);
        req.access = if rng.chance(50) {
            Access::Read
        } else {
            Access::Write
        };
        let args = vec!["python3".to_string(), "-m".to_string()];
        if rng.chance(30) {
            req.args = Some(&args);
        }
        consistent(&set.decide_exec(&req));
        consistent(&set.decide_open(&req));
    }
    for (family, ty, proto) in [(2, 1, 0), (10, 2, 0), (2, 3, 1), (17, 3, 0), (1, 1, 0)] {
        consistent(&set.decide_socket(&SocketRequest {
            family,
            sock_type: ty | if rng.chance(20) { 0o4000 } else { 0 },
            protocol: proto,
            source: Some("/usr/bin/curl"),
            tty: rng.chance(50),
        }));
    }
    consistent(&set.decide_dns("a.example.com.", Some("/usr/bin/curl")));
    consistent(&set.decide_capability(rng.below(64) as u8, None));
    consistent(&set.decide_syscall("unlink", Some("/home/x/y"), Some("/bin/rm")));
    consistent(&set.decide_device(
        rng.next() as u8,
        rng.next() as u8,
        rng.next() as u8,
        rng.next() as u8,
    ));
}

#[test]
fn mutated_policies_never_panic() {
    let iterations: u64 = env("FUZZ_SMOKE_ITERS", 20_000);
    let budget = Duration::from_secs(env("FUZZ_SMOKE_SECS", 20));
    let seed: u64 = env("FUZZ_SMOKE_SEED", 0x6b75_6265_6172_6d72);
    let seeds = corpus();
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let (mut accepted, mut rejected, mut done) = (0u64, 0u64, 0u64);
    let mut stopped_by_time = false;

    for i in 0..iterations {
        if start.elapsed() > budget {
            stopped_by_time = true;
            break;
        }
        let mut text = seeds[rng.below(seeds.len())].clone().into_bytes();
        mutate(&mut text, &seeds, &mut rng);
        let text = String::from_utf8_lossy(&text).into_owned();
        let postures = Postures {
            file: [Posture::Audit, Posture::Block][rng.below(2)],
            network: [Posture::Audit, Posture::Block][rng.below(2)],
            capabilities: [Posture::Audit, Posture::Block][rng.below(2)],
            device: [Posture::Audit, Posture::Block][rng.below(2)],
        };
        let mut case_rng = Rng(rng.next() | 1);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let ok = match parse_policies(&text, "mutant.yaml") {
                Ok(parsed) => {
                    let set = RuleSet::compile(&parsed.policies, postures, &NoResolve);
                    exercise(&set, &mut case_rng);
                    true
                }
                Err(e) => {
                    check_error(&e, "mutant.yaml");
                    false
                }
            };
            // The same text as a gRPC policy message (mostly invalid JSON: must not panic).
            if let Err(e) = parse_policy_change(text.as_bytes(), PolicyKind::Container) {
                check_error(&e, "policy message");
            }
            ok
        }));
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!(
                "panic at iteration {i} (FUZZ_SMOKE_SEED={seed}); input:\n{text}\n(end of input)"
            ),
        }
        done += 1;
    }
    println!(
        "fuzz_smoke: seed {seed:#x}, {done} mutants in {:.1?} ({accepted} accepted and decided, {rejected} rejected){}",
        start.elapsed(),
        if stopped_by_time { ", stopped by the time budget" } else { "" }
    );
    assert!(
        accepted > 0 && rejected > 0,
        "the mutations should produce both valid and invalid policies"
    );
}
