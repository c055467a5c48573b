//! The BPF-LSM plane on a real kernel: rules from policy YAML, compiled by the policy crate,
//! mirrored into the kernel by `LsmTable` / `LsmPlane`, then real syscalls whose errno is
//! checked. Also the bypass routes (bind mounts, mount namespaces, hard links, ld.so), daemon
//! death and adoption, self-protection, and the cost of the hooks.
//!
//! Each scenario is an immediately called closure, so `?` ends that scenario only.
#![allow(clippy::redundant_closure_call)]

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubearmor_bpf::lsm_abi;
use kubearmor_bpf::{LsmEvent, LsmPlane, LsmPlaneConfig, LsmTable};
use kubearmor_policy::{parse_policies, NoResolve, Posture, Postures, RuleSet};

use crate::sys::{self, code, errno, in_child, ok, Cgroup, EACCES, EPERM};
use crate::Tally;

const PIN_DIR: &str = "/sys/fs/bpf/kubearmor-rs/lsm";

fn policy(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n{body}"
    )
}

const HOST_RULES: &str = "  action: Block
  process:
    matchPaths:
    - path: /opt/blocked
    - path: /opt/blocked-dyn
  file:
    matchPaths:
    - path: /data/secret
    - path: /data/own
      ownerOnly: true
    - path: /data/fs-secret
      fromSource:
      - path: /opt/a/cat
    matchDirectories:
    - dir: /data/ro/
      recursive: true
      readOnly: true
";

const NET_RULES: &str = "  action: Block
  network:
    matchProtocols:
    - protocol: raw
";

const CAP_RULES: &str = "  action: Block
  capabilities:
    matchCapabilities:
    - capability: net_raw
";

const ALLOW_RULES: &str = "  action: Allow
  file:
    matchDirectories:
    - dir: /data/allowed/
      recursive: true
";

fn compile(name: &str, body: &str, postures: Postures) -> Result<RuleSet, String> {
    let parsed = parse_policies(&policy(name, body), name).map_err(|e| format!("{e}"))?;
    Ok(RuleSet::compile(&parsed.policies, postures, &NoResolve))
}

/// Files the scenarios act on.
fn fixtures() -> std::io::Result<()> {
    for d in [
        "/data/ro/sub",
        "/data/allowed",
        "/opt/a",
        "/opt/b",
        "/opt/ka",
        "/mnt/b",
        "/mnt/c",
    ] {
        fs::create_dir_all(d)?;
    }
    fs::write("/data/secret", "secret\n")?;
    fs::write("/data/fs-secret", "fs-secret\n")?;
    fs::write("/data/ro/file", "ro\n")?;
    fs::write("/data/own", "own\n")?;
    fs::write("/data/allowed/x", "x\n")?;
    fs::write("/data/other", "other\n")?;
    fs::write("/data/bench", "bench\n")?;
    fs::write("/opt/ka/config", "config\n")?;
    std::os::unix::fs::chown("/data/own", Some(1000), Some(1000))?;
    for copy in ["/opt/a/cat", "/opt/b/cat", "/opt/blocked"] {
        fs::copy("/bin/busybox", copy)?;
        fs::set_permissions(copy, fs::Permissions::from_mode(0o755))?;
    }
    for copy in ["/opt/blocked-dyn", "/opt/allowed-dyn"] {
        fs::copy("/bin/vmtest-guest", copy)?;
        fs::set_permissions(copy, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

pub fn run(t: &mut Tally) {
    if let Err(e) = kubearmor_bpf::lsm::probe() {
        t.fail("probe", &e);
        return;
    }
    t.check("fixtures", fixtures().map_err(|e| e.to_string()));

    // Cost without the programs, measured before anything is attached, after one warm-up
    // round (TCG translates code on first use).
    let _ = bench();
    let before = bench();

    let cfg = LsmPlaneConfig {
        pin_dir: PIN_DIR.into(),
    };
    let mut plane = match LsmPlane::load(&cfg) {
        Ok(p) => p,
        Err(e) => {
            t.fail("load", &format!("{e}: {:?}", std::error::Error::source(&e)));
            return;
        }
    };
    t.check("load", Ok(()));
    let mut events = plane.take_events();

    let cg_net = Cgroup::new("ka-net");
    let cg_cap = Cgroup::new("ka-cap");
    let cg_allow = Cgroup::new("ka-allow");
    let (Ok(cg_net), Ok(cg_cap), Ok(cg_allow)) = (cg_net, cg_cap, cg_allow) else {
        t.fail("cgroups", "cannot create cgroups under /sys/fs/cgroup");
        return;
    };
    let table = match build_table(&cg_net, &cg_cap, &cg_allow) {
        Ok(tb) => tb,
        Err(e) => {
            t.fail("compile", &e);
            return;
        }
    };
    t.check(
        "sync",
        plane
            .sync(&table)
            .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e))),
    );

    exec_rules(t);
    file_rules(t);
    read_only(t);
    owner_only(t);
    from_source(t);
    network_and_capabilities(t, &cg_net, &cg_cap);
    allow_list(t, &cg_allow);
    bypasses(t);
    alerts(
        t,
        events.as_mut().map(|e| e.read(Duration::from_millis(200))),
    );

    let after = bench();
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        t.metric(&format!("{name}_ns_without"), *a);
        t.metric(&format!("{name}_ns_with"), *b);
        t.metric(&format!("{name}_ratio"), b / a);
    }

    self_protection(t, &mut plane, events.as_mut());
    persistence(t, plane, &cfg, &table);
}

