//! What one event comes to: the subject, the rule set, the request the policy crate decides
//! on, and whether the allow may be cached. No I/O on the group here.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use kubearmor_policy::{Access, Decision, Matched, PathRequest, Report, RuleSet, Verdict};
use nix::sys::stat::FileStat;

use super::exec_track::{FileId, ProgramKind};
use super::stats::inc;
use super::worker::{Decided, Worker};
use super::{FailMode, Snapshot};
use crate::cache::{self, Profile};
use crate::elf;
use crate::event::{self, AccessMode, ExecKind, Hook, Outcome, PlaneEvent};
use crate::intent::flags_write;
use crate::procfs::{self, ProcError, Stat, Status};
use crate::subject::{Identity, SubjectKey};
use crate::sys::RawEvent;

/// Task facts for one event, read once and only when needed.
struct Task {
    tid: u32,
    status: Option<Result<Status, ProcError>>,
    stat: Option<Result<Stat, ProcError>>,
    exe: Option<Result<String, ProcError>>,
}

impl Task {
    fn new(tid: u32) -> Self {
        Self {
            tid,
            status: None,
            stat: None,
            exe: None,
        }
    }
    fn status(&mut self) -> Result<Status, ProcError> {
        let tid = self.tid;
        self.status
            .get_or_insert_with(|| procfs::status(tid))
            .clone()
    }
    fn stat(&mut self) -> Result<Stat, ProcError> {
        let tid = self.tid;
        self.stat.get_or_insert_with(|| procfs::stat(tid)).clone()
    }
    fn exe(&mut self) -> Result<String, ProcError> {
        let tid = self.tid;
        self.exe.get_or_insert_with(|| procfs::exe(tid)).clone()
    }
}

impl Worker {
    pub(super) fn fail(
        &self,
        hook: Hook,
        tid: u32,
        path: Option<String>,
        reason: String,
    ) -> Decided {
        inc(&self.shared.counters.undecided);
        let allow = self.config.fail_mode == FailMode::Open;
        self.log_line(super::log::Level::Debug, || {
            format!("fanotify: undecided event of tid {tid} ({reason}), allow {allow}")
        });
        let mut task = Task::new(tid);
        let status = if tid > 0 { task.status().ok() } else { None };
        Decided {
            allow,
            cache: None,
            event: Some(PlaneEvent {
                timestamp: SystemTime::now(),
                hook,
                exec_kind: None,
                loader_check: false,
                path: path.unwrap_or_default(),
                pid: status.map_or(0, |s| s.tgid),
                tid,
                ppid: status.map_or(0, |s| s.ppid),
                uid: status.map_or(0, |s| s.uid),
                owner: None,
                source: if tid > 0 { task.exe().ok() } else { None },
                args: None,
                subject: SubjectKey::Unmanaged,
                cgroup_id: None,
                access: None,
                allowed: allow,
                outcome: Outcome::Undecided { reason },
            }),
        }
    }

