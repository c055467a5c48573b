//! Kernel uevent messages (`NETLINK_KOBJECT_UEVENT`), reduced to what the USB handler needs.
//!
//! A kernel message is `ACTION@DEVPATH\0KEY=VALUE\0KEY=VALUE\0...`. Messages that udev
//! re-broadcasts start with `libudev\0` and a binary header; they are ignored (the handler
//! listens to the kernel only). For `SUBSYSTEM=usb` the handler keeps `add` and `remove` of
//! `DEVTYPE=usb_device` (class triple in `TYPE=c/s/p`) and `DEVTYPE=usb_interface`
//! (`INTERFACE=c/s/p`), all decimal. Everything else is [`Parsed::Ignored`], with the reason.
//!
//! Malformed input is an [`UeventError`] that names what is wrong; the parser never panics and
//! never allocates more than the message size. Limits are in [`MAX_UEVENT_BYTES`],
//! [`MAX_FIELDS`].

use std::fmt;

/// Largest message accepted. The kernel builds uevents in a 2,048-byte environment buffer
/// (`UEVENT_BUFFER_SIZE`) plus the `ACTION@DEVPATH` header; twice that leaves room for long
/// device paths.
pub const MAX_UEVENT_BYTES: usize = 8192;
/// Most `KEY=VALUE` fields accepted (the kernel sends at most 64, `UEVENT_NUM_ENVP`).
pub const MAX_FIELDS: usize = 128;
/// Longest USB device name accepted (`2-1.2.3.4.5.6.7:1.255` is 21 bytes).
pub const MAX_NAME_BYTES: usize = 64;

/// What the kernel did to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UeventAction {
    Add,
    Remove,
}

impl UeventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UeventAction::Add => "add",
            UeventAction::Remove => "remove",
        }
    }
}

/// A USB device node or one of its interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// `DEVTYPE=usb_device`: `bus/usb/devices/2-4.1`; class from `bDeviceClass`.
    Device,
    /// `DEVTYPE=usb_interface`: `bus/usb/devices/2-4.1:1.0`; class from `bInterfaceClass`.
    Interface,
}

/// Class, subclass and protocol codes of a device or interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClassTriple {
    pub class: u8,
    pub sub_class: u8,
    pub protocol: u8,
}

impl fmt::Display for ClassTriple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.class, self.sub_class, self.protocol)
    }
}

/// A USB `add` or `remove` the handler acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbUevent {
    pub action: UeventAction,
    pub kind: NodeKind,
    /// Basename of `DEVPATH`, checked by [`parse_usb_name`]: `2-4.1` or `2-4.1:1.0`.
    pub name: String,
    pub devpath: String,
    pub codes: ClassTriple,
    /// Ports from the root hub (`2-1` is 1, `2-4.1` is 2).
    pub level: u8,
    /// USB bus number (`2` for `2-4.1`).
    pub bus: u32,
    pub seqnum: Option<u64>,
}

/// A root hub (`usbN`) appearing or going away: the handler holds its `authorized_default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootHubUevent {
    pub action: UeventAction,
    /// `usb2`.
    pub name: String,
    pub bus: u32,
}

/// Why a well-formed message is of no interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// A udev re-broadcast (`libudev\0` magic).
    Libudev,
    /// Another subsystem.
    Subsystem(String),
    /// `bind`, `unbind`, `change`, `move`, `online`, `offline`.
    Action(String),
    /// A `usb` node that is neither a device nor an interface (e.g. an endpoint, a port).
    DevType(String),
    /// An interface of a root hub (`1-0:1.0`).
    RootHubInterface(String),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::Libudev => f.write_str("udev message (libudev header)"),
            Ignored::Subsystem(s) => write!(f, "subsystem {s:?}"),
            Ignored::Action(a) => write!(f, "action {a:?}"),
            Ignored::DevType(d) => write!(f, "devtype {d:?}"),
            Ignored::RootHubInterface(n) => write!(f, "root hub interface {n:?}"),
        }
    }
}

/// The outcome of parsing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Usb(UsbUevent),
    RootHub(RootHubUevent),
    Ignored(Ignored),
}

