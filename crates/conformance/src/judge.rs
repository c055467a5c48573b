//! How KubeArmor's own runner judges a command (`../shared/conformance/README.md`, "Scenario
//! format"): the exit status, then the alerts of that workload.

use serde::Serialize;

use crate::scenario::{Cmd, Expected};

/// The default posture a run uses for file, network and capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Posture {
    Block,
    Audit,
}

impl Posture {
    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Block => "block",
            Posture::Audit => "audit",
        }
    }
}

/// What the runner expects of one command under one posture (rule 1 of the README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Exit 0 (`true`) or not.
    pub passed: bool,
    pub policy: String,
    pub operation: String,
    pub condition: String,
    pub action: String,
}

impl Expectation {
    pub fn new(cmd: &Cmd, policy_name: &str, posture: Posture) -> Self {
        let (passed, policy, action) = match (cmd.result, cmd.action.as_str()) {
            (Expected::Default, "default") => match posture {
                Posture::Block => (false, "DefaultPosture", "Block"),
                Posture::Audit => (true, "DefaultPosture", "Audit"),
            },
            (Expected::Default, "Block") => (false, "DefaultPosture", "Block"),
            (Expected::Default, other) => (false, "DefaultPosture", other),
            (r, other) => (r == Expected::Passed, policy_name, other),
        };
        Expectation {
            passed,
            policy: policy.to_string(),
            operation: cmd.operation.clone(),
            condition: cmd.condition.clone(),
            action: action.to_string(),
        }
    }

    /// Whether `a` is one of the alerts this expectation is about.
    pub fn concerns(&self, a: &AlertView) -> bool {
        a.policy == self.policy
            && a.operation == self.operation
            && a.resource.contains(&self.condition)
            && a.action == self.action
    }

    /// The alert rule (rule 3): `Ok` or what is wrong.
    pub fn check_alerts(&self, alerts: &[AlertView]) -> Result<(), String> {
        let mut hits = alerts.iter().filter(|a| self.concerns(a));
        let not_passed = |a: &&AlertView| a.result != "Passed";
        match (self.passed, self.action.as_str()) {
            (true, "Allow" | "Block") => match hits.find(not_passed) {
                None => Ok(()),
                Some(a) => Err(format!("unexpected alert {}", a.describe())),
            },
            (true, _) => {
                if hits.any(|a| a.result == "Passed") {
                    Ok(())
                } else {
                    Err(self.missing("Result Passed"))
                }
            }
            (false, _) => {
                if hits.any(|a| not_passed(&a)) {
                    Ok(())
                } else {
                    Err(self.missing("Result other than Passed"))
                }
            }
        }
    }

    /// Whether the alert rule needs an alert to arrive (else it needs one not to).
    pub fn wants_alert(&self) -> bool {
        !(self.passed && matches!(self.action.as_str(), "Allow" | "Block"))
    }

    fn missing(&self, result: &str) -> String {
        format!(
            "no alert PolicyName={} Operation={} Resource~{:?} Action={} with {result}",
            self.policy, self.operation, self.condition, self.action
        )
    }

    pub fn describe(&self) -> String {
        format!(
            "{} (alert {} {} {:?} {})",
            if self.passed { "passed" } else { "failed" },
            self.policy,
            self.operation,
            self.condition,
            self.action
        )
    }
}

/// The fields of an alert the judgement reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub kind: String,
    pub pod: String,
    pub policy: String,
    pub operation: String,
    pub resource: String,
    pub action: String,
    pub result: String,
    pub enforcer: String,
}

impl AlertView {
    pub fn describe(&self) -> String {
        format!(
            "[{} {} {} {} {:?} {} {} by {}]",
            self.kind,
            self.pod,
            self.policy,
            self.operation,
            self.resource,
            self.action,
            self.result,
            self.enforcer
        )
    }
}

impl From<&kubearmor_proto::feeder::Alert> for AlertView {
    fn from(a: &kubearmor_proto::feeder::Alert) -> Self {
        AlertView {
            kind: a.r#type.clone(),
            pod: a.pod_name.clone(),
            policy: a.policy_name.clone(),
            operation: a.operation.clone(),
            resource: a.resource.clone(),
            action: a.action.clone(),
            result: a.result.clone(),
            enforcer: a.enforcer.clone(),
        }
    }
}

/// A command's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail { expected: String, actual: String },
    Unsupported { reason: String },
}

