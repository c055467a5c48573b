//! The real daemon inside the pod VM: it probes the kernel, picks the BPF-LSM plane, enforces
//! a baked-in host policy with alerts naming policy and Enforcer BPFLSM, keeps enforcing after
//! `kill -9` and adopts the pinned plane when it starts again.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{errno, EACCES};
use crate::Tally;

const POLICY: &str = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: vm-block-secret
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: \"*\"
  action: Block
  file:
    matchPaths:
    - path: /data/secret
  process:
    matchPaths:
    - path: /opt/blocked
";

fn start_daemon(log: &str, self_protection: bool) -> std::io::Result<Child> {
    let out = fs::File::create(log)?;
    Command::new("/bin/kubearmor")
        .env("SELFPROTECTION", self_protection.to_string())
        .env("POLICYDIR", "/opt/kubearmor/policies")
        .env("LOGPATH", "/tmp/events.jsonl")
        .env("ENABLEKUBEARMORHOSTPOLICY", "true")
        // No USB controller in this profile (issue 18 adds one).
        .env("PLANES", "bpf-lsm,cgroup-bpf,fanotify")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
}

/// Polls `f` until it holds or `secs` pass.
fn until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn denied() -> bool {
    fs::read("/data/secret")
        .err()
        .and_then(|e| e.raw_os_error())
        == Some(EACCES)
}

pub fn run(t: &mut Tally) {
    let setup = (|| -> std::io::Result<()> {
        fs::create_dir_all("/data")?;
        fs::create_dir_all("/opt/kubearmor/policies")?;
        fs::write("/data/secret", "secret\n")?;
        fs::write("/opt/kubearmor/policies/host.yaml", POLICY)?;
        fs::copy("/bin/busybox", "/opt/blocked")?;
        Ok(())
    })();
    t.check("fixtures", setup.map_err(|e| e.to_string()));
    let mut daemon = match start_daemon("/tmp/daemon.log", false) {
        Ok(c) => c,
        Err(e) => return t.fail("daemon_starts", &e.to_string()),
    };
    let up = until(60, denied);
    let read_log = || fs::read_to_string("/tmp/daemon.log").unwrap_or_default();
    // The enforcement summary follows the planes' start (slow: debug build under TCG).
    until(120, || read_log().contains("enforcement:"));
    let log = read_log();
    t.check(
        "daemon_enforces_file_rule",
        if up {
            Ok(())
        } else {
            Err(format!("/data/secret still readable; daemon log: {log}"))
        },
    );
    t.check(
        "daemon_chose_bpf_lsm",
        match log.lines().find(|l| l.contains("enforcement:")) {
            Some(l)
                if l.contains("bpf-lsm (BPFLSM) enforces Process, File, Network, Capabilities") =>
            {
                Ok(())
            }
            Some(l) => Err(format!("enforcement line: {l}")),
            None => Err(format!(
                "no enforcement line in the startup log: ...{}",
                &log[log.len().saturating_sub(1500)..]
            )),
        },
    );
    t.check(
        "daemon_exec_rule_eacces",
        errno(
            "exec /opt/blocked",
            Command::new("/opt/blocked").arg("true").status(),
            EACCES,
        ),
    );
    // The alert names the policy, the Enforcer and the errno text.
    let alert = until(10, || {
        let ev = fs::read_to_string("/tmp/events.jsonl").unwrap_or_default();
        ev.lines().any(|l| {
            l.contains("\"policyName\":\"vm-block-secret\"")
                && l.contains("\"enforcer\":\"BPFLSM\"")
                && l.contains("/data/secret")
                && l.contains("Permission denied")
        })
    });
    t.check(
        "daemon_alert_names_policy_and_enforcer",
        if alert {
            Ok(())
        } else {
            Err(format!(
                "no matching alert in /tmp/events.jsonl: {}",
                fs::read_to_string("/tmp/events.jsonl")
                    .unwrap_or_default()
                    .chars()
                    .take(1500)
                    .collect::<String>()
            ))
        },
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    t.check(
        "daemon_killed_enforcement_continues",
        errno(
            "open /data/secret with the daemon dead",
            fs::read("/data/secret"),
            EACCES,
        ),
    );
    match start_daemon("/tmp/daemon2.log", true) {
        Ok(mut d) => {
            std::thread::sleep(Duration::from_secs(3));
            let still = until(30, || {
                fs::read_to_string("/tmp/daemon2.log")
                    .unwrap_or_default()
                    .contains("bpf-lsm (BPFLSM) enforces")
            });
            t.check(
                "daemon_restart_adopts",
                if still && denied() {
                    Ok(())
                } else {
                    Err(format!(
                        "after restart: denied={} log: {}",
                        denied(),
                        fs::read_to_string("/tmp/daemon2.log").unwrap_or_default()
                    ))
                },
            );
            // selfProtection is on in this second daemon: root cannot kill it or write its
            // policy directory, and the refusal is reported.
            t.check(
                "self_protection_root_kill_refused",
                errno(
                    "kill -9 of the daemon",
                    crate::sys::check(unsafe { libc::kill(d.id() as i32, libc::SIGKILL) }),
                    EACCES,
                ),
            );
            std::thread::sleep(Duration::from_millis(500));
            t.check(
                "self_protection_daemon_alive",
                match d.try_wait() {
                    Ok(None) => Ok(()),
                    other => Err(format!("the daemon ended: {other:?}")),
                },
            );
            t.check(
                "self_protection_policy_dir_write_refused",
                errno(
                    "write into the policy directory",
                    fs::write("/opt/kubearmor/policies/evil.yaml", "x"),
                    EACCES,
                ),
            );
            let alerted = until(20, || {
                fs::read_to_string("/tmp/events.jsonl")
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.contains("KubeArmorSelfProtection")
                            && l.contains("task_kill")
                            && l.contains("\"enforcer\":\"BPFLSM\"")
                    })
            });
            t.check(
                "self_protection_kill_alerted",
                if alerted {
                    Ok(())
                } else {
                    Err("no self-protection alert for task_kill".into())
                },
            );
        }
        Err(e) => t.fail("daemon_restart_adopts", &e.to_string()),
    }
}
