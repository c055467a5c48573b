//! The shipped examples are valid: every example policy parses with the policy crate and loads
//! into the store; the example config resolves without warnings (see also config unit tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kubearmor_daemon::store::document::parse_file;

#[test]
fn example_policies_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = kubearmor_policy::parse_policies(&text, &path.display().to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.policies.len(), 1, "{}", path.display());
        let (stored, _) = parse_file(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(stored[0].policy.name, name, "file name = policy name");
        n += 1;
    }
    assert!(n >= 3);
}
