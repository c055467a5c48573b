//! Policy text in any shape: YAML/JSON files (`parse_policies`) and the gRPC policy envelope
//! (`parse_policy_change`). Nothing may panic, and every error must name a document and say
//! something.

#![no_main]

use kubearmor_policy::{parse_policies, parse_policy_change, PolicyError, PolicyKind};
use libfuzzer_sys::fuzz_target;

fn check(e: &PolicyError) {
    assert!(
        e.errors().next().is_some(),
        "an error without error diagnostics"
    );
    for d in e.errors() {
        assert!(d.document >= 1, "{d}");
        assert!(!d.message.trim().is_empty(), "{d:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = parse_policies(&text, "fuzz.yaml") {
        check(&e);
    }
    for kind in [PolicyKind::Container, PolicyKind::Host, PolicyKind::Cluster] {
        if let Err(e) = parse_policy_change(data, kind) {
            check(&e);
        }
    }
});
