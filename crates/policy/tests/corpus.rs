//! Policy corpus: every KubeArmor policy YAML in `shared/conformance` must parse and validate,
//! or be rejected for a reason kubearmor-rs documents as unsupported.
//!
//! The corpus lives beside the repository (`<repo>/../shared/conformance`; locally
//! `/work/shared/conformance`). Files are found by walking the folder; a file counts as a
//! policy when one of its documents has `kind: KubeArmor...`. KubeArmor's scenario folders
//! carry their policy as a git symlink, which a plain checkout may turn into a one-line text
//! file holding the link target; such stubs are resolved against `policies/` and checked to
//! point at a file that exists (the target itself is covered where it lives).
//!
//! `EXPECTED_REJECTIONS` lists every file we refuse, with a substring of the reason. A new
//! rejection not in the list fails the test, and so does a listed file that starts passing:
//! either way the list (and docs/compatibility.md) must be updated on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubearmor_policy::{
    parse_policies, Access, Action, NoResolve, PathFamily, PathRequest, PathTarget, Policy,
    Postures, Report, RuleSet, SocketRequest, Verdict,
};

/// Documented reasons for refusing an upstream policy: a label for the summary and a
/// substring of the error message.
const NATIVE_APPARMOR: (&str, &str) = (
    "native AppArmor rules (spec.apparmor)",
    "native AppArmor rules are not supported",
);
const PRESETS: (&str, &str) = ("presets (spec.presets)", "presets are not supported");
const NETWORK_POLICY: (&str, &str) = (
    "KubeArmorNetworkPolicy",
    "KubeArmorNetworkPolicy is not supported",
);
/// `dir: /usr/bin`: KubeArmor's CRD rejects it too; on its non-k8s path it is accepted but
/// never matches in the BPF-LSM kernel map (spec section 3.1), so we refuse it loudly.
const DIR_SLASH: (&str, &str) = ("directory without trailing '/'", "dir: must end with '/'");
/// `Version:` instead of `apiVersion:` (an upstream typo; kubectl refuses it as well).
const UNKNOWN_FIELD: (&str, &str) = ("unknown field (typo)", "unknown field `Version`");
/// kubebuilder scaffold samples whose `spec:` holds only a `TODO` comment.
const NO_SPEC: (&str, &str) = ("no spec (empty scaffold sample)", "spec: is required");

const REASONS: &[(&str, &str)] = &[
    NATIVE_APPARMOR,
    PRESETS,
    NETWORK_POLICY,
    DIR_SLASH,
    UNKNOWN_FIELD,
    NO_SPEC,
];

/// File (relative to the conformance folder) -> why we refuse it.
const EXPECTED_REJECTIONS: &[(&str, (&str, &str))] = &[
    (
        "nonk8s/host_policy/hsp-block-process-dir-bin.yaml",
        DIR_SLASH,
    ),
    (
        "policies/tests/nonk8s_env/host_policy/res/hsp-block-process-dir-bin.yaml",
        DIR_SLASH,
    ),
    (
        "policies/examples/multiubuntu/security-policies/nsp-group-1-file-dir-recursive-block.yaml",
        NATIVE_APPARMOR,
    ),
    (
        "policies/tests/k8s_env/ksp/multiubuntu/nsp-group-1-block-file-dir-recursive.yaml",
        NATIVE_APPARMOR,
    ),
    (
        "policies/tests/k8s_env/scenarios/github_test_11/nsp-ubuntu-1-file-dir-recursive-block.yaml",
        NATIVE_APPARMOR,
    ),
    (
        "scenarios/github_test_11/nsp-ubuntu-1-file-dir-recursive-block.yaml",
        NATIVE_APPARMOR,
    ),
    (
        "scenarios/multiubuntu_test_10/nsp-group-1-file-dir-recursive-block.yaml",
        NATIVE_APPARMOR,
    ),
    (
        "policies/pkg/KubeArmorOperator/recommend/preset-exec.yaml",
        PRESETS,
    ),
    (
        "policies/pkg/KubeArmorOperator/recommend/preset-fileexec.yaml",
        PRESETS,
    ),
    (
        "policies/pkg/KubeArmorOperator/recommend/preset-procenv.yaml",
        PRESETS,
    ),
    (
        "policies/tests/k8s_env/presets/res/ksp-preset-audit-fileless.yaml",
        PRESETS,
    ),
    (
        "policies/tests/k8s_env/presets/res/ksp-preset-block-fileless.yaml",
        PRESETS,
    ),
    (
        "policies/getting-started/use-cases/res/disc-tools.yaml",
        UNKNOWN_FIELD,
    ),
    (
        "policies/pkg/KubeArmorController/config/samples/security_v1_kubearmorhostpolicy.yaml",
        NO_SPEC,
    ),
    (
        "policies/pkg/KubeArmorController/config/samples/security_v1_kubearmorpolicy.yaml",
        NO_SPEC,
    ),
];

