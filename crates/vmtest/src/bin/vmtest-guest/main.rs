//! The guest side of the VM tier: run as the initramfs's last step, it runs the suite named by
//! `vmtest.suite=` on the kernel command line and prints each result on the console in the
//! protocol of `kubearmor_vmtest::report`. Exits 0 when every scenario passed.
//! `vmtest-guest --noop` exits 0 at once (a dynamically linked program for exec tests).

mod daemon;
mod lsm;
mod smoke;
mod sys;

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--noop") {
        return ExitCode::SUCCESS;
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let suite = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("vmtest.suite="))
        .unwrap_or("smoke")
        .to_string();
    let mut t = Tally::default();
    match suite.as_str() {
        "smoke" => smoke::run(&mut t),
        "lsm" => lsm::run(&mut t),
        "daemon" => daemon::run(&mut t),
        other => t.fail("suite", &format!("unknown suite {other}")),
    }
    if t.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Results, printed as they come.
#[derive(Default)]
pub struct Tally {
    failed: u32,
}

impl Tally {
    pub fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => println!("VMTEST: PASS {name}"),
            Err(why) => self.fail(name, &why),
        }
    }

    pub fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("VMTEST: FAIL {name}: {}", why.replace('\n', " | "));
    }

    pub fn metric(&mut self, name: &str, value: f64) {
        println!("VMTEST: METRIC {name} {value}");
    }

    pub fn log(&mut self, text: &str) {
        println!("VMTEST: LOG {text}");
    }
}
