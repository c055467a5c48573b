#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kubearmor_policy::{
    parse_policies, HostIdentity, NoResolve, Policy, Posture, Postures, RuleSet, SelectorMode,
    Subject,
};
use kubearmor_usb::DevicePolicy;

pub const HOST: &str = "testhost";

pub fn policies(yaml: &str) -> Vec<Policy> {
    match parse_policies(yaml, "test.yaml") {
        Ok(p) => p.policies,
        Err(e) => panic!("policy does not parse: {e}\n{yaml}"),
    }
}

/// A host policy selecting every host (the non-Kubernetes `kubearmor.io/hostname: "*"`).
pub fn hsp(name: &str, body: &str) -> String {
    hsp_on(name, "kubearmor.io/hostname: \"*\"", body)
}

pub fn hsp_on(name: &str, selector: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      {selector}\n{body}"
    )
}

pub fn host() -> HostIdentity {
    HostIdentity {
        hostname: HOST.into(),
        labels: Default::default(),
    }
}

pub fn postures(device: Posture) -> Postures {
    Postures {
        device,
        ..Default::default()
    }
}

/// The policies of `yaml` that select this host, compiled as the daemon would.
pub fn device_policy(yaml: &str, posture: Posture) -> DevicePolicy {
    DevicePolicy::for_host(
        &policies(yaml),
        &host(),
        SelectorMode::default(),
        postures(posture),
    )
}

/// A rule set compiled with `RuleSet::for_subject` directly.
pub fn rule_set(yaml: &str, posture: Posture) -> Arc<RuleSet> {
    Arc::new(RuleSet::for_subject(
        &policies(yaml),
        &Subject::Host(host()),
        SelectorMode::default(),
        postures(posture),
        &NoResolve,
    ))
}

// KubeArmor's documented examples (getting-started/usb_device_handler.md,
// host_security_policy_specification.md) with the non-k8s selector.

pub fn audit_mass_storage() -> String {
    hsp(
        "hsp-audit-usb-storage",
        "  severity: 3\n  device:\n    matchDevice:\n    - class: MASS-STORAGE\n  action: Audit\n",
    )
}

pub fn block_mass_storage() -> String {
    hsp(
        "hsp-block-usb-storage",
        "  severity: 5\n  device:\n    matchDevice:\n    - class: MASS-STORAGE\n  action: Block\n",
    )
}

pub fn block_keyboard() -> String {
    hsp(
        "hsp-block-keybd",
        "  severity: 5\n  device:\n    matchDevice:\n    - class: HID\n      subClass: 1\n      protocol: 1\n  action: Block\n",
    )
}

pub fn allow_stick_under_block() -> String {
    hsp(
        "hsp-usb-stick",
        "  device:\n    matchDevice:\n    - class: MASS-STORAGE\n      action: Block\n      message: no storage\n      tags: [USB]\n    - class: 8\n      subClass: 6\n      protocol: 80\n      action: Allow\n",
    )
}

pub fn all_with(action: &str) -> String {
    hsp(
        &format!("hsp-usb-all-{}", action.to_ascii_lowercase()),
        &format!("  device:\n    matchDevice:\n    - class: ALL\n  action: {action}\n"),
    )
}

pub fn allow_hid_only() -> String {
    hsp(
        "hsp-allow-hid",
        "  device:\n    matchDevice:\n    - class: HID\n    - class: HUB\n  action: Allow\n",
    )
}

/// Fails (never skips) when not root: the netlink tests need CAP_SYS_ADMIN for a private
/// network namespace and CAP_NET_ADMIN to multicast fake uevents.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!(
            "this test needs root (CAP_SYS_ADMIN for unshare(CLONE_NEWNET), CAP_NET_ADMIN to \
             multicast uevents); CI runs as root: run `sudo -E cargo test -p kubearmor-usb`"
        );
    }
}

/// Runs `f` on a thread inside a new network namespace, so fake uevents never reach the
/// host's udevd. Panics in `f` propagate.
pub fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    require_root();
    let t = std::thread::spawn(move || {
        kubearmor_usb::listener::enter_new_netns().expect("unshare(CLONE_NEWNET)");
        f()
    });
    match t.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}
