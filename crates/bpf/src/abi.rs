//! `#[repr(C)]` mirrors of src/bpf/abi.h. Sizes are checked at compile time; change both sides
//! together.

/// Longest executable path the kernel side can match for `fromSource` (with its NUL).
pub const PATH_MAX: usize = 256;

pub const NET_TYPE: u8 = 0;
pub const NET_PROTO: u8 = 1;

pub const ENFORCE: u8 = 1;
pub const DENY: u8 = 2;
pub const DENY_TTY: u8 = 4;
pub const AUDIT: u8 = 8;
pub const AUDIT_TTY: u8 = 16;

pub const REASON_RULE_DENY: u8 = 0;
pub const REASON_POSTURE_DENY: u8 = 1;
pub const REASON_AUDIT: u8 = 2;
pub const REASON_POSTURE_AUDIT: u8 = 3;

/// Source id of a dynamic loader run as a program (see `KA_SOURCE_LOADER` in abi.h).
pub const SOURCE_LOADER: u32 = 0xffff_ffff;

pub const HOOK_SOCK_CREATE: u8 = 1;
pub const HOOK_CONNECT: u8 = 2;
pub const HOOK_SOCKET_KILL: u8 = 3;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NetKey {
    pub cgroup_id: u64,
    pub source_id: u32,
    pub kind: u8,
    pub value: u8,
    pub pad: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetVal {
    pub flags: u8,
    pub pad: [u8; 7],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetSubject {
    pub allow_list: u8,
    pub posture_block: u8,
    pub pad: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NetEventRaw {
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub source_id: u32,
    pub family: i32,
    pub sock_type: i32,
    pub protocol: i32,
    pub hook: u8,
    pub denied: u8,
    pub tty: u8,
    pub reason: u8,
    pub comm: [u8; 16],
}

/// An executable file as the kernel knows it (`struct ka_exe_key`): inode number and the kernel
/// device number of its superblock (`MAJOR << 20 | MINOR`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ExeKey {
    pub ino: u64,
    pub dev: u32,
    pub pad: u32,
}

impl ExeKey {
    pub fn new(dev_major: u32, dev_minor: u32, ino: u64) -> Self {
        Self {
            ino,
            dev: (dev_major << 20) | (dev_minor & 0xf_ffff),
            pad: 0,
        }
    }
}

/// `struct ka_guard_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardEventRaw {
    pub cgroup_id: u64,
    pub pid: u32,
    pub dev: u32,
    pub comm: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenIntentRaw {
    pub cgroup_id: u64,
    pub flags: u32,
    pub syscall: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathKey {
    pub path: [u8; PATH_MAX],
}

impl PathKey {
    /// NUL-padded, as the kernel side builds it; `None` if the path does not fit.
    pub fn new(path: &str) -> Option<Self> {
        let bytes = path.as_bytes();
        if bytes.len() >= PATH_MAX || bytes.contains(&0) {
            return None;
        }
        let mut key = PathKey {
            path: [0; PATH_MAX],
        };
        key.path[..bytes.len()].copy_from_slice(bytes);
        Some(key)
    }
}

// SAFETY: plain-old-data C structs without padding holes that could leak (explicit pads).
unsafe impl aya::Pod for NetKey {}
unsafe impl aya::Pod for NetVal {}
unsafe impl aya::Pod for NetSubject {}
unsafe impl aya::Pod for ExeKey {}
unsafe impl aya::Pod for OpenIntentRaw {}
unsafe impl aya::Pod for PathKey {}

const _: () = assert!(std::mem::size_of::<NetKey>() == 16);
const _: () = assert!(std::mem::size_of::<NetVal>() == 8);
const _: () = assert!(std::mem::size_of::<NetSubject>() == 8);
const _: () = assert!(std::mem::size_of::<NetEventRaw>() == 56);
const _: () = assert!(std::mem::size_of::<OpenIntentRaw>() == 16);
const _: () = assert!(std::mem::size_of::<ExeKey>() == 16);
const _: () = assert!(std::mem::size_of::<GuardEventRaw>() == 32);
const _: () = assert!(std::mem::offset_of!(ExeKey, dev) == 8);
const _: () = assert!(std::mem::size_of::<PathKey>() == PATH_MAX);
