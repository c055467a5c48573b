//! Runs scenarios on a [`Lab`]: apply the policy over gRPC, run each command, judge it, delete
//! the policy.

use std::time::{Duration, Instant};

use anyhow::Result;
use kubearmor_proto::policy::PolicyStatus;
use serde::Serialize;

use crate::judge::{judge, AlertView, Expectation, Posture, Verdict};
use crate::lab::Lab;
use crate::scenario::{Cmd, Scenario};

/// How long a command's alerts may take to arrive.
const ALERT_WAIT: Duration = Duration::from_secs(3);
/// How long to watch for alerts that must not come.
const SETTLE: Duration = Duration::from_millis(600);
/// Time for a policy change to reach the planes after the gRPC answer.
const APPLY_SETTLE: Duration = Duration::from_millis(400);

/// One command's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CmdReport {
    pub suite: String,
    pub scenario: String,
    pub cmd: String,
    pub source: String,
    pub command: String,
    pub posture: Posture,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Why a command cannot be judged here, from the policy and what the daemon says it does not
/// enforce (`karmor probe` `NotEnforced`).
pub fn unsupported_reason(
    policies: &[serde_json::Value],
    status: Option<PolicyStatus>,
    wants_alert: bool,
    not_enforced: &[(String, String)],
) -> Option<String> {
    let spec = |key: &str| policies.iter().any(|p| !p["spec"][key].is_null());
    if spec("apparmor") {
        return Some(
            "native AppArmor rules (`spec.apparmor`) are not supported: the policy is rejected \
             (docs/compatibility.md)"
                .into(),
        );
    }
    for (key, family) in [("capabilities", "Capabilities"), ("syscalls", "Syscall")] {
        // Only what the command's judgement depends on: an alert of that family.
        if spec(key) && wants_alert {
            if let Some((_, why)) = not_enforced.iter().find(|(f, _)| f == family) {
                return Some(format!(
                    "{family} rules are not enforced on this kernel ({why}; docs/compatibility.md)"
                ));
            }
        }
    }
    if let Some(s) = status.filter(|s| *s != PolicyStatus::Applied && *s != PolicyStatus::Modified)
    {
        // The gRPC answer is a status code; the validator says why.
        let why = policies
            .iter()
            .filter_map(|p| {
                let text = serde_json::to_string(p).ok()?;
                kubearmor_policy::parse_policies(&text, "policy").err()
            })
            .map(|e| e.to_string().lines().last().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Some(format!(
            "the daemon refused the policy ({s:?}): {why} (docs/compatibility.md)"
        ));
    }
    None
}

/// Runs one command and judges it. `host` judges `MatchedHostPolicy` alerts (commands on the
/// host), else `MatchedPolicy` alerts of the command's workload.
pub async fn run_cmd(
    lab: &Lab,
    cmd: &Cmd,
    policy_name: &str,
    posture: Posture,
    host: bool,
) -> Result<Verdict> {
    let exp = Expectation::new(cmd, policy_name, posture);
    let start = Instant::now();
    let (ok, output) = if host {
        let mut c = std::process::Command::new("bash");
        c.args(["-c", &cmd.cmd]);
        crate::lab::run_limited(&mut c, Duration::from_secs(30))
    } else {
        tokio::task::block_in_place(|| lab.exec(&cmd.source, &cmd.cmd))?
    };
    let views = |lab: &Lab| -> Vec<AlertView> {
        lab.alerts_since(start)
            .iter()
            .map(AlertView::from)
            .filter(|a| {
                if host {
                    a.kind == "MatchedHostPolicy"
                } else {
                    a.kind == "MatchedPolicy" && a.pod == cmd.source
                }
            })
            .collect()
    };
    let done = Instant::now();
    if exp.wants_alert() {
        while exp.check_alerts(&views(lab)).is_err() && done.elapsed() < ALERT_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        tokio::time::sleep(SETTLE).await;
    }
    Ok(judge(&exp, ok, &output, &views(lab)))
}

/// Applies the scenario's policy, runs its commands, deletes the policy.
pub async fn run_scenario(
    lab: &Lab,
    suite: &str,
    s: &Scenario,
    posture: Posture,
    host: bool,
) -> Result<Vec<CmdReport>> {
    let mut statuses = Vec::new();
    for p in &s.policies {
        statuses.push(lab.send_policy(host, "ADDED", p).await?);
    }
    tokio::time::sleep(APPLY_SETTLE).await;
    let status = statuses
        .iter()
        .copied()
        .find(|s| *s != PolicyStatus::Applied && *s != PolicyStatus::Modified)
        .or(statuses.first().copied());
    let name = s
        .policies
        .first()
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let not_enforced = lab.not_enforced();
    let mut out = Vec::new();
    for cmd in &s.cmds {
        let exp = Expectation::new(cmd, &name, posture);
        let verdict =
            match unsupported_reason(&s.policies, status, exp.wants_alert(), &not_enforced) {
                Some(reason) => Verdict::Unsupported { reason },
                None => run_cmd(lab, cmd, &name, posture, host).await?,
            };
        out.push(CmdReport {
            suite: suite.to_string(),
            scenario: s.name.clone(),
            cmd: cmd.file.rsplit('/').next().unwrap_or_default().to_string(),
            source: cmd.source.clone(),
            command: cmd.cmd.clone(),
            posture,
            verdict,
        });
    }
    for p in &s.policies {
        let _ = lab.send_policy(host, "DELETED", p).await;
    }
    tokio::time::sleep(APPLY_SETTLE).await;
    Ok(out)
}
