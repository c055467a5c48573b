//! The ka.sock client: one message, one reply, retrying while the daemon answers `err` (its
//! readiness gate is closed, as upstream's hook does every 50 ms), all within a deadline.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kubearmor_containers::protocol::{HookRequest, Reply};

/// Pause between resends after an `err` reply (upstream: 50 ms).
pub const RETRY_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing listens on the socket (no daemon).
    #[error("daemon not reachable at {path}: {source}")]
    Absent { path: String, source: io::Error },
    #[error("no reply from the daemon within {0:?}")]
    Timeout(Duration),
    #[error("the daemon rejected the container (answered err until the deadline)")]
    Rejected,
    #[error("the daemon closed the connection without replying")]
    Closed,
    #[error("talking to the daemon: {0}")]
    Io(io::Error),
    #[error("encoding the hook message: {0}")]
    Encode(serde_json::Error),
}

/// A connection to the daemon.
pub struct Session {
    stream: UnixStream,
    deadline: Instant,
    budget: Duration,
}

impl Session {
    pub fn connect(path: &Path, budget: Duration) -> Result<Session, SendError> {
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => SendError::Absent {
                path: path.display().to_string(),
                source,
            },
            _ => SendError::Io(source),
        })?;
        Ok(Session {
            stream,
            deadline: Instant::now() + budget,
            budget,
        })
    }

    fn remaining(&self) -> Result<Duration, SendError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(SendError::Timeout(self.budget))
        } else {
            Ok(left)
        }
    }

    fn map_io(&self, e: io::Error) -> SendError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SendError::Timeout(self.budget),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => SendError::Closed,
            _ => SendError::Io(e),
        }
    }

    /// Send once and return the reply.
    pub fn exchange(&mut self, bytes: &[u8]) -> Result<Reply, SendError> {
        let left = self.remaining()?;
        self.stream
            .set_write_timeout(Some(left))
            .map_err(SendError::Io)?;
        self.stream.write_all(bytes).map_err(|e| self.map_io(e))?;
        let left = self.remaining()?;
        self.stream
            .set_read_timeout(Some(left))
            .map_err(SendError::Io)?;
        let mut buf = [0u8; 1024];
        let n = self.stream.read(&mut buf).map_err(|e| self.map_io(e))?;
        if n == 0 {
            return Err(SendError::Closed);
        }
        Ok(Reply::parse(&buf[..n]))
    }

    /// Send until the daemon answers `ok`, resending every [`RETRY_INTERVAL`] on `err`.
    pub fn send(&mut self, req: &HookRequest) -> Result<(), SendError> {
        let bytes = req.to_bytes().map_err(SendError::Encode)?;
        loop {
            match self.exchange(&bytes)? {
                Reply::Ok => return Ok(()),
                Reply::Err => {
                    if self.remaining()? <= RETRY_INTERVAL {
                        return Err(SendError::Rejected);
                    }
                    std::thread::sleep(RETRY_INTERVAL);
                }
            }
        }
    }
}

/// Connect, send one request, wait for `ok`.
pub fn send(path: &Path, req: &HookRequest, budget: Duration) -> Result<(), SendError> {
    Session::connect(path, budget)?.send(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::os::unix::net::UnixListener;

    use super::*;

    fn serve(
        replies: Vec<&'static [u8]>,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<usize>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ka.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut seen = 0;
            let mut buf = [0u8; 4096];
            for r in replies {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                seen += 1;
                if r.is_empty() {
                    return seen; // close without replying
                }
                s.write_all(r).unwrap();
            }
            // hold the connection open until the client leaves
            let _ = s.read(&mut buf);
            seen
        });
        (dir, path, t)
    }

    #[test]
    fn ok_on_first_try() {
        let (_d, path, t) = serve(vec![b"ok"]);
        send(&path, &HookRequest::delete("x"), Duration::from_secs(5)).unwrap();
        assert_eq!(t.join().unwrap(), 1);
    }

    #[test]
    fn retries_while_the_gate_is_closed() {
        let (_d, path, t) = serve(vec![b"err", b"err", b"ok"]);
        send(&path, &HookRequest::delete("x"), Duration::from_secs(5)).unwrap();
        assert_eq!(t.join().unwrap(), 3);
    }

    #[test]
    fn rejected_after_the_deadline() {
        let (_d, path, _t) = serve(vec![b"err"; 1000]);
        let e = send(&path, &HookRequest::delete("x"), Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(e, SendError::Rejected | SendError::Timeout(_)),
            "{e}"
        );
    }

    #[test]
    fn absent_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let e = send(
            &dir.path().join("none.sock"),
            &HookRequest::delete("x"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, SendError::Absent { .. }), "{e}");
        // a stale socket file with nobody listening
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        let e = send(&path, &HookRequest::delete("x"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, SendError::Absent { .. }), "{e}");
    }

    #[test]
    fn silent_daemon_times_out_and_closed_connection_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ka.sock");
        let _listener = UnixListener::bind(&path).unwrap(); // never accepts
        let started = Instant::now();
        let e = send(&path, &HookRequest::delete("x"), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, SendError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        let (_d, path, _t) = serve(vec![b""]);
        let e = send(&path, &HookRequest::delete("x"), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, SendError::Closed), "{e}");
    }
}
