//! Explicit limits on policy input. Inputs beyond them are rejected with an error naming the
//! limit, never truncated.

/// Largest policy file or gRPC policy message accepted.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Nesting of YAML/JSON flow collections (`[`, `{`); policies need fewer than ten levels.
pub const MAX_FLOW_NESTING: usize = 64;
/// Documents in one multi-document YAML file.
pub const MAX_DOCUMENTS: usize = 1_000;
/// Rules in one policy after `fromSource`, comma and `all` expansion.
pub const MAX_RULES_PER_POLICY: usize = 10_000;
/// Any single string: paths, patterns, tags, messages, label keys and values.
pub const MAX_STRING: usize = 4096;
/// `fromSource` entries on one rule.
pub const MAX_FROM_SOURCE: usize = 256;
/// Tags at one level.
pub const MAX_TAGS: usize = 64;
/// Labels in one selector.
pub const MAX_LABELS: usize = 64;
/// `allowedArgs` entries (the CRD's `maxItems`).
pub const MAX_ALLOWED_ARGS: usize = 20;
