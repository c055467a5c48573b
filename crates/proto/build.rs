//! Generates the tonic/prost code from `proto/*.proto` with `protox`, a pure-Rust protobuf
//! compiler, so building this crate does not need a system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: [&str; 3] = [
    "proto/kubearmor.proto",
    "proto/policy.proto",
    "proto/state_agent.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    // protox bundles the well-known types (google/protobuf/empty.proto), and the set it
    // returns includes them, which gRPC reflection needs to resolve the imports.
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("kubearmor_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        // Sorted maps: deterministic iteration for EventData and the probe maps.
        .btree_map(".")
        .compile_fds(fds)?;
    Ok(())
}
