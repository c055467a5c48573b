#!/usr/bin/env bash
# Installs what building and testing kubearmor-rs needs on Debian 12 (run as root).
# Idempotent: apt runs only when something is missing.
set -euo pipefail

# clang/llvm/libbpf-dev build the BPF programs; runc runs the container tests; qemu-system-x86
# and xz-utils and kmod (depmod) run the VM tier (crates/vmtest); the rest are
# tools the tests call; debootstrap builds the conformance workload image (scripts/conformance-image.sh).
PACKAGES=(clang llvm libbpf-dev linux-libc-dev runc iproute2 procps busybox-static gcc libc6-dev qemu-system-x86 xz-utils kmod debootstrap)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found (rustup's stable toolchain is expected)" >&2; exit 1; }

# The VM tier (crates/vmtest) boots Debian's 6.1 and 6.12 kernels under QEMU; fetch them into the
# cache now so the tests do not download.
"$(dirname "$0")/vm/fetch-kernels.sh" >/dev/null
