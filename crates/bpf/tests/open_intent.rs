//! The open-intent map in the real kernel: a thread blocked inside open() of a FIFO is visible
//! with its flags; the entry disappears when the syscall returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CString;
use std::fs::OpenOptions;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kubearmor_bpf::OpenIntentTracker;

#[test]
fn flags_of_a_thread_inside_open() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "needs root (attaches tracepoints)"
    );
    let tracker = OpenIntentTracker::load().unwrap();
    let dir = std::env::temp_dir().join(format!("ka-open-intent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let (tx, rx) = mpsc::channel();
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        tx.send(unsafe { libc::gettid() } as u32).unwrap();
        // Blocks inside openat(O_WRONLY) until a reader opens the FIFO.
        OpenOptions::new().write(true).open(&path).unwrap()
    });
    let tid = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let intent = loop {
        if let Some(i) = tracker.lookup(tid) {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no open intent for the blocked thread"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(intent.flags & libc::O_ACCMODE as u32, libc::O_WRONLY as u32);
    assert!(intent.may_write());
    assert!(intent.cgroup_id != 0);

    let _reader = OpenOptions::new().read(true).open(&fifo).unwrap();
    writer.join().unwrap();
    assert_eq!(
        tracker.lookup(tid),
        None,
        "the entry goes away at syscall exit"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
