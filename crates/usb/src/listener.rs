//! The kernel uevent socket: `NETLINK_KOBJECT_UEVENT`, multicast group 1.
//!
//! Only the kernel's messages are accepted (source `nl_pid` 0, read from `recvmsg`'s source
//! address): any root process can multicast to the group, and udev re-broadcasts with a
//! `libudev` header. [`UeventSocket::allow_userspace`] lifts the sender check for tests.
//!
//! The receive buffer is large (SO_RCVBUFFORCE when privileged, else SO_RCVBUF, capped by
//! `net.core.rmem_max`). If it still overflows, `recvmsg` fails once with ENOBUFS: messages
//! were lost, and the handler re-scans sysfs.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr,
    SockFlag, SockProtocol, SockType,
};

use crate::uevent::MAX_UEVENT_BYTES;

/// The kernel's uevent multicast group.
pub const UEVENT_GROUP: u32 = 1;
/// Default receive buffer: 64 MiB (udevd asks for 128 MiB).
pub const DEFAULT_RECEIVE_BUFFER: usize = 64 << 20;

/// One datagram read from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `len` bytes from the kernel, or from an allowed userspace sender.
    Message { len: usize, sender: u32 },
    /// From a userspace process while those are not allowed; dropped.
    RejectedSender { sender: u32 },
    /// Longer than the buffer; dropped.
    Truncated { sender: u32 },
    /// The queue overflowed (ENOBUFS): messages were lost.
    Overflow,
    /// Nothing to read (non-blocking socket).
    WouldBlock,
}

/// A bound, non-blocking uevent socket.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
    allow_userspace: bool,
    /// The receive buffer the kernel granted (as `getsockopt` reports it).
    pub receive_buffer: usize,
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl UeventSocket {
    /// Opens and binds the socket in the calling thread's network namespace.
    pub fn open(receive_buffer: usize) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(io_err)?;
        if receive_buffer > 0 {
            if let Err(e) = setsockopt(&fd, sockopt::RcvBufForce, &receive_buffer) {
                tracing::debug!("SO_RCVBUFFORCE: {e}; using SO_RCVBUF (capped by rmem_max)");
                setsockopt(&fd, sockopt::RcvBuf, &receive_buffer).map_err(io_err)?;
            }
        }
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, UEVENT_GROUP)).map_err(io_err)?;
        let granted = nix::sys::socket::getsockopt(&fd, sockopt::RcvBuf).unwrap_or(0);
        Ok(Self {
            fd,
            allow_userspace: false,
            receive_buffer: granted,
        })
    }

    /// Accept messages from userspace senders too. For tests only: in production any root
    /// process could forge USB events.
    #[cfg(feature = "test-hooks")]
    pub fn allow_userspace(&mut self, allow: bool) {
        self.allow_userspace = allow;
    }

    /// Reads one datagram into `buf` (which should hold [`MAX_UEVENT_BYTES`]).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<NetlinkAddr>(
            self.fd.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN) => return Ok(Received::WouldBlock),
            Err(Errno::ENOBUFS) => return Ok(Received::Overflow),
            Err(e) => return Err(io_err(e)),
        };
        // Datagrams without a source address cannot be attributed: treat as userspace.
        let sender = msg.address.map_or(u32::MAX, |a| a.pid());
        let len = msg.bytes;
        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
        if sender != 0 && !self.allow_userspace {
            return Ok(Received::RejectedSender { sender });
        }
        if truncated {
            return Ok(Received::Truncated { sender });
        }
        Ok(Received::Message { len, sender })
    }
}

impl AsFd for UeventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Multicasts uevent-format messages from userspace, as tests and benchmarks need. Run it
/// only inside a private network namespace ([`enter_new_netns`]): in the host namespace the
/// fake events would reach udevd.
#[derive(Debug)]
pub struct UeventSender {
    fd: OwnedFd,
}

impl UeventSender {
    pub fn open() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(io_err)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io_err)?;
        Ok(Self { fd })
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let n = sendto(
            self.fd.as_raw_fd(),
            msg,
            &NetlinkAddr::new(0, UEVENT_GROUP),
            MsgFlags::empty(),
        )
        .map_err(io_err)?;
        if n != msg.len() {
            return Err(io::Error::other(format!("sent {n} of {} bytes", msg.len())));
        }
        Ok(())
    }
}

/// Moves the calling thread into a new, empty network namespace (needs CAP_SYS_ADMIN).
/// Sockets it opens afterwards, and threads it spawns, live there.
pub fn enter_new_netns() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io_err)
}

/// Buffer size for [`UeventSocket::recv`].
pub const RECV_BUFFER: usize = MAX_UEVENT_BYTES;
