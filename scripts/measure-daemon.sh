#!/usr/bin/env bash
# Measures the kubearmor daemon (release build): idle RSS and CPU with N policies loaded
# (default 100), and PolicyService add/delete latency (median, p99) over 100 requests.
# Everything runs in a temp directory on free ports; the daemon is stopped at the end.
# Usage: scripts/measure-daemon.sh [POLICIES] [IDLE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
policies=${1:-100}
idle=${2:-10}

cargo build --release --quiet -p kubearmor-daemon --bin kubearmor --example policy_add_latency
bin=target/release/kubearmor
lat=target/release/examples/policy_add_latency

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/policies"
for i in $(seq 1 "$policies"); do
    cat > "$work/policies/hsp-measure-$i.yaml" <<POLICY
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: hsp-measure-$i
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: /usr/local/bin/tool-$i
  file:
    matchPaths:
    - path: /etc/app-$i.conf
      readOnly: true
    matchDirectories:
    - dir: /var/lib/app-$i/
      recursive: true
  action: Block
POLICY
done

env -i GRPC=0 GRPCHEALTHPORT=0 POLICYDIR="$work/policies" PROBEDATAPATH=none \
    "$bin" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 1 300); do
    grep -q "kubearmor is ready" "$work/daemon.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
    sleep 0.1
done
grep -q "kubearmor is ready" "$work/daemon.log" || { echo "daemon not ready" >&2; cat "$work/daemon.log"; exit 1; }
port=$(sed -n 's/.*gRPC API listening addr=[^ ]*:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -1)
loaded=$(sed -n 's/.*policies loaded.* host=\([0-9]*\).*/\1/p' "$work/daemon.log" | head -1)

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
hz=$(getconf CLK_TCK)
sleep 2
t0=$(ticks)
sleep "$idle"
t1=$(ticks)
echo "daemon: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs, kernel $(uname -r)"
echo "policies loaded: $loaded host policies ($policies files)"
echo "idle RSS: $(rss) KiB"
awk -v d=$((t1 - t0)) -v hz="$hz" -v s="$idle" 'BEGIN { printf "idle CPU: %d ticks in %d s = %.3f%% of one CPU\n", d, s, 100 * d / hz / s }'
"$lat" "http://127.0.0.1:$port" 100
# The daemon logs, per add, the time to write the file (fsync included) and to recompile + swap.
timings=$(sed -n 's/.* in \([0-9.]*\) ms, rules compiled and swapped in \([0-9.]*\) ms.*/\1 \2/p' "$work/daemon.log")
median() { sort -n | awk '{v[NR]=$1} END { if (NR) printf "%.2f", v[int((NR+1)/2)] }'; }
if [ -n "$timings" ]; then
    echo "  of which (daemon side, median): write+fsync $(awk '{print $1}' <<<"$timings" | median) ms, compile+swap $(awk '{print $2}' <<<"$timings" | median) ms"
fi
echo "RSS after the adds and deletes: $(rss) KiB"
echo "policy directory filesystem: $(df -T "$work" | awk 'NR==2 {print $2}')"
