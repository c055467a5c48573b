#!/usr/bin/env bash
# Runs the whole kubearmor-rs test suite: formatting, lints, unit and integration tests, and a
# bounded fuzz run. Installs what it needs first (Debian 12, as root). Fixtures are cached in
# ${KUBEARMOR_RS_CACHE:-~/.cache/kubearmor-rs}, outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

export KUBEARMOR_RS_CACHE="${KUBEARMOR_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubearmor-rs}"
mkdir -p "$KUBEARMOR_RS_CACHE"

scripts/setup.sh

if [ ! -d ../shared/conformance ]; then
    echo "test: ../shared/conformance is missing (the shared folder must sit beside the repository)" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace

if [ -f crates/policy/examples/fuzz_smoke.rs ]; then
    echo "== bounded fuzz run (policy parser and decision function)"
    cargo run --quiet --release -p kubearmor-policy --example fuzz_smoke
fi
