//! Builds the guest's initramfs: busybox, our binaries with the shared libraries they load,
//! kernel modules with their dependencies, and an `/init` that mounts the kernel filesystems,
//! loads the modules and runs the guest test runner.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cpio::{Entry, Writer};
use crate::kernel::Kernel;

/// Busybox applets linked in /bin (the guest's shell tools).
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "mkdir", "cat", "echo", "ls", "sleep", "insmod", "poweroff", "ln",
    "cp", "rm", "mv", "touch", "chmod", "id", "kill", "ps", "grep", "true", "false", "test",
    "mknod", "ip", "env", "head", "dd", "hostname", "sync", "uname", "stat", "wc", "tr", "sed",
];

/// The files of one initramfs, collected before they are written (later entries replace earlier
/// ones at the same path).
#[derive(Default)]
pub struct Initramfs {
    dirs: BTreeSet<String>,
    files: BTreeMap<String, (u32, Source)>,
    links: BTreeMap<String, String>,
    modules: Vec<String>,
}

enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
    /// A module that may be xz-compressed on the host (6.12); stored decompressed because busybox
    /// insmod passes the bytes to init_module as they are.
    Module(PathBuf),
}

impl Initramfs {
    /// A base with busybox (static) and the standard directories.
    pub fn new() -> Result<Self> {
        let mut fs = Self::default();
        for d in [
            "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "var", "root", "lib",
            "lib64", "usr",
        ] {
            fs.dir(d);
        }
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            bail!("/bin/busybox is missing: apt-get install busybox-static (scripts/setup.sh installs it)");
        }
        fs.file_from_host("bin/busybox", 0o755, busybox);
        for a in APPLETS {
            fs.symlink(&format!("bin/{a}"), "busybox");
        }
        fs.symlink("usr/bin", "../bin");
        fs.symlink("usr/sbin", "../sbin");
        Ok(fs)
    }

    pub fn dir(&mut self, path: &str) {
        let mut acc = String::new();
        for part in path.trim_matches('/').split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.dirs.insert(acc.clone());
        }
    }

    fn parent(&mut self, path: &str) {
        if let Some((p, _)) = path.rsplit_once('/') {
            self.dir(p);
        }
    }

    pub fn file_from_host(&mut self, guest: &str, mode: u32, host: &Path) {
        let guest = guest.trim_start_matches('/').to_string();
        self.parent(&guest);
        self.files
            .insert(guest, (mode, Source::Host(host.to_path_buf())));
    }

    pub fn file_bytes(&mut self, guest: &str, mode: u32, data: impl Into<Vec<u8>>) {
        let guest = guest.trim_start_matches('/').to_string();
        self.parent(&guest);
        self.files.insert(guest, (mode, Source::Bytes(data.into())));
    }

    pub fn symlink(&mut self, guest: &str, target: &str) {
        let guest = guest.trim_start_matches('/').to_string();
        self.parent(&guest);
        self.links.insert(guest, target.to_string());
    }

    /// A dynamically linked host executable, placed at `guest`, with every library `ldd` lists
    /// at the same path as on the host.
    pub fn binary(&mut self, guest: &str, host: &Path) -> Result<()> {
        self.file_from_host(guest, 0o755, host);
        for lib in shared_libraries(host)? {
            let g = lib.to_string_lossy().into_owned();
            self.file_from_host(&g, 0o755, &lib);
        }
        Ok(())
    }

    /// Kernel modules by name (e.g. `veth`), with their dependencies first, loaded by `/init` in
    /// that order.
    pub fn modules(&mut self, kernel: &Kernel, names: &[&str]) -> Result<()> {
        for path in kernel.modules_with_deps(names)? {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file = file.trim_end_matches(".xz").to_string();
            let guest = format!("lib/modules/{file}");
            if !self.modules.contains(&guest) {
                self.modules.push(guest.clone());
                self.parent(&guest);
                self.files.insert(guest, (0o644, Source::Module(path)));
            }
        }
        Ok(())
    }

    /// `/init`: mounts, module loads, then `command` (its exit ends the VM).
    pub fn init(&mut self, command: &str) {
        let mut s = String::from(
            "#!/bin/sh\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t devtmpfs dev /dev\n\
             mount -t tmpfs tmp /tmp\n\
             mount -t tmpfs run /run\n\
             mount -t securityfs securityfs /sys/kernel/security\n\
             mount -t bpf bpf /sys/fs/bpf\n\
             mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
             mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null\n\
             ip link set lo up\n",
        );
        for m in &self.modules {
            s.push_str(&format!(
                "insmod /{m} || echo \"VMTEST: LOG insmod {m} failed\"\n"
            ));
        }
        s.push_str(command);
        s.push_str("\necho \"VMTEST: EXIT $?\"\nsync\npoweroff -f\n");
        self.file_bytes("init", 0o755, s);
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = Writer::new(BufWriter::new(f));
        for d in &self.dirs {
            w.add(d, 0o755, Entry::Dir)?;
        }
        for (guest, target) in &self.links {
            w.add(guest, 0o777, Entry::Symlink(target))?;
        }
        for (guest, (mode, src)) in &self.files {
            let data = match src {
                Source::Bytes(b) => b.clone(),
                Source::Host(p) => {
                    fs::read(p).with_context(|| format!("reading {}", p.display()))?
                }
                Source::Module(p) => read_module(p)?,
            };
            w.add(guest, *mode, Entry::File(&data))?;
        }
        w.finish()?;
        Ok(())
    }
}

fn read_module(p: &Path) -> Result<Vec<u8>> {
    if p.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .args(["-dc"])
            .arg(p)
            .output()
            .context("running xz (apt-get install xz-utils)")?;
        if !out.status.success() {
            bail!("xz -d {} failed", p.display());
        }
        Ok(out.stdout)
    } else {
        fs::read(p).with_context(|| format!("reading {}", p.display()))
    }
}

/// Libraries `ldd` resolves for `bin` (absolute paths), including the dynamic loader.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let t = "\tlinux-vdso.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n";
        assert_eq!(
            parse_ldd(t),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