fn conformance_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // crates/policy -> <repo> -> <repo>/../shared/conformance
    let dir = manifest.join("../../../shared/conformance");
    assert!(
        dir.is_dir(),
        "policy corpus not found at {} (expected the shared/ folder beside the repository: \
         <repo>/../shared/conformance, as the CI checks it out)",
        dir.display()
    );
    dir.canonicalize().unwrap()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// The `kind:` values of the top-level documents (a cheap scan; parsing is the test's job).
fn kinds(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("kind:"))
        .map(|k| k.trim().trim_matches('"').trim_matches('\'').to_string())
        .collect()
}

/// A one-line file holding a relative path to another YAML file: a git symlink checked out
/// as text.
fn symlink_stub(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.contains('\n') && !t.contains(':') && t.ends_with(".yaml") && t.starts_with("../"))
        .then_some(t)
}

/// Resolves a stub like `../../../examples/x/y.yaml` (relative to KubeArmor's
/// `tests/k8s_env/scenarios/<name>/`) to the copy kept under `policies/`.
fn resolve_stub(root: &Path, file: &Path, target: &str) -> Option<PathBuf> {
    let direct = file.parent()?.join(target);
    if direct.is_file() {
        return Some(direct);
    }
    let stripped = target.trim_start_matches("../");
    let candidate = root.join("policies").join(stripped);
    candidate.is_file().then_some(candidate)
}

#[derive(Default)]
struct Summary {
    accepted: usize,
    policies: usize,
    rejected: BTreeMap<&'static str, Vec<String>>,
    /// Every accepted policy, compiled together afterwards.
    all: Vec<Policy>,
    skipped_non_policy: usize,
    stubs: usize,
}

