//! The decision function: one question, asked by every plane, answered the same way.
//!
//! For each operation the enforced rules (Allow/Block) are looked up from most to least
//! specific and the first group that matches decides (`spec/kubearmor-policy.md` §3.3-3.5); a
//! Block inside a group beats an Allow. Audit rules are looked up alike but only shape the
//! report. Unmatched operations fall to the family's default posture once the family has an
//! Allow rule (allow-list mode).

use crate::compile::{Posture, RuleSet, Table};
use crate::index::{KeyedIndex, PathIndex};
use crate::model::{Action, NetKey, PathRule, PathTarget, RuleMeta, SyscallPath, SyscallSource};
use crate::names::{family, ipproto, sock};

/// Whether the operation may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// Who an alert is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    Policy(&'a RuleMeta),
    /// `PolicyName: DefaultPosture`, no severity, tags or message.
    DefaultPosture,
}

/// What the event pipeline should emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// Nothing: an operation an Allow rule permits (KubeArmor drops these).
    Silent,
    /// A plain container or host log, subject to visibility settings.
    Log,
    /// An alert with this `Action`.
    Alert {
        action: Action,
        matched: Matched<'a>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub verdict: Verdict,
    pub report: Report<'a>,
}

impl<'a> Decision<'a> {
    const LOG: Decision<'static> = Decision {
        verdict: Verdict::Allow,
        report: Report::Log,
    };

    fn alert(verdict: Verdict, action: Action, matched: Matched<'a>) -> Self {
        Self {
            verdict,
            report: Report::Alert { action, matched },
        }
    }

    pub fn is_denied(&self) -> bool {
        self.verdict == Verdict::Deny
    }
}

/// How a file is being accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Any open that may write (write-only, read-write, append, truncate, create).
    Write,
}

/// An exec or an open, as a plane sees it. Paths are absolute and symlink-resolved, in the
/// subject's own view.
#[derive(Debug, Clone, Copy)]
pub struct PathRequest<'a> {
    pub path: &'a str,
    /// For opens; ignored for execs.
    pub access: Access,
    /// Executable of the acting process (for exec: of the parent), if known.
    pub source: Option<&'a str>,
    /// Acting process's uid.
    pub uid: u32,
    /// Owner uid of the file, if known; `ownerOnly` rules treat unknown as not the owner.
    pub owner: Option<u32>,
    /// Whether the acting process has a controlling terminal.
    pub tty: bool,
    /// argv of the exec, when known (`allowedArgs`).
    pub args: Option<&'a [String]>,
}

impl<'a> PathRequest<'a> {
    pub fn new(path: &'a str) -> Self {
        Self {
            path,
            access: Access::Read,
            source: None,
            uid: 0,
            owner: None,
            tty: false,
            args: None,
        }
    }

    fn is_owner(&self) -> bool {
        self.owner == Some(self.uid)
    }
}

/// A `socket()` (or connect/accept on a socket) as a plane sees it.
#[derive(Debug, Clone, Copy)]
pub struct SocketRequest<'a> {
    pub family: i32,
    pub sock_type: i32,
    pub protocol: i32,
    pub source: Option<&'a str>,
    pub tty: bool,
}

/// The outcome of one enforced rule for one request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Deny,
}

