//! KubeArmor's scenario format (`../shared/conformance/README.md`): a directory with one policy
//! file and `cmdN` files, each two YAML documents (what to run, then the expected alert).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One scenario directory.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub policy_file: PathBuf,
    /// The policy documents, as JSON objects (what karmor sends over gRPC).
    pub policies: Vec<serde_json::Value>,
    pub cmds: Vec<Cmd>,
}

/// `result:` of a command file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Passed,
    Failed,
    Default,
}

/// One `cmdN` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub file: String,
    pub source: String,
    pub cmd: String,
    pub result: Expected,
    pub operation: String,
    pub condition: String,
    /// `Allow`, `Audit`, `Block` or `default`.
    pub action: String,
}

#[derive(Deserialize)]
struct RunDoc {
    source: String,
    cmd: String,
    result: Expected,
}

#[derive(Deserialize)]
struct AlertDoc {
    operation: String,
    condition: String,
    action: String,
}

/// Parses a `cmdN` file.
pub fn parse_cmd(file: &str, text: &str) -> Result<Cmd> {
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{file}: not YAML"))?;
    let [run, alert] = docs.as_slice() else {
        bail!("{file}: expected two YAML documents, found {}", docs.len());
    };
    let run: RunDoc = serde_yaml::from_value(run.clone())
        .with_context(|| format!("{file}: document 1 (source, cmd, result)"))?;
    let alert: AlertDoc = serde_yaml::from_value(alert.clone())
        .with_context(|| format!("{file}: document 2 (operation, condition, action)"))?;
    Ok(Cmd {
        file: file.to_string(),
        source: run.source,
        cmd: run.cmd,
        result: run.result,
        operation: alert.operation,
        condition: alert.condition,
        action: alert.action,
    })
}

/// Reads the policy documents of a YAML file as JSON objects.
pub fn read_policies(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let v = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("{}: document {}", path.display(), i + 1))?;
        if v.is_null() {
            continue;
        }
        out.push(
            serde_json::to_value(&v)
                .with_context(|| format!("{}: document {} as JSON", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// Loads one scenario directory.
pub fn load(dir: &Path) -> Result<Scenario> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmds = Vec::new();
    let mut policy_file = None;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort_by_key(|p| cmd_number(p).unwrap_or(u32::MAX));
    for p in entries {
        let file = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if cmd_number(&p).is_some() {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            cmds.push(parse_cmd(&format!("{name}/{file}"), &text)?);
        } else if file.ends_with(".yaml") || file.ends_with(".yml") {
            if policy_file.is_some() {
                bail!("{}: more than one policy file", dir.display());
            }
            policy_file = Some(p);
        }
    }
    let policy_file = policy_file.with_context(|| format!("{}: no policy file", dir.display()))?;
    if cmds.is_empty() {
        bail!("{}: no cmdN files", dir.display());
    }
    Ok(Scenario {
        name,
        policies: read_policies(&policy_file)?,
        policy_file,
        cmds,
    })
}

/// `cmd12` -> 12.
fn cmd_number(p: &Path) -> Option<u32> {
    p.file_name()?.to_str()?.strip_prefix("cmd")?.parse().ok()
}

/// Every scenario under `root` (each subdirectory), sorted by name.
pub fn load_all(root: &Path) -> Result<Vec<Scenario>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_file() {
        let c = parse_cmd(
            "t/cmd1",
            "source: ubuntu-1-deployment\ncmd: dash -c \"uname -r\"\nresult: passed\n---\noperation: Process\ncondition: uname\naction: Block\n",
        )
        .unwrap();
        assert_eq!(c.source, "ubuntu-1-deployment");
        assert_eq!(c.cmd, "dash -c \"uname -r\"");
        assert_eq!(c.result, Expected::Passed);
        assert_eq!(
            (
                c.operation.as_str(),
                c.condition.as_str(),
                c.action.as_str()
            ),
            ("Process", "uname", "Block")
        );
    }

    #[test]
    fn a_bad_command_file_names_the_file_and_document() {
        let e = parse_cmd(
            "s/cmd2",
            "source: a\ncmd: b\nresult: maybe\n---\noperation: File\ncondition: x\naction: Block\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("s/cmd2: document 1"), "{e:#}");
        let e = parse_cmd("s/cmd3", "source: a\ncmd: b\nresult: passed\n").unwrap_err();
        assert!(format!("{e:#}").contains("two YAML documents"), "{e:#}");
    }

    #[test]
    fn policies_keep_comments_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: KubeArmorPolicy\nmetadata:\n  name: x\nspec:\n  action: Block\n\n# trailing notes\n# $ sleep 1\n",
        )
        .unwrap();
        let docs = read_policies(&p).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["metadata"]["name"], "x");
    }
}
