//! The `logPath` output: one daemon-native JSON line per event (runtime spec §1.10), written by
//! its own thread so a slow disk or a blocked stdout never stalls the pipeline. Lines that do
//! not fit in the writer's queue are dropped and counted.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::LogPath;

/// Lines queued for the writer thread.
const QUEUE: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum LogWriterError {
    #[error("logPath {path}: is a directory; give a file path, stdout or none")]
    IsDirectory { path: PathBuf },
    #[error("logPath {path}: cannot open for appending: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the logPath writer thread: {0}")]
    Thread(io::Error),
}

enum Msg {
    Line(String),
    Stop,
}

/// Handle to the writer thread.
pub struct LogWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Opens the output (fails now, not later, for a directory or an unwritable path) and starts
    /// the thread. `None` for `logPath: none`.
    pub fn start(target: &LogPath) -> Result<Option<Self>, LogWriterError> {
        let out: Box<dyn Write + Send> = match target {
            LogPath::None => return Ok(None),
            LogPath::Stdout => Box::new(io::stdout()),
            LogPath::File(path) => Box::new(open(path)?),
        };
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("kubearmor-logpath".into())
            .spawn(move || run(rx, out))
            .map_err(LogWriterError::Thread)?;
        Ok(Some(Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            thread: Some(thread),
        }))
    }

    /// Queues one line (without its newline). Never waits.
    pub fn write(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(10_000) {
                    tracing::warn!(
                        dropped = n,
                        "logPath output is not keeping up; event lines dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes out what is queued and stops the thread.
    pub fn stop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open(path: &Path) -> Result<std::fs::File, LogWriterError> {
    if path.is_dir() {
        return Err(LogWriterError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogWriterError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn run(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    let mut failing = false;
    while let Ok(msg) = rx.recv() {
        let mut stop = false;
        let mut batch = vec![msg];
        // Write whatever else is queued, then flush once.
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
        }
        for m in batch {
            match m {
                Msg::Line(line) => {
                    let r = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"));
                    report(&mut failing, r);
                }
                Msg::Stop => stop = true,
            }
        }
        report(&mut failing, out.flush());
        if stop {
            break;
        }
    }
    let _ = out.flush();
}

fn report(failing: &mut bool, r: io::Result<()>) {
    match r {
        Err(e) if !*failing => {
            *failing = true;
            tracing::error!("writing event lines to logPath failed: {e}");
        }
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!("writing event lines to logPath works again");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn writes_lines_and_rejects_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LogWriter::start(&LogPath::File(dir.path().to_path_buf())),
            Err(LogWriterError::IsDirectory { .. })
        ));
        assert!(LogWriter::start(&LogPath::None).unwrap().is_none());
        let path = dir.path().join("events.json");
        let mut w = LogWriter::start(&LogPath::File(path.clone()))
            .unwrap()
            .unwrap();
        w.write("{\"a\":1}".into());
        w.write("{\"a\":2}".into());
        w.stop();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        assert!(matches!(
            LogWriter::start(&LogPath::File(dir.path().join("no/such/dir/x"))),
            Err(LogWriterError::Open { .. })
        ));
    }
}
