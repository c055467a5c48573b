#!/usr/bin/env bash
# Runs the kubearmor daemon in the foreground on its embedded default configuration (no config
# file) with the example policies. Installs what it needs first (Debian 12, as root).
# The policies are copied to ${KUBEARMOR_RS_CACHE:-~/.cache/kubearmor-rs}/policies, so policies
# added with `karmor vm policy add` persist there, not in the repository.
# Stop with Ctrl-C. Try, from another shell: target/release/karmor logs --logFilter all
set -euo pipefail
cd "$(dirname "$0")/.."

export KUBEARMOR_RS_CACHE="${KUBEARMOR_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubearmor-rs}"
scripts/setup.sh
cargo build --release -p kubearmor-daemon -p karmor -p kubearmor-hook

policies="$KUBEARMOR_RS_CACHE/policies"
mkdir -p "$policies"
cp -n examples/policies/*.yaml "$policies"/

# Environment variables override the embedded defaults (upstream's precedence: env > file > flags).
export POLICYDIR="$policies"
export LOGPATH="${LOGPATH:-stdout}"
exec target/release/kubearmor "$@"
