//! What a `fromSource` path names, as the kernel will see it: the inode and superblock device
//! of the file the path resolves to inside a subject's root, and the dynamic loaders that
//! could run it. The network plane matches a task's `mm->exe_file` against these identities,
//! so the spelling a process used to exec (`./curl`, a symlink, `//usr/bin/curl`,
//! `/dev/fd/3`, execveat) does not matter.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::abi::ExeKey;

/// Identifies files for one subject (the host, or one container's root filesystem).
pub trait ExeIdentity {
    /// The identity of the file `path` names, resolved inside the subject's root; `None` if
    /// it does not exist (yet).
    fn identify(&self, path: &str) -> Option<ExeKey>;
    /// The dynamic loaders (`ld.so`) of the subject: the `PT_INTERP` of each of `programs`
    /// and the usual loader paths. A loader run as a program (`ld.so /usr/bin/curl`) is the
    /// executable the kernel sees, so it stands in for any program it could load.
    fn loaders(&self, programs: &[&str]) -> Vec<ExeKey>;
}

/// Identifies nothing (tests of the pure table).
pub struct NoIdentity;

impl ExeIdentity for NoIdentity {
    fn identify(&self, _path: &str) -> Option<ExeKey> {
        None
    }
    fn loaders(&self, _programs: &[&str]) -> Vec<ExeKey> {
        Vec::new()
    }
}

/// Loader paths looked at besides the `PT_INTERP` of named programs.
const LOADER_PATHS: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-x86-64.so.2",
    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/lib64/ld-linux-x86-64.so.2",
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-linux.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
    "/lib/ld-musl-aarch64.so.1",
];

/// Kernel device numbers of mounts, by mount id, from `/proc/self/mountinfo`: the superblock's
/// `s_dev`, which is what the BPF side reads. (`stat`'s `st_dev` can differ: btrfs subvolumes,
/// overlayfs on several filesystems.)
#[derive(Debug, Default, Clone)]
pub struct MountDevs(BTreeMap<u64, (u32, u32)>);

impl MountDevs {
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    /// `36 35 98:0 /mnt1 /mnt2 ...`: mount id, parent id, major:minor.
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(id), Some(_), Some(dev)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Some((maj, min)) = dev.split_once(':') else {
                continue;
            };
            if let (Ok(id), Ok(maj), Ok(min)) = (id.parse(), maj.parse(), min.parse()) {
                m.insert(id, (maj, min));
            }
        }
        Self(m)
    }
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Resolves paths inside `root` with `openat2(RESOLVE_IN_ROOT)`: absolute symlinks and `..`
/// stay inside the root, as they do for the container's own processes.
pub struct RootedIdentity {
    root: Option<OwnedFd>,
    mounts: MountDevs,
}

