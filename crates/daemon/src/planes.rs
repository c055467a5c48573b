//! What the daemon enforces, and says it enforces.
//!
//! The kernel planes (BPF-LSM, fanotify, cgroup-BPF, USB) are not part of the daemon yet. Until
//! they are, nothing is enforced and nothing is audited from the kernel: policies are loaded,
//! validated and compiled, and the startup log, `karmor probe` (probe file and
//! `getProbeData`) say exactly that. A plane registers here when it starts.

/// One running enforcement plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneStatus {
    /// Short name, e.g. `fanotify`.
    pub name: &'static str,
    /// The `Enforcer` value its events carry, e.g. `BPFLSM`.
    pub enforcer: &'static str,
    /// Operation families it enforces (`Process`, `File`, ...).
    pub families: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub planes: Vec<PlaneStatus>,
}

impl Enforcement {
    /// No plane: the state of this version.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_enforcing(&self) -> bool {
        !self.planes.is_empty()
    }

    /// `ActiveLSM` of the probe file: the enforcer of the first plane, or empty.
    pub fn active_lsm(&self) -> &str {
        self.planes.first().map(|p| p.enforcer).unwrap_or("")
    }

    /// One line for the startup log.
    pub fn summary(&self) -> String {
        if self.planes.is_empty() {
            return "no enforcement plane is active: policies are loaded, validated and compiled, \
                    but nothing is blocked or audited in the kernel yet; events come only from \
                    the test event source, if enabled"
                .to_string();
        }
        self.planes
            .iter()
            .map(|p| format!("{} ({}): {}", p.name, p.enforcer, p.families.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_says_so() {
        let e = Enforcement::none();
        assert!(!e.is_enforcing());
        assert_eq!(e.active_lsm(), "");
        assert!(e.summary().contains("no enforcement plane is active"));
    }
}
