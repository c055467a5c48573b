//! A FUSE filesystem the test mounts itself, whose reads of one file wait until the test says
//! so: the stall an unprivileged user can build with fusermount, in a few hundred lines on
//! `/dev/fuse` (no libfuse, no package).
//!
//! The filesystem has regular files named `stall*` ([`StallFs::FILE`], `stall2`, ...; 4096
//! bytes each, one page cache each, so one stalled page does not hold up opens of the
//! others). Every READ is held until [`StallFs::release`]; the data then is `stalled-arg` followed by NULs. Mapping
//! that file and pointing an exec's argv into the mapping makes any reader of that argv
//! (`process_vm_readv`) wait as long as the test likes. Drop releases everything, aborts the
//! connection and unmounts.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const READ: u32 = 15;
const STATFS: u32 = 17;
const RELEASE: u32 = 18;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const OPENDIR: u32 = 27;
const RELEASEDIR: u32 = 29;
const INTERRUPT: u32 = 36;
const DESTROY: u32 = 38;
const BATCH_FORGET: u32 = 42;

const ROOT: u64 = 1;
/// Files are nodes FIRST_FILE.. in the order they were first looked up.
const FIRST_FILE: u64 = 2;
const SIZE: u64 = 4096;
/// What a released READ returns (then NULs).
pub const DATA: &[u8] = b"stalled-arg";

struct State {
    /// READ requests held: (unique, size).
    held: Mutex<Vec<(u64, u32)>>,
    released: AtomicBool,
    reads: AtomicU64,
    names: Mutex<Vec<Vec<u8>>>,
    dev: File,
}

/// The mounted filesystem. See the module documentation.
pub struct StallFs {
    pub mount: PathBuf,
    state: Arc<State>,
    server: Option<JoinHandle<()>>,
}

impl StallFs {
    /// The file whose reads stall.
    pub const FILE: &'static str = "stall";

    /// Mounts it on a new directory under the temp dir. Needs root (mount(2) of `fuse`);
    /// panics naming what is missing.
    pub fn mount(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(crate::unique_id(&format!("stallfs-{tag}")));
        std::fs::create_dir_all(&dir).expect("stallfs: create mount point");
        // SAFETY: plain open(2) of a device path; the fd is owned below.
        let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            panic!(
                "stallfs: cannot open /dev/fuse ({}): the FUSE stall tests need the fuse module \
                 (modprobe fuse) and root",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd was just opened and is ours.
        let dev = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let opts = format!(
            "fd={},rootmode=40000,user_id=0,group_id=0,allow_other",
            dev.as_raw_fd()
        );
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (src, target, fstype, data) = (
            c("ka-stallfs"),
            c(dir.to_str().expect("utf-8 temp dir")),
            c("fuse.ka-stallfs"),
            c(&opts),
        );
        // SAFETY: valid NUL-terminated strings for mount(2).
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            panic!(
                "stallfs: mount of a fuse filesystem on {} failed: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        let state = Arc::new(State {
            held: Mutex::new(Vec::new()),
            released: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            names: Mutex::new(Vec::new()),
            dev,
        });
        let s = state.clone();
        let server = std::thread::Builder::new()
            .name("stallfs".into())
            .spawn(move || serve(&s))
            .expect("stallfs: server thread");
        StallFs {
            mount: dir,
            state,
            server: Some(server),
        }
    }

    pub fn file(&self) -> PathBuf {
        self.mount.join(Self::FILE)
    }

    /// Another stalling file (its own page cache): `stall<n>`.
    pub fn file_n(&self, n: u32) -> PathBuf {
        self.mount.join(format!("{}{n}", Self::FILE))
    }

    /// READ requests received so far (held or answered).
    pub fn reads(&self) -> u64 {
        self.state.reads.load(Ordering::SeqCst)
    }

