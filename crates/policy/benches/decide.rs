//! Cost of one decision, and of compiling, as the rule count grows.
//!
//! Rule sets of 10, 1,000 and 10,000 rules per family (process and file each get that many),
//! spread over policies of at most 100 rules, mixing exact paths, non-recursive and recursive
//! directories, patterns and `fromSource`-scoped rules, with Allow, Audit and Block actions.
//! Requests hit an exact path, a directory (directly and five levels below a recursive one),
//! a pattern, a source-scoped rule, or miss.
//!
//! `cargo bench -p kubearmor-policy --bench decide -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kubearmor_policy::{
    parse_policies, Access, NoResolve, PathRequest, Policy, Posture, Postures, RuleSet,
};

const SIZES: &[usize] = &[10, 1_000, 10_000];
const PER_POLICY: usize = 100;

fn action(i: usize) -> &'static str {
    match i % 7 {
        0 => "Allow",
        1 => "Audit",
        _ => "Block",
    }
}

/// One family's rule list in YAML, rules `from..to`.
fn family(out: &mut String, name: &str, exec: bool, from: usize, to: usize) {
    let (mut paths, mut dirs, mut patterns) = (String::new(), String::new(), String::new());
    for i in from..to {
        let a = action(i);
        match i % 10 {
            0..=3 => {
                let p = if exec {
                    format!("/opt/tool{i}/bin/run{i}")
                } else {
                    format!("/srv/app{}/data{i}/file{i}.txt", i % 97)
                };
                writeln!(paths, "      - path: {p}\n        action: {a}").unwrap();
            }
            4 | 5 => writeln!(dirs, "      - dir: /var/lib/svc{i}/\n        action: {a}").unwrap(),
            6 | 7 => writeln!(
                dirs,
                "      - dir: /home/user{i}/\n        recursive: true\n        action: {a}"
            )
            .unwrap(),
            8 => writeln!(patterns, "      - pattern: /data/p{i}/*.log\n        action: {a}").unwrap(),
            _ => writeln!(
                paths,
                "      - path: /etc/conf{i}\n        fromSource:\n          - path: /usr/bin/app{}\n        action: {a}",
                i % 50
            )
            .unwrap(),
        }
    }
    writeln!(out, "  {name}:").unwrap();
    for (key, list) in [
        ("matchPaths", paths),
        ("matchDirectories", dirs),
        ("matchPatterns", patterns),
    ] {
        if !list.is_empty() {
            writeln!(out, "    {key}:\n{list}").unwrap();
        }
    }
}

fn policies(n: usize) -> Vec<Policy> {
    let mut text = String::new();
    let mut from = 0;
    let mut k = 0;
    while from < n {
        let to = (from + PER_POLICY).min(n);
        writeln!(
            text,
            "---\napiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: bench-{k}\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: bench"
        )
        .unwrap();
        family(&mut text, "process", true, from, to);
        family(&mut text, "file", false, from, to);
        from = to;
        k += 1;
    }
    let parsed = parse_policies(&text, "bench").unwrap();
    let count: usize = parsed.policies.iter().map(Policy::rule_count).sum();
    assert_eq!(count, 2 * n);
    parsed.policies
}

fn postures() -> Postures {
    Postures {
        file: Posture::Block,
        ..Postures::default()
    }
}

/// (label, path, source) requests; `k` picks rules in the middle of the set.
fn requests(n: usize, exec: bool) -> Vec<(&'static str, String, Option<String>)> {
    let pick = |rem: usize| {
        let base = (n / 2) / 10 * 10;
        let i = base + rem;
        if i < n {
            i
        } else {
            rem
        }
    };
    let exact = pick(1);
    let exact_path = if exec {
        format!("/opt/tool{exact}/bin/run{exact}")
    } else {
        format!("/srv/app{}/data{exact}/file{exact}.txt", exact % 97)
    };
    let src = pick(9);
    let mut out = vec![
        ("hit-exact", exact_path, Some("/bin/sh".to_string())),
        ("hit-dir", format!("/var/lib/svc{}/state", pick(4)), None),
        (
            "hit-dir-deep",
            format!("/home/user{}/a/b/c/d/e/notes.txt", pick(6)),
            Some("/usr/bin/vim".to_string()),
        ),
        (
            "hit-source",
            format!("/etc/conf{src}"),
            Some(format!("/usr/bin/app{}", src % 50)),
        ),
        (
            "miss",
            "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
            Some("/usr/bin/app7".to_string()),
        ),
        (
            "miss-near",
            format!("/srv/app{}/data{exact}/other.txt", exact % 97),
            None,
        ),
    ];
    if n >= 10 {
        out.push(("hit-pattern", format!("/data/p{}/today.log", pick(8)), None));
    }
    out
}

fn decide(c: &mut Criterion) {
    for (group, exec) in [("open", false), ("exec", true)] {
        let mut g = c.benchmark_group(group);
        for &n in SIZES {
            let pols = policies(n);
            let set = RuleSet::compile(&pols, postures(), &NoResolve);
            for (label, path, source) in requests(n, exec) {
                let mut req = PathRequest::new(&path);
                req.source = source.as_deref();
                req.access = Access::Read;
                g.bench_with_input(BenchmarkId::new(label, n), &req, |b, req| {
                    if exec {
                        b.iter(|| black_box(set.decide_exec(black_box(req))).verdict)
                    } else {
                        b.iter(|| black_box(set.decide_open(black_box(req))).verdict)
                    }
                });
            }
        }
        g.finish();
    }
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for &n in SIZES {
        let pols = policies(n);
        g.bench_with_input(BenchmarkId::new("rules", 2 * n), &pols, |b, pols| {
            b.iter(|| RuleSet::compile(black_box(pols), postures(), &NoResolve).len())
        });
    }
    g.finish();
}

criterion_group!(benches, decide, compile);
criterion_main!(benches);