fn build_table(net: &Cgroup, cap: &Cgroup, allow: &Cgroup) -> Result<LsmTable, String> {
    let mut table = LsmTable::new();
    table.add_subject(
        0,
        &compile("vm-host", HOST_RULES, Postures::default())?,
        &NoResolve,
    );
    table.add_subject(
        net.id,
        &compile("net-raw-block", NET_RULES, Postures::default())?,
        &NoResolve,
    );
    table.add_subject(
        cap.id,
        &compile("cap-net-raw", CAP_RULES, Postures::default())?,
        &NoResolve,
    );
    let block = Postures {
        file: Posture::Block,
        ..Default::default()
    };
    table.add_subject(
        allow.id,
        &compile("allow-data", ALLOW_RULES, block)?,
        &NoResolve,
    );
    if !table.unenforced.is_empty() {
        return Err(format!(
            "unexpected unenforced rules: {:?}",
            table.unenforced
        ));
    }
    Ok(table)
}

fn exec_rules(t: &mut Tally) {
    t.check(
        "exec_blocked_eacces",
        errno(
            "exec /opt/blocked",
            Command::new("/opt/blocked").arg("true").status(),
            EACCES,
        ),
    );
    t.check(
        "exec_other_allowed",
        (|| match Command::new("/opt/b/cat").arg("/data/other").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("/opt/b/cat: {}", o.status)),
            Err(e) => Err(format!("/opt/b/cat: {e}")),
        })(),
    );
    // Through a symlink and a relative name: the kernel sees the file, not the name.
    t.check(
        "exec_blocked_via_symlink",
        (|| {
            let _ = fs::remove_file("/tmp/alias");
            std::os::unix::fs::symlink("/opt/blocked", "/tmp/alias").map_err(|e| e.to_string())?;
            errno(
                "exec /tmp/alias",
                Command::new("/tmp/alias").status(),
                EACCES,
            )
        })(),
    );
    t.check(
        "exec_blocked_relative",
        errno(
            "exec ./blocked",
            Command::new("./blocked").current_dir("/opt").status(),
            EACCES,
        ),
    );
}

fn file_rules(t: &mut Tally) {
    t.check(
        "open_blocked_eacces",
        errno("open /data/secret", fs::read("/data/secret"), EACCES),
    );
    t.check(
        "open_other_allowed",
        ok("open /data/other", fs::read("/data/other")),
    );
    t.check(
        "open_blocked_via_dotdot",
        errno(
            "open /data/ro/../secret",
            fs::read("/data/ro/../secret"),
            EACCES,
        ),
    );
    t.check(
        "open_blocked_via_proc_root",
        errno(
            "open /proc/self/root/data/secret",
            fs::read("/proc/self/root/data/secret"),
            EACCES,
        ),
    );
}

