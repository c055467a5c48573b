//! Runs one guest suite on every kernel, VMs in parallel (one vCPU each).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{Initramfs, Kernel, Report, Vm, VmConfig};

/// A suite run: the guest runner binary, the suite name, extra files.
pub struct Suite<'a> {
    pub guest: &'a Path,
    pub name: &'a str,
    pub timeout: Duration,
    /// Kernel modules the suite needs (with their dependencies).
    pub modules: &'a [&'a str],
    /// More host executables, by guest path (e.g. the daemon at `bin/kubearmor`).
    pub binaries: &'a [(&'a str, &'a Path)],
}

/// Boots `suite` on each kernel and returns each kernel's report.
pub fn run_suite(kernels: &[Kernel], suite: &Suite<'_>) -> Result<Vec<(Kernel, Report)>> {
    let dir = scratch_dir()?;
    let result = std::thread::scope(|s| {
        let handles: Vec<_> = kernels
            .iter()
            .map(|k| {
                let dir = &dir;
                s.spawn(move || -> Result<(Kernel, Report)> {
                    let mut fs = Initramfs::new()?;
                    fs.binary("bin/vmtest-guest", suite.guest)?;
                    fs.binary("usr/sbin/runc", Path::new("/usr/sbin/runc"))?;
                    fs.modules(k, suite.modules)?;
                    for (guest, host) in suite.binaries {
                        fs.binary(guest, host)?;
                    }
                    fs.init("PATH=/bin:/sbin:/usr/sbin /bin/vmtest-guest");
                    let img = dir.join(format!("initramfs-{}-{}.cpio", suite.name, k.series));
                    fs.write(&img)?;
                    let mut cfg = VmConfig::new(&k.vmlinuz, &img);
                    cfg.cmdline = format!("vmtest.suite={}", suite.name);
                    cfg.timeout = suite.timeout;
                    let report =
                        Vm::boot(&cfg)?.report(&format!("{} {}", suite.name, k.release))?;
                    Ok((k.clone(), report))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("VM thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn scratch_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "kubearmor-vmtest-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}
