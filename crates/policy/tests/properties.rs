//! Property tests of how rules combine.
//!
//! Policies are generated as a small model, rendered to policy text (JSON, which the YAML
//! parser reads) and sent through the real pipeline: `parse_policies` -> `RuleSet::compile` ->
//! `decide_*`. Paths, sources and names come from small universes so that generated rules
//! and requests collide often.
//!
//! Properties:
//! - (a) a rule that cannot match a request (under a disjoint directory, for another source,
//!   for another executable name, capability or domain) never changes the decision. An Allow
//!   rule is the exception by design: the first Allow rule of a family switches the whole
//!   family to allow-list mode, which changes the fate of every unmatched operation. So the
//!   decisions of a family are only compared when the unrelated rule leaves that family's
//!   allow-list state unchanged (it is Block or Audit, or the family already had an Allow).
//! - (b) Block beats Allow at the identical key, whatever the policy order.
//! - (c) a `fromSource` rule beats every global rule; an exact path beats directories and
//!   patterns; a deeper directory beats a shallower one.
//! - (d) the order of policies changes no decision, attribution included.
//! - (e) parsing never panics, on arbitrary text or on a well-formed policy carrying hostile
//!   values; every error names its document and says something.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use kubearmor_policy::{
    parse_policies, Access, Action, Decision, Matched, NoResolve, PathRequest, Policy, Posture,
    Postures, Report, RuleSet, SocketRequest, Verdict,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The model

const DIRS: &[&str] = &["/a", "/a/b", "/a/b/c", "/x"];
const NAMES: &[&str] = &["f", "g"];
const SOURCES: &[&str] = &["/bin/s1", "/bin/s2"];
const PATTERNS: &[&str] = &[
    "/a/*", "/a/**", "/a/b/?", "/*/b/f", "/x/[fg]", "/**/f", "/a/b/c/*",
];
const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp", "raw", "stream", "dgram", "all"];
const CAPABILITIES: &[&str] = &["net_raw", "chown", "sys_admin", "setuid"];
const DOMAINS: &[&str] = &["example.com", "a.example.com", "kubearmor.io"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fam {
    Process,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(String),
    ExecName(String),
    Dir { dir: String, recursive: bool },
    Pattern(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Allow,
    Audit,
    Block,
}

impl Act {
    fn word(self) -> &'static str {
        match self {
            Act::Allow => "Allow",
            Act::Audit => "Audit",
            Act::Block => "Block",
        }
    }
}

#[derive(Debug, Clone)]
struct PathRule {
    fam: Fam,
    target: Target,
    source: Option<String>,
    action: Act,
    read_only: bool,
    owner_only: bool,
    pts_false: bool,
    severity: u8,
}

#[derive(Debug, Clone)]
enum Keyed {
    Protocol(&'static str),
    Capability(&'static str),
    Dns(String),
}

#[derive(Debug, Clone)]
struct KeyedRule {
    key: Keyed,
    source: Option<String>,
    action: Act,
    pts_false: bool,
    severity: u8,
}

#[derive(Debug, Clone)]
enum Rule {
    Path(PathRule),
    Keyed(KeyedRule),
}

/// The allow-list switches: one per table of the rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Process,
    File,
    Protocol,
    Capability,
    Dns,
}

impl Rule {
    fn table(&self) -> Table {
        match self {
            Rule::Path(r) if r.fam == Fam::Process => Table::Process,
            Rule::Path(_) => Table::File,
            Rule::Keyed(k) => match k.key {
                Keyed::Protocol(_) => Table::Protocol,
                Keyed::Capability(_) => Table::Capability,
                Keyed::Dns(_) => Table::Dns,
            },
        }
    }

    fn action(&self) -> Act {
        match self {
            Rule::Path(r) => r.action,
            Rule::Keyed(k) => k.action,
        }
    }
}

#[derive(Debug, Clone)]
struct Pol {
    name: String,
    rules: Vec<Rule>,
}

fn allow_list(pols: &[Pol], table: Table) -> bool {
    pols.iter()
        .flat_map(|p| &p.rules)
        .any(|r| r.table() == table && r.action() == Act::Allow)
}

// ---------------------------------------------------------------------------------------------
// Rendering and compiling

fn with_meta(mut m: Map<String, Value>, action: Act, severity: u8) -> Value {
    m.insert("action".into(), json!(action.word()));
    if severity > 0 {
        m.insert("severity".into(), json!(severity));
    }
    Value::Object(m)
}

fn from_source(m: &mut Map<String, Value>, source: &Option<String>) {
    if let Some(s) = source {
        m.insert("fromSource".into(), json!([{ "path": s }]));
    }
}

fn push(spec: &mut Map<String, Value>, family: &str, list: &str, item: Value) {
    let fam = spec
        .entry(family.to_string())
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .unwrap();
    fam.entry(list.to_string())
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(item);
}

fn render_policy(p: &Pol) -> Value {
    let mut spec = Map::new();
    spec.insert(
        "selector".into(),
        json!({ "matchLabels": { "app": "test" } }),
    );
    for r in &p.rules {
        match r {
            Rule::Path(r) => {
                let family = match r.fam {
                    Fam::Process => "process",
                    Fam::File => "file",
                };
                let mut m = Map::new();
                let list = match &r.target {
                    Target::Path(path) => {
                        m.insert("path".into(), json!(path));
                        "matchPaths"
                    }
                    Target::ExecName(n) => {
                        m.insert("execname".into(), json!(n));
                        "matchPaths"
                    }
                    Target::Dir { dir, recursive } => {
                        m.insert("dir".into(), json!(format!("{dir}/")));
                        if *recursive {
                            m.insert("recursive".into(), json!(true));
                        }
                        "matchDirectories"
                    }
                    Target::Pattern(g) => {
                        m.insert("pattern".into(), json!(g));
                        "matchPatterns"
                    }
                };
                if r.fam == Fam::File && r.read_only {
                    m.insert("readOnly".into(), json!(true));
                }
                if r.owner_only {
                    m.insert("ownerOnly".into(), json!(true));
                }
                if !matches!(r.target, Target::Pattern(_)) {
                    if r.pts_false {
                        m.insert("pts".into(), json!(false));
                    }
                    from_source(&mut m, &r.source);
                }
                push(&mut spec, family, list, with_meta(m, r.action, r.severity));
            }
            Rule::Keyed(k) => {
                let mut m = Map::new();
                let (family, list) = match &k.key {
                    Keyed::Protocol(w) => {
                        m.insert("protocol".into(), json!(w));
                        if k.pts_false {
                            m.insert("pts".into(), json!(false));
                        }
                        ("network", "matchProtocols")
                    }
                    Keyed::Capability(c) => {
                        m.insert("capability".into(), json!(c));
                        ("capabilities", "matchCapabilities")
                    }
                    Keyed::Dns(d) => {
                        m.insert("domain".into(), json!(d));
                        ("network", "matchDNSQueries")
                    }
                };
                from_source(&mut m, &k.source);
                push(&mut spec, family, list, with_meta(m, k.action, k.severity));
            }
        }
    }
    json!({
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorPolicy",
        "metadata": { "name": p.name, "namespace": "default" },
        "spec": spec,
    })
}

/// Renders the policies as one multi-document YAML input and parses it.
fn parse(pols: &[Pol]) -> Vec<Policy> {
    let text: String = pols
        .iter()
        .map(|p| format!("---\n{}\n", render_policy(p)))
        .collect();
    match parse_policies(&text, "generated") {
        Ok(parsed) => parsed.policies,
        Err(e) => panic!("generated policies must be valid:\n{e}\n{text}"),
    }
}

fn compile(pols: &[Pol], postures: Postures) -> RuleSet {
    RuleSet::compile(&parse(pols), postures, &NoResolve)
}

// ---------------------------------------------------------------------------------------------
// Requests

#[derive(Debug, Clone)]
struct PathReq {
    exec: bool,
    path: String,
    source: Option<String>,
    write: bool,
    uid: u32,
    owner: Option<u32>,
    tty: bool,
}

impl PathReq {
    fn request(&self) -> PathRequest<'_> {
        let mut r = PathRequest::new(&self.path);
        r.source = self.source.as_deref();
        r.access = if self.write {
            Access::Write
        } else {
            Access::Read
        };
        r.uid = self.uid;
        r.owner = self.owner;
        r.tty = self.tty;
        r
    }

    fn table(&self) -> Table {
        if self.exec {
            Table::Process
        } else {
            Table::File
        }
    }

    fn decide<'a>(&self, set: &'a RuleSet) -> Decision<'a> {
        if self.exec {
            set.decide_exec(&self.request())
        } else {
            set.decide_open(&self.request())
        }
    }
}