impl RuleSet {
    /// Decides an exec of `req.path` (process rules).
    pub fn decide_exec(&self, req: &PathRequest<'_>) -> Decision<'_> {
        self.decide_path(&self.process, req, true)
    }

    /// Decides an open of `req.path` (file rules).
    pub fn decide_open(&self, req: &PathRequest<'_>) -> Decision<'_> {
        self.decide_path(&self.file, req, false)
    }

    fn decide_path(
        &self,
        table: &Table<PathIndex>,
        req: &PathRequest<'_>,
        exec: bool,
    ) -> Decision<'_> {
        let rules = &self.path_rules;
        let glob = |id: u32, path: &str| match &rules[id as usize].target {
            PathTarget::Pattern(g) => {
                g.is_match(path)
                    || self
                        .pattern_aliases
                        .get(&id)
                        .is_some_and(|a| a.is_match(path))
            }
            _ => false,
        };

        let mut enforced: Option<(Outcome, &PathRule)> = None;
        table
            .enforce
            .walk(req.path, req.source, &glob, &mut |a, b| {
                enforced = combine(
                    a.iter().chain(b).map(|id| {
                        let r = &rules[*id as usize];
                        (enforce_path_rule(r, req, exec), r)
                    }),
                    |r| &r.meta,
                );
                enforced.is_some()
            });

        let mut audited: Option<&PathRule> = None;
        table.audit.walk(req.path, req.source, &glob, &mut |a, b| {
            audited = a
                .iter()
                .chain(b)
                .map(|id| &rules[*id as usize])
                .filter(|r| audit_path_rule(r, req, exec))
                .min_by_key(|r| policy_key(&r.meta));
            audited.is_some()
        });

        let posture = self.postures.file;
        // What every dynamically linked program reads, and `/` itself, are not put to a file
        // allow-list's posture; a rule that names the path still decides it.
        let implicit = !exec && enforced.is_none() && implicitly_readable(req);
        resolve(
            enforced.map(|(o, r)| (o, &*r.meta)),
            audited.map(|r| &*r.meta),
            table.allow_list && !implicit,
            posture,
        )
    }

    /// Decides a socket operation (protocol rules). Only network families (IPv4, IPv6,
    /// packet) are subject to protocol rules; Unix and netlink sockets are not.
    pub fn decide_socket(&self, req: &SocketRequest<'_>) -> Decision<'_> {
        let Some(keys) = socket_keys(req.family, req.sock_type, req.protocol) else {
            return Decision::LOG;
        };
        let rules = &self.protocol_rules;
        let lookup = |index: &KeyedIndex<NetKey>, pick: &mut dyn FnMut(&[u32]) -> bool| {
            let sources = req.source.into_iter().map(Some).chain([None]);
            for source in sources {
                for key in keys.iter().flatten() {
                    if pick(index.get(key, source)) {
                        return;
                    }
                }
            }
        };
        let mut enforced = None;
        lookup(&self.network.enforce, &mut |ids| {
            enforced = combine(
                ids.iter().map(|id| {
                    let r = &rules[*id as usize];
                    let fires = !r.tty_only || req.tty;
                    let deny = match r.meta.action {
                        Action::Block => fires,
                        // An Allow with pts: false denies from a terminal.
                        _ => r.tty_only && req.tty,
                    };
                    (if deny { Outcome::Deny } else { Outcome::Pass }, &*r.meta)
                }),
                |m| m,
            );
            enforced.is_some()
        });
        let mut audited = None;
        lookup(&self.network.audit, &mut |ids| {
            audited = ids
                .iter()
                .map(|id| &rules[*id as usize])
                .filter(|r| !r.tty_only || req.tty)
                .map(|r| &*r.meta)
                .min_by_key(|m| policy_key(m));
            audited.is_some()
        });
        resolve(
            enforced,
            audited,
            self.network.allow_list,
            self.postures.network,
        )
    }

    /// Decides a DNS query for `domain` (matchDNSQueries); a rule for `example.com` also
    /// covers its subdomains.
    pub fn decide_dns(&self, domain: &str, source: Option<&str>) -> Decision<'_> {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let suffixes: Vec<&str> = std::iter::once(domain.as_str())
            .chain(domain.match_indices('.').map(|(i, _)| &domain[i + 1..]))
            .collect();
        let rules = &self.dns_rules;
        // The rules at the first matching key (source-scoped first, then the longest suffix).
        let group = |index: &'_ KeyedIndex<Box<str>>| -> Vec<u32> {
            for s in source.into_iter().map(Some).chain([None]) {
                for suffix in &suffixes {
                    let ids = index.get(*suffix, s);
                    if !ids.is_empty() {
                        return ids.to_vec();
                    }
                }
            }
            Vec::new()
        };
        let enforced = combine(
            group(&self.dns.enforce).into_iter().map(|id| {
                let r = &rules[id as usize];
                let o = if r.meta.action == Action::Block {
                    Outcome::Deny
                } else {
                    Outcome::Pass
                };
                (o, &*r.meta)
            }),
            |m| m,
        );
        let audited = group(&self.dns.audit)
            .into_iter()
            .map(|id| &*rules[id as usize].meta)
            .min_by_key(|m| policy_key(m));
        resolve(
            enforced,
            audited,
            self.dns.allow_list,
            self.postures.network,
        )
    }

