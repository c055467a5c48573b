#!/usr/bin/env bash
# Fetches the Debian kernels the VM test tier boots (6.1 from bookworm, 6.12 from
# bookworm-security) with `apt-get download` and unpacks each into
# $KUBEARMOR_RS_CACHE/vm/kernels/<package>/ (boot/vmlinuz-*, lib/modules/*).
# modules.dep is generated with depmod (kmod). Prints one line per kernel: "<series> <unpacked dir>". Idempotent: a kernel already unpacked
# is not downloaded again, so a cached machine needs no network.
set -euo pipefail

CACHE="${KUBEARMOR_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubearmor-rs}/vm/kernels"
mkdir -p "$CACHE"

# series -> Debian meta package that depends on the current image of that series.
declare -A META=([6.1]=linux-image-amd64 [6.12]=linux-image-6.12-amd64)

resolve() { # meta package -> image package it depends on
    apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1
}

for series in 6.1 6.12; do
    meta="${META[$series]}"
    pkg="$(resolve "$meta")"
    if [ -z "$pkg" ]; then
        # Lists may be stale or missing: refresh once, then fall back to any cached image.
        apt-get update -qq >/dev/null 2>&1 || true
        pkg="$(resolve "$meta")"
    fi
    if [ -z "$pkg" ]; then
        cached="$(ls -d "$CACHE"/linux-image-"$series"[.-]*-amd64 2>/dev/null | tail -n1 || true)"
        if [ -n "$cached" ] && [ -f "$cached/.done" ]; then
            echo "$series $cached"
            continue
        fi
        echo "fetch-kernels: apt knows no $meta (needs bookworm and bookworm-security in the apt sources)" >&2
        exit 1
    fi
    dir="$CACHE/$pkg"
    if [ ! -f "$dir/.done" ]; then
        tmp="$(mktemp -d "$CACHE/.dl.XXXXXX")"
        chmod 755 "$tmp" # apt's _apt sandbox user writes here
        (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null) || {
            rm -rf "$tmp"
            echo "fetch-kernels: apt-get download $pkg failed" >&2
            exit 1
        }
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dir"
        rm -rf "$tmp"
        touch "$dir/.done"
    fi
    # The package carries no modules.dep (its postinst runs depmod); make it.
    release="$(ls "$dir/lib/modules")"
    [ -f "$dir/lib/modules/$release/modules.dep" ] || depmod -b "$dir" "$release"
    echo "$series $dir"
done
