//! Parse, compile, decide: a fuzzed policy text, fuzzed postures and a list of fuzzed
//! requests, plus requests aimed at every path the compiled rules name (so that lookups hit).
//! Nothing may panic; a decision must be internally consistent.

#![no_main]

use arbitrary::Arbitrary;
use kubearmor_policy::{
    parse_policies, Access, Decision, NoResolve, PathRequest, PathTarget, Posture, Postures,
    Report, RuleSet, SocketRequest, Verdict,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    policy: String,
    postures: u8,
    requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
enum Request {
    Exec {
        path: String,
        source: Option<String>,
        uid: u32,
        owner: Option<u32>,
        tty: bool,
        args: Option<Vec<String>>,
    },
    Open {
        path: String,
        source: Option<String>,
        write: bool,
        uid: u32,
        owner: Option<u32>,
        tty: bool,
    },
    Socket {
        family: i32,
        sock_type: i32,
        protocol: i32,
        source: Option<String>,
        tty: bool,
    },
    Capability {
        cap: u8,
        source: Option<String>,
    },
    Dns {
        domain: String,
        source: Option<String>,
    },
    Syscall {
        name: String,
        path: Option<String>,
        source: Option<String>,
    },
    Device {
        class: u8,
        sub_class: u8,
        protocol: u8,
        level: u8,
    },
}

fn posture(bit: bool) -> Posture {
    if bit {
        Posture::Block
    } else {
        Posture::Audit
    }
}

/// A denial always comes with a Block alert; an allowed operation never does.
fn consistent(d: &Decision<'_>) {
    match (d.verdict, d.report) {
        (Verdict::Deny, Report::Alert { action, .. }) => {
            assert_eq!(action, kubearmor_policy::Action::Block, "{d:?}")
        }
        (Verdict::Deny, _) => panic!("a denial without an alert: {d:?}"),
        (Verdict::Allow, Report::Alert { action, .. }) => {
            assert_ne!(action, kubearmor_policy::Action::Block, "{d:?}")
        }
        _ => {}
    }
}

fn path_request<'a>(
    path: &'a str,
    source: Option<&'a str>,
    uid: u32,
    owner: Option<u32>,
    tty: bool,
) -> PathRequest<'a> {
    let mut r = PathRequest::new(path);
    r.source = source;
    r.uid = uid;
    r.owner = owner;
    r.tty = tty;
    r
}

fuzz_target!(|input: Input| {
    let Ok(parsed) = parse_policies(&input.policy, "fuzz.yaml") else {
        return;
    };
    let p = input.postures;
    let postures = Postures {
        file: posture(p & 1 != 0),
        network: posture(p & 2 != 0),
        capabilities: posture(p & 4 != 0),
        device: posture(p & 8 != 0),
    };
    let set = RuleSet::compile(&parsed.policies, postures, &NoResolve);

    // Requests aimed at what the rules name: the path, a child, a grandchild.
    let mut aimed = Vec::new();
    for r in set.path_rules() {
        let base = match &r.target {
            PathTarget::Path(p) => p.clone(),
            PathTarget::ExecName(n) => format!("/usr/bin/{n}"),
            PathTarget::Dir { dir, .. } => dir.clone(),
            PathTarget::Pattern(g) => g.as_str().replace('*', "x").replace('?', "y"),
        };
        aimed.push((format!("{base}/f"), r.source.clone()));
        aimed.push((format!("{base}/d/f"), r.source.clone()));
        aimed.push((base, r.source.clone()));
    }
    for (path, source) in &aimed {
        for (uid, owner, tty, access) in [
            (0, None, false, Access::Read),
            (1000, Some(1000), true, Access::Write),
        ] {
            let mut req = path_request(path, source.as_deref(), uid, owner, tty);
            req.access = access;
            consistent(&set.decide_exec(&req));
            consistent(&set.decide_open(&req));
        }
    }

    for r in &input.requests {
        match r {
            Request::Exec {
                path,
                source,
                uid,
                owner,
                tty,
                args,
            } => {
                let mut req = path_request(path, source.as_deref(), *uid, *owner, *tty);
                req.args = args.as_deref();
                consistent(&set.decide_exec(&req));
            }
            Request::Open {
                path,
                source,
                write,
                uid,
                owner,
                tty,
            } => {
                let mut req = path_request(path, source.as_deref(), *uid, *owner, *tty);
                req.access = if *write { Access::Write } else { Access::Read };
                consistent(&set.decide_open(&req));
            }
            Request::Socket {
                family,
                sock_type,
                protocol,
                source,
                tty,
            } => {
                consistent(&set.decide_socket(&SocketRequest {
                    family: *family,
                    sock_type: *sock_type,
                    protocol: *protocol,
                    source: source.as_deref(),
                    tty: *tty,
                }));
            }
            Request::Capability { cap, source } => {
                consistent(&set.decide_capability(*cap, source.as_deref()));
            }
            Request::Dns { domain, source } => {
                consistent(&set.decide_dns(domain, source.as_deref()));
            }
            Request::Syscall { name, path, source } => {
                consistent(&set.decide_syscall(name, path.as_deref(), source.as_deref()));
            }
            Request::Device {
                class,
                sub_class,
                protocol,
                level,
            } => {
                consistent(&set.decide_device(*class, *sub_class, *protocol, *level));
            }
        }
    }
});
