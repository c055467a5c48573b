//! `kubearmor-conformance`: runs KubeArmor's scenario suites against kubearmor-rs.
//!
//! ```text
//! kubearmor-conformance --image ROOTFS [--scenarios DIR]... [--nonk8s DIR]
//!                       [--posture block|audit|both] [--report FILE.json]
//! ```
//! One daemon per posture; the five multiubuntu workloads and `wordpress-mysql` are started once
//! per daemon and reused across scenarios (each scenario adds its policy, runs, deletes it).
//! Exits 1 when a command fails; unsupported commands are reported with the reason.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use kubearmor_conformance::judge::{Posture, Verdict};
use kubearmor_conformance::lab::{Binaries, Lab, WorkloadSpec};
use kubearmor_conformance::runner::{run_scenario, CmdReport};
use kubearmor_conformance::{nonk8s, scenario};

#[derive(Parser)]
#[command(about = "Runs KubeArmor's scenario suites against kubearmor-rs (root)")]
struct Args {
    /// The workload image (scripts/conformance-image.sh prints it).
    #[arg(long)]
    image: PathBuf,
    /// Scenario directories (each subdirectory is a scenario).
    #[arg(long)]
    scenarios: Vec<PathBuf>,
    /// KubeArmor's non-Kubernetes suites (host_policy/, ksp/).
    #[arg(long)]
    nonk8s: Option<PathBuf>,
    /// Default posture(s) to run with.
    #[arg(long, default_value = "both")]
    posture: String,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Write the per-command report as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Extra annotations (KEY=VALUE) on every workload, e.g. `kubearmor-policy=audited` to see
    /// the suites' alerts in audited mode (the suites' expectations assume `enabled`).
    #[arg(long)]
    annotate: Vec<String>,
    /// Where kubearmor and kubearmor-hook are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// The multiubuntu deployment (labels from KubeArmor's test manifests).
fn workloads() -> Vec<WorkloadSpec> {
    let mut v: Vec<WorkloadSpec> = (1..=5)
        .map(|i| WorkloadSpec {
            source: format!("ubuntu-{i}-deployment"),
            container: format!("ubuntu-{i}"),
            namespace: "multiubuntu".into(),
            labels: vec![
                (
                    "group".into(),
                    if i <= 3 { "group-1" } else { "group-2" }.into(),
                ),
                ("container".into(), format!("ubuntu-{i}")),
            ],
        })
        .collect();
    v.push(WorkloadSpec {
        source: nonk8s::KSP_WORKLOAD.into(),
        container: nonk8s::KSP_WORKLOAD.into(),
        namespace: "container_namespace".into(),
        labels: Vec::new(),
    });
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let postures = match args.posture.as_str() {
        "block" => vec![Posture::Block],
        "audit" => vec![Posture::Audit],
        "both" => vec![Posture::Block, Posture::Audit],
        other => anyhow::bail!("--posture {other}: expected block, audit or both"),
    };
    let bin_dir = match args.bin_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .context("no directory for this binary")?,
    };
    let bins = Binaries {
        daemon: bin_dir.join("kubearmor"),
        hook: bin_dir.join("kubearmor-hook"),
    };
    let keep = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    let mut suites = Vec::new();
    for dir in &args.scenarios {
        let all = scenario::load_all(dir)?;
        suites.push((
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            all.into_iter()
                .filter(|s| keep(&s.name))
                .collect::<Vec<_>>(),
        ));
    }

    let mut lab = Lab::new(bins, args.image.clone())?;
    let scratch = lab.fs.join("host");
    nonk8s::prepare_scratch(&scratch)?;
    let scratch_s = scratch.to_string_lossy().into_owned();
    let (host_checks, ksp_checks) = match &args.nonk8s {
        Some(d) => (nonk8s::host_checks(d, &scratch_s)?, nonk8s::ksp_checks(d)?),
        None => (Vec::new(), Vec::new()),
    };

    let mut reports: Vec<CmdReport> = Vec::new();
    for posture in postures {
        eprintln!("== posture {}", posture.as_str());
        lab.start_daemon(posture).await?;
        for mut w in workloads() {
            for a in &args.annotate {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("--annotate {a}: expected KEY=VALUE"))?;
                w.labels.push((k.to_string(), v.to_string()));
            }
            tokio::task::block_in_place(|| lab.start_workload(&w))
                .with_context(|| format!("starting {}", w.source))?;
        }
        for (suite, scenarios) in &suites {
            for s in scenarios {
                let r = run_scenario(&lab, suite, s, posture, false).await?;
                print_reports(&r);
                reports.extend(r);
            }
        }
        for c in ksp_checks.iter().filter(|c| keep(&c.scenario.name)) {
            let r = run_scenario(&lab, "nonk8s/ksp", &c.scenario, posture, false).await?;
            print_reports(&r);
            reports.extend(r);
        }
        for c in host_checks.iter().filter(|c| keep(&c.scenario.name)) {
            for p in &c.before {
                lab.send_policy(true, "ADDED", p).await?;
            }
            let r = run_scenario(&lab, "nonk8s/host_policy", &c.scenario, posture, true).await?;
            print_reports(&r);
            reports.extend(r);
        }
        lab.stop();
    }
    drop(lab);

    let summary = summarize(&reports);
    println!("{summary}");
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_vec_pretty(&reports)?)?;
    }
    if reports
        .iter()
        .any(|r| matches!(r.verdict, Verdict::Fail { .. }))
    {
        std::process::exit(1);
    }
    Ok(())
}

fn print_reports(rs: &[CmdReport]) {
    for r in rs {
        let v = match &r.verdict {
            Verdict::Pass => "pass".to_string(),
            Verdict::Fail { expected, actual } => {
                format!("FAIL: expected {expected}; actual: {actual}")
            }
            Verdict::Unsupported { reason } => format!("unsupported: {reason}"),
        };
        println!(
            "[{}] {}/{}/{} ({}: {}): {v}",
            r.posture.as_str(),
            r.suite,
            r.scenario,
            r.cmd,
            r.source,
            r.command
        );
    }
}

/// Counts per posture and suite: pass / fail / unsupported.
fn summarize(rs: &[CmdReport]) -> String {
    let mut counts: BTreeMap<(String, String), [u32; 3]> = BTreeMap::new();
    for r in rs {
        let c = counts
            .entry((r.posture.as_str().to_string(), r.suite.clone()))
            .or_default();
        match r.verdict {
            Verdict::Pass => c[0] += 1,
            Verdict::Fail { .. } => c[1] += 1,
            Verdict::Unsupported { .. } => c[2] += 1,
        }
    }
    let mut s =
        String::from("| posture | suite | pass | fail | unsupported |\n|---|---|---|---|---|\n");
    for ((posture, suite), c) in counts {
        s.push_str(&format!(
            "| {posture} | {suite} | {} | {} | {} |\n",
            c[0], c[1], c[2]
        ));
    }
    s
}
