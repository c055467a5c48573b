#!/usr/bin/env bash
# Builds the conformance workload image: a Debian 12 rootfs equivalent to KubeArmor's
# `ubuntu-w-utils` test image (dynamically linked bash, dash, coreutils, su, ping, arping, curl,
# wget, route), with the users and files KubeArmor's scenarios expect and our own `hello` and
# `readwrite` programs. Built once with debootstrap from Debian's archive and cached outside the
# repository; prints the rootfs path on stdout.
#
#   scripts/conformance-image.sh            # build if missing, print the path
#
# Needs root, debootstrap and gcc (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${KUBEARMOR_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubearmor-rs}"
# The image changes when this script or the programs change.
KEY=$(cat scripts/conformance-image.sh tests/conformance/image/*.c | sha256sum | cut -c1-12)
ROOT="$CACHE/conformance-rootfs-$KEY"
if [ -e "$ROOT/.complete" ]; then
    echo "$ROOT"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "conformance-image: needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "conformance-image: debootstrap is missing (scripts/setup.sh installs it)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "conformance-image: gcc is missing (scripts/setup.sh installs it)" >&2; exit 1; }

MIRROR="${KUBEARMOR_RS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TMP="$CACHE/conformance-rootfs.tmp.$$"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$CACHE"
rm -rf "$TMP"

# What the scenarios call: bash, dash, su (util-linux), coreutils, ping (iputils-ping), arping
# (the libnet one, as in Ubuntu's image), curl, wget, route (net-tools), plus ip for the network
# set-up and procps for debugging.
INCLUDE=bash,dash,coreutils,util-linux,login,passwd,iputils-ping,arping,curl,wget,net-tools,iproute2,procps,ca-certificates
echo "conformance-image: debootstrap bookworm into $TMP (a few minutes, once)" >&2
# --no-merged-usr: like Ubuntu 18.04, the base of KubeArmor's image, /bin and /usr/bin are
# distinct directories, so the scenarios' /bin/sleep, /bin/ls, /sbin/route are real paths.
debootstrap --variant=minbase --no-merged-usr --include="$INCLUDE" bookworm "$TMP" "$MIRROR" >"$CACHE/conformance-debootstrap.log" 2>&1 || {
    echo "conformance-image: debootstrap failed; see $CACHE/conformance-debootstrap.log" >&2
    tail -20 "$CACHE/conformance-debootstrap.log" >&2
    exit 1
}
rm -rf "$TMP"/var/cache/apt/archives/*.deb "$TMP"/var/lib/apt/lists/*

# Users and files (KubeArmor's ubuntu-w-utils).
chroot "$TMP" /usr/sbin/useradd -m -s /bin/bash user1
echo 'user1:user1' | chroot "$TMP" /usr/sbin/chpasswd
printf 'secret file\n' >"$TMP/secret.txt"
printf 'plain file\n' >"$TMP/plain.txt"
mkdir -p "$TMP/credentials/keys"
printf 'password file\n' >"$TMP/credentials/password"
printf 'token file\n' >"$TMP/credentials/token"
printf 'cert file\n' >"$TMP/credentials/keys/cert.ca"
printf 'private key\n' >"$TMP/credentials/keys/priv.key"
mkdir -p "$TMP/home/user1/dir1"
printf 'secret file user1\n' >"$TMP/home/user1/secret_data1.txt"
printf 'other file user1\n' >"$TMP/home/user1/otherfile.txt"
printf 'key file 1\n' >"$TMP/home/user1/dir1/key1.txt"
# What Kubernetes mounts into every pod.
mkdir -p "$TMP/run/secrets/kubernetes.io/serviceaccount"
printf 'not-a-real-token\n' >"$TMP/run/secrets/kubernetes.io/serviceaccount/token"

# Our programs: dynamically linked, like everything else in the image.
for p in hello readwrite; do
    gcc -O2 -Wall -o "$TMP/$p" "tests/conformance/image/$p.c"
    cp "$TMP/$p" "$TMP/home/user1/$p"
done
chroot "$TMP" /bin/chown -R user1:user1 /home/user1

# Names the scenarios reach, served inside each container's own network namespace.
cat >>"$TMP/etc/hosts" <<'EOF'
127.0.0.1	www.kubearmor.io kubearmor.io
EOF

touch "$TMP/.complete"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
trap - EXIT
echo "$ROOT"
