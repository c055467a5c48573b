//! The device rules the handler enforces, and whether they need race-free mode.

use std::sync::Arc;

use kubearmor_policy::{
    Action, Family, HostIdentity, NoResolve, Policy, Postures, RuleSet, SelectorMode, Subject,
};

/// The host's compiled device rules plus what the handler needs to know about them.
#[derive(Debug, Clone)]
pub struct DevicePolicy {
    rules: Arc<RuleSet>,
    race_free: bool,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        Self::none()
    }
}

impl DevicePolicy {
    /// No device rules: everything is logged, nothing is held.
    pub fn none() -> Self {
        Self {
            rules: Arc::new(RuleSet::default()),
            race_free: false,
        }
    }

    /// Compiles the host policies among `policies` that select this host. `postures` are the
    /// host postures (`hostDefaultDevicePosture` is `postures.device`). Race-free mode is
    /// needed when a selected policy has a device rule with action Block or Allow.
    pub fn for_host<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        host: &HostIdentity,
        mode: SelectorMode,
        postures: Postures,
    ) -> Self {
        let subject = Subject::Host(host.clone());
        let selected: Vec<&Policy> = policies
            .into_iter()
            .filter(|p| p.selects(&subject, mode))
            .collect();
        let race_free = selected.iter().any(|p| {
            p.rules
                .devices
                .iter()
                .any(|d| matches!(d.meta.action, Action::Block | Action::Allow))
        });
        let rules = RuleSet::for_subject(selected, &subject, mode, postures, &NoResolve);
        Self {
            rules: Arc::new(rules),
            race_free,
        }
    }

    /// Uses a rule set the caller compiled for the host. Without the policies the handler
    /// cannot tell an Audit-only rule set from one with a Block rule, so any device rule turns
    /// race-free mode on (new devices wait for the decision even when it can only audit).
    pub fn from_rule_set(rules: Arc<RuleSet>) -> Self {
        let race_free = rules.has_rules(Family::Device);
        Self { rules, race_free }
    }

    /// As [`DevicePolicy::from_rule_set`], with the caller saying whether a Block or Allow
    /// device rule exists.
    pub fn with_race_free(rules: Arc<RuleSet>, race_free: bool) -> Self {
        Self { rules, race_free }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Whether new devices must arrive unauthorized (`authorized_default=0`): some rule can
    /// block (a Block rule, or allow-list mode with its default posture).
    pub fn needs_race_free(&self) -> bool {
        self.race_free
    }
}
