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
    /// Operation families it enforces (`Process`, `File`, ...) while it is up.
    pub families: Vec<&'static str>,
    /// What stays open on this plane within those families (routes it does not see or cannot
    /// refuse), one line each; docs/ lists the same.
    pub open: Vec<&'static str>,
    /// Set while the plane is not enforcing (stalled, aborted, being restarted): its families
    /// then count as NOT enforced, with this as the reason.
    pub down: Option<Outage>,
}

/// Since when and why a plane does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub since: std::time::SystemTime,
    pub why: String,
}

impl Outage {
    /// `the fanotify plane is down since 2026-12-05T10:00:00Z (why); ...`
    pub fn describe(&self, plane: &str) -> String {
        format!(
            "the {plane} plane is down since {} ({}); the daemon is restarting it",
            rfc3339(self.since),
            self.why
        )
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// What is enforced now: computed from the planes' live status at every call (probe, metrics).
pub struct LiveEnforcement {
    enforcer: std::sync::Arc<crate::enforce::Enforcer>,
    /// Per-family reasons known at start (a plane that did not start, a kernel without BPF-LSM).
    reasons: Vec<(&'static str, String)>,
}

impl LiveEnforcement {
    pub fn new(
        enforcer: std::sync::Arc<crate::enforce::Enforcer>,
        reasons: Vec<(&'static str, String)>,
    ) -> Self {
        Self { enforcer, reasons }
    }

    pub fn now(&self) -> Enforcement {
        Enforcement::from_planes(self.enforcer.statuses(), &self.reasons)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// Planes that are up.
    pub planes: Vec<PlaneStatus>,
    /// Planes that are down (their families are in `unenforced`).
    pub down: Vec<PlaneStatus>,
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
    pub fn from_planes(all: Vec<PlaneStatus>, reasons: &[(&'static str, String)]) -> Self {
        let (down, planes): (Vec<_>, Vec<_>) = all.into_iter().partition(|p| p.down.is_some());
        let unenforced = FAMILIES
            .iter()
            .filter(|f| !planes.iter().any(|p| p.families.contains(f)))
            .map(|f| {
                let outage = down.iter().find_map(|p| {
                    let o = p.down.as_ref()?;
                    p.families.contains(f).then(|| o.describe(p.name))
                });
                let why = outage
                    .or_else(|| {
                        reasons
                            .iter()
                            .find(|(family, _)| family == f)
                            .map(|(_, r)| r.clone())
                    })
                    .unwrap_or_else(|| "no plane for it is running".to_string());
                (*f, why)
            })
            .collect();
        Self {
            planes,
            down,
            unenforced,
        }
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
            down: None,
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

    #[test]
    fn a_plane_that_is_down_does_not_enforce_and_says_since_when_and_why() {
        let fan = |down| PlaneStatus {
            name: "fanotify",
            enforcer: "fanotify",
            families: vec!["Process", "File"],
            open: vec![],
            down,
        };
        let up = Enforcement::from_planes(vec![fan(None)], &[]);
        assert!(!up.unenforced.iter().any(|(f, _)| *f == "File"));
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_464_800);
        let e = Enforcement::from_planes(
            vec![fan(Some(Outage {
                since,
                why: "aborted: an event took longer than the stall timeout".into(),
            }))],
            &[("File", "a start-time reason is not the live one".into())],
        );
        assert!(!e.is_enforcing());
        assert_eq!(e.down.len(), 1);
        let s = e.summary();
        for f in ["Process", "File"] {
            assert!(
                s.contains(&format!("{f} rules are NOT enforced: the fanotify plane is down since 2026-12-05T10:00:00Z (aborted: an event took longer than the stall timeout)")),
                "{s}"
            );
        }
    }
}
