//! Typing raw values: Go-compatible parsers and the [`Typer`], which types each key once,
//! records its normalized text (for the startup log and for telling overrides from defaults)
//! and collects every problem instead of stopping at the first.

use std::path::PathBuf;
use std::time::Duration;

use kubearmor_policy::Posture;

use super::keys::{KeySpec, KEYS};
use super::sources::Raw;
use super::{Problem, Source, Visibility};

/// The known key closest to `name`, if any is close enough to be a likely typo.
pub fn close_match(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let limit = (lower.len() / 4).clamp(1, 3);
    KEYS.iter()
        .map(|k| (levenshtein(&lower, &k.name.to_ascii_lowercase()), k.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn unknown_key_message(name: &str, origin: &str) -> String {
    match close_match(name) {
        Some(m) => format!("{origin}: unknown key {name:?} (did you mean {m:?}?)"),
        None => format!("{origin}: unknown key {name:?}"),
    }
}

/// Typed access to the raw values: each method types one key, records its normalized text and
/// collects problems.
pub(super) struct Typer<'a> {
    raw: &'a Raw,
    pub(super) problems: Vec<Problem>,
    /// Normalized text of each key, indexed like [`KEYS`]; `None` until the key is typed.
    texts: Vec<Option<String>>,
}

impl<'a> Typer<'a> {
    pub(super) fn new(raw: &'a Raw) -> Self {
        Self {
            raw,
            problems: Vec::new(),
            texts: vec![None; KEYS.len()],
        }
    }

    fn slot(&self, key: &KeySpec) -> (&'a str, &'a Source) {
        let (v, s) = &self.raw.values[key.key as usize];
        (v.as_str(), s)
    }

    /// Records the resolved value of `key` as text (overriding what typing recorded).
    pub(super) fn record(&mut self, key: &KeySpec, text: impl Into<String>) {
        self.texts[key.key as usize] = Some(text.into());
    }

    /// The recorded texts; keys never typed are `None` (a bug the tests catch).
    pub(super) fn into_parts(self) -> (Vec<Problem>, Vec<Option<String>>) {
        (self.problems, self.texts)
    }

    pub(super) fn problem(&mut self, key: &KeySpec, reason: impl Into<String>) {
        let (value, source) = self.slot(key);
        self.problems.push(Problem {
            key: key.name.to_string(),
            value: value.to_string(),
            source: source.clone(),
            reason: reason.into(),
        });
    }

    /// The trimmed raw text, without recording it (for values derived in `resolve`).
    pub(super) fn peek(&self, key: &KeySpec) -> String {
        self.slot(key).0.trim().to_string()
    }

    /// The trimmed text, recorded as is.
    pub(super) fn text(&mut self, key: &KeySpec) -> String {
        let v = self.peek(key);
        self.record(key, v.clone());
        v
    }

    pub(super) fn bool(&mut self, key: &KeySpec) -> bool {
        let b = match parse_bool(&self.peek(key)) {
            Some(b) => b,
            None => {
                self.problem(key, "must be true or false");
                false
            }
        };
        self.record(key, b.to_string());
        b
    }

    pub(super) fn port(&mut self, key: &KeySpec) -> u16 {
        let p = match self.peek(key).parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                self.problem(key, "must be a TCP port number, 0 to 65535");
                0
            }
        };
        self.record(key, p.to_string());
        p
    }

    /// `open` or `closed`, any case; true for closed.
    pub(super) fn fail_closed(&mut self, key: &KeySpec) -> bool {
        let closed = match self.peek(key).to_ascii_lowercase().as_str() {
            "open" => false,
            "closed" => true,
            _ => {
                self.problem(key, "must be open or closed");
                false
            }
        };
        self.record(key, if closed { "closed" } else { "open" });
        closed
    }

    pub(super) fn positive(&mut self, key: &KeySpec) -> u32 {
        let n = match self.peek(key).parse::<i64>() {
            Ok(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
            _ => {
                self.problem(key, "must be a whole number of at least 1");
                1
            }
        };
        self.record(key, n.to_string());
        n
    }

    pub(super) fn posture(&mut self, key: &KeySpec) -> Posture {
        let p = match Posture::parse(&self.peek(key)) {
            Some(p) => p,
            None => {
                self.problem(key, "must be audit, block or allow");
                Posture::Audit
            }
        };
        self.record(key, p.as_str());
        p
    }

    /// `None` for `default` when `allow_default`; the caller records the value it derives.
    pub(super) fn visibility(&mut self, key: &KeySpec, allow_default: bool) -> Option<Visibility> {
        let v = self.peek(key);
        if allow_default && v.eq_ignore_ascii_case("default") {
            return None;
        }
        let vis = match parse_visibility(&v) {
            Ok(vis) => vis,
            Err(word) => {
                let extra = if allow_default { ", or default" } else { "" };
                self.problem(
                    key,
                    format!(
                        "unknown word {word:?}: use a comma list of process, file, network, capabilities, dns, ima, or none{extra}"
                    ),
                );
                Visibility::default()
            }
        };
        self.record(key, vis.to_string());
        Some(vis)
    }

    pub(super) fn path(&mut self, key: &KeySpec) -> PathBuf {
        let v = self.text(key);
        if v.is_empty() {
            self.problem(key, "must not be empty");
        }
        PathBuf::from(v)
    }

    /// A path, or `None` for empty or `none` (recorded as empty).
    pub(super) fn optional_path(&mut self, key: &KeySpec) -> Option<PathBuf> {
        let v = self.peek(key);
        let p = if v.is_empty() || v.eq_ignore_ascii_case("none") {
            None
        } else {
            Some(PathBuf::from(v))
        };
        self.record(
            key,
            p.as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
        p
    }

    /// A comma list, without recording it.
    pub(super) fn peek_list(&self, key: &KeySpec) -> Vec<String> {
        self.peek(key)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// A comma list, recorded comma-joined.
    pub(super) fn list(&mut self, key: &KeySpec) -> Vec<String> {
        let l = self.peek_list(key);
        self.record(key, l.join(","));
        l
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A comma list of visibility words, or `none` / empty. On error returns the offending word.
pub fn parse_visibility(s: &str) -> Result<Visibility, String> {
    let mut v = Visibility::default();
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("none") {
        return Ok(v);
    }
    for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "process" => v.process = true,
            "file" => v.file = true,
            "network" => v.network = true,
            "capabilities" => v.capabilities = true,
            "dns" => v.dns = true,
            "ima" => v.ima = true,
            _ => return Err(word.to_string()),
        }
    }
    Ok(v)
}

/// A Go `time.ParseDuration` string (`60s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * nanos;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}
