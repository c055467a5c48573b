//! Boots a kernel and initramfs under `qemu-system-x86_64 -accel tcg` and collects the guest's
//! report from the serial console. The VM is killed when [`Vm`] drops, pass or fail.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::report::Report;

/// LSMs the guest boots with: Debian's order plus `bpf`, which BPF-LSM programs need.
pub const LSM_CMDLINE: &str = "lsm=lockdown,capability,landlock,yama,apparmor,bpf";

/// How to boot one VM. `qemu_args` and `monitor` let a profile add devices (USB controllers and
/// sticks) and hot-plug them later through the QEMU monitor.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Appended to the kernel command line (e.g. `vmtest.suite=lsm`).
    pub cmdline: String,
    pub memory_mib: u32,
    pub qemu_args: Vec<String>,
    /// A human-monitor socket path (`-monitor unix:...`), for `device_add` / `device_del`.
    pub monitor: Option<PathBuf>,
    /// The whole run, boot to poweroff.
    pub timeout: Duration,
}

impl VmConfig {
    pub fn new(kernel: &Path, initramfs: &Path) -> Self {
        Self {
            kernel: kernel.to_path_buf(),
            initramfs: initramfs.to_path_buf(),
            cmdline: String::new(),
            memory_mib: 1024,
            qemu_args: Vec::new(),
            monitor: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A running VM; killed on drop.
pub struct Vm {
    child: Child,
    lines: mpsc::Receiver<String>,
    deadline: Instant,
}

impl Vm {
    pub fn boot(cfg: &VmConfig) -> Result<Self> {
        let append = format!(
            "console=ttyS0 {LSM_CMDLINE} panic=-1 quiet loglevel=4 {}",
            cfg.cmdline
        );
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-display", "none", "-serial", "stdio"])
        .arg("-m")
        .arg(cfg.memory_mib.to_string())
        .arg("-kernel")
        .arg(&cfg.kernel)
        .arg("-initrd")
        .arg(&cfg.initramfs)
        .arg("-append")
        .arg(append);
        match &cfg.monitor {
            Some(sock) => cmd
                .arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", sock.display())),
            None => cmd.args(["-monitor", "none"]),
        };
        cmd.args(&cfg.qemu_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86; scripts/setup.sh installs it)")?;
        let stdout = child.stdout.take().context("qemu stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            deadline: Instant::now() + cfg.timeout,
        })
    }

    /// Reads the console until the guest reports its exit (or the VM ends, or the timeout).
    /// Every console line is echoed to stderr with `prefix`, so a failing test shows the boot.
    pub fn report(mut self, prefix: &str) -> Result<Report> {
        let mut report = Report::default();
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("[{prefix}] {line}");
                    report.push(&line);
                    if report.exit.is_some() {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "{prefix}: the VM did not finish in time; console so far:\n{}",
                        report.console()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // poweroff -f follows the exit line; wait briefly so the process is reaped.
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if self.child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(report)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
