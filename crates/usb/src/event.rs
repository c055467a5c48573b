//! What the handler reports: plain-data [`DeviceEvent`]s, and their KubeArmor form.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubearmor_policy::names::usb_class_name;
use kubearmor_policy::{Matched, RuleMeta};
use kubearmor_proto::feeder::{Alert, Log};
use kubearmor_proto::values;

use crate::uevent::NodeKind;

/// The `Action` of a device event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceAction {
    Audit,
    Block,
    Allow,
    Remove,
}

impl DeviceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceAction::Audit => values::action::AUDIT,
            DeviceAction::Block => values::action::BLOCK,
            DeviceAction::Allow => values::action::ALLOW,
            DeviceAction::Remove => values::action::REMOVE,
        }
    }
}

/// The `Result` of a device event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceResult {
    /// The device may be used (audited, allowed, or re-authorised).
    Passed,
    /// The device or interface was deauthorised.
    PermissionDenied,
    /// Unplugged.
    Removed,
    /// The decision could not be applied (a sysfs write failed): never reported as a block.
    Failed(String),
}

impl DeviceResult {
    pub fn as_str(&self) -> &str {
        match self {
            DeviceResult::Passed => values::result::PASSED,
            DeviceResult::PermissionDenied => values::result::PERMISSION_DENIED,
            DeviceResult::Removed => values::result::REMOVED,
            DeviceResult::Failed(s) => s,
        }
    }
}

/// What made the handler look at the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A kernel uevent (`add` or `remove`).
    Uevent,
    /// Already connected when the handler started (KubeArmor's "Already Connected").
    Startup,
    /// A policy update changed what applies to a connected device.
    PolicyChange,
    /// Re-scan after the uevent socket overflowed (ENOBUFS) and events were lost.
    Overflow,
    /// The handler stopped and gave back a device it held.
    Stop,
}

/// The policy rule an event is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub policy: String,
    /// 1..=10, or 0 when the policy gives none (alerts then omit it).
    pub severity: u8,
    pub tags: Vec<String>,
    pub message: String,
}

impl From<&RuleMeta> for MatchedRule {
    fn from(m: &RuleMeta) -> Self {
        Self {
            policy: m.policy.to_string(),
            severity: m.severity,
            tags: m.tags.clone(),
            message: m.message.clone(),
        }
    }
}

/// Who the event is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribution {
    Policy(MatchedRule),
    /// Allow-list mode, nothing matched: `PolicyName: DefaultPosture`.
    DefaultPosture,
    /// No rule: a plain host log.
    None,
}

impl From<Matched<'_>> for Attribution {
    fn from(m: Matched<'_>) -> Self {
        match m {
            Matched::Policy(meta) => Attribution::Policy(meta.into()),
            Matched::DefaultPosture => Attribution::DefaultPosture,
        }
    }
}

/// One decision (or unplug) of the USB handler, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    pub action: DeviceAction,
    pub result: DeviceResult,
    pub kind: NodeKind,
    /// `2-4.1` or `2-4.1:1.0`.
    pub name: String,
    pub class: u8,
    pub sub_class: u8,
    pub protocol: u8,
    pub level: u8,
    /// `<sysfs root>/bus/usb/devices/<name>`.
    pub sys_path: String,
    pub matched: Attribution,
    pub trigger: Trigger,
    /// Time from the uevent's receipt to the completion of the sysfs write that enforced the
    /// decision; `None` when nothing was written or no uevent triggered the decision.
    pub latency: Option<Duration>,
    pub time: SystemTime,
}

impl DeviceEvent {
    /// `Class=%d SubClass=%d Protocol=%d Level=%d SysPath=%s`, as KubeArmor's `Data`.
    pub fn data(&self) -> String {
        format!(
            "Class={} SubClass={} Protocol={} Level={} SysPath={}",
            self.class, self.sub_class, self.protocol, self.level, self.sys_path
        )
    }

    /// `USB <CLASSNAME>` (the class number in decimal when the class has no name).
    pub fn resource(&self) -> String {
        format!("USB {}", usb_class_name(self.class))
    }
}

