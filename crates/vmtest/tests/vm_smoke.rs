//! Boots each Debian kernel (6.1, 6.12) under QEMU TCG with `lsm=...,bpf` and checks, from
//! inside, that BPF-LSM is active, BTF is present and the initramfs's runc runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failing test

use std::path::Path;
use std::time::Duration;

use kubearmor_vmtest::{kernels, run_suite, Suite};

#[test]
fn debian_kernels_boot_with_bpf_lsm() {
    let kernels = kernels().expect("fetching the VM tier's kernels");
    assert!(
        kernels.len() >= 2,
        "expected the 6.1 and 6.12 kernels, got {kernels:?}"
    );
    let suite = Suite {
        guest: Path::new(env!("CARGO_BIN_EXE_vmtest-guest")),
        name: "smoke",
        timeout: Duration::from_secs(240),
        modules: &[],
        binaries: &[],
    };
    for (k, report) in run_suite(&kernels, &suite).unwrap() {
        report.assert_passed(&k.release, &["bpf_lsm_active", "btf_present", "runc_runs"]);
    }
}
