//! `#[repr(C)]` mirrors of src/bpf/lsm_abi.h (the BPF-LSM plane). Sizes and field offsets are
//! asserted here and in the header with the same numbers; change both together.

use std::mem::{offset_of, size_of};

pub const PATH_MAX: usize = 256;
pub const DEPTH: usize = 32;

pub const PROCESS: u8 = 0;
pub const FILE: u8 = 1;

pub const EXACT: u8 = 0;
pub const EXECNAME: u8 = 1;
pub const DIR_NEAR: u8 = 2;
pub const DIR_FAR: u8 = 3;

pub const REQ_WRITE: u8 = 1;
pub const REQ_OWNER: u8 = 2;
pub const REQ_TTY: u8 = 4;

pub const IMPLICIT_FILE: u32 = 1;
pub const IMPLICIT_DIR: u32 = 2;

/// `ka_lsm_key.kind` for capabilities (protocol keys use `abi::NET_TYPE` / `abi::NET_PROTO`).
pub const CAP: u8 = 2;

pub const HOOK_EXEC: u8 = 1;
pub const HOOK_OPEN: u8 = 2;
pub const HOOK_WRITE: u8 = 3;
pub const HOOK_UNLINK: u8 = 4;
pub const HOOK_RENAME: u8 = 5;
pub const HOOK_LINK: u8 = 6;
pub const HOOK_CHMOD: u8 = 7;
pub const HOOK_TRUNCATE: u8 = 8;
pub const HOOK_MKDIR: u8 = 9;
pub const HOOK_MKNOD: u8 = 10;
pub const HOOK_MMAP_EXEC: u8 = 11;
pub const HOOK_SOCKET_CREATE: u8 = 12;
pub const HOOK_SOCKET_CONNECT: u8 = 13;
pub const HOOK_SOCKET_ACCEPT: u8 = 14;
pub const HOOK_CAPABLE: u8 = 15;
pub const HOOK_KILL: u8 = 16;
pub const HOOK_PTRACE: u8 = 17;
pub const HOOK_RMDIR: u8 = 18;

pub const REASON_SELF: u8 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LsmPathKey {
    pub cgroup_id: u64,
    pub path_hash: u64,
    pub source_hash: u64,
    pub family: u8,
    pub kind: u8,
    pub pad: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsmPathVal {
    pub deny_mask: u8,
    pub audit_mask: u8,
    pub enforce: u8,
    pub audit: u8,
    pub posture_mask: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LsmKey {
    pub cgroup_id: u64,
    pub source_hash: u64,
    pub kind: u8,
    pub value: u8,
    pub pad: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LsmSubject {
    pub process_allow_list: u8,
    pub file_allow_list: u8,
    pub file_posture_block: u8,
    pub net_allow_list: u8,
    pub net_posture_block: u8,
    pub cap_allow_list: u8,
    pub cap_posture_block: u8,
    pub source_rules: u8,
    pub process_rules: u8,
    pub file_rules: u8,
    pub net_rules: u8,
    pub cap_rules: u8,
    pub pad: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct LsmEventRaw {
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub owner: u32,
    pub hook: u8,
    pub denied: u8,
    pub reason: u8,
    pub write: u8,
    pub tty: u8,
    pub pad: [u8; 3],
    pub arg0: i32,
    pub arg1: i32,
    pub arg2: i32,
    pub pad2: u32,
    pub comm: [u8; 16],
    pub path: [u8; PATH_MAX],
    pub source: [u8; PATH_MAX],
}

// SAFETY: plain-old-data C structs with explicit padding fields.
unsafe impl aya::Pod for LsmPathKey {}
unsafe impl aya::Pod for LsmPathVal {}
unsafe impl aya::Pod for LsmKey {}
unsafe impl aya::Pod for LsmSubject {}

const _: () = assert!(size_of::<LsmPathKey>() == 32);
const _: () = assert!(offset_of!(LsmPathKey, path_hash) == 8);
const _: () = assert!(offset_of!(LsmPathKey, source_hash) == 16);
const _: () = assert!(offset_of!(LsmPathKey, family) == 24);
const _: () = assert!(offset_of!(LsmPathKey, kind) == 25);
const _: () = assert!(size_of::<LsmPathVal>() == 8);
const _: () = assert!(offset_of!(LsmPathVal, audit_mask) == 1);
const _: () = assert!(offset_of!(LsmPathVal, enforce) == 2);
const _: () = assert!(offset_of!(LsmPathVal, audit) == 3);
const _: () = assert!(offset_of!(LsmPathVal, posture_mask) == 4);
const _: () = assert!(size_of::<LsmKey>() == 24);
const _: () = assert!(offset_of!(LsmKey, source_hash) == 8);
const _: () = assert!(offset_of!(LsmKey, kind) == 16);
const _: () = assert!(offset_of!(LsmKey, value) == 17);
const _: () = assert!(size_of::<LsmSubject>() == 16);
const _: () = assert!(offset_of!(LsmSubject, cap_posture_block) == 6);
const _: () = assert!(offset_of!(LsmSubject, source_rules) == 7);
const _: () = assert!(offset_of!(LsmSubject, cap_rules) == 11);
const _: () = assert!(size_of::<LsmEventRaw>() == 576);
const _: () = assert!(offset_of!(LsmEventRaw, uid) == 16);
const _: () = assert!(offset_of!(LsmEventRaw, owner) == 20);
const _: () = assert!(offset_of!(LsmEventRaw, hook) == 24);
const _: () = assert!(offset_of!(LsmEventRaw, denied) == 25);
const _: () = assert!(offset_of!(LsmEventRaw, reason) == 26);
const _: () = assert!(offset_of!(LsmEventRaw, write) == 27);
const _: () = assert!(offset_of!(LsmEventRaw, tty) == 28);
const _: () = assert!(offset_of!(LsmEventRaw, arg0) == 32);
const _: () = assert!(offset_of!(LsmEventRaw, arg1) == 36);
const _: () = assert!(offset_of!(LsmEventRaw, arg2) == 40);
const _: () = assert!(offset_of!(LsmEventRaw, comm) == 48);
const _: () = assert!(offset_of!(LsmEventRaw, path) == 64);
const _: () = assert!(offset_of!(LsmEventRaw, source) == 320);
