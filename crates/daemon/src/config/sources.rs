//! Where raw values come from: the command line, the config file (found by [`locate`]), the
//! environment and the built-in defaults, merged by [`collect_raw`] into one text per key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::keys::{find_key, DefaultValue, Kind, KEYS, SPECIAL_ENV};
use super::values::unknown_key_message;
use super::{
    ConfigError, FileInput, Inputs, Source, CONFIG_ENV, CONFIG_FILE_NAME, MAX_CONFIG_BYTES,
};

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// The positional config file path.
    pub config: Option<PathBuf>,
    pub flags: Vec<(String, String)>,
    pub help: bool,
    pub version: bool,
}

/// Parses `kubearmor [CONFIG] [-key=value | --key value ...]` (arguments after the program
/// name). Flags are the config keys, as upstream's Go flags; a bool flag alone means true.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ConfigError> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    let mut flags_done = false;
    while let Some(arg) = it.next() {
        let stripped = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !flags_done && !s.is_empty());
        let Some(flag) = stripped else {
            if arg == "--" && !flags_done {
                flags_done = true;
                continue;
            }
            if out.config.is_some() {
                return Err(ConfigError::Args(format!(
                    "more than one config file given ({:?} and {arg:?})",
                    out.config
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                        .to_string()
                )));
            }
            out.config = Some(PathBuf::from(arg));
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        match name {
            "h" | "help" => {
                out.help = true;
                continue;
            }
            "V" | "version" => {
                out.version = true;
                continue;
            }
            _ => {}
        }
        let Some(spec) = find_key(name) else {
            return Err(ConfigError::Args(
                unknown_key_message(name, "flag").replacen("flag: unknown key", "unknown flag", 1),
            ));
        };
        let value = match inline {
            Some(v) => v,
            None if spec.kind == Kind::Bool => "true".to_string(),
            None => it
                .next()
                .ok_or_else(|| ConfigError::Args(format!("flag -{} needs a value", spec.name)))?,
        };
        out.flags.push((spec.name.to_string(), value));
    }
    Ok(out)
}

/// Which config file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// The positional argument.
    Argument(PathBuf),
    /// `$KUBEARMOR_CFG`.
    Env(PathBuf),
    /// `kubearmor.yaml` beside the binary.
    BesideBinary(PathBuf),
    /// No file: built-in defaults (plus environment and flags).
    Embedded,
}

impl ConfigLocation {
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigLocation::Argument(p)
            | ConfigLocation::Env(p)
            | ConfigLocation::BesideBinary(p) => Some(p),
            ConfigLocation::Embedded => None,
        }
    }
}

impl fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigLocation::Argument(p) => write!(f, "{} (command line)", p.display()),
            ConfigLocation::Env(p) => write!(f, "{} (${CONFIG_ENV})", p.display()),
            ConfigLocation::BesideBinary(p) => write!(f, "{} (beside the binary)", p.display()),
            ConfigLocation::Embedded => f.write_str("none: built-in defaults"),
        }
    }
}

/// Picks the config file: the positional argument, else `$KUBEARMOR_CFG`, else
/// `kubearmor.yaml` beside the binary if it exists, else none.
pub fn locate(
    positional: Option<&Path>,
    env: &BTreeMap<String, String>,
    binary_dir: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> ConfigLocation {
    if let Some(p) = positional {
        return ConfigLocation::Argument(p.to_path_buf());
    }
    if let Some(p) = env.get(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return ConfigLocation::Env(PathBuf::from(p));
    }
    if let Some(dir) = binary_dir {
        let p = dir.join(CONFIG_FILE_NAME);
        if exists(&p) {
            return ConfigLocation::BesideBinary(p);
        }
    }
    ConfigLocation::Embedded
}

/// Reads a config file, with a size limit.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let err = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(err(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    Ok(text)
}

/// The value of each key and where it came from, before typing.
pub(super) struct Raw {
    pub(super) values: Vec<(String, Source)>,
}

fn file_values(
    file: FileInput<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(usize, String)>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: file.path.to_path_buf(),
        message,
    };
    let doc: serde_yaml::Value =
        serde_yaml::from_str(file.text).map_err(|e| err(format!("not valid YAML: {e}")))?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(err(
                "must be a mapping of keys to values (key: value lines)".into(),
            ))
        }
    };
    let origin = file.path.display().to_string();
    let mut out: Vec<(usize, String)> = Vec::new();
    for (k, v) in map {
        let name = match k {
            serde_yaml::Value::String(s) => s,
            other => scalar_text(&other).unwrap_or_else(|| format!("{other:?}")),
        };
        let Some(idx) = KEYS.iter().position(|s| s.name.eq_ignore_ascii_case(&name)) else {
            warnings.push(unknown_key_message(&name, &origin));
            continue;
        };
        if out.iter().any(|(i, _)| *i == idx) {
            return Err(err(format!(
                "key {} is given twice (keys are case-insensitive)",
                KEYS[idx].name
            )));
        }
        let value = match v {
            // `key:` with no value: as if absent.
            serde_yaml::Value::Null => continue,
            other => scalar_text(&other).ok_or_else(|| {
                err(format!(
                    "{}: must be a single value (a string, number or boolean), not a list or mapping",
                    KEYS[idx].name
                ))
            })?,
        };
        out.push((idx, value));
    }
    Ok(out)
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

pub(super) fn collect_raw(
    inputs: &Inputs<'_>,
    warnings: &mut Vec<String>,
) -> Result<Raw, ConfigError> {
    let mut values: Vec<(String, Source)> = KEYS
        .iter()
        .map(|k| {
            let v = match k.default {
                DefaultValue::Str(s) => s.to_string(),
                DefaultValue::Hostname => inputs.hostname.to_string(),
            };
            (v, Source::Default)
        })
        .collect();
    // Lowest to highest precedence: flag, file, environment.
    for (name, value) in inputs.flags {
        let Some(idx) = KEYS.iter().position(|s| s.name.eq_ignore_ascii_case(name)) else {
            return Err(ConfigError::Args(unknown_key_message(name, "flag")));
        };
        values[idx] = (value.clone(), Source::Flag);
    }
    if let Some(file) = inputs.file {
        for (idx, value) in file_values(file, warnings)? {
            values[idx] = (value, Source::File(file.path.to_path_buf()));
        }
    }
    for (idx, spec) in KEYS.iter().enumerate() {
        let var = spec.name.to_ascii_uppercase();
        // viper ignores empty environment variables.
        if let Some(v) = inputs.env.get(&var).filter(|v| !v.is_empty()) {
            values[idx] = (v.clone(), Source::Env(var));
        }
    }
    for (var, key) in SPECIAL_ENV {
        if let Some(v) = inputs.env.get(*var).filter(|v| !v.is_empty()) {
            values[*key as usize] = (v.clone(), Source::Env((*var).to_string()));
        }
    }
    Ok(Raw { values })
}
