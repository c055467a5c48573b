//! KubeArmor's non-Kubernetes suites (`../shared/conformance/nonk8s`): policies only, the checks
//! come from upstream's `tests/nonk8s_env` and `spec/kubearmor-policy.md` §7, written here in
//! the scenario format.
//!
//! Host policies are applied to the host, but every path they name is moved under a scratch
//! directory on the run's own tmpfs (`/usr/bin/ls` becomes `<scratch>/usr/bin/ls`, a copy of the
//! host's `ls`), so the fanotify plane marks only that tmpfs and nothing else on the machine is
//! affected. Container policies (`ksp/`) are applied to a `wordpress-mysql` container.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::scenario::{parse_cmd, read_policies, Cmd, Scenario};

/// The workload the `ksp/` policies select.
pub const KSP_WORKLOAD: &str = "wordpress-mysql";

/// `(policy file, policy files applied before it, commands)`: commands are `cmdN` documents;
/// `{S}` stands for the scratch directory.
type Check = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const HOST_CHECKS: &[Check] = &[
    (
        "hsp-block-process-ls.yaml",
        &[],
        &[
            "cmd: '{S}/usr/bin/ls -l {S}'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/ls'\naction: Block",
            "cmd: '{S}/usr/bin/cat {S}/etc/hostname'\nresult: passed\n---\noperation: Process\ncondition: '{S}/usr/bin/cat'\naction: Block",
        ],
    ),
    (
        "hsp-block-process-curl.yaml",
        &[],
        &["cmd: '{S}/usr/bin/curl --version'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/curl'\naction: Block"],
    ),
    (
        "hsp-block-process-before-update.yaml",
        &[],
        &[
            "cmd: '{S}/usr/bin/curl --version'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/curl'\naction: Block",
            "cmd: '{S}/usr/bin/ls {S}'\nresult: passed\n---\noperation: Process\ncondition: '{S}/usr/bin/ls'\naction: Block",
        ],
    ),
    (
        // The same name again replaces the policy: curl runs again, ls does not.
        "hsp-block-process-after-update.yaml",
        &["hsp-block-process-before-update.yaml"],
        &[
            "cmd: '{S}/usr/bin/ls {S}'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/ls'\naction: Block",
            "cmd: '{S}/usr/bin/curl --version'\nresult: passed\n---\noperation: Process\ncondition: '{S}/usr/bin/curl'\naction: Block",
        ],
    ),
    (
        "hsp-block-process-apt-pattern.yaml",
        &[],
        &[
            "cmd: '{S}/usr/bin/apt --version'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/apt'\naction: Block",
            "cmd: '{S}/usr/bin/apt-get --version'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/apt-get'\naction: Block",
        ],
    ),
    (
        "hsp-block-process-dir-bin.yaml",
        &[],
        &["cmd: '{S}/usr/bin/ls {S}'\nresult: failed\n---\noperation: Process\ncondition: '{S}/usr/bin/ls'\naction: Block"],
    ),
    (
        "hsp-block-file-etc-passwd.yaml",
        &[],
        &[
            "cmd: 'cat {S}/etc/passwd'\nresult: failed\n---\noperation: File\ncondition: '{S}/etc/passwd'\naction: Block",
            "cmd: 'cat {S}/etc/hostname'\nresult: passed\n---\noperation: File\ncondition: '{S}/etc/hostname'\naction: Block",
        ],
    ),
    (
        "hsp-block-file-dir-etc.yaml",
        &[],
        &[
            "cmd: 'cat {S}/etc/hostname'\nresult: failed\n---\noperation: File\ncondition: '{S}/etc/hostname'\naction: Block",
            "cmd: 'cat {S}/tmp/file'\nresult: passed\n---\noperation: File\ncondition: '{S}/tmp/file'\naction: Block",
        ],
    ),
    (
        "hsp-block-file-pattern.yaml",
        &[],
        &[
            "cmd: 'cat {S}/tmp/file'\nresult: failed\n---\noperation: File\ncondition: '{S}/tmp/file'\naction: Block",
            "cmd: 'cat {S}/etc/hostname'\nresult: passed\n---\noperation: File\ncondition: '{S}/etc/hostname'\naction: Block",
        ],
    ),
    (
        "hsp-audit-hosts-fromsource.yaml",
        &[],
        &[
            "cmd: '{S}/usr/bin/cat {S}/etc/hosts'\nresult: passed\n---\noperation: File\ncondition: '{S}/etc/hosts'\naction: Audit",
        ],
    ),
    (
        "hsp-audit-network-protocol.yaml",
        &[],
        &["cmd: 'echo x > /dev/udp/127.0.0.1/9'\nresult: passed\n---\noperation: Network\ncondition: UDP\naction: Audit"],
    ),
    (
        "hsp-audit-syscall.yaml",
        &[],
        &["cmd: 'touch {S}/home/dummy && unlink {S}/home/dummy'\nresult: passed\n---\noperation: Syscall\ncondition: '{S}/home/dummy'\naction: Audit"],
    ),
];