    /// Decides the use of capability number `cap`.
    pub fn decide_capability(&self, cap: u8, source: Option<&str>) -> Decision<'_> {
        let rules = &self.capability_rules;
        let mut enforced = None;
        for s in source.into_iter().map(Some).chain([None]) {
            enforced = combine(
                self.capabilities.enforce.get(&cap, s).iter().map(|id| {
                    let r = &rules[*id as usize];
                    let o = if r.meta.action == Action::Block {
                        Outcome::Deny
                    } else {
                        Outcome::Pass
                    };
                    (o, &*r.meta)
                }),
                |m| m,
            );
            if enforced.is_some() {
                break;
            }
        }
        let audited = source
            .into_iter()
            .map(Some)
            .chain([None])
            .map(|s| self.capabilities.audit.get(&cap, s))
            .find(|ids| !ids.is_empty())
            .and_then(|ids| {
                ids.iter()
                    .map(|id| &*rules[*id as usize].meta)
                    .min_by_key(|m| policy_key(m))
            });
        resolve(
            enforced,
            audited,
            self.capabilities.allow_list,
            self.postures.capabilities,
        )
    }

    /// Syscall rules only audit: the first rule that matches `syscall` (name without `SYS_`),
    /// the path it acted on and the acting executable.
    pub fn decide_syscall(
        &self,
        syscall: &str,
        path: Option<&str>,
        source: Option<&str>,
    ) -> Decision<'_> {
        let hit = self.syscalls.iter().find(|r| {
            r.syscalls.iter().any(|s| s == syscall)
                && match (&r.path, path) {
                    (None, _) => true,
                    (Some(p), Some(path)) => syscall_path_matches(p, path),
                    (Some(_), None) => false,
                }
                && (r.sources.is_empty()
                    || source.is_some_and(|src| {
                        r.sources.iter().any(|s| syscall_source_matches(s, src))
                    }))
        });
        match hit {
            Some(r) => Decision::alert(Verdict::Allow, Action::Audit, Matched::Policy(&r.meta)),
            None => Decision::LOG,
        }
    }

    /// Decides a USB device or interface. `level` is the number of ports from the root hub.
    pub fn decide_device(&self, class: u8, sub_class: u8, protocol: u8, level: u8) -> Decision<'_> {
        let hit = self.devices.iter().find(|r| {
            r.class.is_none_or(|c| c == class)
                && r.sub_class.is_none_or(|c| c == sub_class)
                && r.protocol.is_none_or(|c| c == protocol)
                && r.level.is_none_or(|c| c == level)
        });
        match hit {
            Some(r) => match r.meta.action {
                Action::Block => {
                    Decision::alert(Verdict::Deny, Action::Block, Matched::Policy(&r.meta))
                }
                a @ (Action::Audit | Action::AuditAllow | Action::AuditBlock) => {
                    Decision::alert(Verdict::Allow, a, Matched::Policy(&r.meta))
                }
                Action::Allow => Decision {
                    verdict: Verdict::Allow,
                    report: Report::Silent,
                },
            },
            None if self.devices.iter().any(|r| r.meta.action == Action::Allow) => {
                match self.postures.device {
                    Posture::Block => {
                        Decision::alert(Verdict::Deny, Action::Block, Matched::DefaultPosture)
                    }
                    Posture::Audit => {
                        Decision::alert(Verdict::Allow, Action::Audit, Matched::DefaultPosture)
                    }
                    Posture::Allow => Decision::LOG,
                }
            }
            None => Decision::LOG,
        }
    }

    /// Whether this rule set was compiled for the host (alerts are `MatchedHostPolicy`).
    pub fn is_host(&self) -> bool {
        self.host
    }
}

/// Directories of the system's shared libraries (and the loader's cache): under a file
/// allow-list, reading below them needs no rule, so a policy that lists only what a program
/// works on still lets the dynamic loader load it. Writing there still falls to the posture,
/// and any rule naming a path there (Block, Allow with flags, Audit) decides it as written.
/// Paths are the symlink-resolved ones the planes report.
pub const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/libx32/",
    "/usr/lib/",
    "/usr/lib32/",
    "/usr/lib64/",
    "/usr/libx32/",
];

/// Single files of the loader that sit outside [`SYSTEM_LIBRARY_DIRS`].
pub const SYSTEM_LIBRARY_FILES: &[&str] = &["/etc/ld.so.cache"];

/// A read the file allow-list does not judge: the root directory itself (`opendir("/")`,
/// path lookups), or a system library.
fn implicitly_readable(req: &PathRequest<'_>) -> bool {
    req.access == Access::Read
        && (req.path == "/"
            || SYSTEM_LIBRARY_FILES.contains(&req.path)
            || SYSTEM_LIBRARY_DIRS.iter().any(|d| req.path.starts_with(d)))
}