/// Where an event goes in KubeArmor's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeArmorEvent {
    /// `Type: MatchedHostPolicy`, for `WatchAlerts`.
    Alert(Alert),
    /// `Type: HostLog`, for `WatchLogs`.
    Log(Log),
}

/// Identity fields every event carries.
#[derive(Debug, Clone, Default)]
pub struct HostContext {
    pub cluster_name: String,
    pub host_name: String,
    pub node_id: String,
}

/// Shapes an event as KubeArmor's feeder does for the USB handler (spec §5 "Alert shaping"):
/// `Operation: Device`, `Resource: USB <CLASS>`, `Data: Class=.. SubClass=.. Protocol=..
/// Level=.. SysPath=..`, `Enforcer: USBDeviceHandler`, `EventData` with the same five keys.
///
/// A decision attributed to a policy or to the default posture is a `MatchedHostPolicy`
/// alert; an unmatched audit and an unplug (`Action: Remove`, `Result: Removed`) are
/// `HostLog`s. `Allow`/`Passed` events return `None`: KubeArmor's feeder drops them.
pub fn to_kubearmor(ev: &DeviceEvent, host: &HostContext) -> Option<KubeArmorEvent> {
    let a = to_alert(ev, host)?;
    Some(if a.r#type == values::event_type::MATCHED_HOST_POLICY {
        KubeArmorEvent::Alert(a)
    } else {
        KubeArmorEvent::Log(a.into())
    })
}

