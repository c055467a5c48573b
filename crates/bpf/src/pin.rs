//! bpffs pins. Links are replaced by pinning the new one beside the old and renaming it over,
//! so a restarted daemon never leaves a gap in which nothing is attached.

use std::fs;
use std::path::Path;

use aya::programs::links::FdLink;

use crate::BpfError;

/// Pins `link` at `path`, replacing (and so detaching) whatever link was pinned there.
pub(crate) fn replace_link(link: FdLink, path: &Path) -> Result<(), BpfError> {
    // bpffs refuses names with a '.'.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push("_new");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    link.pin(&tmp).map_err(|e| BpfError::Pin {
        path: tmp.clone(),
        message: format!("{e}: {:?}", std::error::Error::source(&e)),
    })?;
    fs::rename(&tmp, path).map_err(|source| BpfError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes every pin under `dir` (links detach, maps are freed once unused) and the folders.
pub fn remove_all(dir: &Path) -> Result<(), BpfError> {
    if !dir.exists() {
        return Ok(());
    }
    fs::remove_dir_all(dir).map_err(|source| BpfError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// Makes sure tracefs is mounted at /sys/kernel/tracing (syscall tracepoints attach through it),
/// mounting it if not, as systemd normally does.
pub fn ensure_tracefs() -> Result<(), BpfError> {
    ensure_fs(Path::new("/sys/kernel/tracing"), TRACEFS_MAGIC, c"tracefs")
}

/// Makes sure `dir` is a bpffs mount, mounting one there if it is not (as systemd does for
/// `/sys/fs/bpf`). Pins only outlive the daemon on a bpffs.
pub fn ensure_bpffs(dir: &Path) -> Result<(), BpfError> {
    ensure_fs(dir, BPF_FS_MAGIC, c"bpf")
}

fn ensure_fs(dir: &Path, magic: i64, fstype: &std::ffi::CStr) -> Result<(), BpfError> {
    fs::create_dir_all(dir).map_err(|source| BpfError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let c =
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| BpfError::Pin {
            path: dir.to_path_buf(),
            message: "path contains NUL".into(),
        })?;
    // SAFETY: statfs into a zeroed struct with a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type == magic {
        return Ok(());
    }
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(BpfError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