const KSP_CHECKS: &[Check] = &[
    (
        "ksp-audit-exec-dir.yaml",
        &[],
        &["cmd: '/usr/bin/head -1 /etc/hostname'\nresult: passed\n---\noperation: Process\ncondition: /usr/bin/head\naction: Audit"],
    ),
    (
        "ksp-audit-file-access.yaml",
        &[],
        &[
            "cmd: 'cat /etc/passwd'\nresult: passed\n---\noperation: File\ncondition: /etc/passwd\naction: Audit",
            "cmd: 'cat /etc/shadow'\nresult: passed\n---\noperation: File\ncondition: /etc/shadow\naction: Audit",
        ],
    ),
    (
        "ksp-audit-file-pattern.yaml",
        &[],
        &["cmd: 'echo x > /tmp/conformance && cat /tmp/conformance'\nresult: passed\n---\noperation: File\ncondition: /tmp/conformance\naction: Audit"],
    ),
    (
        "ksp-audit-process-apt-pattern.yaml",
        &[],
        &["cmd: 'apt-get --version'\nresult: passed\n---\noperation: Process\ncondition: /usr/bin/apt-get\naction: Audit"],
    ),
    (
        "ksp-audit-protocol-tcp.yaml",
        &[],
        &[
            "cmd: 'curl -s http://127.0.0.1/'\nresult: passed\n---\noperation: Network\ncondition: TCP\naction: Audit",
        ],
    ),
];

/// A nonk8s check as a scenario; `before` are policies applied first (and left in place).
pub struct NonK8s {
    pub scenario: Scenario,
    pub before: Vec<Value>,
}

fn build(dir: &Path, checks: &[Check], source: &str, scratch: Option<&str>) -> Result<Vec<NonK8s>> {
    let s = scratch.unwrap_or_default();
    let load = |file: &str| -> Result<Vec<Value>> {
        let mut docs = read_policies(&dir.join(file))?;
        if let Some(scratch) = scratch {
            for d in &mut docs {
                rewrite_host_paths(d, scratch)
                    .with_context(|| format!("{}: moving paths to the scratch area", file))?;
            }
        }
        Ok(docs)
    };
    let mut out = Vec::new();
    for (file, before, cmds) in checks {
        let policies = load(file)?;
        let mut b = Vec::new();
        for f in *before {
            b.extend(load(f)?);
        }
        let cmds: Vec<Cmd> = cmds
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let text = format!("source: {source}\n{}", text.replace("{S}", s));
                parse_cmd(&format!("{file}/cmd{}", i + 1), &text)
            })
            .collect::<Result<_>>()?;
        out.push(NonK8s {
            scenario: Scenario {
                name: file.trim_end_matches(".yaml").to_string(),
                policy_file: dir.join(file),
                policies,
                cmds,
            },
            before: b,
        });
    }
    Ok(out)
}

/// The host checks, with paths moved under `scratch`.
pub fn host_checks(nonk8s: &Path, scratch: &str) -> Result<Vec<NonK8s>> {
    build(
        &nonk8s.join("host_policy"),
        HOST_CHECKS,
        "host",
        Some(scratch),
    )
}

/// The container checks (on [`KSP_WORKLOAD`]).
pub fn ksp_checks(nonk8s: &Path) -> Result<Vec<NonK8s>> {
    build(&nonk8s.join("ksp"), KSP_CHECKS, KSP_WORKLOAD, None)
}