/// As [`to_kubearmor`], as one `Alert` record whose `Type` says where it goes (the daemon's
/// pipeline routes by `Type`).
pub fn to_alert(ev: &DeviceEvent, host: &HostContext) -> Option<Alert> {
    if ev.action == DeviceAction::Allow && ev.result == DeviceResult::Passed {
        return None;
    }
    let (secs, nanos) = match ev.time.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    };
    let mut a = Alert {
        timestamp: secs,
        updated_time: kubearmor_proto::time::updated_time(secs, nanos),
        cluster_name: host.cluster_name.clone(),
        host_name: host.host_name.clone(),
        node_id: host.node_id.clone(),
        operation: values::operation::DEVICE.to_string(),
        resource: ev.resource(),
        data: ev.data(),
        enforcer: values::enforcer::USB_DEVICE_HANDLER.to_string(),
        action: ev.action.as_str().to_string(),
        result: ev.result.as_str().to_string(),
        ..Default::default()
    };
    a.event_data = [
        ("Class", ev.class.to_string()),
        ("SubClass", ev.sub_class.to_string()),
        ("Protocol", ev.protocol.to_string()),
        ("Level", ev.level.to_string()),
        ("SysPath", ev.sys_path.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let alert = match (&ev.matched, ev.action) {
        (_, DeviceAction::Remove) | (Attribution::None, _) => false,
        (Attribution::Policy(m), _) => {
            a.policy_name = m.policy.clone();
            if m.severity > 0 {
                a.severity = m.severity.to_string();
            }
            a.tags = m.tags.join(",");
            a.a_tags = m.tags.clone();
            a.message = m.message.clone();
            true
        }
        (Attribution::DefaultPosture, _) => {
            a.policy_name = values::DEFAULT_POSTURE.to_string();
            true
        }
    };
    a.r#type = if alert {
        values::event_type::MATCHED_HOST_POLICY
    } else {
        values::event_type::HOST_LOG
    }
    .to_string();
    Some(a)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ev(action: DeviceAction, result: DeviceResult, matched: Attribution) -> DeviceEvent {
        DeviceEvent {
            action,
            result,
            kind: NodeKind::Interface,
            name: "1-1:1.0".into(),
            class: 8,
            sub_class: 6,
            protocol: 80,
            level: 2,
            sys_path: "/sys/bus/usb/devices/1-1:1.0".into(),
            matched,
            trigger: Trigger::Uevent,
            latency: None,
            time: UNIX_EPOCH + Duration::new(1_753_343_555, 100_220_000),
        }
    }

    #[test]
    fn block_alert_as_runtime_spec_example_d() {
        let e = ev(
            DeviceAction::Block,
            DeviceResult::PermissionDenied,
            Attribution::Policy(MatchedRule {
                policy: "hsp-block-usb-storage".into(),
                severity: 5,
                tags: vec![],
                message: String::new(),
            }),
        );
        let host = HostContext {
            cluster_name: "default".into(),
            host_name: "vm-1".into(),
            node_id: "n".into(),
        };
        let Some(KubeArmorEvent::Alert(a)) = to_kubearmor(&e, &host) else {
            panic!()
        };
        assert_eq!(a.timestamp, 1_753_343_555);
        assert_eq!(a.updated_time, "2025-07-24T07:52:35.100220Z");
        assert_eq!(a.policy_name, "hsp-block-usb-storage");
        assert_eq!(a.severity, "5");
        assert_eq!(a.r#type, "MatchedHostPolicy");
        assert_eq!(a.operation, "Device");
        assert_eq!(a.resource, "USB MASS-STORAGE");
        assert_eq!(
            a.data,
            "Class=8 SubClass=6 Protocol=80 Level=2 SysPath=/sys/bus/usb/devices/1-1:1.0"
        );
        assert_eq!(a.event_data.get("SubClass").unwrap(), "6");
        assert_eq!(
            a.event_data.get("SysPath").unwrap(),
            "/sys/bus/usb/devices/1-1:1.0"
        );
        assert_eq!(a.enforcer, "USBDeviceHandler");
        assert_eq!(a.action, "Block");
        assert_eq!(a.result, "Permission denied");
        assert_eq!(a.host_name, "vm-1");
        let json = kubearmor_proto::json::karmor_alert(&a);
        assert!(json.contains(r#""Resource":"USB MASS-STORAGE""#), "{json}");
    }

    #[test]
    fn shaping() {
        let h = HostContext::default();
        let e = ev(
            DeviceAction::Block,
            DeviceResult::PermissionDenied,
            Attribution::DefaultPosture,
        );
        let Some(KubeArmorEvent::Alert(a)) = to_kubearmor(&e, &h) else {
            panic!()
        };
        assert_eq!(a.policy_name, "DefaultPosture");
        assert_eq!(a.severity, "");

        let e = ev(DeviceAction::Audit, DeviceResult::Passed, Attribution::None);
        let Some(KubeArmorEvent::Log(l)) = to_kubearmor(&e, &h) else {
            panic!()
        };
        assert_eq!(l.r#type, "HostLog");
        assert_eq!(l.result, "Passed");
        assert_eq!(l.operation, "Device");

        let e = ev(
            DeviceAction::Remove,
            DeviceResult::Removed,
            Attribution::None,
        );
        let Some(KubeArmorEvent::Log(l)) = to_kubearmor(&e, &h) else {
            panic!()
        };
        assert_eq!(l.result, "Removed");
        assert_eq!(l.resource, "USB MASS-STORAGE");

        let m = Attribution::Policy(MatchedRule {
            policy: "p".into(),
            severity: 0,
            tags: vec!["a".into(), "b".into()],
            message: "m".into(),
        });
        let e = ev(DeviceAction::Audit, DeviceResult::Passed, m.clone());
        let Some(KubeArmorEvent::Alert(a)) = to_kubearmor(&e, &h) else {
            panic!()
        };
        assert_eq!(a.tags, "a,b");
        assert_eq!(a.a_tags, ["a", "b"]);
        assert_eq!(a.severity, "");
        assert_eq!(a.message, "m");
        assert_eq!(a.action, "Audit");

        let e = ev(DeviceAction::Allow, DeviceResult::Passed, m.clone());
        assert_eq!(to_kubearmor(&e, &h), None);

        let e = ev(
            DeviceAction::Block,
            DeviceResult::Failed("Enforcement failed: EIO".into()),
            m,
        );
        let Some(KubeArmorEvent::Alert(a)) = to_kubearmor(&e, &h) else {
            panic!()
        };
        assert_eq!(a.result, "Enforcement failed: EIO");

        let mut e = ev(DeviceAction::Audit, DeviceResult::Passed, Attribution::None);
        e.class = 0x42;
        assert_eq!(e.resource(), "USB 66");
    }
}