    pub(super) fn decide(&mut self, ev: &RawEvent, fd: BorrowedFd<'_>) -> Decided {
        let hook = hook_of(ev.mask);
        let c = &self.shared.counters;
        match hook {
            Hook::OpenExecPerm => inc(&c.exec_events),
            Hook::OpenPerm => inc(&c.open_events),
        }
        if ev.pid <= 0 {
            return self.fail(
                hook,
                0,
                None,
                "the task is not visible in the plane's pid namespace".into(),
            );
        }
        let tid = ev.pid as u32;
        if procfs::is_own_thread(tid, self.pid) {
            inc(&c.own_process);
            return Decided {
                allow: true,
                cache: None,
                event: None,
            };
        }
        let st = match nix::sys::stat::fstat(fd) {
            Ok(st) => st,
            Err(e) => return self.fail(hook, tid, None, format!("fstat of the event fd: {e}")),
        };
        let raw = match procfs::fd_path(fd.as_raw_fd()) {
            Ok(p) => p,
            Err(e) => return self.fail(hook, tid, None, format!("path of the event fd: {e}")),
        };
        // The kernel's open of a file it was just allowed to execute is part of the exec: a
        // Process decision only, never a File access (docs/compatibility.md).
        let exec_open = self.exec_opens.remove(&tid);
        if hook == Hook::OpenPerm && exec_open == Some(file_id(&st)) {
            inc(&c.exec_opens);
            return Decided {
                allow: true,
                cache: None,
                event: None,
            };
        }
        let utf8 = std::str::from_utf8(&raw).is_ok();
        let mut path = String::from_utf8_lossy(&raw).into_owned();
        if st.st_nlink == 0 {
            path = procfs::strip_deleted(&path).to_owned();
        }
        if !path.starts_with('/') {
            return self.fail(
                hook,
                tid,
                Some(path),
                "the file has no reachable path".into(),
            );
        }
        let snap = self.shared.snapshot.load_full();
        let identity = if snap.profiles.any_path_rules() {
            match self.resolver.resolve(tid, snap.rules.want()) {
                Ok(i) => i,
                Err(e) => return self.fail(hook, tid, Some(path), format!("subject: {e}")),
            }
        } else {
            Identity::default()
        };
        let subject = snap.rules.subject(&identity);
        let set = snap.rules.rule_set(subject).cloned();
        let profile = set.as_ref().and_then(|s| snap.profiles.get(s));
        let mut task = Task::new(tid);
        let rule_name = snap
            .rules
            .rule_name(subject, (st.st_dev, st.st_ino))
            .filter(|n| *n != path);
        let ctx = Ctx {
            hook,
            path: &path,
            rule_name,
            st: &st,
        };
        let result = match (&set, profile) {
            (Some(set), Some(profile)) => self.decide_with(&ctx, set, profile, &mut task, fd),
            _ => Ok(Step {
                verdict: Verdict::Allow,
                outcome: self.config.emit_logs.then_some(Outcome::Log),
                kind: (hook == Hook::OpenExecPerm).then_some(ExecKind::Program),
                loader_check: false,
                access: None,
                source: None,
                args: None,
                intent_unknown: false,
            }),
        };
        let step = match result {
            Ok(s) => s,
            Err(e) => return self.fail(hook, tid, Some(path), e.to_string()),
        };
        let allow = step.verdict == Verdict::Allow;
        if allow && hook == Hook::OpenExecPerm {
            if self.exec_opens.len() >= super::exec_track::MAX_TRACKED {
                // Only threads killed between their two events leave entries behind; losing
                // the in-flight ones judges their exec open as a File access (never an allow).
                self.exec_opens.clear();
            }
            self.exec_opens.insert(tid, file_id(&st));
        }
        let cacheable = allow
            && step.outcome.is_none()
            && (!step.intent_unknown || self.config.unknown_intent.cache)
            && utf8
            && self.cacheable(&path, &st, &snap, fd);
        let cache = cacheable.then_some(snap.generation);
        let intent = &self.intent;
        let event = step.outcome.map(|outcome| {
            let status = task.status().ok();
            let source = step.source.or_else(|| task.exe().ok());
            // Process alerts carry the command line (KubeArmor's Resource), read only now.
            let args = match (hook, step.args) {
                (Hook::OpenExecPerm, None) => intent.exec_call(tid, true).and_then(|c| c.args),
                (_, a) => a,
            };
            PlaneEvent {
                timestamp: SystemTime::now(),
                hook,
                exec_kind: step.kind,
                loader_check: step.loader_check,
                path: path.clone(),
                pid: status.map_or(0, |s| s.tgid),
                tid,
                ppid: status.map_or(0, |s| s.ppid),
                uid: status.map_or(0, |s| s.uid),
                owner: Some(st.st_uid),
                source,
                args,
                subject,
                cgroup_id: identity.cgroup_id,
                access: step.access,
                allowed: allow,
                outcome,
            }
        });
        Decided {
            allow,
            cache,
            event,
        }
    }

    fn decide_with(
        &mut self,
        ctx: &Ctx<'_>,
        set: &Arc<RuleSet>,
        p: &Profile,
        task: &mut Task,
        fd: BorrowedFd<'_>,
    ) -> Result<Step, ProcError> {
        let source = if p.needs_source {
            Some(task.exe()?)
        } else {
            None
        };
        let uid = if p.needs_owner { task.status()?.uid } else { 0 };
        let tty = if p.needs_tty {
            task.stat()?.tty_nr != 0
        } else {
            false
        };
        let emit_logs = self.config.emit_logs;
        let base = PathRequest {
            path: ctx.path,
            access: Access::Read,
            source: source.as_deref(),
            uid,
            owner: Some(ctx.st.st_uid),
            tty,
            args: None,
        };
        match ctx.hook {
            Hook::OpenExecPerm => {
                let track = self.config.exec_tracking && p.process_rules;
                let call = if track || p.needs_args {
                    self.intent.exec_call(task.tid, p.needs_args)
                } else {
                    None
                };
                let kind =
                    self.exec
                        .classify(task.tid, call.as_ref(), file_id(ctx.st), Instant::now());
                let args: Option<Vec<String>> = call
                    .as_ref()
                    .filter(|c| !c.truncated)
                    .and_then(|c| c.args.clone());
                let req = PathRequest {
                    args: args.as_deref(),
                    ..base
                };
                let d = stricter(set.decide_exec(&req), ctx.rule_name, |path| {
                    set.decide_exec(&PathRequest { path, ..req })
                });
                let (verdict, outcome) = if kind == ExecKind::ElfInterpreter {
                    inc(&self.shared.counters.elf_interpreter_events);
                    explicit_only(&d, emit_logs)
                } else {
                    (d.verdict, event::outcome_of(&d, emit_logs))
                };
                if track && verdict == Verdict::Allow && kind == ExecKind::Program {
                    let info = elf::inspect(fd).unwrap_or_default();
                    let program = ProgramKind {
                        has_interp: info.interp.is_some(),
                        loader_like: info.loader_like,
                    };
                    self.exec
                        .track(task.tid, call, file_id(ctx.st), program, Instant::now());
                }
                Ok(Step {
                    verdict,
                    outcome,
                    kind: Some(kind),
                    loader_check: false,
                    access: None,
                    source,
                    args,
                    intent_unknown: false,
                })
            }
            Hook::OpenPerm => {
                let (write, known) = if p.needs_access {
                    match self.intent.open_flags(task.tid) {
                        Some(f) => (flags_write(f), true),
                        None => (self.config.unknown_intent.decide_as == Access::Write, false),
                    }
                } else {
                    (false, true)
                };
                let req = PathRequest {
                    access: if write { Access::Write } else { Access::Read },
                    ..base
                };
                let d = stricter(set.decide_open(&req), ctx.rule_name, |path| {
                    set.decide_open(&PathRequest { path, ..req })
                });
                let mut verdict = d.verdict;
                let mut outcome = event::outcome_of(&d, emit_logs);
                if (verdict == Verdict::Deny || d.report != Report::Silent)
                    && procfs::is_runtime_entering(task.tid, &self.config.runtime_binaries)
                        .unwrap_or(false)
                {
                    inc(&self.shared.counters.runtime_opens);
                    verdict = Verdict::Allow;
                    outcome = emit_logs.then_some(Outcome::Log);
                }
                let mut loader_check = false;
                if verdict == Verdict::Allow && p.process_rules && self.exec.is_loader(task.tid) {
                    loader_check = true;
                    let e = set.decide_exec(&req);
                    let (v, o) = explicit_only(&e, emit_logs);
                    if v == Verdict::Deny {
                        inc(&self.shared.counters.loader_denials);
                        verdict = v;
                        outcome = o;
                    }
                }
                Ok(Step {
                    verdict,
                    outcome,
                    kind: None,
                    loader_check,
                    access: Some(AccessMode { write, known }),
                    source,
                    args: None,
                    intent_unknown: !known,
                })
            }
        }
    }