#[test]
fn every_corpus_policy_parses_or_is_rejected_for_a_documented_reason() {
    let root = conformance_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(!files.is_empty(), "no YAML under {}", root.display());

    let expected: BTreeMap<&str, (&str, &str)> = EXPECTED_REJECTIONS.iter().copied().collect();
    assert_eq!(
        expected.len(),
        EXPECTED_REJECTIONS.len(),
        "EXPECTED_REJECTIONS lists a file twice"
    );
    let mut failures = Vec::new();
    let mut summary = Summary::default();

    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));

        let ks = kinds(&text);
        if !ks.iter().any(|k| k.starts_with("KubeArmor")) {
            if let Some(target) = symlink_stub(&text) {
                summary.stubs += 1;
                if resolve_stub(&root, file, target).is_none() {
                    failures.push(format!("{rel}: link to {target} points at no corpus file"));
                }
            } else {
                summary.skipped_non_policy += 1;
            }
            continue;
        }

        match (parse_policies(&text, &rel), expected.get(rel.as_str())) {
            (Ok(parsed), None) => {
                summary.accepted += 1;
                summary.policies += parsed.policies.len();
                if parsed.policies.is_empty() {
                    failures.push(format!("{rel}: parsed but produced no policy"));
                }
                summary.all.extend(parsed.policies);
            }
            (Ok(_), Some((label, _))) => failures.push(format!(
                "{rel}: expected rejection ({label}) but it now parses: \
                 remove it from EXPECTED_REJECTIONS"
            )),
            (Err(e), None) => failures.push(format!("{rel}: unexpected rejection:\n{e}")),
            (Err(e), Some(&(label, reason))) => {
                let msg = e.to_string();
                assert!(
                    e.errors().all(|d| !d.message.is_empty() && d.document >= 1),
                    "{rel}: an error without a message or document: {msg}"
                );
                if !msg.contains(reason) {
                    failures.push(format!("{rel}: rejected, but not for {reason:?}:\n{msg}"));
                    continue;
                }
                summary.rejected.entry(label).or_default().push(rel.clone());
            }
        }
    }

    for (file, (label, _)) in &expected {
        if !files.iter().any(|f| f.ends_with(file)) {
            failures.push(format!(
                "{file}: listed in EXPECTED_REJECTIONS ({label}) but not in the corpus"
            ));
        }
    }

    let rejected: usize = summary.rejected.values().map(Vec::len).sum();
    println!(
        "policy corpus {}: {} files accepted ({} policies), {} rejected, {} symlink stubs, {} non-policy YAML skipped",
        root.display(),
        summary.accepted,
        summary.policies,
        rejected,
        summary.stubs,
        summary.skipped_non_policy
    );
    for (label, _) in REASONS {
        let files = summary.rejected.get(label).map_or(&[][..], Vec::as_slice);
        println!("  rejected, {label}: {}", files.len());
        for f in files {
            println!("    {f}");
        }
    }
    exercise(&summary.all);
    assert!(
        failures.is_empty(),
        "{} corpus problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Each accepted policy, compiled alone, decides its own exact-path rules as their action says:
/// a Block rule denies the path it names (with a Block alert), an Audit rule allows it with an
/// Audit alert, an Allow rule allows it. Rules whose outcome depends on more than the path
/// (readOnly, ownerOnly, pts, allowedArgs) are asked the question that makes them fire, or
/// skipped when no plain request does.
fn own_rules_decide_as_written(policies: &[Policy]) -> usize {
    let mut checked = 0;
    let mut failures = Vec::new();
    for p in policies {
        let set = RuleSet::compile(std::slice::from_ref(p), Postures::default(), &NoResolve);
        for r in set.path_rules() {
            let PathTarget::Path(path) = &r.target else {
                continue;
            };
            if r.owner_only || r.tty_only || r.allowed_args.is_some() {
                continue;
            }
            // Two rules of one policy on the same path (say Allow and Block): skip, the
            // precedence is tested elsewhere.
            if set
                .path_rules()
                .iter()
                .filter(|o| {
                    matches!(&o.target, PathTarget::Path(q) if q == path) && o.family == r.family
                })
                .count()
                > 1
            {
                continue;
            }
            let mut req = PathRequest::new(path);
            req.source = r.source.as_deref();
            req.access = Access::Write; // what a readOnly rule reports
            req.uid = 4242; // not the owner
            let d = match r.family {
                PathFamily::Process => set.decide_exec(&req),
                PathFamily::File => set.decide_open(&req),
            };
            let ok = match r.meta.action {
                Action::Block => {
                    d.verdict == Verdict::Deny
                        && matches!(
                            d.report,
                            Report::Alert {
                                action: Action::Block,
                                ..
                            }
                        )
                }
                Action::Audit => {
                    d.verdict == Verdict::Allow
                        && matches!(
                            d.report,
                            Report::Alert {
                                action: Action::Audit,
                                ..
                            }
                        )
                }
                Action::Allow => d.verdict == Verdict::Allow,
                // Never parsed from a policy (audited workloads only): nothing to check.
                Action::AuditAllow | Action::AuditBlock => continue,
            };
            checked += 1;
            if !ok {
                failures.push(format!(
                    "{}: {:?} rule on {path} ({:?}) decided {d:?}",
                    p.name, r.meta.action, r.family
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus rules decided against their action:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

/// The accepted corpus compiled into one rule set still answers every kind of question.
fn exercise(policies: &[Policy]) {
    let checked = own_rules_decide_as_written(policies);
    eprintln!("corpus: {checked} exact-path rules decided as written");
    assert!(
        checked >= 20,
        "only {checked} exact-path rules in the corpus: the walk asserts too little"
    );
    let set = RuleSet::compile(policies, Postures::default(), &NoResolve);
    assert!(!set.is_empty());
    let paths = [
        "/bin/ls",
        "/usr/bin/apt",
        "/etc/shadow",
        "/credentials/password",
        "/home/user1/secret_data1.txt",
        "/",
        "/run/secrets/kubernetes.io/serviceaccount/token",
    ];
    for path in paths {
        for source in [None, Some("/bin/bash"), Some("/usr/bin/cat")] {
            for access in [Access::Read, Access::Write] {
                let mut req = PathRequest::new(path);
                req.source = source;
                req.access = access;
                set.decide_exec(&req);
                set.decide_open(&req);
            }
        }
    }
    for (family, ty, proto) in [(2, 1, 0), (2, 2, 0), (10, 3, 58), (2, 3, 1), (17, 3, 0)] {
        set.decide_socket(&SocketRequest {
            family,
            sock_type: ty,
            protocol: proto,
            source: Some("/usr/bin/curl"),
            tty: false,
        });
    }
    set.decide_dns("www.kubearmor.io", None);
    set.decide_capability(13, Some("/usr/sbin/arping"));
    set.decide_syscall("unlink", Some("/home/dummy"), None);
    set.decide_device(8, 6, 80, 2);
}

#[test]
fn network_policies_are_refused_with_a_clear_reason() {
    let text = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorNetworkPolicy\nmetadata:\n  name: nsp\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n";
    let err = parse_policies(text, "nsp.yaml").unwrap_err();
    assert!(err.to_string().contains(NETWORK_POLICY.1), "{err}");
    assert!(
        err.to_string().starts_with("nsp.yaml: document 1: kind: "),
        "{err}"
    );
}
