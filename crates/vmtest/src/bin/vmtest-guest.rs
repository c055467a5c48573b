//! The guest side of the VM tier: run as the initramfs's last step, it runs the suite named by
//! `vmtest.suite=` on the kernel command line and prints each result on the console in the
//! protocol of `kubearmor_vmtest::report`. Exits 0 when every scenario passed.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let suite = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vmtest.suite="))
        .unwrap_or("smoke")
        .to_string();
    let mut t = Tally::default();
    match suite.as_str() {
        "smoke" => smoke(&mut t),
        other => t.fail("suite", &format!("unknown suite {other}")),
    }
    if t.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Default)]
struct Tally {
    failed: u32,
}

impl Tally {
    fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => println!("VMTEST: PASS {name}"),
            Err(why) => self.fail(name, &why),
        }
    }

    fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("VMTEST: FAIL {name}: {why}");
    }
}

/// The harness itself: the kernel booted with BPF-LSM active and the initramfs carries working
/// binaries.
fn smoke(t: &mut Tally) {
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
