//! Text in, validated policies out: YAML (multi-document), JSON, and the gRPC policy envelope.

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics, Level};
use crate::limits;
use crate::model::{Policy, PolicyKind};
use crate::raw::RawDocument;
use crate::validate::validate_document;

/// The policies of one input, with the warnings found on the way.
#[derive(Debug, Default)]
pub struct Parsed {
    pub policies: Vec<Policy>,
    pub warnings: Vec<Diagnostic>,
}

/// An input that is not applied at all, and everything that is wrong with it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct PolicyError {
    /// Errors first, then the warnings found alongside them.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.level == Level::Error)
    }

    fn single(origin: &str, field: &str, message: String) -> Self {
        let mut d = Diagnostics::new(origin);
        d.error(field, message);
        Self {
            diagnostics: d.items,
        }
    }
}

fn render(ds: &[Diagnostic]) -> String {
    ds.iter()
        .filter(|d| d.level == Level::Error)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn finish(d: Diagnostics, policies: Vec<Policy>) -> Result<Parsed, PolicyError> {
    if d.error_count() > 0 {
        let mut diagnostics = d.items;
        diagnostics.sort_by_key(|x| x.level == Level::Warning);
        return Err(PolicyError { diagnostics });
    }
    Ok(Parsed {
        policies,
        warnings: d.items,
    })
}

/// Parses a YAML or JSON file holding one or more policy documents. `origin` names the input
/// in diagnostics (usually the file path). Any error rejects the whole input.
pub fn parse_policies(text: &str, origin: &str) -> Result<Parsed, PolicyError> {
    if text.len() > limits::MAX_INPUT_BYTES {
        return Err(PolicyError::single(
            origin,
            "",
            format!(
                "input is {} bytes; the limit is {}",
                text.len(),
                limits::MAX_INPUT_BYTES
            ),
        ));
    }
    let mut d = Diagnostics::new(origin);
    if let Some((line, document)) = flow_nesting_beyond_limit(text) {
        d.set_document(document);
        d.error(
            "",
            format!(
                "line {line}: '[' and '{{' nest more than {} levels deep",
                limits::MAX_FLOW_NESTING
            ),
        );
        return finish(d, Vec::new());
    }
    let mut policies = Vec::new();
    let mut names: Vec<(PolicyKind, String, Option<String>)> = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        d.set_document(i + 1);
        if i >= limits::MAX_DOCUMENTS {
            d.error(
                "",
                format!("more than {} documents in one input", limits::MAX_DOCUMENTS),
            );
            break;
        }
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                d.error("", format!("not valid YAML or JSON: {e}"));
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        if let Some(p) = document(value, None, &mut d) {
            let key = (p.kind, p.name.clone(), p.namespace.clone());
            if names.contains(&key) {
                d.error(
                    "metadata.name",
                    format!("{} {:?} is defined twice in this input", p.kind, p.name),
                );
                continue;
            }
            names.push(key);
            policies.push(p);
        }
    }
    finish(d, policies)
}

/// Finds where flow collections (`[`, `{`) nest deeper than the limit, as (line, document).
///
/// The YAML scanner spends time proportional to the nesting depth on every token, so a few
/// megabytes of `[[[[...` would take hours to reject; this linear pre-scan refuses them first.
/// It skips quoted strings and comments the way YAML does in practice; brackets inside plain
/// scalars count (they rarely nest 64 deep in a real policy).
fn flow_nesting_beyond_limit(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut depth, mut line, mut document, mut content) = (0usize, 1usize, 1usize, false);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let prev = if i == 0 { b'\n' } else { bytes[i - 1] };
        let token_start = matches!(
            prev,
            b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':'
        );
        match c {
            b'\n' => {
                line += 1;
                if bytes[i + 1..].starts_with(b"---") {
                    if content {
                        document += 1;
                    }
                    content = false;
                }
            }
            b'#' if matches!(prev, b' ' | b'\t' | b'\n' | b'\r') => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' if token_start => {
                // Skip to the closing quote ('' and \" are escapes); count the lines inside.
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\n' => line += 1,
                        b'\\' if c == b'"' => i += 1,
                        q if q == c => {
                            if c == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                content = true;
            }
            b'[' | b'{' => {
                depth += 1;
                content = true;
                if depth > limits::MAX_FLOW_NESTING {
                    return Some((line, document));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b' ' | b'\t' | b'\r' => {}
            _ => content = true,
        }
        i += 1;
    }
    None
}

