#!/usr/bin/env bash
# What kubearmor-hook adds to container start: `runc run /bin/true` (create, start, exit,
# delete) with and without the hook (createRuntime + poststop, talking to a real ka.sock
# server), interleaved, BENCH_ROUNDS (default 20) runs each, medians side by side.
# Needs root, runc and busybox-static (scripts/setup.sh). Release build by default;
# PROFILE=dev for a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=(--release)
[ "${PROFILE:-release}" = dev ] && profile=()
exec cargo test "${profile[@]}" -p kubearmor-hook --test runc -- --ignored --nocapture --exact hook_overhead
