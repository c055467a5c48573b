//! Name tables: Linux capabilities, socket types and protocols, USB classes, syscalls.
//!
//! These are facts about Linux and about KubeArmor's vocabulary; everything that turns a policy
//! word into a number goes through here so the kernel-facing planes never parse strings.

/// Linux capabilities in number order (`include/uapi/linux/capability.h`).
const CAPABILITIES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Capability number for a policy name. Accepts `net_raw`, `NET_RAW`, `cap_net_raw` and
/// `CAP_NET_RAW` alike (KubeArmor maps `CAP_NET_RAW` to CAP_CHOWN by accident; we do not).
pub fn capability_number(name: &str) -> Option<u8> {
    let lower = name.trim().to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    CAPABILITIES
        .iter()
        .position(|c| *c == bare)
        .and_then(|n| u8::try_from(n).ok())
}

/// `CAP_NET_RAW` style name of a capability number, as KubeArmor puts in alerts.
pub fn capability_name(number: u8) -> Option<String> {
    CAPABILITIES
        .get(usize::from(number))
        .map(|n| format!("CAP_{}", n.to_ascii_uppercase()))
}

/// Socket types (`SOCK_*`).
pub mod sock {
    pub const STREAM: i32 = 1;
    pub const DGRAM: i32 = 2;
    pub const RAW: i32 = 3;
    pub const RDM: i32 = 4;
    pub const SEQPACKET: i32 = 5;
    pub const DCCP: i32 = 6;
    pub const PACKET: i32 = 10;

    /// The type name KubeArmor prints in network alert resources (`type=SOCK_STREAM`).
    pub fn type_name(t: i32) -> Option<&'static str> {
        Some(match t {
            STREAM => "SOCK_STREAM",
            DGRAM => "SOCK_DGRAM",
            RAW => "SOCK_RAW",
            RDM => "SOCK_RDM",
            SEQPACKET => "SOCK_SEQPACKET",
            DCCP => "SOCK_DCCP",
            PACKET => "SOCK_PACKET",
            _ => return None,
        })
    }
}

/// Address families that network rules apply to.
pub mod family {
    pub const UNIX: i32 = 1;
    pub const INET: i32 = 2;
    pub const INET6: i32 = 10;
    pub const NETLINK: i32 = 16;
    pub const PACKET: i32 = 17;
    pub const VSOCK: i32 = 40;
    pub const XDP: i32 = 44;
}

/// IP protocol numbers used by protocol rules.
pub mod ipproto {
    pub const ICMP: i32 = 1;
    pub const TCP: i32 = 6;
    pub const UDP: i32 = 17;
    pub const ICMPV6: i32 = 58;
    pub const SCTP: i32 = 132;
    /// UDP-Lite: a UDP variant, covered by `udp` rules.
    pub const UDPLITE: i32 = 136;
    /// Multipath TCP: a TCP variant, covered by `tcp` rules.
    pub const MPTCP: i32 = 262;
}

/// USB class names of KubeArmor's table, with their class codes.
const USB_CLASSES: &[(&str, u8)] = &[
    ("AUDIO", 1),
    ("COMMUNICATION-CDC", 2),
    ("HID", 3),
    ("PHYSICAL", 5),
    ("IMAGE", 6),
    ("PRINTER", 7),
    ("MASS-STORAGE", 8),
    ("HUB", 9),
    ("CDC-DATA", 10),
    ("SMART-CARD", 11),
    ("CONTENT-SECURITY", 13),
    ("VIDEO", 14),
    ("PERSONAL-HEALTHCARE", 15),
    ("AUDIO/VIDEO", 16),
    ("BILLBOARD", 17),
    ("TYPE-C-BRIDGE", 18),
    ("BULK-DISPLAY", 19),
    ("MCTP", 20),
    ("I3C", 0x3C),
    ("DIAGNOSTIC", 0xDC),
    ("WIRELESS-CONTROLLER", 0xE0),
    ("MISCELLANEOUS", 0xEF),
    ("APPLICATION-SPECIFIC", 0xFE),
    ("VENDOR-SPECIFIC", 0xFF),
];

/// USB class code for a table name (case-insensitive).
pub fn usb_class_number(name: &str) -> Option<u8> {
    let upper = name.trim().to_ascii_uppercase();
    USB_CLASSES
        .iter()
        .find(|(n, _)| *n == upper)
        .map(|(_, c)| *c)
}

/// Table name of a USB class code, or the number in decimal when it has none.
pub fn usb_class_name(code: u8) -> String {
    USB_CLASSES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| (*n).to_string())
}

const SYSCALLS: &str = include_str!("data/syscalls_x86_64.txt");

/// Whether `name` is one of the x86-64 syscall names the CRD accepts.
pub fn is_syscall(name: &str) -> bool {
    SYSCALLS.lines().any(|l| l == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_accept_every_spelling() {
        for n in ["net_raw", "NET_RAW", "cap_net_raw", "CAP_NET_RAW"] {
            assert_eq!(capability_number(n), Some(13), "{n}");
        }
        assert_eq!(capability_number("chown"), Some(0));
        assert_eq!(capability_number("checkpoint_restore"), Some(40));
        assert_eq!(capability_number("cap_cap_net_raw"), None);
        assert_eq!(capability_name(13).as_deref(), Some("CAP_NET_RAW"));
    }

    #[test]
    fn usb_class_table() {
        assert_eq!(usb_class_number("mass-storage"), Some(8));
        assert_eq!(usb_class_number("I3C"), Some(60));
        assert_eq!(usb_class_name(3), "HID");
        assert_eq!(usb_class_name(4), "4");
    }

    #[test]
    fn syscall_names() {
        assert!(is_syscall("unlink"));
        assert!(is_syscall("rseq"));
        assert!(!is_syscall("unlinkk"));
        assert!(!is_syscall(""));
    }
}
