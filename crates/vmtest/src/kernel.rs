//! The Debian kernels the VM tier boots, fetched and unpacked by `scripts/vm/fetch-kernels.sh`
//! into the cache outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One unpacked `linux-image-*` package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// "6.1" or "6.12".
    pub series: String,
    /// The kernel release (`uname -r` in the guest), e.g. `6.1.0-57-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
}

/// Fetches (first run) or finds (cached) every kernel the tier boots. For a quicker run while
/// developing, `KUBEARMOR_VMTEST_SERIES=6.1` keeps only that series (CI runs all).
pub fn kernels() -> Result<Vec<Kernel>> {
    let only = std::env::var("KUBEARMOR_VMTEST_SERIES").ok();
    let script = repo_root().join("scripts/vm/fetch-kernels.sh");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(series, _)| only.as_deref().is_none_or(|o| o == *series))
        .map(|(series, dir)| Kernel::unpacked(series, Path::new(dir)))
        .collect()
}

/// The repository root (this crate lives in crates/vmtest).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Kernel {
    fn unpacked(series: &str, dir: &Path) -> Result<Self> {
        let moddir = dir.join("lib/modules");
        let release = fs::read_dir(&moddir)
            .with_context(|| format!("reading {}", moddir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .with_context(|| format!("no kernel release in {}", moddir.display()))?;
        let vmlinuz = dir.join(format!("boot/vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            bail!("{} is missing", vmlinuz.display());
        }
        Ok(Self {
            series: series.to_string(),
            modules: moddir.join(&release),
            release,
            vmlinuz,
        })
    }

    /// Module files for `names` (e.g. "veth"), dependencies before the modules that need them.
    pub fn modules_with_deps(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let dep_file = self.modules.join("modules.dep");
        let text = fs::read_to_string(&dep_file)
            .with_context(|| format!("reading {}", dep_file.display()))?;
        let deps = parse_modules_dep(&text);
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let rel = deps
                .keys()
                .find(|k| module_name(k) == *name)
                .with_context(|| format!("module {name} is not in {}", dep_file.display()))?
                .clone();
            visit(&rel, &deps, &mut seen, &mut order);
        }
        Ok(order.into_iter().map(|r| self.modules.join(r)).collect())
    }
}

fn visit(
    m: &str,
    deps: &BTreeMap<String, Vec<String>>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(m.to_string()) {
        return;
    }
    for d in deps.get(m).into_iter().flatten() {
        visit(d, deps, seen, order);
    }
    order.push(m.to_string());
}

/// `kernel/net/foo.ko.xz: kernel/a.ko.xz kernel/b.ko.xz` lines.
fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| {
            (
                m.trim().to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// `kernel/drivers/net/veth.ko.xz` -> `veth` (modprobe treats `-` and `_` alike).
fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first() {
        let deps = parse_modules_dep(
            "kernel/a/usb-storage.ko.xz: kernel/a/scsi_mod.ko.xz kernel/a/usbcore.ko.xz\n\
             kernel/a/usbcore.ko.xz: kernel/a/usb-common.ko.xz\n\
             kernel/a/usb-common.ko.xz:\n\
             kernel/a/scsi_mod.ko.xz: kernel/a/scsi_common.ko.xz\n\
             kernel/a/scsi_common.ko.xz:\n",
        );
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        visit("kernel/a/usb-storage.ko.xz", &deps, &mut seen, &mut order);
        let names: Vec<String> = order.iter().map(|r| module_name(r)).collect();
        assert_eq!(
            names,
            [
                "scsi_common",
                "scsi_mod",
                "usb_common",
                "usbcore",
                "usb_storage"
            ]
        );
    }
}
