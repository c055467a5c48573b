//! The fanotify group: init with graceful flag fallback, marks, event reading and responses.
//!
//! Everything here is a thin, checked wrapper over the syscalls; policy lives elsewhere.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use serde::Serialize;

/// The two permission events the plane handles.
pub(crate) const PERM_MASK: u64 = libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM;

/// Init flags that the plane asks for, and which of them the kernel granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    /// `fanotify_init` flags in effect (raw bits).
    pub init_flags: u32,
    /// Events carry thread ids (`FAN_REPORT_TID`); without it they carry the thread-group id,
    /// and per-thread write intent can be wrong for multi-threaded openers.
    pub report_tid: bool,
    /// `FAN_UNLIMITED_QUEUE` granted (needs `CAP_SYS_ADMIN`, like permission events
    /// themselves; `CAP_SYS_RESOURCE` is not needed: measured on 6.18 without it). Without
    /// it the queue holds
    /// `/proc/sys/fs/fanotify/max_queued_events` events, and the kernel **allows** a
    /// permission event that does not fit (it queues an overflow event instead).
    pub unlimited_queue: bool,
    /// `FAN_UNLIMITED_MARKS` granted (needs `CAP_SYS_ADMIN`). Without it every mark of this
    /// user (all groups) counts against `/proc/sys/fs/fanotify/max_user_marks`; the allow cache
    /// is sized below that.
    pub unlimited_marks: bool,
    /// What was asked for and not granted, with the reason, e.g.
    /// `FAN_UNLIMITED_QUEUE: EPERM (needs CAP_SYS_ADMIN)`.
    pub fallbacks: Vec<String>,
}

/// Wanted init options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitWants {
    pub unlimited_queue: bool,
    pub unlimited_marks: bool,
}

/// Creates the group: `FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID`, plus
/// the unlimited flags when wanted and granted. Each optional flag that the kernel refuses is
/// dropped and reported in [`GroupInfo::fallbacks`].
pub(crate) fn init_group(wants: InitWants) -> Result<(Fanotify, GroupInfo), Errno> {
    let base = libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK;
    let mut optional: Vec<(u32, &'static str, &'static str)> = vec![(
        libc::FAN_REPORT_TID,
        "FAN_REPORT_TID",
        "kernel older than 4.20",
    )];
    if wants.unlimited_queue {
        optional.push((
            libc::FAN_UNLIMITED_QUEUE,
            "FAN_UNLIMITED_QUEUE",
            "needs CAP_SYS_ADMIN",
        ));
    }
    if wants.unlimited_marks {
        optional.push((
            libc::FAN_UNLIMITED_MARKS,
            "FAN_UNLIMITED_MARKS",
            "needs CAP_SYS_ADMIN",
        ));
    }
    let event_flags = EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC;
    let mut fallbacks = Vec::new();
    // Try every optional flag on its own first, so each refusal is attributed correctly.
    let mut granted = 0u32;
    for (bit, name, why) in &optional {
        match try_init(base | bit, event_flags) {
            Ok(_) => granted |= bit,
            Err(e) => fallbacks.push(format!("{name}: {e} ({why})")),
        }
    }
    let flags = base | granted;
    let group = try_init(flags, event_flags)?;
    Ok((
        group,
        GroupInfo {
            init_flags: flags,
            report_tid: granted & libc::FAN_REPORT_TID != 0,
            unlimited_queue: granted & libc::FAN_UNLIMITED_QUEUE != 0,
            unlimited_marks: granted & libc::FAN_UNLIMITED_MARKS != 0,
            fallbacks,
        },
    ))
}

pub(crate) fn try_init(flags: u32, event_flags: EventFFlags) -> Result<Fanotify, Errno> {
    Fanotify::init(InitFlags::from_bits_retain(flags), event_flags)
}

/// Adds (or removes) a filesystem mark for the permission events on the filesystem that
/// holds `path`.
pub(crate) fn mark_filesystem(group: &Fanotify, path: &Path, add: bool) -> Result<(), Errno> {
    let op = if add {
        MarkFlags::FAN_MARK_ADD
    } else {
        MarkFlags::FAN_MARK_REMOVE
    };
    group.mark(
        op | MarkFlags::FAN_MARK_FILESYSTEM,
        MaskFlags::from_bits_retain(PERM_MASK),
        nix::fcntl::AT_FDCWD,
        Some(path),
    )
}

/// Removes every filesystem mark of the group (no new events are queued afterwards).
pub(crate) fn flush_filesystem_marks(group: &Fanotify) -> Result<(), Errno> {
    group.mark(
        MarkFlags::FAN_MARK_FLUSH | MarkFlags::FAN_MARK_FILESYSTEM,
        MaskFlags::empty(),
        nix::fcntl::AT_FDCWD,
        None::<&Path>,
    )
}

/// Adds an inode ignore mark (the allow cache) on the file behind an event fd: this group
/// gets no more open or exec permission events for the inode. Evictable when the kernel
/// supports it, so the cache never pins inodes in memory.
pub(crate) fn add_ignore_mark(
    group: &Fanotify,
    file: BorrowedFd<'_>,
    evictable: bool,
) -> Result<(), Errno> {
    let mut flags = MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_IGNORE_SURV;
    if evictable {
        flags |= MarkFlags::FAN_MARK_EVICTABLE;
    }
    group.mark(
        flags,
        MaskFlags::from_bits_retain(PERM_MASK),
        file,
        None::<&Path>,
    )
}