/// Lays out the scratch area: copies of the host programs the checks run and the files they
/// read.
pub fn prepare_scratch(scratch: &Path) -> Result<()> {
    for d in ["usr/bin", "etc", "tmp", "home"] {
        std::fs::create_dir_all(scratch.join(d))?;
    }
    for (from, to) in [
        ("/usr/bin/ls", "usr/bin/ls"),
        ("/usr/bin/cat", "usr/bin/cat"),
        ("/usr/bin/curl", "usr/bin/curl"),
        ("/usr/bin/apt", "usr/bin/apt"),
        ("/usr/bin/apt-get", "usr/bin/apt-get"),
    ] {
        std::fs::copy(from, scratch.join(to))
            .with_context(|| format!("copying {from} into the scratch area"))?;
    }
    for (f, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("etc/hostname", "conformance-host\n"),
        ("etc/hosts", "127.0.0.1 localhost\n"),
        ("tmp/file", "scratch file\n"),
    ] {
        std::fs::write(scratch.join(f), text)?;
    }
    Ok(())
}

/// Prefixes every path of process, file and syscall rules (targets and `fromSource`) with
/// `scratch`. Refuses what cannot be moved (an `execname` matches anywhere).
pub fn rewrite_host_paths(policy: &mut Value, scratch: &str) -> Result<()> {
    let spec = &mut policy["spec"];
    for family in ["process", "file", "syscalls", "network", "capabilities"] {
        let Some(f) = spec.get_mut(family).and_then(Value::as_object_mut) else {
            continue;
        };
        for (_, rules) in f.iter_mut() {
            let Some(rules) = rules.as_array_mut() else {
                continue;
            };
            for r in rules {
                let Some(r) = r.as_object_mut() else { continue };
                if r.contains_key("execname") {
                    bail!("an execname rule cannot be confined to the scratch area");
                }
                for key in ["path", "dir", "pattern"] {
                    if let Some(Value::String(p)) = r.get_mut(key) {
                        *p = format!("{scratch}{p}");
                    }
                }
                if let Some(Value::Array(srcs)) = r.get_mut("fromSource") {
                    for src in srcs {
                        for key in ["path", "dir"] {
                            if let Some(Value::String(p)) = src.get_mut(key) {
                                *p = format!("{scratch}{p}");
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_move_under_the_scratch_area() {
        let mut p = serde_json::json!({"spec": {
            "file": {"matchPaths": [{"path": "/etc/hosts", "fromSource": [{"path": "/usr/bin/cat"}]}],
                     "matchPatterns": [{"pattern": "/tmp/*"}]},
            "process": {"matchDirectories": [{"dir": "/usr/bin/", "recursive": true}]},
            "syscalls": {"matchPaths": [{"syscall": ["unlink"], "path": "/home/"}]}}});
        rewrite_host_paths(&mut p, "/s").unwrap();
        assert_eq!(p["spec"]["file"]["matchPaths"][0]["path"], "/s/etc/hosts");
        assert_eq!(
            p["spec"]["file"]["matchPaths"][0]["fromSource"][0]["path"],
            "/s/usr/bin/cat"
        );
        assert_eq!(p["spec"]["file"]["matchPatterns"][0]["pattern"], "/s/tmp/*");
        assert_eq!(
            p["spec"]["process"]["matchDirectories"][0]["dir"],
            "/s/usr/bin/"
        );
        assert_eq!(p["spec"]["syscalls"]["matchPaths"][0]["path"], "/s/home/");
        let mut e = serde_json::json!({"spec": {"process": {"matchPaths": [{"execname": "ls"}]}}});
        assert!(rewrite_host_paths(&mut e, "/s").is_err());
    }

    #[test]
    fn every_nonk8s_policy_has_checks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/nonk8s");
        let host = host_checks(&dir, "/s").unwrap();
        let ksp = ksp_checks(&dir).unwrap();
        let names: Vec<String> = host
            .iter()
            .chain(&ksp)
            .map(|c| {
                c.scenario
                    .policy_file
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        for sub in ["host_policy", "ksp"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(names.contains(&n), "{sub}/{n} has no checks");
            }
        }
    }
}
