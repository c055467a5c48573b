//! The BPF-LSM plane on Debian's 6.1 and 6.12 kernels (QEMU TCG): every scenario of the guest's
//! `lsm` suite must pass on both (see src/bin/vmtest-guest/lsm.rs), and the hook costs are
//! printed side by side.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failing test

use std::path::Path;
use std::time::Duration;

use kubearmor_vmtest::{kernels, run_suite, Suite};

const EXPECTED: &[&str] = &[
    "fixtures",
    "load",
    "sync",
    "exec_blocked_eacces",
    "exec_other_allowed",
    "exec_blocked_via_symlink",
    "exec_blocked_relative",
    "open_blocked_eacces",
    "open_other_allowed",
    "open_blocked_via_dotdot",
    "open_blocked_via_proc_root",
    "readonly_read_allowed",
    "readonly_rdwr_open_allowed_write_denied",
    "readonly_unlink_denied",
    "readonly_rename_denied",
    "readonly_rename_into_denied",
    "readonly_link_denied",
    "readonly_chmod_denied",
    "readonly_truncate_denied",
    "readonly_mkdir_denied",
    "readonly_create_denied",
    "readonly_rmdir_denied",
    "readonly_content_intact",
    "owner_only_root_denied",
    "owner_only_owner_allowed",
    "from_source_denied",
    "from_source_other_allowed",
    "net_raw_socket_denied",
    "net_udp_allowed",
    "net_raw_outside_allowed",
    "cap_net_raw_denied",
    "cap_other_allowed",
    "allow_list_allowed_path",
    "allow_list_system_library_read",
    "allow_list_default_posture_block",
    "bypass_bind_mount_closed",
    "bypass_mount_namespace_closed",
    "bypass_hard_link_closed",
    "bypass_ld_so_closed",
    "alert_open_denied",
    "alert_exec_denied",
    "alert_from_source_names_source",
    "alert_capability",
    "self_protection_kill_denied",
    "self_protection_target_alive",
    "self_protection_write_denied",
    "self_protection_unlink_denied",
    "self_protection_alert",
    "self_protection_off_kill_works",
    "persist_after_loader_gone",
    "persist_adopt_keeps_rules",
    "persist_enforced_after_adopt",
    "persist_update_applies",
];

#[test]
fn bpf_lsm_plane_enforces_on_debian_kernels() {
    let kernels = kernels().expect("fetching the VM tier's kernels");
    let suite = Suite {
        guest: Path::new(env!("CARGO_BIN_EXE_vmtest-guest")),
        name: "lsm",
        timeout: Duration::from_secs(400),
        modules: &[],
        binaries: &[],
    };
    for (k, report) in run_suite(&kernels, &suite).unwrap() {
        for op in ["open", "exec", "socket"] {
            eprintln!(
                "{} {op}: {:.0} ns without, {:.0} ns with the programs (ratio {:.2})",
                k.release,
                report
                    .metric(&format!("{op}_ns_without"))
                    .unwrap_or(f64::NAN),
                report.metric(&format!("{op}_ns_with")).unwrap_or(f64::NAN),
                report.metric(&format!("{op}_ratio")).unwrap_or(f64::NAN),
            );
        }
        report.assert_passed(&k.release, EXPECTED);
    }
}