fn read_only(t: &mut Tally) {
    t.check(
        "readonly_read_allowed",
        ok("read /data/ro/file", fs::read("/data/ro/file")),
    );
    t.check(
        "readonly_rdwr_open_allowed_write_denied",
        (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/data/ro/file")
                .map_err(|e| format!("O_RDWR open: {e} (upstream decides readOnly at write)"))?;
            let mut s = String::new();
            f.read_to_string(&mut s).map_err(|e| format!("read: {e}"))?;
            errno("write", f.write_all(b"x"), EACCES)
        })(),
    );
    t.check(
        "readonly_unlink_denied",
        errno("unlink", fs::remove_file("/data/ro/file"), EACCES),
    );
    t.check(
        "readonly_rename_denied",
        errno("rename", fs::rename("/data/ro/file", "/data/moved"), EACCES),
    );
    t.check(
        "readonly_rename_into_denied",
        errno(
            "rename into",
            fs::rename("/data/other", "/data/ro/new"),
            EACCES,
        ),
    );
    t.check(
        "readonly_link_denied",
        errno(
            "link",
            fs::hard_link("/data/ro/file", "/data/ro-alias"),
            EACCES,
        ),
    );
    t.check(
        "readonly_chmod_denied",
        errno(
            "chmod",
            fs::set_permissions("/data/ro/file", fs::Permissions::from_mode(0o777)),
            EACCES,
        ),
    );
    t.check(
        "readonly_truncate_denied",
        (|| {
            errno(
                "truncate(2)",
                sys::check(unsafe { libc::truncate(sys::cstr("/data/ro/file").as_ptr(), 0) }),
                EACCES,
            )?;
            errno(
                "O_TRUNC",
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open("/data/ro/file"),
                EACCES,
            )
        })(),
    );
    t.check(
        "readonly_mkdir_denied",
        errno("mkdir", fs::create_dir("/data/ro/newdir"), EACCES),
    );
    t.check(
        "readonly_create_denied",
        errno("creat", fs::write("/data/ro/sub/new", "x"), EACCES),
    );
    t.check(
        "readonly_rmdir_denied",
        errno("rmdir", fs::remove_dir("/data/ro/sub"), EACCES),
    );
    t.check(
        "readonly_content_intact",
        (|| {
            let s = fs::read_to_string("/data/ro/file").map_err(|e| e.to_string())?;
            if s == "ro\n" {
                Ok(())
            } else {
                Err(format!("content changed: {s:?}"))
            }
        })(),
    );
}

fn owner_only(t: &mut Tally) {
    t.check(
        "owner_only_root_denied",
        errno("root opens /data/own", fs::read("/data/own"), EACCES),
    );
    t.check(
        "owner_only_owner_allowed",
        (|| {
            let rc = in_child(None, || {
                // SAFETY: drop to the file's owner in the child.
                if unsafe { libc::setgid(1000) } != 0 || unsafe { libc::setuid(1000) } != 0 {
                    return 126;
                }
                code(fs::read("/data/own"))
            });
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("the owner (uid 1000) got exit/errno {rc}"))
            }
        })(),
    );
}