/// Validates one policy given as a JSON object (the `object` of a gRPC policy message, or a
/// policy backup). `kind_hint` supplies the kind when the object has none.
pub fn parse_policy_json(
    value: serde_json::Value,
    kind_hint: Option<PolicyKind>,
    origin: &str,
) -> Result<Parsed, PolicyError> {
    let mut d = Diagnostics::new(origin);
    let policies = document(value, kind_hint, &mut d).into_iter().collect();
    finish(d, policies)
}

fn document<'de, D>(value: D, kind_hint: Option<PolicyKind>, d: &mut Diagnostics) -> Option<Policy>
where
    D: serde::Deserializer<'de>,
{
    match serde_path_to_error::deserialize::<_, RawDocument>(value) {
        Ok(raw) => validate_document(raw, kind_hint, d),
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            d.error(field, e.into_inner().to_string());
            None
        }
    }
}

/// What a gRPC policy message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// A decoded `policy.policy` message: `{"type": "ADDED|MODIFIED|DELETED", "object": {...}}`.
#[derive(Debug)]
pub struct PolicyChange {
    pub change: ChangeType,
    pub name: String,
    /// The validated policy; `None` for deletions.
    pub policy: Option<Policy>,
    pub warnings: Vec<Diagnostic>,
}

/// Decodes and validates the JSON envelope KubeArmor's PolicyService receives.
pub fn parse_policy_change(bytes: &[u8], kind: PolicyKind) -> Result<PolicyChange, PolicyError> {
    const ORIGIN: &str = "policy message";
    if bytes.len() > limits::MAX_INPUT_BYTES {
        return Err(PolicyError::single(
            ORIGIN,
            "",
            format!(
                "message is {} bytes; the limit is {}",
                bytes.len(),
                limits::MAX_INPUT_BYTES
            ),
        ));
    }
    let envelope: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| PolicyError::single(ORIGIN, "", format!("not valid JSON: {e}")))?;
    let change = match envelope.get("type").and_then(|t| t.as_str()) {
        Some("ADDED") => ChangeType::Added,
        Some("MODIFIED") => ChangeType::Modified,
        Some("DELETED") => ChangeType::Deleted,
        Some(t) => {
            return Err(PolicyError::single(
                ORIGIN,
                "type",
                format!("must be ADDED, MODIFIED or DELETED, not {t:?}"),
            ))
        }
        None => return Err(PolicyError::single(ORIGIN, "type", "is required".into())),
    };
    let Some(object) = envelope.get("object").cloned() else {
        return Err(PolicyError::single(ORIGIN, "object", "is required".into()));
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    if change == ChangeType::Deleted {
        if name.is_empty() {
            return Err(PolicyError::single(
                ORIGIN,
                "object.metadata.name",
                "is required".into(),
            ));
        }
        return Ok(PolicyChange {
            change,
            name,
            policy: None,
            warnings: Vec::new(),
        });
    }
    let mut parsed = parse_policy_json(object, Some(kind), ORIGIN)?;
    let policy = parsed.policies.pop();
    if let Some(p) = &policy {
        if p.kind != kind && !(kind == PolicyKind::Container && p.kind == PolicyKind::Cluster) {
            return Err(PolicyError::single(
                ORIGIN,
                "object.kind",
                format!("a {} cannot be sent as a {}", p.kind, kind),
            ));
        }
    }
    Ok(PolicyChange {
        change,
        name,
        policy,
        warnings: parsed.warnings,
    })
}