/// Folds the enforced rules of one group (the group matched if it is non-empty). The result
/// does not depend on policy order: a denial wins, attributed to a Block rule if one denies;
/// a pass is attributed to an Allow rule if one passes (KubeArmor drops those silently); then
/// the policy (kind, name) that sorts first. Rules of one policy keep their written order.
fn combine<'m, R: Copy>(
    outcomes: impl Iterator<Item = (Outcome, R)>,
    meta: impl Fn(R) -> &'m RuleMeta,
) -> Option<(Outcome, R)> {
    outcomes.min_by_key(|&(o, r)| {
        let m = meta(r);
        let rank = match (o, m.action) {
            (Outcome::Deny, Action::Block) => 0,
            (Outcome::Deny, _) => 1,
            (Outcome::Pass, Action::Allow) => 2,
            (Outcome::Pass, _) => 3,
        };
        (rank, policy_key(m))
    })
}

/// Tie-break between equally ranked rules of different policies, so that attribution does
/// not depend on the order in which policies were loaded.
fn policy_key(m: &RuleMeta) -> (crate::model::PolicyKind, &str) {
    (m.kind, &m.policy)
}

/// Turns the enforced match, the audit match and the posture into a decision.
fn resolve<'a>(
    enforced: Option<(Outcome, &'a RuleMeta)>,
    audited: Option<&'a RuleMeta>,
    allow_list: bool,
    posture: Posture,
) -> Decision<'a> {
    // An audit rule reports with its own action: `Audit`, or `Audit (Allow)` / `Audit (Block)`
    // for the rules of a workload in audited mode.
    let audit_or = |fallback: Report<'a>| Decision {
        verdict: Verdict::Allow,
        report: audited.map_or(fallback, |m| Report::Alert {
            action: m.action,
            matched: Matched::Policy(m),
        }),
    };
    // What the default posture makes of an operation the allow-list does not permit.
    let by_posture = || match posture {
        Posture::Block => Decision::alert(Verdict::Deny, Action::Block, Matched::DefaultPosture),
        Posture::Audit => audit_or(Report::Alert {
            action: Action::Audit,
            matched: Matched::DefaultPosture,
        }),
        Posture::Allow => audit_or(Report::Log),
    };
    match enforced {
        Some((Outcome::Deny, meta)) if meta.action == Action::Block => {
            Decision::alert(Verdict::Deny, Action::Block, Matched::Policy(meta))
        }
        // An Allow rule whose flags (ownerOnly, readOnly, pts) refuse this operation does not
        // permit it: like an unmatched operation, it is the posture's to decide (and report).
        Some((Outcome::Deny, _)) => by_posture(),
        Some((Outcome::Pass, meta)) if meta.action == Action::Allow => audit_or(Report::Silent),
        Some((Outcome::Pass, _)) => audit_or(Report::Log),
        None if allow_list => by_posture(),
        None => audit_or(Report::Log),
    }
}

impl PathRule {
    /// Whether this Allow or Block rule, once its path matched, denies a request of this shape
    /// (a write or not, by the file's owner or not, from a terminal or not; `exec` for process
    /// rules). Planes that fold rules per request shape into kernel maps use this so they
    /// decide as [`RuleSet::decide_open`] does. `allowedArgs` is not part of the shape: a
    /// Block rule with it denies here as if the arguments were unknown.
    pub fn denies(&self, write: bool, owner: bool, tty: bool, exec: bool) -> bool {
        enforce_path_rule(self, &shape(write, owner, tty), exec) == Outcome::Deny
    }

    /// Whether this Audit rule, once its path matched, reports a request of this shape.
    pub fn audits(&self, write: bool, owner: bool, tty: bool, exec: bool) -> bool {
        audit_path_rule(self, &shape(write, owner, tty), exec)
    }
}

fn shape(write: bool, owner: bool, tty: bool) -> PathRequest<'static> {
    PathRequest {
        access: if write { Access::Write } else { Access::Read },
        uid: 0,
        owner: Some(if owner { 0 } else { 1 }),
        tty,
        ..PathRequest::new("")
    }
}

/// What an Allow or Block rule does to this request once its path matched.
fn enforce_path_rule(r: &PathRule, req: &PathRequest<'_>, exec: bool) -> Outcome {
    let write = !exec && req.access == Access::Write;
    let args_ok = || {
        r.allowed_args
            .as_ref()
            .map(|allowed| args_match(allowed, req.args))
    };
    let deny_if = |b: bool| if b { Outcome::Deny } else { Outcome::Pass };
    match r.meta.action {
        Action::Block => {
            // pts: false makes the rule fire on a terminal; without one, ownerOnly and
            // readOnly still hold (the kernel checks them whatever the terminal).
            if r.tty_only && req.tty {
                return Outcome::Deny;
            }
            if r.owner_only && !req.is_owner() {
                return Outcome::Deny;
            }
            if let Some(ok) = args_ok() {
                return deny_if(!ok);
            }
            if r.owner_only || r.read_only {
                // Owner of an ownerOnly rule passes; readOnly lets reads through.
                return deny_if(r.read_only && write);
            }
            deny_if(!r.tty_only)
        }
        _ => deny_if(
            (r.tty_only && req.tty) || (r.owner_only && !req.is_owner()) || (r.read_only && write),
        ),
    }
}