fn from_source(t: &mut Tally) {
    let cat = |bin: &str| Command::new(bin).arg("/data/fs-secret").output();
    t.check(
        "from_source_denied",
        match cat("/opt/a/cat") {
            Ok(o)
                if !o.status.success()
                    && String::from_utf8_lossy(&o.stderr).contains("Permission denied") =>
            {
                Ok(())
            }
            Ok(o) => Err(format!(
                "/opt/a/cat: {} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    t.check(
        "from_source_other_allowed",
        match cat("/opt/b/cat") {
            Ok(o) if o.status.success() && o.stdout == b"fs-secret\n" => Ok(()),
            Ok(o) => Err(format!(
                "/opt/b/cat: {} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(e.to_string()),
        },
    );
}

fn network_and_capabilities(t: &mut Tally, net: &Cgroup, cap: &Cgroup) {
    let raw = || {
        code(sys::socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ))
    };
    let udp = || code(sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0));
    let expect = |what: &str, got: i32, want: i32| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: exit/errno {got}, want {want}"))
        }
    };
    t.check(
        "net_raw_socket_denied",
        expect("raw socket in ka-net", in_child(Some(net), raw), EACCES),
    );
    t.check(
        "net_udp_allowed",
        expect("udp socket in ka-net", in_child(Some(net), udp), 0),
    );
    t.check(
        "net_raw_outside_allowed",
        expect("raw socket on the host", in_child(None, raw), 0),
    );
    // The kernel turns a refused CAP_NET_RAW into EPERM for socket().
    t.check(
        "cap_net_raw_denied",
        expect("raw socket in ka-cap", in_child(Some(cap), raw), EPERM),
    );
    t.check(
        "cap_other_allowed",
        expect("udp socket in ka-cap", in_child(Some(cap), udp), 0),
    );
}

fn allow_list(t: &mut Tally, cg: &Cgroup) {
    let open = |p: &'static str| move || code(fs::read(p));
    let got = in_child(Some(cg), open("/data/allowed/x"));
    t.check(
        "allow_list_allowed_path",
        if got == 0 {
            Ok(())
        } else {
            Err(format!("errno {got}"))
        },
    );
    // System libraries stay readable under a file allow-list (the policy crate's semantics).
    let got = in_child(Some(cg), open("/lib/x86_64-linux-gnu/libc.so.6"));
    t.check(
        "allow_list_system_library_read",
        if got == 0 {
            Ok(())
        } else {
            Err(format!("errno {got}"))
        },
    );
    let got = in_child(Some(cg), open("/data/other"));
    t.check(
        "allow_list_default_posture_block",
        if got == EACCES {
            Ok(())
        } else {
            Err(format!("errno {got}, want EACCES"))
        },
    );
}

fn bypasses(t: &mut Tally) {
    t.check(
        "bypass_bind_mount_closed",
        (|| {
            sys::mount_bind("/data", "/mnt/b").map_err(|e| format!("bind mount: {e}"))?;
            let r = errno("open /mnt/b/secret", fs::read("/mnt/b/secret"), EACCES);
            sys::umount("/mnt/b");
            r
        })(),
    );
    t.check(
        "bypass_mount_namespace_closed",
        (|| {
            let rc = in_child(None, || {
                // SAFETY: a private mount namespace for this child only.
                if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                    return 124;
                }
                let none = sys::cstr("none");
                let root = sys::cstr("/");
                // SAFETY: valid C strings; make the new namespace's mounts private.
                unsafe {
                    libc::mount(
                        none.as_ptr(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    )
                };
                if sys::mount_bind("/data", "/mnt/c").is_err() {
                    return 123;
                }
                code(fs::read("/mnt/c/secret"))
            });
            if rc == EACCES {
                Ok(())
            } else {
                Err(format!("exit/errno {rc}, want EACCES"))
            }
        })(),
    );
    t.check(
        "bypass_hard_link_closed",
        errno(
            "link /data/secret",
            fs::hard_link("/data/secret", "/data/secret-alias"),
            EACCES,
        ),
    );
    t.check(
        "bypass_ld_so_closed",
        (|| {
            let ld = "/lib64/ld-linux-x86-64.so.2";
            let run = |bin: &str| {
                Command::new(ld)
                    .args([bin, "--noop"])
                    .stderr(Stdio::piped())
                    .output()
            };
            match run("/opt/allowed-dyn") {
                Ok(o) if o.status.success() => {}
                other => return Err(format!("baseline ld.so run failed: {other:?}")),
            }
            match run("/opt/blocked-dyn") {
                Ok(o) if !o.status.success() => Ok(()),
                Ok(o) => Err(format!("ld.so ran the blocked binary: {}", o.status)),
                Err(e) => Err(format!("ld.so: {e}")),
            }
        })(),
    );
}

fn alerts(t: &mut Tally, events: Option<Vec<LsmEvent>>) {
    let Some(events) = events else {
        t.fail("alerts", "no event reader");
        return;
    };
    let find = |hook: u8, path: &str| {
        events
            .iter()
            .find(|e| e.hook == hook && e.path == path && e.denied)
    };
    t.check(
        "alert_open_denied",
        match find(lsm_abi::HOOK_OPEN, "/data/secret") {
            Some(_) => Ok(()),
            None => Err(format!(
                "no denied file_open event for /data/secret among {} events",
                events.len()
            )),
        },
    );
    t.check(
        "alert_exec_denied",
        match find(lsm_abi::HOOK_EXEC, "/opt/blocked") {
            Some(_) => Ok(()),
            None => Err("no denied bprm_check_security event for /opt/blocked".into()),
        },
    );
    t.check(
        "alert_from_source_names_source",
        match events
            .iter()
            .find(|e| e.path == "/data/fs-secret" && e.denied)
        {
            Some(e) if e.source.as_deref() == Some("/opt/a/cat") => Ok(()),
            Some(e) => Err(format!("source {:?}", e.source)),
            None => Err("no event for /data/fs-secret".into()),
        },
    );
    t.check(
        "alert_capability",
        match events
            .iter()
            .find(|e| e.hook == lsm_abi::HOOK_CAPABLE && e.arg0 == 13 && e.denied)
        {
            Some(_) => Ok(()),
            None => Err("no denied capable(CAP_NET_RAW) event".into()),
        },
    );
}

fn self_protection(
    t: &mut Tally,
    plane: &mut LsmPlane,
    events: Option<&mut kubearmor_bpf::LsmEvents>,
) {
    let Ok(mut child) = Command::new("/bin/sleep").arg("1000").spawn() else {
        t.fail("self_protection", "cannot start sleep");
        return;
    };
    let pid = child.id();
    if let Err(e) = plane.protect(&[pid], &["/opt/ka"]) {
        t.fail("self_protection", &e.to_string());
        return;
    }
    t.check(
        "self_protection_kill_denied",
        errno(
            "kill -9",
            sys::check(unsafe { libc::kill(pid as i32, libc::SIGKILL) }),
            EACCES,
        ),
    );
    t.check(
        "self_protection_target_alive",
        match child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!("the protected process ended: {other:?}")),
        },
    );
    t.check(
        "self_protection_write_denied",
        errno(
            "write /opt/ka/config",
            fs::write("/opt/ka/config", "x"),
            EACCES,
        ),
    );
    t.check(
        "self_protection_unlink_denied",
        errno(
            "unlink /opt/ka/config",
            fs::remove_file("/opt/ka/config"),
            EACCES,
        ),
    );
    if let Some(ev) = events {
        let got = ev.read(Duration::from_millis(200));
        t.check(
            "self_protection_alert",
            match got.iter().find(|e| e.hook == lsm_abi::HOOK_KILL) {
                Some(e) if e.denied && e.reason == lsm_abi::REASON_SELF && e.arg0 == 9 => Ok(()),
                Some(e) => Err(format!("{e:?}")),
                None => Err("no task_kill event".into()),
            },
        );
    }
    let _ = plane.protect(&[], &[]);
    t.check(
        "self_protection_off_kill_works",
        (|| {
            let r = sys::check(unsafe { libc::kill(pid as i32, libc::SIGKILL) });
            let _ = child.wait();
            ok("kill -9 after protection is off", r)
        })(),
    );
}