/// What is wrong with a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UeventError {
    #[error("empty uevent message")]
    Empty,
    #[error("uevent message of {0} bytes exceeds the {MAX_UEVENT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("uevent message has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("uevent header {0:?} is not ACTION@DEVPATH")]
    BadHeader(String),
    #[error("uevent field {0:?} is not KEY=VALUE")]
    BadField(String),
    #[error("uevent field {0} is not valid UTF-8")]
    NotUtf8(usize),
    #[error("uevent has no {0} field")]
    Missing(&'static str),
    #[error("uevent {key}={value:?} disagrees with the header's {header:?}")]
    HeaderMismatch {
        key: &'static str,
        value: String,
        header: String,
    },
    #[error("uevent {key}={value:?} is not three decimal codes 0-255 (class/subclass/protocol)")]
    BadCodes { key: &'static str, value: String },
    #[error("USB device name {0:?} is not BUS-PORT[.PORT...][:CONFIG.INTERFACE] or usbBUS")]
    BadName(String),
    #[error("USB device name {name:?} nests {depth} ports deep; at most 255 levels exist")]
    TooDeep { name: String, depth: usize },
}

/// A checked USB device name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbName {
    /// `usbN`.
    RootHub { bus: u32 },
    /// `BUS-0:C.I`: an interface of the root hub itself (ports count from 1, so port 0 is the
    /// root hub). Never decided: deauthorizing it would cut off the whole bus.
    RootHubInterface { bus: u32 },
    /// `BUS-PORT[.PORT...]`, optionally `:CONFIG.INTERFACE`.
    Node {
        bus: u32,
        level: u8,
        interface: bool,
    },
}

impl UsbName {
    pub fn bus(&self) -> u32 {
        match *self {
            UsbName::RootHub { bus }
            | UsbName::RootHubInterface { bus }
            | UsbName::Node { bus, .. } => bus,
        }
    }
}

/// Checks a sysfs USB device name and computes its level, as KubeArmor's `getUSBLevel`: the
/// number of `.`-separated ports after `BUS-`, the interface suffix `:C.I` stripped first
/// (`2-1` is 1, `2-4.1` is 2, `2-4.1:1.0` is 2). Anything else (including `..` or `/`) is
/// rejected, so a name can never leave `bus/usb/devices/`.
pub fn parse_usb_name(name: &str) -> Result<UsbName, UeventError> {
    let bad = || UeventError::BadName(name.chars().take(MAX_NAME_BYTES).collect());
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(bad());
    }
    if let Some(n) = name.strip_prefix("usb") {
        return Ok(UsbName::RootHub {
            bus: number(n).ok_or_else(bad)?,
        });
    }
    let (path, interface) = match name.split_once(':') {
        Some((path, intf)) => {
            let (config, ifnum) = intf.split_once('.').ok_or_else(bad)?;
            number(config).ok_or_else(bad)?;
            number(ifnum).ok_or_else(bad)?;
            (path, true)
        }
        None => (name, false),
    };
    let (bus, ports) = path.split_once('-').ok_or_else(bad)?;
    let bus = number(bus).ok_or_else(bad)?;
    if ports == "0" {
        return if interface {
            Ok(UsbName::RootHubInterface { bus })
        } else {
            Err(bad())
        };
    }
    let mut depth = 0usize;
    for port in ports.split('.') {
        number(port).ok_or_else(bad)?;
        depth += 1;
    }
    let level = u8::try_from(depth).map_err(|_| UeventError::TooDeep {
        name: name.to_string(),
        depth,
    })?;
    Ok(UsbName::Node {
        bus,
        level,
        interface,
    })
}

