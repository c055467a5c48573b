//! Logging from the decision thread without writing on it: a tracing subscriber writes to
//! stderr or journald synchronously, and a blocked stderr pipe (a stopped journald, a full
//! terminal) would then hold every open on the host. Lines go through a bounded channel to
//! a thread of their own; when it is full, lines are dropped and counted
//! (`Stats::log_dropped`).

use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, SyncSender};

use super::stats::inc;

#[derive(Debug, Clone, Copy)]
pub(super) enum Level {
    Debug,
    Warn,
    Error,
}

/// Lines waiting for the log thread at most.
const QUEUE: usize = 1024;

pub(super) struct LogRelay {
    tx: SyncSender<(Level, String)>,
}

impl LogRelay {
    /// The relay and its thread (which ends when the relay is dropped). `None` if no thread
    /// could be started: the caller then has no relay and logs nothing from the decision
    /// thread.
    pub fn start() -> Option<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("fanotify-log".into())
            .spawn(move || write_lines(rx))
            .ok()?;
        Some(Self { tx })
    }

    /// Queues a line; `line` is only built when the level is enabled.
    pub fn send(&self, level: Level, dropped: &AtomicU64, line: impl FnOnce() -> String) {
        let enabled = match level {
            Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            Level::Warn => tracing::enabled!(tracing::Level::WARN),
            Level::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if enabled && self.tx.try_send((level, line())).is_err() {
            inc(dropped);
        }
    }
}

fn write_lines(rx: Receiver<(Level, String)>) {
    for (level, line) in rx {
        match level {
            Level::Debug => tracing::debug!("{line}"),
            Level::Warn => tracing::warn!("{line}"),
            Level::Error => tracing::error!("{line}"),
        }
    }
}
