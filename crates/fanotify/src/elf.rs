//! Just enough ELF to tell programs, ELF interpreters and loaders apart. Reads through the
//! event fd the kernel already opened (`pread`): no new open on a marked filesystem.

use std::os::fd::BorrowedFd;

/// What an executable looks like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ElfInfo {
    /// `PT_INTERP`: the program needs this ELF interpreter.
    pub interp: Option<Vec<u8>>,
    /// A shared object with no interpreter (`ET_DYN` without `PT_INTERP`): ld.so itself, or a
    /// static-pie program. Run directly, it may be ld.so loading another program.
    pub loader_like: bool,
}

const ET_DYN: u16 = 3;
const PT_INTERP: u32 = 3;
const MAX_PHNUM: usize = 512;
const MAX_INTERP: usize = 4096;

fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> Option<usize> {
    let off = i64::try_from(off).ok()?;
    nix::sys::uio::pread(fd, buf, off).ok()
}

/// Reads the ELF header and program headers; `None` for non-ELF files (scripts, ...).
pub(crate) fn inspect(fd: BorrowedFd<'_>) -> Option<ElfInfo> {
    let mut hdr = [0u8; 64];
    let n = pread(fd, &mut hdr, 0)?;
    parse(&hdr[..n], |buf, off| pread(fd, buf, off))
}

/// Parses from a header and a reader for the rest (testable without files).
pub(crate) fn parse(
    hdr: &[u8],
    mut read_at: impl FnMut(&mut [u8], u64) -> Option<usize>,
) -> Option<ElfInfo> {
    if hdr.len() < 52 || hdr.get(..4)? != b"\x7fELF" {
        return None;
    }
    let is64 = match hdr[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match hdr[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16_at = |b: &[u8], o: usize| -> Option<u16> {
        let s: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    };
    let u32_at = |b: &[u8], o: usize| -> Option<u32> {
        let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    };
    let u64_at = |b: &[u8], o: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(s)
        } else {
            u64::from_be_bytes(s)
        })
    };
    let e_type = u16_at(hdr, 16)?;
    let (phoff, phentsize, phnum) = if is64 {
        (
            u64_at(hdr, 32)?,
            u16_at(hdr, 54)? as usize,
            u16_at(hdr, 56)? as usize,
        )
    } else {
        (
            u32_at(hdr, 28)? as u64,
            u16_at(hdr, 42)? as usize,
            u16_at(hdr, 44)? as usize,
        )
    };
    let min_ent = if is64 { 56 } else { 32 };
    if phnum > MAX_PHNUM || (phnum > 0 && phentsize < min_ent) {
        return None;
    }
    let mut phdrs = vec![0u8; phnum * phentsize];
    if !phdrs.is_empty() && read_at(&mut phdrs, phoff)? != phdrs.len() {
        return None;
    }
    let mut interp = None;
    for i in 0..phnum {
        let p = phdrs.get(i * phentsize..(i + 1) * phentsize)?;
        if u32_at(p, 0)? != PT_INTERP {
            continue;
        }
        let (off, size) = if is64 {
            (u64_at(p, 8)?, u64_at(p, 32)?)
        } else {
            (u32_at(p, 4)? as u64, u32_at(p, 16)? as u64)
        };
        let size = usize::try_from(size).ok()?.min(MAX_INTERP);
        let mut s = vec![0u8; size];
        let n = read_at(&mut s, off)?;
        s.truncate(n);
        if let Some(end) = s.iter().position(|b| *b == 0) {
            s.truncate(end);
        }
        interp = Some(s);
        break;
    }
    Some(ElfInfo {
        loader_like: e_type == ET_DYN && interp.is_none(),
        interp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf64(e_type: u16, interp: Option<&[u8]>) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&e_type.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        let phnum: u16 = if interp.is_some() { 2 } else { 1 };
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        // PT_LOAD
        let mut load = vec![0u8; 56];
        load[..4].copy_from_slice(&1u32.to_le_bytes());
        f.extend(load);
        if let Some(s) = interp {
            let off = 64 + 56 * 2;
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_INTERP.to_le_bytes());
            ph[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&((s.len() + 1) as u64).to_le_bytes());
            f.extend(ph);
            f.extend_from_slice(s);
            f.push(0);
        }
        f
    }

    fn run(file: &[u8]) -> Option<ElfInfo> {
        parse(&file[..64.min(file.len())], |buf, off| {
            let off = off as usize;
            let avail = file.get(off..)?;
            let n = buf.len().min(avail.len());
            buf[..n].copy_from_slice(&avail[..n]);
            Some(n)
        })
    }

    #[test]
    fn classifies() {
        let prog = run(&elf64(ET_DYN, Some(b"/lib64/ld-linux-x86-64.so.2"))).unwrap_or_default();
        assert_eq!(
            prog.interp.as_deref(),
            Some(&b"/lib64/ld-linux-x86-64.so.2"[..])
        );
        assert!(!prog.loader_like);
        let ld = run(&elf64(ET_DYN, None)).unwrap_or_default();
        assert!(ld.loader_like && ld.interp.is_none());
        let stat = run(&elf64(2, None)).unwrap_or_default();
        assert!(!stat.loader_like);
        assert_eq!(run(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(run(b""), None);
        // A header promising program headers that are not there.
        let mut bad = elf64(ET_DYN, None);
        bad.truncate(70);
        assert_eq!(run(&bad), None);
    }

    #[test]
    fn real_binaries() {
        use std::os::fd::AsFd;
        let Ok(f) = std::fs::File::open("/bin/true") else {
            return;
        };
        let info = inspect(f.as_fd());
        assert!(info.is_some_and(|i| i.interp.is_some() && !i.loader_like));
    }
}