#[derive(Debug, Clone)]
enum Req {
    Path(PathReq),
    Socket {
        family: i32,
        ty: i32,
        proto: i32,
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
}

impl Req {
    fn table(&self) -> Table {
        match self {
            Req::Path(p) => p.table(),
            Req::Socket { .. } => Table::Protocol,
            Req::Capability { .. } => Table::Capability,
            Req::Dns { .. } => Table::Dns,
        }
    }

    fn decide<'a>(&self, set: &'a RuleSet) -> Decision<'a> {
        match self {
            Req::Path(p) => p.decide(set),
            Req::Socket {
                family,
                ty,
                proto,
                source,
                tty,
            } => set.decide_socket(&SocketRequest {
                family: *family,
                sock_type: *ty,
                protocol: *proto,
                source: source.as_deref(),
                tty: *tty,
            }),
            Req::Capability { cap, source } => set.decide_capability(*cap, source.as_deref()),
            Req::Dns { domain, source } => set.decide_dns(domain, source.as_deref()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![Just(Act::Allow), Just(Act::Audit), Just(Act::Block)]
}

fn enforcing_act() -> impl Strategy<Value = Act> {
    prop_oneof![Just(Act::Allow), Just(Act::Block)]
}

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(list)
}

fn universe_path() -> impl Strategy<Value = String> {
    prop_oneof![
        (pick(DIRS), pick(NAMES)).prop_map(|(d, n)| format!("{d}/{n}")),
        pick(NAMES).prop_map(|n| format!("/{n}")),
        pick(DIRS).prop_map(str::to_string),
    ]
}

fn opt_source() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.4, pick(SOURCES).prop_map(str::to_string))
}

fn fam() -> impl Strategy<Value = Fam> {
    prop_oneof![Just(Fam::Process), Just(Fam::File)]
}