    fn cacheable(
        &mut self,
        path: &str,
        st: &FileStat,
        snap: &Snapshot,
        fd: BorrowedFd<'_>,
    ) -> bool {
        if !self.config.allow_cache
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_nlink != 1
        {
            return false;
        }
        // Exec tracking needs to see some executables every time: a loader run directly
        // (else `ld.so /blocked` escapes the loader check), and, under a process allow-list,
        // programs with an ELF interpreter (else their interpreter's event looks like a new
        // program and falls to the posture).
        if self.config.exec_tracking && st.st_mode & 0o111 != 0 && snap.profiles.any_process_rules()
        {
            if let Some(info) = elf::inspect(fd) {
                if info.loader_like
                    || (info.interp.is_some() && snap.profiles.any_process_allow_list())
                {
                    return false;
                }
            }
        }
        let key = (st.st_dev, st.st_ino);
        // A file a rule names may be reached by names the cache checks cannot see.
        if snap.rules.file_names.contains_key(&key) {
            return false;
        }
        if self.cache.known_uncacheable(key, snap.generation) {
            return false;
        }
        let ok =
            cache::allowed_everywhere(path, &snap.rules, &snap.profiles, self.config.emit_logs)
                && self.veto.as_ref().is_none_or(|v| v(path));
        if !ok {
            self.cache.remember_uncacheable(key);
        }
        // The snapshot may already be stale; `cache()` checks the generation again.
        ok && snap.generation == self.shared.generation.load(Ordering::SeqCst)
    }
}

/// `d`, unless the file's rule name (when it was reached by another name) is denied.
fn stricter<'s>(
    d: kubearmor_policy::Decision<'s>,
    rule_name: Option<&str>,
    decide: impl FnOnce(&str) -> kubearmor_policy::Decision<'s>,
) -> kubearmor_policy::Decision<'s> {
    match rule_name {
        Some(name) if !d.is_denied() => {
            let by_name = decide(name);
            if by_name.is_denied() {
                by_name
            } else {
                d
            }
        }
        _ => d,
    }
}

struct Ctx<'a> {
    hook: Hook,
    path: &'a str,
    /// The name the subject's rules give this file, when it was reached by another one.
    rule_name: Option<&'a str>,
    st: &'a FileStat,
}

struct Step {
    verdict: Verdict,
    outcome: Option<Outcome>,
    kind: Option<ExecKind>,
    loader_check: bool,
    access: Option<AccessMode>,
    source: Option<String>,
    args: Option<Vec<String>>,
    intent_unknown: bool,
}

pub(super) fn hook_of(mask: u64) -> Hook {
    if mask & libc::FAN_OPEN_EXEC_PERM != 0 {
        Hook::OpenExecPerm
    } else {
        Hook::OpenPerm
    }
}

/// Only explicit rules count: a default-posture outcome (deny or audit) becomes a silent
/// allow. For ELF interpreters and loader checks, which KubeArmor never puts to the posture.
fn explicit_only(d: &Decision<'_>, emit_logs: bool) -> (Verdict, Option<Outcome>) {
    match d.report {
        Report::Alert {
            matched: Matched::DefaultPosture,
            ..
        } => (Verdict::Allow, None),
        _ => (d.verdict, event::outcome_of(d, emit_logs)),
    }
}

fn file_id(st: &FileStat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}
