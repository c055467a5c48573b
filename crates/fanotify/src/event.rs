//! What the plane reports: plain data, handed to a sink that never blocks the decision loop.

use std::sync::mpsc;
use std::time::SystemTime;

use kubearmor_policy::{Action, Decision, Matched, Report, RuleMeta};
use kubearmor_proto::values;
use serde::Serialize;

use crate::subject::SubjectKey;

/// Which permission event was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Hook {
    /// `FAN_OPEN_EXEC_PERM`: the kernel opens a file to execute it (the binary, a script's
    /// interpreter, or an ELF interpreter). Decided with the process rules.
    OpenExecPerm,
    /// `FAN_OPEN_PERM`: any open, including the second event of every exec. Decided with the
    /// file rules.
    OpenPerm,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OpenExecPerm => "FAN_OPEN_EXEC_PERM",
            Hook::OpenPerm => "FAN_OPEN_PERM",
        }
    }

    /// The BPF-LSM hook KubeArmor would name for the same check (`Data: lsm=...`).
    pub fn lsm_name(self) -> &'static str {
        match self {
            Hook::OpenExecPerm => "SECURITY_BPRM_CHECK",
            Hook::OpenPerm => "FILE_OPEN",
        }
    }
}

/// How an exec event was classified (see docs/fanotify.md, "Exec events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExecKind {
    /// The program being executed (or a `#!` interpreter: checked like KubeArmor's
    /// `bprm_check_security`, which runs again for it).
    Program,
    /// The ELF interpreter (`PT_INTERP`, ld.so) of the program of the same exec call: only
    /// explicit Block rules apply; the allow-list posture does not (KubeArmor never checks it).
    ElfInterpreter,
}

/// The alert part of a decision, owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// A plain log (emitted only when [`crate::Config::emit_logs`] is set).
    Log,
    /// An alert with this `Action`; `policy` is `None` for `DefaultPosture`.
    Alert {
        action: &'static str,
        #[serde(skip)]
        policy: Option<RuleMeta>,
        policy_name: String,
    },
    /// The plane could not decide (resolver or /proc failure, ...) and applied its fail mode.
    Undecided { reason: String },
}

/// One decided permission event, as plain data for the daemon's pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PlaneEvent {
    pub timestamp: SystemTime,
    pub hook: Hook,
    /// Set for exec events.
    pub exec_kind: Option<ExecKind>,
    /// True when an open by a process that runs the ELF loader directly
    /// (`ld.so /path/prog`) was also checked against the process rules.
    pub loader_check: bool,
    /// Resolved path of the file, in the acting task's view.
    pub path: String,
    /// Thread-group id (host view); 0 if it could not be read.
    pub pid: u32,
    /// Thread that made the call.
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// Owner uid of the file.
    pub owner: Option<u32>,
    /// Executable of the acting task (for exec events: the image that called exec, i.e.
    /// the parent of the new program).
    pub source: Option<String>,
    /// argv of an exec, when read.
    pub args: Option<Vec<String>>,
    pub subject: SubjectKey,
    pub cgroup_id: Option<u64>,
    /// Access mode used for the decision (opens), and whether it was known or assumed.
    pub access: Option<AccessMode>,
    pub allowed: bool,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessMode {
    pub write: bool,
    /// False when the intent source did not know and [`crate::UnknownIntent`] was applied.
    pub known: bool,
}

impl PlaneEvent {
    /// `Operation`: `Process` for exec events, `File` for opens.
    pub fn operation(&self) -> &'static str {
        match self.hook {
            Hook::OpenExecPerm => values::operation::PROCESS,
            Hook::OpenPerm => values::operation::FILE,
        }
    }

    /// `Result`: `Passed`, or `Operation not permitted` (fanotify denials return EPERM;
    /// KubeArmor's BPF-LSM reports `Permission denied` for its EACCES).
    pub fn result(&self) -> &'static str {
        if self.allowed {
            values::result::PASSED
        } else {
            values::result::OPERATION_NOT_PERMITTED
        }
    }

    /// `Data`, in the BPF-LSM style: `lsm=SECURITY_BPRM_CHECK` / `lsm=FILE_OPEN`.
    pub fn data(&self) -> String {
        format!("lsm={}", self.hook.lsm_name())
    }
}

/// Converts a decision into the owned outcome (None = nothing to report).
pub(crate) fn outcome_of(d: &Decision<'_>, emit_logs: bool) -> Option<Outcome> {
    match d.report {
        Report::Silent => None,
        Report::Log => emit_logs.then_some(Outcome::Log),
        Report::Alert { action, matched } => Some(match matched {
            Matched::Policy(m) => Outcome::Alert {
                action: action_str(action),
                policy_name: m.policy.to_string(),
                policy: Some(m.clone()),
            },
            Matched::DefaultPosture => Outcome::Alert {
                action: action_str(action),
                policy_name: values::DEFAULT_POSTURE.to_owned(),
                policy: None,
            },
        }),
    }
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Allow => values::action::ALLOW,
        Action::Audit => values::action::AUDIT,
        Action::Block => values::action::BLOCK,
        Action::AuditAllow => values::action::AUDIT_ALLOW,
        Action::AuditBlock => values::action::AUDIT_BLOCK,
    }
}

/// Where events go. `offer` must not block: return false when there is no room, and the
/// plane drops and counts the event. (A tokio `mpsc::Sender::try_send` fits.)
pub trait EventSink: Send + 'static {
    fn offer(&self, event: PlaneEvent) -> bool;
}

impl EventSink for mpsc::SyncSender<PlaneEvent> {
    fn offer(&self, event: PlaneEvent) -> bool {
        self.try_send(event).is_ok()
    }
}

impl<F: Fn(PlaneEvent) -> bool + Send + 'static> EventSink for F {
    fn offer(&self, event: PlaneEvent) -> bool {
        self(event)
    }
}

/// Discards every event (counted as emitted).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl EventSink for DiscardSink {
    fn offer(&self, _event: PlaneEvent) -> bool {
        true
    }
}

/// A bounded channel for events: hand the sender to the plane, read the receiver elsewhere.
pub fn channel(capacity: usize) -> (mpsc::SyncSender<PlaneEvent>, mpsc::Receiver<PlaneEvent>) {
    mpsc::sync_channel(capacity.max(1))
}
