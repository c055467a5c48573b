#!/bin/sh
# kubearmor-rs USB escape hatch (docs/usb.md).
#
# While a USB rule can block, the kubearmor daemon holds every USB bus at
# authorized_default=0 (and interface_authorized_default=0): new devices wait, unauthorized,
# for its decision. If the daemon is not running, nobody decides, and a new keyboard would
# never work. This script keeps the console usable:
#
#   usb-escape-hatch.sh device NAME   from udev (packaging/udev/70-kubearmor-usb-escape-hatch.rules)
#                                     for every USB device or interface added unauthorized:
#                                     if the daemon is not running, authorize NAME when it is a
#                                     keyboard/mouse (HID, class 3), a hub (class 9), or a
#                                     composite device with a HID interface. Nothing else.
#   usb-escape-hatch.sh restore       from systemd (ExecStopPost): if the daemon is not running,
#                                     give every bus back the authorized_default and
#                                     interface_authorized_default values recorded in the state
#                                     file, then authorize waiting HID devices and hubs.
#   usb-escape-hatch.sh status        print what the state file says.
#
# It never deauthorizes anything and does nothing while the daemon runs. It does not remove
# the state file: a restarted daemon reads it to recover the original values and to decide the
# devices that waited meanwhile.
#
# Environment: KUBEARMOR_USB_STATE (default /run/kubearmor/usb-handler.state); SYSFS_ROOT
# (default: the state file's "sysfs" line, else /sys).
set -u

STATE="${KUBEARMOR_USB_STATE:-/run/kubearmor/usb-handler.state}"

log() {
    echo "usb-escape-hatch: $*" >&2
    command -v logger >/dev/null 2>&1 && logger -t usb-escape-hatch -- "$*" 2>/dev/null
    return 0
}

state_field() { # state_field KEY -> the rest of the first "KEY ..." line
    [ -r "$STATE" ] || return 1
    sed -n "s/^$1 //p" "$STATE" | head -n 1
}

sysfs_root() {
    if [ -n "${SYSFS_ROOT:-}" ]; then
        echo "$SYSFS_ROOT"
    else
        root=$(state_field sysfs 2>/dev/null)
        echo "${root:-/sys}"
    fi
}

# The daemon runs if the state file names a live process with the same start time (field 22
# of /proc/PID/stat), so a reused pid does not count.
daemon_running() {
    line=$(state_field pid) || return 1
    set -- $line
    pid=${1:-}
    start=${2:-}
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/stat" ] || return 1
    now=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)
    [ -n "$now" ] && [ "$now" = "$start" ]
}

valid_name() {
    case "$1" in
        '' | usb* | *[!0-9.:-]* | *..* | -* | .*) return 1 ;;
        [0-9]*-[0-9]*) return 0 ;;
        *) return 1 ;;
    esac
}

# 0 if the device's configuration descriptors list a HID interface (bInterfaceClass 3).
has_hid_interface() {
    desc="$1/descriptors"
    [ -r "$desc" ] || return 1
    od -An -v -tu1 "$desc" | tr -s ' \n' '\n\n' | sed '/^$/d' | awk '
        { b[n++] = $1 }
        END {
            i = 0
            while (i + 1 < n) {
                len = b[i]; type = b[i + 1]
                if (len < 2) exit 1
                if (type == 4 && i + 5 < n && b[i + 5] == 3) exit 0
                i += len
            }
            exit 1
        }'
}

authorize() { # authorize DIR NAME
    if echo 1 >"$1/authorized" 2>/dev/null; then
        printf '%s' "$2" >"$ROOT/bus/usb/drivers_probe" 2>/dev/null
        log "authorized $2 ($3) while the kubearmor daemon is not running"
    else
        log "cannot authorize $2"
    fi
}

handle_device() { # handle_device NAME
    name="$1"
    valid_name "$name" || { log "ignoring invalid device name '$name'"; return 2; }
    dir="$ROOT/bus/usb/devices/$name"
    [ "$(cat "$dir/authorized" 2>/dev/null)" = 0 ] || return 0
    case "$name" in
        *:*)
            class=$(cat "$dir/bInterfaceClass" 2>/dev/null)
            case "$class" in
                03) authorize "$dir" "$name" "HID interface" ;;
                09) authorize "$dir" "$name" "hub interface" ;;
            esac
            ;;
        *)
            class=$(cat "$dir/bDeviceClass" 2>/dev/null)
            case "$class" in
                03) authorize "$dir" "$name" "HID device" ;;
                09) authorize "$dir" "$name" "hub" ;;
                00 | ef)
                    # Class per interface: authorize the device only if it has a HID
                    # interface; its other interfaces then still wait (interface default 0).
                    if has_hid_interface "$dir"; then
                        authorize "$dir" "$name" "composite device with a HID interface"
                    fi
                    ;;
            esac
            ;;
    esac
    return 0
}

restore_defaults() {
    [ -r "$STATE" ] || return 0
    grep '^default ' "$STATE" | while read -r _ bus attr value; do
        case "$bus" in usb[0-9]*) ;; *) continue ;; esac
        case "$bus" in usb*[!0-9]*) continue ;; esac
        case "$attr" in authorized_default | interface_authorized_default) ;; *) continue ;; esac
        case "$value" in -1 | 0 | 1 | 2) ;; *) continue ;; esac
        f="$ROOT/bus/usb/devices/$bus/$attr"
        [ -e "$f" ] || continue
        if echo "$value" >"$f" 2>/dev/null; then
            log "restored $bus/$attr=$value"
        else
            log "cannot restore $bus/$attr=$value"
        fi
    done
}

ROOT=$(sysfs_root)

case "${1:-}" in
    device)
        [ $# -eq 2 ] || { echo "usage: $0 device NAME" >&2; exit 2; }
        # Nothing held (clean stop, never started): nothing to rescue.
        [ -e "$STATE" ] || exit 0
        daemon_running && exit 0
        handle_device "$2"
        ;;
    restore)
        [ -e "$STATE" ] || exit 0
        if daemon_running; then
            log "the kubearmor daemon is running; nothing to restore"
            exit 0
        fi
        restore_defaults
        for d in "$ROOT"/bus/usb/devices/*; do
            [ -e "$d" ] || continue
            n=${d##*/}
            valid_name "$n" && handle_device "$n"
        done
        exit 0
        ;;
    status)
        if [ ! -e "$STATE" ]; then
            echo "no state file ($STATE): the USB handler holds nothing"
            exit 0
        fi
        if daemon_running; then
            echo "USB handler running: $(state_field pid)"
        else
            echo "USB handler NOT running (state from pid $(state_field pid))"
        fi
        echo "sysfs: $ROOT"
        grep '^default ' "$STATE" || echo "no bus held"
        ;;
    *)
        echo "usage: $0 device NAME | restore | status" >&2
        exit 2
        ;;
esac