fn target(fam: Fam) -> BoxedStrategy<Target> {
    let dir =
        (prop_oneof![Just(""), pick(DIRS)], any::<bool>()).prop_map(|(d, recursive)| Target::Dir {
            dir: d.to_string(),
            recursive,
        });
    let common = prop_oneof![
        3 => universe_path().prop_map(Target::Path),
        3 => dir,
        1 => pick(PATTERNS).prop_map(|p| Target::Pattern(p.to_string())),
    ];
    match fam {
        Fam::Process => prop_oneof![
            6 => common,
            1 => pick(NAMES).prop_map(|n| Target::ExecName(n.to_string())),
        ]
        .boxed(),
        Fam::File => common.boxed(),
    }
}

prop_compose! {
    fn path_rule()(fam in fam())(
        fam in Just(fam),
        target in target(fam),
        source in opt_source(),
        action in act(),
        flags in (prop::bool::weighted(0.2), prop::bool::weighted(0.2), prop::bool::weighted(0.15)),
        severity in 0u8..=10,
    ) -> PathRule {
        let pattern = matches!(target, Target::Pattern(_));
        PathRule {
            fam,
            target,
            source: if pattern { None } else { source },
            action,
            read_only: fam == Fam::File && flags.0,
            owner_only: flags.1,
            pts_false: !pattern && flags.2,
            severity,
        }
    }
}

fn keyed() -> impl Strategy<Value = Keyed> {
    prop_oneof![
        pick(PROTOCOLS).prop_map(Keyed::Protocol),
        pick(CAPABILITIES).prop_map(Keyed::Capability),
        pick(DOMAINS).prop_map(|d| Keyed::Dns(d.to_string())),
    ]
}

prop_compose! {
    fn keyed_rule()(
        key in keyed(),
        source in opt_source(),
        action in act(),
        pts_false in prop::bool::weighted(0.15),
        severity in 0u8..=10,
    ) -> KeyedRule {
        let pts_false = pts_false && matches!(key, Keyed::Protocol(_));
        KeyedRule { key, source, action, pts_false, severity }
    }
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        3 => path_rule().prop_map(Rule::Path),
        1 => keyed_rule().prop_map(Rule::Keyed),
    ]
}

fn policies(max: usize) -> impl Strategy<Value = Vec<Pol>> {
    prop::collection::vec(prop::collection::vec(rule(), 1..8), 1..=max).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, rules)| Pol {
                // Names out of alphabetical order with respect to their position.
                name: format!("p{}-{}", (i * 7) % 10, i),
                rules,
            })
            .collect()
    })
}

prop_compose! {
    fn path_req()(
        exec in any::<bool>(),
        path in universe_path(),
        source in prop::option::weighted(0.6, prop_oneof![pick(SOURCES), Just("/bin/s3")]),
        write in any::<bool>(),
        uid in prop_oneof![Just(0u32), Just(1000u32)],
        owner in prop::option::of(prop_oneof![Just(0u32), Just(1000u32)]),
        tty in any::<bool>(),
    ) -> PathReq {
        PathReq { exec, path, source: source.map(str::to_string), write, uid, owner, tty }
    }
}

fn req_source() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.6,
        prop_oneof![pick(SOURCES), Just("/bin/s3")].prop_map(str::to_string),
    )
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        4 => path_req().prop_map(Req::Path),
        1 => (
            prop::sample::select(&[2i32, 10, 17, 1][..]),
            prop::sample::select(&[1i32, 2, 3, 5][..]),
            prop::sample::select(&[0i32, 1, 6, 17, 58][..]),
            req_source(),
            any::<bool>(),
        )
            .prop_map(|(family, ty, proto, source, tty)| Req::Socket {
                family,
                ty,
                proto,
                source,
                tty
            }),
        1 => (prop::sample::select(&[13u8, 0, 21, 7][..]), req_source())
            .prop_map(|(cap, source)| Req::Capability { cap, source }),
        1 => (
            prop::sample::select(
                &["example.com", "a.example.com", "b.a.example.com", "kubearmor.io", "other.org"][..]
            ),
            req_source(),
        )
            .prop_map(|(d, source)| Req::Dns {
                domain: d.to_string(),
                source
            }),
    ]
}

fn postures() -> impl Strategy<Value = Postures> {
    let p = || prop_oneof![Just(Posture::Audit), Just(Posture::Block)];
    (p(), p(), p()).prop_map(|(file, network, capabilities)| Postures {
        file,
        network,
        capabilities,
        device: Posture::Audit,
    })
}