/// Judges a command that ran: exit status first (rule 2), then the alerts (rule 3).
pub fn judge(exp: &Expectation, exit_ok: bool, output: &str, alerts: &[AlertView]) -> Verdict {
    let actual_exit = if exit_ok { "passed" } else { "failed" };
    let mut problems = Vec::new();
    if exit_ok != exp.passed {
        problems.push(format!("command {actual_exit}: {}", output.trim()));
    }
    if let Err(e) = exp.check_alerts(alerts) {
        problems.push(e);
    }
    if problems.is_empty() {
        return Verdict::Pass;
    }
    let seen: Vec<String> = alerts.iter().map(AlertView::describe).collect();
    Verdict::Fail {
        expected: exp.describe(),
        actual: format!("{}; alerts seen: {}", problems.join("; "), seen.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_cmd;

    fn cmd(result: &str, action: &str) -> Cmd {
        parse_cmd(
            "t/cmd1",
            &format!("source: ubuntu-1-deployment\ncmd: cat /etc/hostname\nresult: {result}\n---\noperation: File\ncondition: /etc/hostname\naction: {action}\n"),
        )
        .unwrap()
    }

    fn alert(policy: &str, action: &str, result: &str) -> AlertView {
        AlertView {
            kind: "MatchedPolicy".into(),
            pod: "ubuntu-1-deployment".into(),
            policy: policy.into(),
            operation: "File".into(),
            resource: "/etc/hostname".into(),
            action: action.into(),
            result: result.into(),
            enforcer: "fanotify".into(),
        }
    }

    #[test]
    fn default_follows_the_posture() {
        let b = Expectation::new(&cmd("default", "default"), "p", Posture::Block);
        assert_eq!(
            (b.passed, b.policy.as_str(), b.action.as_str()),
            (false, "DefaultPosture", "Block")
        );
        let a = Expectation::new(&cmd("default", "default"), "p", Posture::Audit);
        assert_eq!(
            (a.passed, a.policy.as_str(), a.action.as_str()),
            (true, "DefaultPosture", "Audit")
        );
        let x = Expectation::new(&cmd("default", "Block"), "p", Posture::Audit);
        assert_eq!(
            (x.passed, x.policy.as_str(), x.action.as_str()),
            (false, "DefaultPosture", "Block")
        );
        let p = Expectation::new(&cmd("passed", "Block"), "p", Posture::Audit);
        assert_eq!(
            (p.passed, p.policy.as_str(), p.action.as_str()),
            (true, "p", "Block")
        );
    }

    #[test]
    fn block_passed_forbids_a_denial_alert_only() {
        let e = Expectation::new(&cmd("passed", "Block"), "p", Posture::Block);
        assert_eq!(judge(&e, true, "", &[]), Verdict::Pass);
        assert_eq!(
            judge(&e, true, "", &[alert("p", "Block", "Passed")]),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&e, true, "", &[alert("p", "Block", "Permission denied")]),
            Verdict::Fail { .. }
        ));
        // Another policy's denial is not this command's concern.
        assert_eq!(
            judge(&e, true, "", &[alert("q", "Block", "Permission denied")]),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&e, false, "denied", &[]),
            Verdict::Fail { .. }
        ));
    }

    #[test]
    fn audit_passed_needs_a_passed_alert() {
        let e = Expectation::new(&cmd("passed", "Audit"), "p", Posture::Block);
        assert!(matches!(judge(&e, true, "", &[]), Verdict::Fail { .. }));
        assert_eq!(
            judge(&e, true, "", &[alert("p", "Audit", "Passed")]),
            Verdict::Pass
        );
        assert!(e.wants_alert());
    }

    #[test]
    fn failed_needs_exit_and_a_denial_alert() {
        let e = Expectation::new(&cmd("failed", "Block"), "p", Posture::Block);
        assert!(matches!(judge(&e, false, "", &[]), Verdict::Fail { .. }));
        assert!(matches!(
            judge(&e, true, "", &[alert("p", "Block", "Permission denied")]),
            Verdict::Fail { .. }
        ));
        assert_eq!(
            judge(&e, false, "", &[alert("p", "Block", "Permission denied")]),
            Verdict::Pass
        );
        // The resource is matched as a substring.
        let mut a = alert("p", "Block", "Permission denied");
        a.resource = "/etc/hostname extra".into();
        assert_eq!(judge(&e, false, "", &[a]), Verdict::Pass);
    }
}
