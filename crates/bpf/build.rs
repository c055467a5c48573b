//! Compiles the C BPF programs in src/bpf with clang. `-g` is required: aya needs the BTF it
//! produces for CO-RE relocations. Set BPF_CLANG to use another clang.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &[&str] = &["net", "openflags", "lsm", "execguard"];

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    println!("cargo:rerun-if-changed=src/bpf/abi.h");
    println!("cargo:rerun-if-changed=src/bpf/kernel_types.h");
    println!("cargo:rerun-if-changed=src/bpf/lsm_abi.h");
    println!("cargo:rerun-if-changed=src/bpf/lsm_types.h");
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        println!("cargo:rerun-if-changed={src}");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new(&clang)
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-D__TARGET_ARCH_x86",
                "-Wall",
                "-Werror",
            ])
            .args([
                "-I/usr/include/x86_64-linux-gnu",
                "-Isrc/bpf",
                "-c",
                &src,
                "-o",
            ])
            .arg(&obj)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{clang} failed on {src} ({s}); install clang and libbpf-dev (scripts/setup.sh)"),
            Err(e) => panic!("cannot run {clang} for {src}: {e}; install clang and libbpf-dev (scripts/setup.sh)"),
        }
        // Drop DWARF but keep .BTF/.BTF.ext (aya needs them); optional.
        let _ = Command::new("llvm-strip").arg("-g").arg(&obj).status();
    }
}