/// A rule that no generated request can match: a disjoint directory, an executable name,
/// capability or domain no request uses, or a matching target scoped to a source no request
/// has.
fn unrelated_rule() -> impl Strategy<Value = Rule> {
    let n = 0u32..1000;
    let under = n.clone().prop_map(|n| format!("/unrelated-{n}"));
    let target = prop_oneof![
        under.clone().prop_map(|d| Target::Path(format!("{d}/f"))),
        (under.clone(), any::<bool>()).prop_map(|(dir, recursive)| Target::Dir { dir, recursive }),
        under
            .clone()
            .prop_map(|d| Target::Pattern(format!("{d}/**"))),
        n.clone()
            .prop_map(|n| Target::ExecName(format!("unrelated-{n}"))),
    ];
    let foreign_source =
        (fam(), universe_path(), n.clone(), act()).prop_map(|(fam, path, n, action)| {
            Rule::Path(PathRule {
                fam,
                target: Target::Path(path),
                source: Some(format!("/unrelated-src/{n}")),
                action,
                read_only: false,
                owner_only: false,
                pts_false: false,
                severity: 1,
            })
        });
    let foreign_dir_source = (fam(), pick(DIRS), any::<bool>(), n.clone(), act()).prop_map(
        |(fam, dir, recursive, n, action)| {
            Rule::Path(PathRule {
                fam,
                target: Target::Dir {
                    dir: dir.to_string(),
                    recursive,
                },
                source: Some(format!("/unrelated-src/{n}")),
                action,
                read_only: false,
                owner_only: false,
                pts_false: false,
                severity: 2,
            })
        },
    );
    let path = (fam(), target, opt_source(), act(), any::<bool>()).prop_map(
        |(fam, target, source, action, owner_only)| {
            let fam = if matches!(target, Target::ExecName(_)) {
                Fam::Process
            } else {
                fam
            };
            let pattern = matches!(target, Target::Pattern(_));
            Rule::Path(PathRule {
                fam,
                target,
                source: if pattern { None } else { source },
                action,
                read_only: false,
                owner_only,
                pts_false: false,
                severity: 3,
            })
        },
    );
    let keyed_other = (
        prop_oneof![
            Just(Keyed::Capability("kill")),
            Just(Keyed::Protocol("sctp")),
            Just(Keyed::Protocol("rdm")),
            n.clone()
                .prop_map(|n| Keyed::Dns(format!("unrelated-{n}.test"))),
        ],
        opt_source(),
        act(),
    )
        .prop_map(|(key, source, action)| {
            Rule::Keyed(KeyedRule {
                key,
                source,
                action,
                pts_false: false,
                severity: 4,
            })
        });
    let keyed_foreign = (keyed(), n, act()).prop_map(|(key, n, action)| {
        Rule::Keyed(KeyedRule {
            key,
            source: Some(format!("/unrelated-src/{n}")),
            action,
            pts_false: false,
            severity: 5,
        })
    });
    prop_oneof![
        3 => path,
        2 => foreign_source,
        1 => foreign_dir_source,
        2 => keyed_other,
        1 => keyed_foreign,
    ]
}

/// Where the unrelated rule goes: a new policy, or appended to an existing one.
fn add_rule(base: &[Pol], rule: Rule, into: Option<prop::sample::Index>) -> Vec<Pol> {
    let mut out = base.to_vec();
    match into {
        Some(i) => out[i.index(base.len())].rules.push(rule),
        None => out.push(Pol {
            name: "unrelated".into(),
            rules: vec![rule],
        }),
    }
    out
}

fn is_block_by_policy(d: &Decision<'_>) -> bool {
    matches!(
        d,
        Decision {
            verdict: Verdict::Deny,
            report: Report::Alert {
                action: Action::Block,
                matched: Matched::Policy(m),
            },
        } if m.action == Action::Block
    )
}

// ---------------------------------------------------------------------------------------------
// (a) unrelated rules