/// Whether an Audit rule whose path matched reports this request (KubeArmor's feeder test:
/// readOnly reports only writes, ownerOnly only non-owners, pts: false only terminals).
/// With both flags, everything but the owner reading is reported. An audited Allow rule
/// reports every access it covers (KubeArmor: "Allow rules: always matched").
fn audit_path_rule(r: &PathRule, req: &PathRequest<'_>, exec: bool) -> bool {
    if r.meta.action == Action::AuditAllow {
        return true;
    }
    let write = !exec && req.access == Access::Write;
    let flagged = match (r.read_only, r.owner_only) {
        (false, false) => true,
        (true, false) => write,
        (false, true) => !req.is_owner(),
        (true, true) => write || !req.is_owner(),
    };
    (!r.tty_only || req.tty) && flagged
}

/// `allowedArgs`: every argument after argv[0] must be in the allowed set (order does not
/// matter); with no arguments, argv[0] itself must be. Unknown argv never matches.
fn args_match(allowed: &[String], args: Option<&[String]>) -> bool {
    let Some(args) = args else {
        return false;
    };
    match args {
        [] => false,
        [only] => allowed.contains(only),
        [_, rest @ ..] => rest.len() <= 20 && rest.iter().all(|a| allowed.contains(a)),
    }
}

/// The lookup keys of a socket: its type key, then a second key. For IPv4 and IPv6 the second
/// key is the IP protocol, with variants folded into the protocol they extend (MPTCP is `tcp`,
/// UDP-Lite is `udp`, a protocol-0 seqpacket socket is SCTP). Every packet socket (AF_PACKET
/// of any type, AF_INET + SOCK_PACKET, AF_XDP) also answers to `raw`: cooked `SOCK_DGRAM` packet sockets need
/// CAP_NET_RAW and see the same traffic. Other families (Unix, netlink, vsock) have no keys.
/// The network plane's BPF program mirrors this function.
fn socket_keys(fam: i32, ty: i32, proto: i32) -> Option<[Option<NetKey>; 2]> {
    let ty = ty & 0xf; // strip SOCK_NONBLOCK / SOCK_CLOEXEC
                       // The kernel turns the obsolete AF_INET + SOCK_PACKET into a packet socket.
    let fam = if fam == family::INET && ty == sock::PACKET {
        family::PACKET
    } else {
        fam
    };
    let ip = fam == family::INET || fam == family::INET6;
    if !ip && fam != family::PACKET && fam != family::XDP {
        return None;
    }
    let type_key = sock::type_name(ty).map(|_| NetKey::Type(ty as u8));
    if !ip {
        let raw = (ty != sock::RAW).then_some(NetKey::Type(sock::RAW as u8));
        return Some([type_key, raw]);
    }
    let protocol = if ty == sock::STREAM && matches!(proto, 0 | ipproto::TCP | ipproto::MPTCP) {
        Some(ipproto::TCP)
    } else if ty == sock::DGRAM && matches!(proto, 0 | ipproto::UDP | ipproto::UDPLITE) {
        Some(ipproto::UDP)
    } else if (ty == sock::DGRAM || ty == sock::RAW)
        && (proto == ipproto::ICMP || proto == ipproto::ICMPV6)
    {
        Some(proto)
    } else if (ty == sock::STREAM && proto == ipproto::SCTP)
        || (ty == sock::SEQPACKET && matches!(proto, 0 | ipproto::SCTP))
    {
        Some(ipproto::SCTP)
    } else {
        None
    };
    Some([type_key, protocol.map(|p| NetKey::Protocol(p as u8))])
}

fn syscall_path_matches(rule: &SyscallPath, path: &str) -> bool {
    match rule {
        SyscallPath::File(p) => p == path,
        SyscallPath::Dir { dir, recursive } => {
            if path == dir {
                return true;
            }
            match path
                .strip_prefix(dir.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(rest) => *recursive || !rest.contains('/'),
                None => false,
            }
        }
    }
}

fn syscall_source_matches(rule: &SyscallSource, source: &str) -> bool {
    match rule {
        SyscallSource::Path(p) => p == source,
        SyscallSource::Dir { dir, recursive } => {
            match source
                .strip_prefix(dir.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(rest) => *recursive || !rest.contains('/'),
                None => false,
            }
        }
    }
}
