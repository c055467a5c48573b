#!/usr/bin/env bash
# Runs the whole kubearmor-rs test suite: formatting, lints, unit and integration tests (real
# kernel enforcement, runc containers, gRPC clients; they need root) and a bounded fuzz run. Installs what it needs first (Debian 12, as root). Fixtures are cached in
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

# Tests build the daemon and the USB crate with their test-only hooks (a self dev-dependency
# turns the `test-hooks` feature on); the release configuration, without them, must build too.
echo "== cargo clippy (release configuration: no test hooks)"
cargo clippy -p kubearmor-daemon -p kubearmor-usb --lib --bins --quiet -- -D warnings

echo "== cargo test (unit, integration as root, bounded fuzz run: crates/policy/tests/fuzz_smoke.rs)"
cargo test --workspace --no-fail-fast

echo "== conformance: KubeArmor's scenario suites on real containers (crates/conformance)"
IMAGE=$(scripts/conformance-image.sh)
cargo build --quiet -p kubearmor-conformance -p kubearmor-daemon -p kubearmor-hook
target/debug/kubearmor-conformance --image "$IMAGE" \
    --scenarios ../shared/conformance/scenarios --nonk8s ../shared/conformance/nonk8s \
    --posture both --report target/conformance-report.json