impl RootedIdentity {
    /// `root` is `/` for the host, the root filesystem path for a container.
    pub fn new(root: &Path, mounts: MountDevs) -> Self {
        let root = CString::new(root.as_os_str().as_encoded_bytes())
            .ok()
            .and_then(|c| {
                // SAFETY: a valid C string; the fd is owned below.
                let fd = unsafe {
                    libc::open(
                        c.as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                // SAFETY: a fresh fd we own.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            });
        Self { root, mounts }
    }

    fn open_in_root(&self, path: &str, flags: i32) -> Option<OwnedFd> {
        let root = self.root.as_ref()?;
        let c = CString::new(path).ok()?;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: valid fd, C string and open_how for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: a fresh fd we own.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `(st_dev, st_ino)` of the regular file `path` names inside the root, as `fstat` of an
    /// open file reports them (the fanotify plane's file identity).
    pub fn file_key(&self, path: &str) -> Option<(u64, u64)> {
        let fd = self.open_in_root(path, libc::O_PATH)?;
        let stx = statx_of(&fd)?;
        Some((
            libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
            stx.stx_ino,
        ))
    }

    fn key_of(&self, fd: &OwnedFd) -> Option<ExeKey> {
        let stx = statx_of(fd)?;
        let (maj, min) = (stx.stx_mask & libc::STATX_MNT_ID != 0)
            .then(|| self.mounts.0.get(&stx.stx_mnt_id).copied())
            .flatten()
            .unwrap_or((stx.stx_dev_major, stx.stx_dev_minor));
        Some(ExeKey::new(maj, min, stx.stx_ino))
    }

    /// The `PT_INTERP` path of an ELF program, if it has one.
    fn interpreter(&self, path: &str) -> Option<String> {
        let fd = self.open_in_root(path, libc::O_RDONLY | libc::O_NONBLOCK)?;
        let mut f = File::from(fd);
        let mut head = vec![0u8; 64 * 1024];
        let n = read_up_to(&mut f, &mut head)?;
        elf_interp(&head[..n])
    }
}

/// The kernel device number (`MAJOR << 20 | MINOR`) of the filesystem holding `path` (any file
/// type), as the BPF side reads `i_sb->s_dev`.
pub fn kernel_dev_of(path: &Path, mounts: &MountDevs) -> Option<u32> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid C string; the fd is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let stx = statx_any(&fd)?;
    let (maj, min) = (stx.stx_mask & libc::STATX_MNT_ID != 0)
        .then(|| mounts.0.get(&stx.stx_mnt_id).copied())
        .flatten()
        .unwrap_or((stx.stx_dev_major, stx.stx_dev_minor));
    Some(ExeKey::new(maj, min, 0).dev)
}

fn statx_any(fd: &OwnedFd) -> Option<libc::statx> {
    // SAFETY: zeroed statx is a valid out-buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, valid out-buffer.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_INO | libc::STATX_MNT_ID | libc::STATX_TYPE,
            &mut stx,
        )
    };
    (rc == 0).then_some(stx)
}

/// `statx` of a regular file (else `None`), with its mount id.
fn statx_of(fd: &OwnedFd) -> Option<libc::statx> {
    // SAFETY: zeroed statx is a valid out-buffer.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, valid out-buffer.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_INO | libc::STATX_MNT_ID | libc::STATX_TYPE,
            &mut stx,
        )
    };
    (rc == 0 && u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFREG).then_some(stx)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// `PT_INTERP` of a 64-bit little-endian ELF whose program headers and interpreter string lie
/// in `head`.
pub fn elf_interp(head: &[u8]) -> Option<String> {
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum.min(256) {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? == 3 {
            let off = usize::try_from(u64_at(ph + 8)?).ok()?;
            let len = usize::try_from(u64_at(ph + 32)?).ok()?;
            let raw = head.get(off..off.checked_add(len)?)?;
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            return String::from_utf8(raw[..end].to_vec()).ok();
        }
    }
    None
}

impl ExeIdentity for RootedIdentity {
    fn identify(&self, path: &str) -> Option<ExeKey> {
        let fd = self.open_in_root(path, libc::O_PATH)?;
        self.key_of(&fd)
    }

    fn loaders(&self, programs: &[&str]) -> Vec<ExeKey> {
        let mut paths: Vec<String> = programs
            .iter()
            .filter_map(|p| self.interpreter(p))
            .collect();
        paths.extend(LOADER_PATHS.iter().map(|p| p.to_string()));
        let mut keys: Vec<ExeKey> = paths.iter().filter_map(|p| self.identify(p)).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_devices_by_mount_id() {
        let m = MountDevs::parse(
            "22 1 0:21 / /proc rw - proc proc rw\n29 1 259:2 / / rw - ext4 /dev/x rw\nbad line\n",
        );
        assert_eq!(m.0.get(&29), Some(&(259, 2)));
        assert_eq!(m.0.get(&22), Some(&(0, 21)));
        assert_eq!(m.0.len(), 2);
    }

    #[test]
    fn kernel_device_numbers() {
        assert_eq!(ExeKey::new(259, 2, 7).dev, (259 << 20) | 2);
    }

    #[test]
    fn interpreter_of_this_test_binary() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let interp = elf_interp(&exe).unwrap();
        assert!(interp.contains("ld-"), "{interp}");
        assert_eq!(elf_interp(b"#!/bin/sh\n"), None);
        assert_eq!(elf_interp(&exe[..70]), None);
    }

    #[test]
    fn spellings_of_one_file_are_one_identity() {
        let id = RootedIdentity::new(Path::new("/"), MountDevs::read());
        let a = id.identify("/proc/self/exe");
        assert_eq!(a, None, "magic links are not followed");
        let sh = id.identify("/bin/sh").unwrap();
        let resolved = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(Some(sh), id.identify(resolved.to_str().unwrap()));
        assert_eq!(Some(sh), id.identify("//bin/../bin/./sh"));
        assert!(id.identify("/nonexistent/x").is_none());
        assert!(
            id.identify("/").is_none(),
            "directories are not executables"
        );
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/bin/sh").unwrap();
        assert_eq!(id.file_key("/bin/sh"), Some((m.dev(), m.ino())));
    }
}
