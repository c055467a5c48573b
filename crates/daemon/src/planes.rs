//! What the daemon enforces, and says it enforces.
//!
//! Each running plane reports the families it enforces; families no plane covers on this
//! kernel are listed with the reason. The startup log, `karmor probe` (probe file and
//! `getProbeData`) and alerts' `Enforcer` field all say the same thing: nothing is claimed that
//! is not enforced.

/// One running enforcement plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneStatus {
    /// Short name, e.g. `fanotify`.
    pub name: &'static str,
    /// The `Enforcer` value its events carry, e.g. `BPFLSM`.
    pub enforcer: &'static str,
    /// Operation families it enforces (`Process`, `File`, ...).
    pub families: Vec<&'static str>,
    /// What stays open on this plane within those families (routes it does not see or cannot
    /// refuse), one line each; docs/ lists the same.
    pub open: Vec<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub planes: Vec<PlaneStatus>,
    /// Families no running plane enforces, with the reason.
    pub unenforced: Vec<(&'static str, String)>,
}

/// Every family a policy can name.
/// `DNS` stands for `network.matchDNSQueries`, which the network plane's socket hooks do not
/// cover.
pub const FAMILIES: &[&str] = &[
    "Process",
    "File",
    "Network",
    "DNS",
    "Capabilities",
    "Syscall",
    "Device",
];

impl Enforcement {
    /// No plane at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// The planes that started, and for every family none of them covers, why (`reasons`
    /// gives a family's specific reason; the default says no plane is running for it).
    pub fn from_planes(planes: Vec<PlaneStatus>, reasons: &[(&'static str, String)]) -> Self {
        let unenforced = FAMILIES
            .iter()
            .filter(|f| !planes.iter().any(|p| p.families.contains(f)))
            .map(|f| {
                let why = reasons
                    .iter()
                    .find(|(family, _)| family == f)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| "no plane for it is running".to_string());
                (*f, why)
            })
            .collect();
        Self { planes, unenforced }
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
        let mut parts: Vec<String> = self
            .planes
            .iter()
            .map(|p| {
                format!(
                    "{} ({}) enforces {}",
                    p.name,
                    p.enforcer,
                    p.families.join(", ")
                )
            })
            .collect();
        if parts.is_empty() {
            parts.push("no enforcement plane is active".to_string());
        }
        for p in &self.planes {
            for gap in &p.open {
                parts.push(format!("{} does NOT cover: {gap}", p.name));
            }
        }
        for (f, why) in &self.unenforced {
            parts.push(format!("{f} rules are NOT enforced: {why}"));
        }
        parts.join("; ")
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

    #[test]
    fn uncovered_families_are_named_with_their_reason() {
        let net = PlaneStatus {
            name: "cgroup-bpf",
            enforcer: "CgroupBPF",
            families: vec!["Network"],
            open: vec!["AF_VSOCK sockets"],
        };
        let e = Enforcement::from_planes(
            vec![net],
            &[(
                "Capabilities",
                "needs BPF-LSM, which this kernel cannot load".into(),
            )],
        );
        let s = e.summary();
        assert!(s.contains("cgroup-bpf (CgroupBPF) enforces Network"), "{s}");
        assert!(
            s.contains("Capabilities rules are NOT enforced: needs BPF-LSM"),
            "{s}"
        );
        assert!(s.contains("File rules are NOT enforced"), "{s}");
        assert!(!s.contains("Network rules are NOT"), "{s}");
        assert!(
            s.contains("cgroup-bpf does NOT cover: AF_VSOCK sockets"),
            "{s}"
        );
    }
}