/// Removes every inode mark of the group. The plane only uses inode marks for the allow
/// cache, so this empties the cache.
pub(crate) fn flush_inode_marks(group: &Fanotify) -> Result<(), Errno> {
    group.mark(
        MarkFlags::FAN_MARK_FLUSH,
        MaskFlags::empty(),
        nix::fcntl::AT_FDCWD,
        None::<&Path>,
    )
}

/// One event as read from the group.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub mask: u64,
    /// Thread id with `FAN_REPORT_TID`, else thread-group id; 0 when the process is not
    /// visible in the listener's pid namespace.
    pub pid: i32,
    /// The file, opened by the kernel for us; `None` for overflow and other fd-less events.
    pub fd: Option<OwnedFd>,
}

/// Why a buffer could not be parsed any further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseStop {
    /// The kernel speaks another metadata version; nothing in the buffer can be trusted.
    Version(u8),
    /// A record claims a length that does not fit.
    Truncated,
}

/// Splits a buffer returned by `read` into events. Takes ownership of every fd found, also
/// after an error, so none leaks; the caller must answer each permission event.
pub(crate) fn parse_events(buf: &[u8], out: &mut Vec<RawEvent>) -> Result<(), ParseStop> {
    let meta_len = std::mem::size_of::<libc::fanotify_event_metadata>();
    let mut off = 0usize;
    while buf.len().saturating_sub(off) >= meta_len {
        let Some(chunk) = buf.get(off..off + meta_len) else {
            return Err(ParseStop::Truncated);
        };
        // SAFETY: `chunk` is exactly `meta_len` bytes; read_unaligned has no alignment needs
        // and fanotify_event_metadata is plain old data.
        let m: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        let fd = if m.fd >= 0 {
            // SAFETY: the kernel installed this fd in our table for this event and nobody
            // else knows it; we become its only owner.
            Some(unsafe { OwnedFd::from_raw_fd(m.fd) })
        } else {
            None
        };
        if m.vers != libc::FANOTIFY_METADATA_VERSION {
            // Still hand the fd out so the caller can answer and close it.
            out.push(RawEvent {
                mask: m.mask,
                pid: m.pid,
                fd,
            });
            return Err(ParseStop::Version(m.vers));
        }
        out.push(RawEvent {
            mask: m.mask,
            pid: m.pid,
            fd,
        });
        let len = m.event_len as usize;
        if len < meta_len {
            return Err(ParseStop::Truncated);
        }
        off += len;
    }
    Ok(())
}

/// Answers a permission event.
pub(crate) fn respond(group: BorrowedFd<'_>, event_fd: RawFd, allow: bool) -> Result<(), Errno> {
    let resp = libc::fanotify_response {
        fd: event_fd,
        response: if allow {
            libc::FAN_ALLOW
        } else {
            libc::FAN_DENY
        },
    };
    // SAFETY: `resp` is a plain C struct that lives across the call.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&resp as *const libc::fanotify_response).cast::<u8>(),
            std::mem::size_of::<libc::fanotify_response>(),
        )
    };
    nix::unistd::write(group, bytes).map(|_| ())
}

/// Reads from the (non-blocking) group fd.
pub(crate) fn read_group(group: &Fanotify, buf: &mut [u8]) -> Result<usize, Errno> {
    nix::unistd::read(group.as_fd(), buf)
}

/// The raw fd number, for logging.
pub(crate) fn raw(group: &Fanotify) -> RawFd {
    group.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(vers: u8, len: u32, fd: i32) -> Vec<u8> {
        let m = libc::fanotify_event_metadata {
            event_len: len,
            vers,
            reserved: 0,
            metadata_len: 24,
            mask: libc::FAN_OPEN_PERM,
            fd,
            pid: 42,
        };
        // SAFETY: plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&m as *const libc::fanotify_event_metadata).cast::<u8>(),
                std::mem::size_of::<libc::fanotify_event_metadata>(),
            )
        };
        bytes.to_vec()
    }

    #[test]
    fn parses_fdless_events_and_stops_on_bad_records() {
        let mut buf = meta(libc::FANOTIFY_METADATA_VERSION, 24, -1);
        buf.extend(meta(libc::FANOTIFY_METADATA_VERSION, 24, -1));
        let mut out = Vec::new();
        assert_eq!(parse_events(&buf, &mut out), Ok(()));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].pid, 42);
        assert!(out[0].fd.is_none());

        let mut out = Vec::new();
        assert_eq!(
            parse_events(&meta(libc::FANOTIFY_METADATA_VERSION, 3, -1), &mut out),
            Err(ParseStop::Truncated)
        );
        let mut out = Vec::new();
        assert_eq!(
            parse_events(&meta(1, 24, -1), &mut out),
            Err(ParseStop::Version(1))
        );
        // A short tail is ignored.
        let mut out = Vec::new();
        assert_eq!(parse_events(&[0u8; 10], &mut out), Ok(()));
        assert!(out.is_empty());
    }
}