    /// READ requests waiting now.
    pub fn held(&self) -> usize {
        self.state.held.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Answers every held READ and every later one at once.
    pub fn release(&self) {
        self.state.released.store(true, Ordering::SeqCst);
        let held: Vec<(u64, u32)> = self
            .state
            .held
            .lock()
            .map(|mut h| h.drain(..).collect())
            .unwrap_or_default();
        for (unique, size) in held {
            reply_read(&self.state.dev, unique, size);
        }
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Ends every request of this filesystem with an error (fusectl `abort`): nothing can
    /// stay blocked on it after this, whatever the server thread is doing.
    pub fn abort_connection(&self) {
        let ctl = Path::new("/sys/fs/fuse/connections");
        if std::fs::read_dir(ctl)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
        {
            let _ = std::process::Command::new("mount")
                .args(["-t", "fusectl", "none", "/sys/fs/fuse/connections"])
                .status();
        }
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(&self.mount) {
            // The connection is named by the minor device number of the mount.
            let minor = (m.dev() & 0xff) | ((m.dev() >> 12) & 0xfff00);
            let _ = std::fs::write(ctl.join(minor.to_string()).join("abort"), "1");
        }
    }
}

impl Drop for StallFs {
    fn drop(&mut self) {
        self.release();
        self.abort_connection();
        let target = std::ffi::CString::new(self.mount.to_string_lossy().as_bytes().to_vec())
            .unwrap_or_default();
        // SAFETY: valid path string; MNT_DETACH cannot block on the server.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        // The server's read returns ENODEV once the connection is gone.
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        let _ = std::fs::remove_dir(&self.mount);
    }
}

fn serve(state: &State) {
    let mut buf = vec![0u8; 1 << 20 | 4096];
    loop {
        let n = match (&state.dev).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(_) => return, // ENODEV: unmounted
        };
        if n < 40 {
            continue;
        }
        let req = &buf[..n];
        let opcode = u32_at(req, 4);
        let unique = u64_at(req, 8);
        let nodeid = u64_at(req, 16);
        let body = &req[40..];
        let dev = &state.dev;
        match opcode {
            INIT => {
                let mut out = vec![0u8; 64];
                put_u32(&mut out, 0, 7); // major
                put_u32(&mut out, 4, 31); // minor
                put_u32(&mut out, 8, 4096); // max_readahead
                put_u32(&mut out, 12, 0); // flags
                put_u16(&mut out, 16, 16); // max_background
                put_u16(&mut out, 18, 12); // congestion_threshold
                put_u32(&mut out, 20, 4096); // max_write
                put_u32(&mut out, 24, 1); // time_gran
                reply(dev, unique, 0, &out);
            }
            LOOKUP => {
                let name = body.split(|b| *b == 0).next().unwrap_or(&[]);
                if nodeid == ROOT && name.starts_with(StallFs::FILE.as_bytes()) {
                    let node = match state.names.lock() {
                        Ok(mut names) => {
                            let i = names.iter().position(|n| n == name).unwrap_or_else(|| {
                                names.push(name.to_vec());
                                names.len() - 1
                            });
                            FIRST_FILE + i as u64
                        }
                        Err(_) => FIRST_FILE,
                    };
                    let mut out = vec![0u8; 40];
                    put_u64(&mut out, 0, node);
                    put_u64(&mut out, 16, 3600); // entry_valid
                    put_u64(&mut out, 24, 3600); // attr_valid
                    out.extend(attr(node));
                    reply(dev, unique, 0, &out);
                } else {
                    reply(dev, unique, -libc::ENOENT, &[]);
                }
            }
            GETATTR => {
                let mut out = vec![0u8; 16];
                put_u64(&mut out, 0, 3600);
                out.extend(attr(nodeid));
                reply(dev, unique, 0, &out);
            }
            OPEN | OPENDIR => reply(dev, unique, 0, &[0u8; 16]),
            READ => {
                state.reads.fetch_add(1, Ordering::SeqCst);
                let size = u32_at(body, 16);
                if state.released.load(Ordering::SeqCst) {
                    reply_read(dev, unique, size);
                } else if let Ok(mut h) = state.held.lock() {
                    h.push((unique, size));
                }
            }
            STATFS => reply(dev, unique, 0, &[0u8; 80]),
            RELEASE | RELEASEDIR | FLUSH => reply(dev, unique, 0, &[]),
            FORGET | BATCH_FORGET | INTERRUPT => {} // no reply
            DESTROY => {
                reply(dev, unique, 0, &[]);
                return;
            }
            _ => reply(dev, unique, -libc::ENOSYS, &[]),
        }
    }
}

fn reply_read(dev: &File, unique: u64, size: u32) {
    let mut data = vec![0u8; size.min(SIZE as u32) as usize];
    let n = DATA.len().min(data.len());
    data[..n].copy_from_slice(&DATA[..n]);
    reply(dev, unique, 0, &data);
}

/// struct fuse_attr (88 bytes).
fn attr(node: u64) -> Vec<u8> {
    let mut a = vec![0u8; 88];
    put_u64(&mut a, 0, node);
    let (mode, size, nlink) = if node == ROOT {
        (libc::S_IFDIR | 0o755, 0, 2)
    } else {
        (libc::S_IFREG | 0o444, SIZE, 1)
    };
    put_u64(&mut a, 8, size);
    put_u64(&mut a, 16, size.div_ceil(512));
    put_u32(&mut a, 60, mode);
    put_u32(&mut a, 64, nlink);
    put_u32(&mut a, 80, 4096); // blksize
    a
}

fn reply(mut dev: &File, unique: u64, error: i32, body: &[u8]) {
    let mut out = vec![0u8; 16];
    put_u32(&mut out, 0, (16 + body.len()) as u32);
    put_u32(&mut out, 4, error as u32);
    put_u64(&mut out, 8, unique);
    out.extend_from_slice(body);
    // ENOENT: the request was interrupted and is gone.
    let _ = dev.write(&out);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}
