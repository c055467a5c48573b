//! `matchPatterns` globs.
//!
//! Syntax: `*` is any run of characters other than `/`, `**` any run including `/`, `?` one
//! character other than `/`, `[abc]`, `[a-z]`, `[!a]` / `[^a]` classes (never `/`), `\x` a
//! literal `x`. The whole path must match. This is Go's `filepath.Match` (what KubeArmor's alert
//! matcher uses) plus AppArmor's `**` (what its enforcing AppArmor profiles use).
//!
//! Matching simulates the pattern as an NFA over the path, so it costs O(pattern × path) in the
//! worst case and never backtracks exponentially on hostile patterns.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    Star,
    DoubleStar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    /// The leading literal tokens as text: checked with one comparison before the NFA runs
    /// on the rest.
    prefix: String,
}

/// Why a pattern is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("unterminated character class starting at byte {0}")]
    UnterminatedClass(usize),
    #[error("empty character class at byte {0}")]
    EmptyClass(usize),
    #[error("pattern ends with an escaping backslash")]
    TrailingBackslash,
    #[error("bad range {0}-{1} in character class")]
    BadRange(char, char),
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        let mut tokens = Vec::new();
        let chars: Vec<(usize, char)> = pattern.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (pos, c) = chars[i];
            match c {
                '*' => {
                    if chars.get(i + 1).map(|x| x.1) == Some('*') {
                        // Runs of three or more stars mean the same as two.
                        while chars.get(i + 1).map(|x| x.1) == Some('*') {
                            i += 1;
                        }
                        tokens.push(Token::DoubleStar);
                    } else {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '\\' => {
                    i += 1;
                    let (_, lit) = *chars.get(i).ok_or(GlobError::TrailingBackslash)?;
                    tokens.push(Token::Literal(lit));
                }
                '[' => {
                    let (token, next) = parse_class(&chars, i).map_err(|e| match e {
                        ClassError::Unterminated => GlobError::UnterminatedClass(pos),
                        ClassError::Empty => GlobError::EmptyClass(pos),
                        ClassError::BadRange(a, b) => GlobError::BadRange(a, b),
                    })?;
                    tokens.push(token);
                    i = next;
                    continue;
                }
                _ => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        Ok(Self {
            source: pattern.to_string(),
            tokens,
            prefix,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The directory (without its trailing `/`) that every match lies under: the literal part
    /// of the pattern up to its last `/` before the first wildcard. `/etc/*hado?` gives `/etc`,
    /// `/*/docker` gives `` (the root). Used to index patterns by directory.
    pub fn literal_dir(&self) -> String {
        let mut literal = String::new();
        for t in &self.tokens {
            match t {
                Token::Literal(c) => literal.push(*c),
                _ => break,
            }
        }
        match literal.rfind('/') {
            Some(i) => literal[..i].to_string(),
            None => String::new(),
        }
    }

    /// The same pattern with its literal directory ([`Glob::literal_dir`]) replaced by `dir`:
    /// `/bin/*` under `/usr/bin` is `/usr/bin/*`. Used to compile patterns in their
    /// symlink-resolved form, as paths are. `None` when the pattern has no literal directory.
    pub fn with_dir(&self, dir: &str) -> Option<Glob> {
        let old = self.literal_dir();
        if old.is_empty() {
            return None;
        }
        let n = old.chars().count();
        // Byte offset in the source just after the first `n` literal tokens (`x` or `\x`).
        let mut chars = self.source.char_indices().peekable();
        for _ in 0..n {
            if let Some((_, '\\')) = chars.next() {
                chars.next();
            }
        }
        let rest = chars.peek().map_or("", |(i, _)| &self.source[*i..]);
        let mut tokens: Vec<Token> = dir.chars().map(Token::Literal).collect();
        tokens.extend(self.tokens.iter().skip(n).cloned());
        let prefix = tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        let escaped: String = dir
            .chars()
            .flat_map(|c| {
                let esc = matches!(c, '*' | '?' | '[' | '\\').then_some('\\');
                esc.into_iter().chain([c])
            })
            .collect();
        Some(Self {
            source: format!("{escaped}{rest}"),
            tokens,
            prefix,
        })
    }

    /// Whether the whole of `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        let Some(path) = path.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        let tokens = &self.tokens[self.prefix.chars().count()..];
        let n = tokens.len();
        // states[k]: the first k tokens have consumed the input so far.
        let mut states = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        states[0] = true;
        close_stars(tokens, &mut states);
        for c in path.chars() {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for k in 0..n {
                if !states[k] {
                    continue;
                }
                match &tokens[k] {
                    Token::Literal(l) if *l == c => next[k + 1] = true,
                    Token::AnyOne if c != '/' => next[k + 1] = true,
                    Token::Class { negated, ranges } if c != '/' => {
                        let inside = ranges.iter().any(|(a, b)| *a <= c && c <= *b);
                        if inside != *negated {
                            next[k + 1] = true;
                        }
                    }
                    // A star may keep consuming; it stays in the same state.
                    Token::Star if c != '/' => next[k] = true,
                    Token::DoubleStar => next[k] = true,
                    _ => {}
                }
            }
            close_stars(tokens, &mut next);
            for s in next.iter() {
                any |= *s;
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut states, &mut next);
        }
        states[n]
    }
}

/// Stars match the empty string: a live state in front of a star makes the state after it
/// live too.
fn close_stars(tokens: &[Token], states: &mut [bool]) {
    for k in 0..tokens.len() {
        if states[k] && matches!(tokens[k], Token::Star | Token::DoubleStar) {
            states[k + 1] = true;
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

enum ClassError {
    Unterminated,
    Empty,
    BadRange(char, char),
}

/// Parses `[...]` starting at `chars[start]`; returns the token and the index after `]`.
fn parse_class(chars: &[(usize, char)], start: usize) -> Result<(Token, usize), ClassError> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i).map(|x| x.1), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let (_, c) = *chars.get(i).ok_or(ClassError::Unterminated)?;
        if c == ']' {
            break;
        }
        let lo = if c == '\\' {
            i += 1;
            chars.get(i).ok_or(ClassError::Unterminated)?.1
        } else {
            c
        };
        i += 1;
        let mut hi = lo;
        if chars.get(i).map(|x| x.1) == Some('-') && chars.get(i + 1).map(|x| x.1) != Some(']') {
            i += 1;
            let (_, h) = *chars.get(i).ok_or(ClassError::Unterminated)?;
            hi = if h == '\\' {
                i += 1;
                chars.get(i).ok_or(ClassError::Unterminated)?.1
            } else {
                h
            };
            i += 1;
            if hi < lo {
                return Err(ClassError::BadRange(lo, hi));
            }
        }
        ranges.push((lo, hi));
    }
    if ranges.is_empty() {
        return Err(ClassError::Empty);
    }
    Ok((Token::Class { negated, ranges }, i + 1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().is_match(s)
    }

    #[test]
    fn single_star_stays_in_one_component() {
        assert!(m("/tmp/*", "/tmp/a"));
        assert!(!m("/tmp/*", "/tmp/a/b"));
        assert!(m("/tmp/*", "/tmp/"));
        assert!(m("/usr/bin/apt*", "/usr/bin/apt-get"));
        assert!(m("/*/*/docker", "/usr/bin/docker"));
        assert!(!m("/*/*/docker", "/usr/local/bin/docker"));
    }

    #[test]
    fn question_mark_and_classes() {
        assert!(m("/etc/*hado?", "/etc/shadow"));
        assert!(m("/etc/*hado?", "/etc/gshadow"));
        assert!(!m("/etc/*hado?", "/etc/shadow-"));
        assert!(m("/dev/tty[0-9]", "/dev/tty3"));
        assert!(!m("/dev/tty[!0-9]", "/dev/tty3"));
        assert!(m("/dev/tty[^0-9]", "/dev/ttyS"));
        assert!(!m("/a?b", "/a/b"));
    }

    #[test]
    fn double_star_crosses_directories() {
        assert!(m("/**/*.conf", "/etc/x.conf"));
        assert!(m("/**/*.conf", "/etc/a/b/x.conf"));
        assert!(!m("/**/*.conf", "/x.conf"));
        assert!(m("/var/log/**", "/var/log/a/b"));
    }

    #[test]
    fn escapes_and_errors() {
        assert!(m("/a\\*b", "/a*b"));
        assert!(!m("/a\\*b", "/axb"));
        assert!(Glob::new("/a[").is_err());
        assert!(Glob::new("/a[]").is_err());
        assert!(Glob::new("/a\\").is_err());
        assert!(Glob::new("/[z-a]").is_err());
    }

    #[test]
    fn with_dir_moves_the_literal_directory() {
        let g = Glob::new("/bin/*").unwrap().with_dir("/usr/bin").unwrap();
        assert_eq!(g.as_str(), "/usr/bin/*");
        assert!(g.is_match("/usr/bin/ls") && !g.is_match("/bin/ls"));
        let g = Glob::new("/b\\in/x*/**")
            .unwrap()
            .with_dir("/usr/b[in")
            .unwrap();
        assert_eq!(g.as_str(), "/usr/b\\[in/x*/**");
        assert!(g.is_match("/usr/b[in/xy/z/w"));
        assert!(Glob::new("/*/docker").unwrap().with_dir("/x").is_none());
    }

    #[test]
    fn literal_dir_indexes_patterns() {
        assert_eq!(Glob::new("/etc/*hado?").unwrap().literal_dir(), "/etc");
        assert_eq!(Glob::new("/*/docker").unwrap().literal_dir(), "");
        assert_eq!(
            Glob::new("/home/user1/secret_data*").unwrap().literal_dir(),
            "/home/user1"
        );
        assert_eq!(Glob::new("/exact/path").unwrap().literal_dir(), "/exact");
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let p = "/".to_string() + &"*a".repeat(200) + "b";
        let s = "/".to_string() + &"a".repeat(3000);
        assert!(!m(&p, &s));
    }
}