/// A decimal number of 1 to 10 ASCII digits that fits a u32.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `c/s/p` (decimal, each 0-255), as the kernel prints `TYPE` and `INTERFACE`.
pub fn parse_codes(key: &'static str, value: &str) -> Result<ClassTriple, UeventError> {
    let bad = || UeventError::BadCodes {
        key,
        value: value.chars().take(64).collect(),
    };
    let mut parts = value.split('/');
    let mut next = || -> Result<u8, UeventError> {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u8>().map_err(|_| bad())
    };
    let codes = ClassTriple {
        class: next()?,
        sub_class: next()?,
        protocol: next()?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(codes)
}

/// Parses one netlink datagram.
pub fn parse(buf: &[u8]) -> Result<Parsed, UeventError> {
    if buf.is_empty() {
        return Err(UeventError::Empty);
    }
    if buf.len() > MAX_UEVENT_BYTES {
        return Err(UeventError::TooLarge(buf.len()));
    }
    if buf.starts_with(b"libudev\0") {
        return Ok(Parsed::Ignored(Ignored::Libudev));
    }
    // A trailing NUL ends the last field; an empty field anywhere else is malformed.
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    let mut fields = body.split(|b| *b == 0);
    let header = fields.next().ok_or(UeventError::Empty)?;
    let header = std::str::from_utf8(header).map_err(|_| UeventError::NotUtf8(0))?;
    let (h_action, h_devpath) = header
        .split_once('@')
        .filter(|(a, d)| !a.is_empty() && d.starts_with('/'))
        .ok_or_else(|| UeventError::BadHeader(clip(header)))?;

    let mut action = None;
    let mut devpath = None;
    let mut subsystem = None;
    let mut devtype = None;
    let mut type_ = None;
    let mut interface = None;
    let mut seqnum = None;
    for (i, field) in fields.enumerate() {
        if i >= MAX_FIELDS {
            return Err(UeventError::TooManyFields);
        }
        let field = std::str::from_utf8(field).map_err(|_| UeventError::NotUtf8(i + 1))?;
        let (k, v) = field
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| UeventError::BadField(clip(field)))?;
        match k {
            "ACTION" => action = Some(v),
            "DEVPATH" => devpath = Some(v),
            "SUBSYSTEM" => subsystem = Some(v),
            "DEVTYPE" => devtype = Some(v),
            "TYPE" => type_ = Some(v),
            "INTERFACE" => interface = Some(v),
            "SEQNUM" => seqnum = v.parse::<u64>().ok(),
            _ => {}
        }
    }

    let action = action.ok_or(UeventError::Missing("ACTION"))?;
    if action != h_action {
        return Err(UeventError::HeaderMismatch {
            key: "ACTION",
            value: clip(action),
            header: clip(header),
        });
    }
    // The header carries the devpath; DEVPATH repeats it (absent only in odd synthetic events).
    if let Some(d) = devpath {
        if d != h_devpath {
            return Err(UeventError::HeaderMismatch {
                key: "DEVPATH",
                value: clip(d),
                header: clip(header),
            });
        }
    }
    let subsystem = subsystem.ok_or(UeventError::Missing("SUBSYSTEM"))?;
    if subsystem != "usb" {
        return Ok(Parsed::Ignored(Ignored::Subsystem(clip(subsystem))));
    }
    let action = match action {
        "add" => UeventAction::Add,
        "remove" => UeventAction::Remove,
        other => return Ok(Parsed::Ignored(Ignored::Action(clip(other)))),
    };
    let name = h_devpath.rsplit('/').next().unwrap_or_default();
    let devtype = devtype.ok_or(UeventError::Missing("DEVTYPE"))?;
    let kind = match devtype {
        "usb_device" => NodeKind::Device,
        "usb_interface" => NodeKind::Interface,
        other => return Ok(Parsed::Ignored(Ignored::DevType(clip(other)))),
    };
    let parsed_name = parse_usb_name(name)?;
    match (parsed_name, kind) {
        (UsbName::RootHub { bus }, NodeKind::Device) => Ok(Parsed::RootHub(RootHubUevent {
            action,
            name: name.to_string(),
            bus,
        })),
        (UsbName::RootHubInterface { .. }, NodeKind::Interface) => {
            Ok(Parsed::Ignored(Ignored::RootHubInterface(clip(name))))
        }
        (
            UsbName::Node {
                bus,
                level,
                interface: is_intf,
            },
            _,
        ) if is_intf == (kind == NodeKind::Interface) => {
            let codes = match kind {
                NodeKind::Device => {
                    parse_codes("TYPE", type_.ok_or(UeventError::Missing("TYPE"))?)?
                }
                NodeKind::Interface => parse_codes(
                    "INTERFACE",
                    interface.ok_or(UeventError::Missing("INTERFACE"))?,
                )?,
            };
            Ok(Parsed::Usb(UsbUevent {
                action,
                kind,
                name: name.to_string(),
                devpath: h_devpath.to_string(),
                codes,
                level,
                bus,
                seqnum,
            }))
        }
        // A `usbN` interface, or a `:C.I` name on a device (or the reverse).
        _ => Err(UeventError::BadName(clip(name))),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(256).collect()
}

/// Builds a kernel-format message (for tests and the benchmark example): header, then the
/// fields in order, each NUL-terminated.
pub fn encode(action: &str, devpath: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(action.as_bytes());
    out.push(b'@');
    out.extend_from_slice(devpath.as_bytes());
    out.push(0);
    for (k, v) in [("ACTION", action), ("DEVPATH", devpath)]
        .into_iter()
        .chain(fields.iter().copied())
    {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Builds the kernel's `add`/`remove` message for a USB device (`TYPE=c/s/p`) or, when the last
/// component of `devpath` names an interface (`1-1:1.0`), for an interface (`INTERFACE=c/s/p`).
/// For tests and benchmarks that inject events.
pub fn encode_usb(action: &str, devpath: &str, class: u8, sub_class: u8, protocol: u8) -> Vec<u8> {
    let name = devpath.rsplit('/').next().unwrap_or(devpath);
    let codes = format!("{class}/{sub_class}/{protocol}");
    let fields: Vec<(&str, &str)> = if name.contains(':') {
        vec![
            ("SUBSYSTEM", "usb"),
            ("DEVTYPE", "usb_interface"),
            ("PRODUCT", "781/5567/100"),
            ("TYPE", "0/0/0"),
            ("INTERFACE", &codes),
            ("SEQNUM", "4242"),
        ]
    } else {
        vec![
            ("SUBSYSTEM", "usb"),
            ("DEVTYPE", "usb_device"),
            ("PRODUCT", "781/5567/100"),
            ("TYPE", &codes),
            ("BUSNUM", "001"),
            ("DEVNUM", "002"),
            ("SEQNUM", "4242"),
        ]
    };
    encode(action, devpath, &fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn dev(action: &str, path: &str, ty: &str) -> Vec<u8> {
        encode(
            action,
            path,
            &[
                ("SUBSYSTEM", "usb"),
                ("DEVTYPE", "usb_device"),
                ("PRODUCT", "781/5567/100"),
                ("TYPE", ty),
                ("BUSNUM", "001"),
                ("DEVNUM", "002"),
                ("SEQNUM", "999999"),
            ],
        )
    }

    fn intf(action: &str, path: &str, codes: &str) -> Vec<u8> {
        encode(
            action,
            path,
            &[
                ("SUBSYSTEM", "usb"),
                ("DEVTYPE", "usb_interface"),
                ("PRODUCT", "781/5567/100"),
                ("TYPE", "0/0/0"),
                ("INTERFACE", codes),
                (
                    "MODALIAS",
                    "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
                ),
                ("SEQNUM", "1000"),
            ],
        )
    }

    #[test]
    fn levels_as_kubearmor() {
        // usbDeviceHandler_test.go getUSBLevel cases.
        let level = |n: &str| match parse_usb_name(n).unwrap() {
            UsbName::Node { level, .. } => level,
            UsbName::RootHub { .. } | UsbName::RootHubInterface { .. } => 0,
        };
        assert_eq!(level("1-4.1"), 2);
        assert_eq!(level("2-4.1.2"), 3);
        assert_eq!(level("3-1"), 1);
        assert_eq!(level("2-4.1.2.3"), 4);
        assert_eq!(level("2-1"), 1);
        assert_eq!(level("2-4.1:1.0"), 2);
        assert!(parse_usb_name("4").is_err());
        assert_eq!(parse_usb_name("usb3").unwrap(), UsbName::RootHub { bus: 3 });
        assert_eq!(
            parse_usb_name("3-0:1.0").unwrap(),
            UsbName::RootHubInterface { bus: 3 }
        );
        assert!(parse_usb_name("3-0").is_err());
        for bad in [
            "",
            "usb",
            "usbx",
            "2-",
            "-1",
            "2-1.",
            "2-1..2",
            "2-1:1",
            "2-1:1.",
            "2-1:.0",
            "../2-1",
            "2-1/..",
            "2-a",
            "2-1:1.0:1.0",
            "2 -1",
            "2-+1",
        ] {
            assert!(
                matches!(parse_usb_name(bad), Err(UeventError::BadName(_))),
                "{bad:?}"
            );
        }
        let deep = format!("1-{}", vec!["1"; 256].join("."));
        assert!(parse_usb_name(&deep).is_err());
    }

    #[test]
    fn codes_as_kubearmor() {
        let c = |s| parse_codes("TYPE", s);
        assert_eq!(c("0/0/0").unwrap(), ClassTriple::default());
        assert_eq!(
            c("1/2/3").unwrap(),
            ClassTriple {
                class: 1,
                sub_class: 2,
                protocol: 3
            }
        );
        assert_eq!(c("255/255/255").unwrap().class, 255);
        for bad in [
            "invalid", "1/2", "1/2/3/4", "256/0/0", "-1/0/0", "1//3", "0x8/0/0", "+1/2/3", "",
        ] {
            assert!(c(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn device_and_interface() {
        let p = parse(&dev(
            "add",
            "/devices/pci0000:00/0000:00:14.0/usb1/1-1",
            "8/6/80",
        ))
        .unwrap();
        let Parsed::Usb(u) = p else { panic!("{p:?}") };
        assert_eq!(u.action, UeventAction::Add);
        assert_eq!(u.kind, NodeKind::Device);
        assert_eq!(u.name, "1-1");
        assert_eq!(u.level, 1);
        assert_eq!(u.bus, 1);
        assert_eq!(u.seqnum, Some(999_999));
        assert_eq!(u.codes.to_string(), "8/6/80");

        let p = parse(&intf(
            "remove",
            "/devices/pci0000:00/0000:00:14.0/usb2/2-4/2-4.1/2-4.1:1.0",
            "8/6/80",
        ))
        .unwrap();
        let Parsed::Usb(u) = p else { panic!("{p:?}") };
        assert_eq!(u.action, UeventAction::Remove);
        assert_eq!(u.kind, NodeKind::Interface);
        assert_eq!(u.name, "2-4.1:1.0");
        assert_eq!(u.level, 2);
        assert_eq!(u.codes.class, 8);
    }

    #[test]
    fn root_hub() {
        let p = parse(&dev(
            "add",
            "/devices/pci0000:00/0000:00:14.0/usb3",
            "9/0/1",
        ))
        .unwrap();
        assert_eq!(
            p,
            Parsed::RootHub(RootHubUevent {
                action: UeventAction::Add,
                name: "usb3".into(),
                bus: 3
            })
        );
    }

    #[test]
    fn ignored() {
        let mut udev = b"libudev\0\xfe\xed\xca\xfe".to_vec();
        udev.extend_from_slice(&[0; 32]);
        assert_eq!(parse(&udev).unwrap(), Parsed::Ignored(Ignored::Libudev));
        for action in ["bind", "unbind", "change", "move", "online"] {
            let p = parse(&dev(action, "/devices/x/usb1/1-1", "8/6/80")).unwrap();
            assert_eq!(p, Parsed::Ignored(Ignored::Action(action.into())));
        }
        let p = parse(&encode(
            "change",
            "/devices/virtual/mem/null",
            &[("SUBSYSTEM", "mem"), ("MAJOR", "1")],
        ))
        .unwrap();
        assert_eq!(p, Parsed::Ignored(Ignored::Subsystem("mem".into())));
        let p = parse(&encode(
            "add",
            "/devices/x/usb1/1-1/1-1:1.0/ep_81",
            &[("SUBSYSTEM", "usb"), ("DEVTYPE", "usb_endpoint")],
        ))
        .unwrap();
        assert_eq!(p, Parsed::Ignored(Ignored::DevType("usb_endpoint".into())));
        let p = parse(&encode(
            "add",
            "/devices/x/usb1/1-0:1.0",
            &[
                ("SUBSYSTEM", "usb"),
                ("DEVTYPE", "usb_interface"),
                ("INTERFACE", "9/0/0"),
            ],
        ))
        .unwrap();
        assert_eq!(
            p,
            Parsed::Ignored(Ignored::RootHubInterface("1-0:1.0".into()))
        );
        // No trailing NUL is tolerated.
        let mut m = dev("add", "/devices/x/usb1/1-1", "3/1/1");
        m.pop();
        assert!(matches!(parse(&m).unwrap(), Parsed::Usb(_)));
    }

    #[test]
    fn malformed() {
        let e = |m: &[u8]| parse(m).unwrap_err();
        assert_eq!(e(b""), UeventError::Empty);
        assert_eq!(
            e(&vec![b'a'; MAX_UEVENT_BYTES + 1]),
            UeventError::TooLarge(MAX_UEVENT_BYTES + 1)
        );
        assert!(matches!(
            e(b"add/devices/x\0ACTION=add\0"),
            UeventError::BadHeader(_)
        ));
        assert!(matches!(
            e(b"@/devices/x\0ACTION=add\0"),
            UeventError::BadHeader(_)
        ));
        assert!(matches!(
            e(b"add@devices\0ACTION=add\0"),
            UeventError::BadHeader(_)
        ));
        assert!(matches!(
            e(b"add@/devices/x\0ACTION\0"),
            UeventError::BadField(_)
        ));
        assert!(matches!(
            e(b"add@/devices/x\0=x\0"),
            UeventError::BadField(_)
        ));
        assert!(matches!(
            e(b"add@/devices/x\0\0\0ACTION=add\0"),
            UeventError::BadField(_)
        ));
        assert!(matches!(
            e(b"add@/devices/x\0ACTION=\xff\0"),
            UeventError::NotUtf8(1)
        ));
        assert!(matches!(e(b"add@/devices/\xff\0"), UeventError::NotUtf8(0)));
        assert_eq!(
            e(b"add@/devices/x\0SUBSYSTEM=usb\0"),
            UeventError::Missing("ACTION")
        );
        assert_eq!(
            e(b"add@/devices/x\0ACTION=add\0"),
            UeventError::Missing("SUBSYSTEM")
        );
        assert!(matches!(
            e(b"add@/devices/x\0ACTION=remove\0SUBSYSTEM=usb\0"),
            UeventError::HeaderMismatch { key: "ACTION", .. }
        ));
        assert!(matches!(
            e(b"add@/devices/x\0ACTION=add\0DEVPATH=/devices/y\0SUBSYSTEM=usb\0"),
            UeventError::HeaderMismatch { key: "DEVPATH", .. }
        ));
        let m = encode(
            "add",
            "/devices/usb1/1-1",
            &[("SUBSYSTEM", "usb"), ("TYPE", "8/6/80")],
        );
        assert_eq!(e(&m), UeventError::Missing("DEVTYPE"));
        let m = encode(
            "add",
            "/devices/usb1/1-1",
            &[("SUBSYSTEM", "usb"), ("DEVTYPE", "usb_device")],
        );
        assert_eq!(e(&m), UeventError::Missing("TYPE"));
        let m = encode(
            "add",
            "/devices/usb1/1-1:1.0",
            &[
                ("SUBSYSTEM", "usb"),
                ("DEVTYPE", "usb_interface"),
                ("TYPE", "0/0/0"),
            ],
        );
        assert_eq!(e(&m), UeventError::Missing("INTERFACE"));
        assert!(matches!(
            e(&dev("add", "/devices/usb1/1-1", "8/6")),
            UeventError::BadCodes { key: "TYPE", .. }
        ));
        assert!(matches!(
            e(&intf("add", "/devices/usb1/1-1:1.0", "300/1/1")),
            UeventError::BadCodes {
                key: "INTERFACE",
                ..
            }
        ));
        // Names that would escape bus/usb/devices, or kinds that disagree with the name.
        assert!(matches!(
            e(&dev("add", "/devices/usb1/..", "8/6/80")),
            UeventError::BadName(_)
        ));
        assert!(matches!(
            e(&dev("add", "/devices/usb1/", "8/6/80")),
            UeventError::BadName(_)
        ));
        assert!(matches!(
            e(&dev("add", "/devices/usb1/1-1:1.0", "8/6/80")),
            UeventError::BadName(_)
        ));
        assert!(matches!(
            e(&intf("add", "/devices/usb1/1-1", "8/6/80")),
            UeventError::BadName(_)
        ));
        assert!(matches!(
            e(&intf("add", "/devices/usb1", "8/6/80")),
            UeventError::BadName(_)
        ));
        let many: Vec<(String, String)> = (0..=MAX_FIELDS)
            .map(|i| (format!("K{i}"), "v".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            e(&encode("add", "/devices/x", &many)),
            UeventError::TooManyFields
        );
    }

    #[test]
    fn never_panics_on_prefixes_and_noise() {
        let m = intf(
            "add",
            "/devices/pci0000:00/usb2/2-4/2-4.1/2-4.1:1.0",
            "8/6/80",
        );
        for end in 0..m.len() {
            let _ = parse(&m[..end]);
        }
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            let mut buf = m.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x as usize % buf.len();
                buf[i] = (x >> 8) as u8;
            }
            let _ = parse(&buf);
        }
    }
}
