#!/usr/bin/env bash
# Installs kubearmor-rs in systemd mode, with KubeArmor's layout:
#   /opt/kubearmor/kubearmor            the daemon
#   /opt/kubearmor/karmor               the CLI (also linked as /usr/local/bin/karmor)
#   /opt/kubearmor/kubearmor-hook       the OCI hook (also /usr/share/kubearmor/hook)
#   /opt/kubearmor/kubearmor.yaml       configuration (kept if it exists)
#   /opt/kubearmor/policies/            policies, mode 0700 (example policies with --examples)
#   /usr/local/bin/kubearmor            link to the daemon
#   /usr/lib/systemd/system/kubearmor.service, kubearmor.path
#   USB escape hatch (docs/usb.md): /opt/kubearmor/usb-escape-hatch.sh, the udev rule
#   /usr/lib/udev/rules.d/70-kubearmor-usb-escape-hatch.rules and the systemd drop-in
#   /etc/systemd/system/kubearmor.service.d/usb-escape-hatch.conf (ExecStopPost)
# The units are installed and systemd reloaded, but nothing is enabled or started unless asked.
#
# Usage: scripts/install.sh [--prefix DIR] [--bin-dir DIR] [--examples] [--enable]
#                           [--start] [--path-unit] [--no-build]
#   --prefix DIR   install root (default /); for images: --prefix /path/to/rootfs
#   --bin-dir DIR  take binaries from DIR (default: build them, target/release)
#   --examples     copy examples/policies/*.yaml into the policy directory
#   --enable       systemctl enable kubearmor.service
#   --start        systemctl start kubearmor.service (implies a running systemd)
#   --path-unit    enable kubearmor.path (start when /run/output.json appears, CoCo pod VMs)
#   --no-build     do not run cargo; binaries must be in --bin-dir
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/ bin_dir=target/release build=1 examples=0 enable=0 start=0 path_unit=0
while (($#)); do
    case "$1" in
        --prefix) prefix="$2"; shift ;;
        --bin-dir) bin_dir="$2"; shift ;;
        --examples) examples=1 ;;
        --enable) enable=1 ;;
        --start) start=1 ;;
        --path-unit) path_unit=1 ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "install: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((build)) && [ "$bin_dir" = target/release ]; then
    cargo build --release -p kubearmor-daemon -p karmor -p kubearmor-hook
fi
for b in kubearmor karmor kubearmor-hook; do
    [ -x "$bin_dir/$b" ] || { echo "install: $bin_dir/$b not found (build it, or give --bin-dir)" >&2; exit 1; }
done

root="${prefix%/}"
opt="$root/opt/kubearmor"
install -d -m 0755 "$opt" "$root/usr/local/bin" "$root/usr/lib/systemd/system" "$root/usr/share/kubearmor"
install -d -m 0700 "$opt/policies"
for b in kubearmor karmor kubearmor-hook; do
    install -m 0755 "$bin_dir/$b" "$opt/$b"
done
install -m 0755 "$bin_dir/kubearmor-hook" "$root/usr/share/kubearmor/hook"
ln -sf /opt/kubearmor/kubearmor "$root/usr/local/bin/kubearmor"
ln -sf /opt/kubearmor/karmor "$root/usr/local/bin/karmor"
if [ -e "$opt/kubearmor.yaml" ]; then
    echo "install: keeping the existing $opt/kubearmor.yaml"
else
    install -m 0644 examples/kubearmor.yaml "$opt/kubearmor.yaml"
fi
if ((examples)); then
    for p in examples/policies/*.yaml; do
        install -m 0600 "$p" "$opt/policies/"
    done
fi
install -m 0644 packaging/kubearmor.service packaging/kubearmor.path "$root/usr/lib/systemd/system/"
# USB escape hatch: keeps keyboards working while the daemon is down with buses held.
install -m 0755 scripts/usb-escape-hatch.sh "$opt/usb-escape-hatch.sh"
install -d -m 0755 "$root/usr/lib/udev/rules.d" "$root/etc/systemd/system/kubearmor.service.d"
install -m 0644 packaging/udev/70-kubearmor-usb-escape-hatch.rules "$root/usr/lib/udev/rules.d/"
install -m 0644 packaging/udev/systemd/kubearmor.service.d/usb-escape-hatch.conf \
    "$root/etc/systemd/system/kubearmor.service.d/"
if [ -d packaging/hooks.d ]; then
    install -d -m 0755 "$root/usr/share/containers/oci/hooks.d"
    install -m 0644 packaging/hooks.d/*.json "$root/usr/share/containers/oci/hooks.d/"
fi
echo "install: installed into ${prefix}"

# udev and systemd only when installing into the running system.
if [ "$root" = "" ] && command -v udevadm >/dev/null && [ -d /run/udev ]; then
    udevadm control --reload || echo "install: udevadm control --reload failed" >&2
fi
if [ "$root" = "" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if ((enable)); then systemctl enable kubearmor.service; fi
    if ((path_unit)); then systemctl enable kubearmor.path; fi
    if ((start)); then systemctl start kubearmor.service; fi
    if ! ((enable || start || path_unit)); then
        echo "install: units installed; nothing was enabled or started (systemctl start kubearmor)"
    fi
elif ((enable || start || path_unit)); then
    if [ "$root" != "" ]; then
        # In an image: enable by creating the links systemctl would create.
        wants="$root/etc/systemd/system/multi-user.target.wants"
        install -d -m 0755 "$wants"
        if ((enable)); then ln -sf /usr/lib/systemd/system/kubearmor.service "$wants/kubearmor.service"; fi
        if ((path_unit)); then ln -sf /usr/lib/systemd/system/kubearmor.path "$wants/kubearmor.path"; fi
        if ((start)); then echo "install: --start ignored for --prefix installs" >&2; fi
    else
        echo "install: systemd is not running here; enable/start skipped" >&2
    fi
fi
