//! Rendering for people: the `--help` text and each key's resolved value as text.

use super::keys::{DefaultValue, Key, KEYS};
use super::Resolved;

impl Resolved {
    /// The resolved value of `key` as text (for the startup log), as typing recorded it.
    pub fn text(&self, key: Key) -> &str {
        self.texts
            .get(key as usize)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// `--help` text: usage and every key with its default.
pub fn usage() -> String {
    let mut s = String::from(
        "Usage: kubearmor [CONFIG] [-KEY=VALUE ...]\n\n\
         CONFIG is a kubearmor.yaml; without it: $KUBEARMOR_CFG, else kubearmor.yaml beside the\n\
         binary, else built-in defaults. Every key can also be given as a flag (-gRPC=32767) or an\n\
         environment variable named after the key in upper case (GRPC=32767).\n\
         Precedence: environment > config file > flag > default.\n\nKeys:\n",
    );
    for k in KEYS {
        let default = match k.default {
            DefaultValue::Str("") => "\"\"".to_string(),
            DefaultValue::Str(d) => d.to_string(),
            DefaultValue::Hostname => "<host name>".to_string(),
        };
        s.push_str(&format!(
            "  {:<30} {} (default {})\n",
            k.name, k.help, default
        ));
    }
    s
}