/// The daemon dies (the plane is dropped without removing pins): enforcement continues. A new
/// daemon adopts the pinned maps, and a policy change applies.
fn persistence(t: &mut Tally, plane: LsmPlane, cfg: &LsmPlaneConfig, table: &LsmTable) {
    drop(plane);
    t.check(
        "persist_after_loader_gone",
        errno(
            "open /data/secret with no loader",
            fs::read("/data/secret"),
            EACCES,
        ),
    );
    let mut plane = match LsmPlane::load(cfg) {
        Ok(p) => p,
        Err(e) => return t.fail("persist_adopt", &e.to_string()),
    };
    t.check(
        "persist_adopt_keeps_rules",
        (|| {
            let (paths, rules, subjects) = plane.counts();
            if paths == table.paths.len()
                && rules == table.rules.len()
                && subjects == table.subjects.len()
            {
                Ok(())
            } else {
                Err(format!(
                    "adopted {paths}/{rules}/{subjects}, want {}/{}/{}",
                    table.paths.len(),
                    table.rules.len(),
                    table.subjects.len()
                ))
            }
        })(),
    );
    t.check(
        "persist_enforced_after_adopt",
        errno(
            "open /data/secret after adopt",
            fs::read("/data/secret"),
            EACCES,
        ),
    );
    t.check(
        "persist_update_applies",
        (|| {
            plane.sync(&LsmTable::new()).map_err(|e| e.to_string())?;
            ok(
                "open /data/secret once the rules are gone",
                fs::read("/data/secret"),
            )
        })(),
    );
    let _ = LsmPlane::remove_pins(&cfg.pin_dir);
    drop(plane);
}

/// Median per-operation cost (ns) of open+close, fork+exec+wait and socket+close.
fn bench() -> Vec<(&'static str, f64)> {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    let per_op = |n: u32, f: &dyn Fn()| {
        median(
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..n {
                        f();
                    }
                    start.elapsed().as_nanos() as f64 / f64::from(n)
                })
                .collect(),
        )
    };
    let open = per_op(2000, &|| {
        let _ = fs::File::open("/data/bench");
    });
    let exec = per_op(40, &|| {
        let _ = Command::new("/bin/true").status();
    });
    let socket = per_op(2000, &|| {
        let _ = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
    });
    let _ = fs::metadata("/data/bench").map(|m| m.ino());
    vec![("open", open), ("exec", exec), ("socket", socket)]
}
