//! The harness itself: the kernel booted with BPF-LSM active and the initramfs carries working
//! binaries.

use std::process::Command;

use crate::Tally;

pub fn run(t: &mut Tally) {
    t.check("bpf_lsm_active", {
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        if lsm.split(',').any(|l| l.trim() == "bpf") {
            Ok(())
        } else {
            Err(format!("active LSMs are {lsm:?}, without bpf"))
        }
    });
    t.check("btf_present", {
        if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            Ok(())
        } else {
            Err("/sys/kernel/btf/vmlinux is missing".into())
        }
    });
    t.check(
        "runc_runs",
        match Command::new("runc").arg("--version").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "runc --version: {} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!("runc: {e}")),
        },
    );
}
