//! Measures PolicyService latency against a running daemon: N host policy adds (each a new
//! policy: validate, write + fsync + rename, recompile the host rule set, swap), then N
//! deletes, one request at a time over one connection. Prints median, p99 and max.
//!
//! `cargo run --release -p kubearmor-daemon --example policy_add_latency -- http://127.0.0.1:32767 [N]`
//! (used by scripts/measure-daemon.sh).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use kubearmor_proto::policy::policy_service_client::PolicyServiceClient;
use kubearmor_proto::policy::{Policy, PolicyStatus};
use serde_json::json;

fn policy(t: &str, name: &str) -> Policy {
    let object = json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {"kubearmor.io/hostname": "*"}},
            "file": {"matchPaths": [{"path": format!("/etc/{name}")}],
                     "matchDirectories": [{"dir": format!("/var/lib/{name}/"), "recursive": true}]},
            "process": {"matchPaths": [{"path": format!("/usr/bin/{name}")}]},
            "action": "Audit"
        }
    });
    Policy {
        policy: json!({"type": t, "object": object})
            .to_string()
            .into_bytes(),
    }
}

fn report(what: &str, mut d: Vec<Duration>) {
    d.sort();
    let pick = |q: f64| d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1];
    println!(
        "{what}: n={} median={:.2} ms p99={:.2} ms max={:.2} ms",
        d.len(),
        pick(0.5).as_secs_f64() * 1e3,
        pick(0.99).as_secs_f64() * 1e3,
        d[d.len() - 1].as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:32767".into());
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    if n == 0 {
        bail!("N must be at least 1");
    }
    let mut c = PolicyServiceClient::connect(addr.clone())
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    for (kind, t, want) in [
        ("add", "ADDED", PolicyStatus::Applied),
        ("delete", "DELETED", PolicyStatus::Deleted),
    ] {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n {
            let p = policy(t, &format!("latency-{i}"));
            let start = Instant::now();
            let r = c.host_policy(p).await?.into_inner();
            lat.push(start.elapsed());
            if r.status != want as i32 {
                bail!("{kind} {i}: status {:?}", PolicyStatus::try_from(r.status));
            }
        }
        report(&format!("policy {kind} latency"), lat);
    }
    Ok(())
}
