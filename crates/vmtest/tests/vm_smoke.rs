//! Boots each Debian kernel (6.1, 6.12) under QEMU TCG with `lsm=...,bpf` and checks, from
//! inside, that BPF-LSM is active, BTF is present and the initramfs's runc runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failing test

use std::path::Path;

use kubearmor_vmtest::{kernels, Initramfs, Kernel, Vm, VmConfig};

fn run(kernel: &Kernel, dir: &Path) -> kubearmor_vmtest::Report {
    let mut fs = Initramfs::new().unwrap();
    fs.binary(
        "bin/vmtest-guest",
        Path::new(env!("CARGO_BIN_EXE_vmtest-guest")),
    )
    .unwrap();
    fs.binary("usr/sbin/runc", Path::new("/usr/sbin/runc"))
        .unwrap();
    fs.init("PATH=/bin:/sbin:/usr/sbin /bin/vmtest-guest");
    let img = dir.join(format!("initramfs-{}.cpio", kernel.series));
    fs.write(&img).unwrap();
    let mut cfg = VmConfig::new(&kernel.vmlinuz, &img);
    cfg.cmdline = "vmtest.suite=smoke".into();
    Vm::boot(&cfg)
        .unwrap()
        .report(&format!("vm {}", kernel.release))
        .unwrap()
}

#[test]
fn debian_kernels_boot_with_bpf_lsm() {
    let kernels = kernels().expect("fetching the VM tier's kernels");
    assert!(
        kernels.len() >= 2,
        "expected the 6.1 and 6.12 kernels, got {kernels:?}"
    );
    let dir = tempfile_dir();
    std::thread::scope(|s| {
        let handles: Vec<_> = kernels
            .iter()
            .map(|k| {
                let dir = dir.clone();
                s.spawn(move || (k.release.clone(), run(k, &dir)))
            })
            .collect();
        for h in handles {
            let (release, report) = h.join().expect("VM thread");
            report.assert_passed(&release, &["bpf_lsm_active", "btf_present", "runc_runs"]);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kubearmor-vmtest-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
