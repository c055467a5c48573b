//! The real daemon in the pod VM on Debian's 6.1 and 6.12 kernels: it chooses the BPF-LSM
//! plane, enforces a host policy with alerts naming the policy and Enforcer BPFLSM, survives
//! `kill -9` and adopts the pinned plane on restart (src/bin/vmtest-guest/daemon.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failing test

use std::path::Path;
use std::time::Duration;

use kubearmor_vmtest::{kernels, run_suite, Suite};

#[test]
fn daemon_uses_bpf_lsm_in_the_pod_vm() {
    let guest = Path::new(env!("CARGO_BIN_EXE_vmtest-guest"));
    let daemon = guest.with_file_name("kubearmor");
    assert!(
        daemon.is_file(),
        "{} is missing: build the daemon first (`cargo build -p kubearmor-daemon`; \
         `cargo test --workspace` builds it)",
        daemon.display()
    );
    let kernels = kernels().expect("fetching the VM tier's kernels");
    let suite = Suite {
        guest,
        name: "daemon",
        timeout: Duration::from_secs(400),
        modules: &[],
        binaries: &[("bin/kubearmor", &daemon)],
    };
    for (k, report) in run_suite(&kernels, &suite).unwrap() {
        report.assert_passed(
            &k.release,
            &[
                "fixtures",
                "daemon_enforces_file_rule",
                "daemon_chose_bpf_lsm",
                "daemon_exec_rule_eacces",
                "daemon_alert_names_policy_and_enforcer",
                "daemon_killed_enforcement_continues",
                "daemon_restart_adopts",
                "self_protection_root_kill_refused",
                "self_protection_daemon_alive",
                "self_protection_policy_dir_write_refused",
                "self_protection_kill_alerted",
            ],
        );
    }
}