proptest! {
    #![proptest_config(config())]

    #[test]
    fn unrelated_rule_changes_no_decision(
        base in policies(4),
        extra in unrelated_rule(),
        into in prop::option::of(any::<prop::sample::Index>()),
        reqs in prop::collection::vec(req(), 1..12),
        postures in postures(),
    ) {
        let table = extra.table();
        let with = add_rule(&base, extra, into);
        let before = compile(&base, postures);
        let after = compile(&with, postures);
        // An Allow that arms allow-list mode is expected to change unmatched decisions.
        let switches = allow_list(&base, table) != allow_list(&with, table);
        for r in &reqs {
            if switches && r.table() == table {
                continue;
            }
            prop_assert_eq!(r.decide(&before), r.decide(&after), "request {:?}", r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Block beats Allow at the identical key

proptest! {
    #![proptest_config(config())]

    /// The Allow and the Block sit at the most specific key there is for the request (its
    /// exact path, scoped to its source), amid random other policies.
    #[test]
    fn block_beats_allow_at_the_exact_key(
        base in policies(3),
        req in path_req(),
        block_first in any::<bool>(),
        postures in postures(),
    ) {
        let fam = if req.exec { Fam::Process } else { Fam::File };
        let rule = |action, severity| Rule::Path(PathRule {
            fam,
            target: Target::Path(req.path.clone()),
            source: req.source.clone(),
            action,
            read_only: false,
            owner_only: false,
            pts_false: false,
            severity,
        });
        let allow = Pol { name: "the-allow".into(), rules: vec![rule(Act::Allow, 1)] };
        let block = Pol { name: "the-block".into(), rules: vec![rule(Act::Block, 9)] };
        let mut pols = base;
        if block_first {
            pols.push(block);
            pols.push(allow);
        } else {
            pols.push(allow);
            pols.push(block);
        }
        let set = compile(&pols, postures);
        let d = req.decide(&set);
        prop_assert!(is_block_by_policy(&d), "{:?} for {:?}", d, req);
    }

    /// The same for every kind of key, with nothing else around: an exact path, an executable
    /// name, a directory (direct or recursive), a pattern; global or scoped.
    #[test]
    fn block_beats_allow_for_every_kind_of_key(
        fam in fam(),
        t in 0usize..5,
        scoped in any::<bool>(),
        block_first in any::<bool>(),
        split in any::<bool>(),
        name in pick(NAMES),
        tty in any::<bool>(),
    ) {
        let path = format!("/a/b/{name}");
        let (target, scoped) = match t {
            0 => (Target::Path(path.clone()), scoped),
            1 if fam == Fam::Process => (Target::ExecName(name.to_string()), scoped),
            1 | 2 => (Target::Dir { dir: "/a/b".into(), recursive: false }, scoped),
            3 => (Target::Dir { dir: "/a".into(), recursive: true }, scoped),
            _ => (Target::Pattern("/a/*/?".into()), false),
        };
        let source = scoped.then(|| "/bin/s1".to_string());
        let rule = |action| Rule::Path(PathRule {
            fam,
            target: target.clone(),
            source: source.clone(),
            action,
            read_only: false,
            owner_only: false,
            pts_false: false,
            severity: 0,
        });
        let (first, second) = if block_first { (Act::Block, Act::Allow) } else { (Act::Allow, Act::Block) };
        let pols = if split {
            vec![
                Pol { name: "one".into(), rules: vec![rule(first)] },
                Pol { name: "two".into(), rules: vec![rule(second)] },
            ]
        } else {
            vec![Pol { name: "both".into(), rules: vec![rule(first), rule(second)] }]
        };
        let set = compile(&pols, Postures::default());
        let req = PathReq {
            exec: fam == Fam::Process,
            path,
            source: Some("/bin/s1".into()),
            write: false,
            uid: 0,
            owner: None,
            tty,
        };
        let d = req.decide(&set);
        prop_assert!(is_block_by_policy(&d), "{:?}", d);
    }
}

proptest! {
    #![proptest_config(config())]

    /// Protocol, capability and DNS rules: Block beats Allow at the identical key too.
    #[test]
    fn block_beats_allow_for_keyed_rules(
        which in 0usize..3,
        scoped in any::<bool>(),
        block_first in any::<bool>(),
        split in any::<bool>(),
    ) {
        let key = match which {
            0 => Keyed::Protocol("tcp"),
            1 => Keyed::Capability("net_raw"),
            _ => Keyed::Dns("example.com".into()),
        };
        let rule = |action| Rule::Keyed(KeyedRule {
            key: key.clone(),
            source: scoped.then(|| "/bin/s1".to_string()),
            action,
            pts_false: false,
            severity: 0,
        });
        let (first, second) = if block_first { (Act::Block, Act::Allow) } else { (Act::Allow, Act::Block) };
        let pols = if split {
            vec![
                Pol { name: "one".into(), rules: vec![rule(first)] },
                Pol { name: "two".into(), rules: vec![rule(second)] },
            ]
        } else {
            vec![Pol { name: "both".into(), rules: vec![rule(first), rule(second)] }]
        };
        let set = compile(&pols, Postures::default());
        let source = Some("/bin/s1".to_string());
        let req = match which {
            0 => Req::Socket { family: 2, ty: 1, proto: 0, source, tty: false },
            1 => Req::Capability { cap: 13, source },
            _ => Req::Dns { domain: "www.example.com".into(), source },
        };
        let d = req.decide(&set);
        prop_assert!(is_block_by_policy(&d), "{:?}", d);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) specificity

/// An enforcing rule matching `/a/b/<name>` (for source `/bin/s1` when scoped), of a kind
/// chosen by `t`.
fn matching_rule(
    fam: Fam,
    t: usize,
    name: &str,
    scoped: bool,
    action: Act,
    flags: (bool, bool, bool),
    severity: u8,
) -> Rule {
    let target = match t % 6 {
        0 => Target::Path(format!("/a/b/{name}")),
        1 if fam == Fam::Process => Target::ExecName(name.to_string()),
        1 | 2 => Target::Dir {
            dir: "/a/b".into(),
            recursive: false,
        },
        3 => Target::Dir {
            dir: "/a".into(),
            recursive: true,
        },
        4 => Target::Dir {
            dir: String::new(),
            recursive: true,
        },
        _ if !scoped => Target::Pattern("/a/**".into()),
        _ => Target::Dir {
            dir: "/a/b".into(),
            recursive: true,
        },
    };
    Rule::Path(PathRule {
        fam,
        target,
        source: scoped.then(|| "/bin/s1".to_string()),
        action,
        read_only: fam == Fam::File && flags.0,
        owner_only: flags.1,
        pts_false: scoped && flags.2,
        severity,
    })
}

prop_compose! {
    fn flags()(a in prop::bool::weighted(0.3), b in prop::bool::weighted(0.3), c in prop::bool::weighted(0.3)) -> (bool, bool, bool) {
        (a, b, c)
    }
}

proptest! {
    #![proptest_config(config())]

    /// A rule scoped to the request's source decides, whatever global rules say.
    #[test]
    fn from_source_beats_global(
        fam in fam(),
        ts in 0usize..6,
        tg in 0usize..6,
        name in pick(NAMES),
        a1 in enforcing_act(),
        a2 in enforcing_act(),
        f1 in flags(),
        f2 in flags(),
        req in path_req(),
        postures in postures(),
        global_first in any::<bool>(),
    ) {
        let scoped = Pol { name: "scoped".into(), rules: vec![matching_rule(fam, ts, name, true, a1, f1, 3)] };
        let global = Pol { name: "global".into(), rules: vec![matching_rule(fam, tg, name, false, a2, f2, 4)] };
        let both = if global_first { vec![global, scoped.clone()] } else { vec![scoped.clone(), global] };
        let req = PathReq {
            exec: fam == Fam::Process,
            path: format!("/a/b/{name}"),
            source: Some("/bin/s1".into()),
            ..req
        };
        let alone = compile(&[scoped], postures);
        let both = compile(&both, postures);
        prop_assert_eq!(req.decide(&alone), req.decide(&both));
    }

    /// An exact path beats directories and patterns (same source scope).
    #[test]
    fn exact_path_beats_directories(
        fam in fam(),
        t in 2usize..6,
        name in pick(NAMES),
        scoped in any::<bool>(),
        a1 in enforcing_act(),
        a2 in enforcing_act(),
        f1 in flags(),
        f2 in flags(),
        req in path_req(),
        postures in postures(),
    ) {
        let exact = Pol { name: "exact".into(), rules: vec![matching_rule(fam, 0, name, scoped, a1, f1, 3)] };
        let dir = Pol { name: "dir".into(), rules: vec![matching_rule(fam, t, name, scoped, a2, f2, 4)] };
        let req = PathReq {
            exec: fam == Fam::Process,
            path: format!("/a/b/{name}"),
            source: Some("/bin/s1".into()),
            ..req
        };
        let alone = compile(std::slice::from_ref(&exact), postures);
        let both = compile(&[dir, exact], postures);
        prop_assert_eq!(req.decide(&alone), req.decide(&both));
    }

    /// Of two directories that both cover the path, the deeper one decides.
    #[test]
    fn deeper_directory_beats_shallower(
        fam in fam(),
        depth in 0usize..3,
        deeper_recursive in any::<bool>(),
        direct_child in any::<bool>(),
        scoped in any::<bool>(),
        a1 in enforcing_act(),
        a2 in enforcing_act(),
        f1 in flags(),
        f2 in flags(),
        req in path_req(),
        postures in postures(),
    ) {
        // Directories from shallow to deep: "" (root), /a, /a/b, /a/b/c.
        let chain = ["", "/a", "/a/b", "/a/b/c"];
        let shallow = chain[depth];
        let deep_i = depth + 1;
        let deep = chain[deep_i];
        // The path lies directly in `deep`, or deeper below it when `deep` is recursive.
        let path = if deeper_recursive && !direct_child && deep_i < 3 {
            format!("{}/f", chain[3])
        } else {
            format!("{deep}/f")
        };
        let rule = |dir: &str, recursive, action, (r, o, p): (bool, bool, bool), sev| Rule::Path(PathRule {
            fam,
            target: Target::Dir { dir: dir.to_string(), recursive },
            source: scoped.then(|| "/bin/s1".to_string()),
            action,
            read_only: fam == Fam::File && r,
            owner_only: o,
            pts_false: p,
            severity: sev,
        });
        let deep_pol = Pol { name: "deep".into(), rules: vec![rule(deep, deeper_recursive, a1, f1, 3)] };
        let shallow_pol = Pol { name: "shallow".into(), rules: vec![rule(shallow, true, a2, f2, 4)] };
        let req = PathReq {
            exec: fam == Fam::Process,
            path,
            source: Some("/bin/s1".into()),
            ..req
        };
        let alone = compile(std::slice::from_ref(&deep_pol), postures);
        let both = compile(&[shallow_pol, deep_pol], postures);
        prop_assert_eq!(req.decide(&alone), req.decide(&both));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) policy order

proptest! {
    #![proptest_config(config())]

    #[test]
    fn policy_order_changes_no_decision(
        pols in policies(5),
        perm in any::<u64>(),
        reqs in prop::collection::vec(req(), 1..16),
        postures in postures(),
    ) {
        let mut shuffled = pols.clone();
        // Fisher-Yates with the generated seed (kept in the case so failures reproduce).
        let mut s = perm | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut reversed = pols.clone();
        reversed.reverse();
        let a = compile(&pols, postures);
        let b = compile(&shuffled, postures);
        let c = compile(&reversed, postures);
        for r in &reqs {
            let d = r.decide(&a);
            prop_assert_eq!(d, r.decide(&b), "shuffled, request {:?}", r);
            prop_assert_eq!(d, r.decide(&c), "reversed, request {:?}", r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Globs against a reference built on the regex crate

fn glob_to_regex(p: &str) -> String {
    let mut out = String::from("^");
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                while chars.get(i + 1) == Some(&'*') {
                    i += 1;
                }
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                let end = i + chars[i..].iter().position(|&c| c == ']').unwrap();
                let body: String = chars[i + 1..end].iter().collect();
                match body.strip_prefix('!') {
                    Some(neg) => out.push_str(&format!("[^/{neg}]")),
                    None => out.push_str(&format!("(?:[{body}])")),
                }
                i = end;
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push('$');
    out
}

proptest! {
    #![proptest_config(config())]

    /// `*` stays within a component, `**` crosses them, `?` and classes never match `/`.
    #[test]
    fn glob_agrees_with_a_regex_reference(
        pattern in prop::collection::vec(
            prop_oneof![Just("a"), Just("b"), Just("/"), Just("*"), Just("**"), Just("?"), Just("[ab]"), Just("[!a]")],
            0..8,
        ),
        paths in prop::collection::vec(
            prop::collection::vec(prop_oneof![Just('a'), Just('b'), Just('c'), Just('/')], 0..10),
            1..8,
        ),
    ) {
        let pattern = format!("/{}", pattern.concat());
        let glob = kubearmor_policy::glob::Glob::new(&pattern).unwrap();
        let reference = regex::Regex::new(&glob_to_regex(&pattern)).unwrap();
        for p in paths {
            let path: String = std::iter::once('/').chain(p).collect();
            prop_assert_eq!(
                glob.is_match(&path),
                reference.is_match(&path),
                "pattern {} path {}", pattern, path
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (e) hostile input

fn check_outcome(text: &str) {
    match parse_policies(text, "hostile.yaml") {
        Ok(parsed) => {
            let set = RuleSet::compile(&parsed.policies, Postures::default(), &NoResolve);
            let mut req = PathRequest::new("/etc/passwd");
            req.source = Some("/bin/sh");
            set.decide_exec(&req);
            set.decide_open(&req);
        }
        Err(e) => {
            let errors: Vec<_> = e.errors().collect();
            assert!(!errors.is_empty(), "an error without error diagnostics");
            for d in errors {
                assert!(d.document >= 1, "no document: {d}");
                assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
                assert_eq!(d.origin, "hostile.yaml");
                assert!(d.to_string().starts_with("hostile.yaml: document "), "{d}");
            }
        }
    }
}

/// Hostile scalars and shapes.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.0)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(256)),
        Just(json!(true)),
        Just(Value::Null),
        Just(json!("")),
        Just(json!("/")),
        Just(json!("//")),
        Just(json!("/a/../b")),
        Just(json!("/a\u{0}b")),
        Just(json!("\u{0}")),
        Just(json!("/🦀/ünïcödé/路径")),
        Just(json!("\u{202e}/etc/shadow")),
        Just(json!("[")),
        Just(json!("/[z-a]")),
        Just(json!("/a\\")),
        Just(json!("(")),
        Just(json!("[a,,]")),
        Just(json!("tcp,udp, ,")),
        Just(json!("Block")),
        Just(json!("bLoCk")),
        (1usize..20_000).prop_map(|n| json!(format!("/{}", "a".repeat(n)))),
        (1usize..3_000).prop_map(|n| json!("/x".repeat(n))),
        ".*".prop_map(Value::String),
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("path".to_string()),
                    Just("dir".to_string()),
                    Just("fromSource".to_string()),
                    Just("action".to_string()),
                    Just("severity".to_string()),
                    "[a-zA-Z]{1,12}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointer-ish positions in a valid policy where the hostile value is planted.
const SPOTS: &[&[&str]] = &[
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["kind"],
    &["apiVersion"],
    &["spec"],
    &["spec", "severity"],
    &["spec", "action"],
    &["spec", "tags"],
    &["spec", "message"],
    &["spec", "selector"],
    &["spec", "selector", "matchLabels"],
    &[
        "spec",
        "selector",
        "matchLabels",
        "kubearmor.io/container.name",
    ],
    &["spec", "selector", "matchExpressions"],
    &["spec", "process", "matchPaths"],
    &["spec", "process", "matchPaths", "0", "path"],
    &["spec", "process", "matchPaths", "0", "execname"],
    &["spec", "process", "matchPaths", "0", "allowedArgs"],
    &["spec", "process", "matchPaths", "0", "fromSource"],
    &[
        "spec",
        "process",
        "matchPaths",
        "0",
        "fromSource",
        "0",
        "path",
    ],
    &["spec", "process", "matchPaths", "0", "severity"],
    &["spec", "file", "matchDirectories", "0", "dir"],
    &["spec", "file", "matchDirectories", "0", "recursive"],
    &["spec", "file", "matchPatterns", "0", "pattern"],
    &["spec", "network", "matchProtocols", "0", "protocol"],
    &["spec", "network", "matchDNSQueries", "0", "domain"],
    &[
        "spec",
        "capabilities",
        "matchCapabilities",
        "0",
        "capability",
    ],
    &["spec", "syscalls", "matchSyscalls", "0", "syscall"],
    &["spec", "syscalls", "matchPaths", "0", "path"],
    &["spec", "device"],
    &["spec", "presets"],
];

fn valid_policy(host: bool) -> Value {
    let mut v = json!({
        "apiVersion": "security.kubearmor.com/v1",
        "kind": "KubeArmorPolicy",
        "metadata": { "name": "hostile", "namespace": "default" },
        "spec": {
            "selector": { "matchLabels": { "app": "x" } },
            "severity": 5,
            "action": "Block",
            "process": { "matchPaths": [ { "path": "/bin/ls", "fromSource": [ { "path": "/bin/sh" } ] } ] },
            "file": {
                "matchDirectories": [ { "dir": "/etc/", "recursive": true } ],
                "matchPatterns": [ { "pattern": "/tmp/*" } ]
            },
            "network": {
                "matchProtocols": [ { "protocol": "tcp" } ],
                "matchDNSQueries": [ { "domain": "example.com" } ]
            },
            "capabilities": { "matchCapabilities": [ { "capability": "net_raw" } ] },
            "syscalls": {
                "matchSyscalls": [ { "syscall": ["unlink"] } ],
                "matchPaths": [ { "syscall": ["unlink"], "path": "/home/", "recursive": true } ]
            }
        }
    });
    if host {
        v["kind"] = json!("KubeArmorHostPolicy");
        let spec = v["spec"].as_object_mut().unwrap();
        spec.remove("selector");
        spec.insert(
            "nodeSelector".into(),
            json!({ "matchLabels": { "kubearmor.io/hostname": "*" } }),
        );
        spec.insert(
            "device".into(),
            json!({ "matchDevice": [ { "class": "MASS-STORAGE", "level": 1 } ] }),
        );
    }
    v
}

fn plant(doc: &mut Value, spot: &[&str], value: Value) {
    let mut cur = doc;
    for (i, key) in spot.iter().enumerate() {
        let last = i + 1 == spot.len();
        if let Ok(n) = key.parse::<usize>() {
            if !cur.is_array() {
                *cur = json!([]);
            }
            let arr = cur.as_array_mut().unwrap();
            while arr.len() <= n {
                arr.push(json!({}));
            }
            if last {
                arr[n] = value;
                return;
            }
            cur = &mut arr[n];
        } else {
            if !cur.is_object() {
                *cur = json!({});
            }
            let obj = cur.as_object_mut().unwrap();
            if last {
                obj.insert((*key).to_string(), value);
                return;
            }
            cur = obj.entry((*key).to_string()).or_insert(json!({}));
        }
    }
}

/// Ways to write a JSON value as YAML-ish text.
fn render_text(v: &Value, style: u8) -> String {
    match style % 3 {
        0 => v.to_string(),
        1 => serde_json::to_string_pretty(v).unwrap(),
        _ => serde_yaml::to_string(v).unwrap(),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in ".{0,400}") {
        check_outcome(&text);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_outcome(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parse_never_panics_on_yamlish_text(
        parts in prop::collection::vec(
            prop_oneof![
                Just("apiVersion: security.kubearmor.com/v1\n"),
                Just("kind: KubeArmorPolicy\n"),
                Just("kind: KubeArmorHostPolicy\n"),
                Just("metadata:\n  name: x\n"),
                Just("spec:\n"),
                Just("  process:\n    matchPaths:\n    - path: /bin/ls\n"),
                Just("  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n"),
                Just("  selector:\n    matchLabels:\n      a: b\n"),
                Just("  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: '*'\n"),
                Just("---\n"),
                Just("&a [*a]\n"),
                Just("  - *x\n"),
                Just("!!binary aGVsbG8=\n"),
                Just("? [a]\n: b\n"),
                Just("'unterminated\n"),
                Just("\t\n"),
                Just("{{{{{{{{\n"),
                Just("[[[[[[[[\n"),
                Just("  severity: 99999999999999999999999\n"),
                Just("  action: \"\\u0000\"\n"),
                Just("  tags: [*undefined]\n"),
                Just("<<: *merge\n"),
            ],
            0..24,
        ),
    ) {
        check_outcome(&parts.concat());
    }

    #[test]
    fn parse_never_panics_on_hostile_values(
        host in any::<bool>(),
        plants in prop::collection::vec((prop::sample::select(SPOTS), hostile_value()), 1..4),
        style in any::<u8>(),
        copies in 1usize..4,
    ) {
        let mut doc = valid_policy(host);
        for (spot, value) in plants {
            plant(&mut doc, spot, value);
        }
        let one = render_text(&doc, style);
        let text = if style % 3 == 2 {
            vec![one; copies].join("---\n")
        } else {
            one
        };
        check_outcome(&text);
    }
}

/// Deeply nested flow collections are refused up front: the YAML scanner's cost grows with
/// depth times length, so megabytes of `[[[[` would otherwise take hours.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for open in ["[", "{a: ", "[a, {b: "] {
        let text = format!("kind: KubeArmorPolicy\n---\nspec: {}", open.repeat(400_000));
        let err = parse_policies(&text, "hostile.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hostile.yaml: document 2: line 3: '[' and '{' nest more than"),
            "{err}"
        );
    }
    let deep = "[".repeat(1_500_000) + &"]".repeat(1_500_000);
    check_outcome(&deep);
    check_outcome(&"- ".repeat(100_000));
    // Brackets in quotes and comments do not count; neither do balanced ones.
    let fine = format!(
        "# {}\nkind: KubeArmorPolicy\nmetadata: {{name: x}}\nspec:\n  message: '{}'\n  tags: [\"{}\"]\n  severity: 1\n  process: {{matchPaths: [{{path: /bin/ls}}]}}\n",
        "[".repeat(100),
        "{".repeat(100),
        "[".repeat(100),
    );
    assert!(parse_policies(&fine, "fine.yaml").is_ok(), "{fine}");
}

#[test]
fn alias_bombs_are_bounded() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='m' {
        text.push_str(&format!(
            "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = c;
    }
    check_outcome(&text);
    check_outcome(&format!(
        "kind: KubeArmorPolicy\nmetadata: {{name: x}}\nspec:\n  tags: *m\n{text}"
    ));
}

#[test]
fn huge_inputs_are_refused_by_size() {
    let text = "#".repeat(kubearmor_policy::limits::MAX_INPUT_BYTES + 1);
    let err = parse_policies(&text, "big.yaml").unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    check_outcome(&text);
}
