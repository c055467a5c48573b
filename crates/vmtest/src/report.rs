//! The guest-to-host protocol over the serial console: one line per result,
//! `VMTEST: PASS <name>`, `VMTEST: FAIL <name>: <why>`, `VMTEST: METRIC <name> <value>`, and
//! `VMTEST: EXIT <code>` when the runner ends. Other lines are kernel or program output.

/// What the guest reported.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub passed: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub exit: Option<i32>,
}

pub const TAG: &str = "VMTEST: ";

impl Report {
    pub fn push(&mut self, line: &str) {
        self.lines.push(line.to_string());
        // The console may prefix kernel output on the same line; the tag can be anywhere.
        let Some(at) = line.find(TAG) else { return };
        let rest = &line[at + TAG.len()..];
        let (kind, body) = rest.split_once(' ').unwrap_or((rest, ""));
        match kind {
            "PASS" => self.passed.push(body.trim().to_string()),
            "FAIL" => {
                let (name, why) = body.split_once(": ").unwrap_or((body, ""));
                self.failed.push((name.trim().to_string(), why.to_string()));
            }
            "METRIC" => {
                if let Some((name, v)) = body.rsplit_once(' ') {
                    if let Ok(v) = v.trim().parse() {
                        self.metrics.push((name.to_string(), v));
                    }
                }
            }
            "EXIT" => self.exit = body.trim().parse().ok(),
            _ => {}
        }
    }

    pub fn console(&self) -> String {
        self.lines.join("\n")
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Panics (a failing test) unless the runner exited 0, nothing failed and each of
    /// `expected` passed.
    pub fn assert_passed(&self, vm: &str, expected: &[&str]) {
        assert!(
            self.failed.is_empty(),
            "{vm}: failed in the VM: {:#?}\nconsole:\n{}",
            self.failed,
            self.console()
        );
        for name in expected {
            assert!(
                self.passed.iter().any(|p| p == name),
                "{vm}: `{name}` did not report PASS (passed: {:?})\nconsole:\n{}",
                self.passed,
                self.console()
            );
        }
        assert_eq!(
            self.exit,
            Some(0),
            "{vm}: the guest runner did not exit 0\nconsole:\n{}",
            self.console()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tagged_lines_anywhere() {
        let mut r = Report::default();
        for l in [
            "[    1.0] random kernel line",
            "VMTEST: PASS lsm_active",
            "xxVMTEST: FAIL open_denied: errno 0, want EACCES (13)",
            "VMTEST: METRIC open_ns_ratio 1.25",
            "VMTEST: EXIT 1",
        ] {
            r.push(l);
        }
        assert_eq!(r.passed, ["lsm_active"]);
        assert_eq!(
            r.failed,
            [(
                "open_denied".to_string(),
                "errno 0, want EACCES (13)".to_string()
            )]
        );
        assert_eq!(r.metric("open_ns_ratio"), Some(1.25));
        assert_eq!(r.exit, Some(1));
    }
}
