//! The event pipeline: every event enters through [`Pipeline::emit`] and leaves as a `logPath`
//! JSON line, a `WatchAlerts` item or a `WatchLogs` item.
//!
//! ```text
//! emit() --bounded queue--> worker thread: complete fields -> logPath line -> route
//!                                           alerts: throttle -> fan-out (WatchAlerts)
//!                                           logs:             fan-out (WatchLogs)
//! ```
//!
//! Nothing on this path waits for a consumer: `emit` drops (and counts) when the queue is full,
//! each subscriber has its own bounded buffer, and the `logPath` writer has its own thread and
//! queue. A plane can therefore call `emit` from a fanotify decision thread.

pub mod event;
pub mod fanout;
pub mod log_writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kubearmor_proto::feeder::{Alert, Log, Message};
use kubearmor_proto::values::{event_type, operation};
use kubearmor_proto::{json, time};

pub use event::{Event, Route, Stamp};
pub use fanout::{Subscription, SUBSCRIBER_BUFFER};

use crate::config::{LogPath, ThrottleConfig};
use crate::throttle::{Throttle, Verdict};
use log_writer::{LogWriter, LogWriterError};

/// Events queued between `emit` and the worker.
pub const QUEUE: usize = 65_536;

/// What the pipeline needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stamp: Stamp,
    pub throttle: ThrottleConfig,
    pub log_path: LogPath,
    /// `debug`: stream daemon log lines to `WatchMessages`.
    pub debug: bool,
    pub drop_resource_from_process_logs: bool,
    /// Per-subscriber buffer ([`SUBSCRIBER_BUFFER`] normally).
    pub subscriber_buffer: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    LogPath(#[from] LogWriterError),
    #[error("cannot start the pipeline thread: {0}")]
    Thread(std::io::Error),
}

/// Counters, for the logs and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub emitted: u64,
    /// Dropped by `emit` because the queue was full.
    pub queue_full: u64,
    /// Dropped because they had no `Type`.
    pub malformed: u64,
    /// Alerts dropped by the throttle.
    pub throttled: u64,
    pub alerts_sent: u64,
    pub logs_sent: u64,
    pub alert_subscriber_drops: u64,
    pub log_subscriber_drops: u64,
    pub log_lines_dropped: u64,
    pub alert_subscribers: usize,
    pub log_subscribers: usize,
}

enum Cmd {
    Event(Box<Event>),
    Message(Box<Message>),
    Flush(tokio::sync::oneshot::Sender<()>),
    Stop,
}

#[derive(Default)]
struct Counters {
    emitted: AtomicU64,
    queue_full: AtomicU64,
    malformed: AtomicU64,
    throttled: AtomicU64,
    alerts_sent: AtomicU64,
    logs_sent: AtomicU64,
}

struct Inner {
    tx: SyncSender<Cmd>,
    alerts: Arc<fanout::Fanout<Alert>>,
    logs: Arc<fanout::Fanout<Log>>,
    messages: Arc<fanout::Fanout<Message>>,
    counters: Arc<Counters>,
    log_lines_dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    stamp: Stamp,
    debug: bool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Cheap to clone; every clone feeds the same worker.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl Pipeline {
    /// Opens the `logPath` output and starts the worker.
    pub fn start(settings: Settings) -> Result<Self, PipelineError> {
        let writer = LogWriter::start(&settings.log_path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let alerts = fanout::Fanout::new("WatchAlerts", settings.subscriber_buffer);
        let logs = fanout::Fanout::new("WatchLogs", settings.subscriber_buffer);
        let messages = fanout::Fanout::new("WatchMessages", settings.subscriber_buffer);
        let counters = Arc::new(Counters::default());
        let writer_drops = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            stamp: settings.stamp.clone(),
            throttle: Throttle::new(settings.throttle),
            writer,
            writer_drops: writer_drops.clone(),
            drop_process_resource: settings.drop_resource_from_process_logs,
            alerts: alerts.clone(),
            logs: logs.clone(),
            messages: messages.clone(),
            counters: counters.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("kubearmor-pipeline".into())
            .spawn(move || worker.run(rx))
            .map_err(PipelineError::Thread)?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                alerts,
                logs,
                messages,
                counters,
                log_lines_dropped: Arc::new(move || writer_drops.load(Ordering::Relaxed)),
                stamp: settings.stamp,
                debug: settings.debug,
                worker: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Hands one event to the pipeline. Never waits; returns false when the event was dropped
    /// because the queue is full (or the pipeline has stopped).
    pub fn emit(&self, event: Event) -> bool {
        self.inner.counters.emitted.fetch_add(1, Ordering::Relaxed);
        match self.inner.tx.try_send(Cmd::Event(Box::new(event))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self
                    .inner
                    .counters
                    .queue_full
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n == 1 || n.is_multiple_of(10_000) {
                    tracing::warn!(dropped = n, "event pipeline queue full; events dropped");
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Streams a daemon message to `WatchMessages` subscribers (only in `debug` mode, as
    /// upstream). Never waits.
    pub fn message(&self, level: &str, text: &str) {
        if !self.inner.debug || self.inner.messages.is_empty() {
            return;
        }
        let (timestamp, updated_time) = time::now();
        let m = Message {
            timestamp,
            updated_time,
            cluster_name: self.inner.stamp.cluster.clone(),
            host_name: self.inner.stamp.host.clone(),
            host_ip: String::new(),
            r#type: event_type::MESSAGE.to_string(),
            level: level.to_string(),
            message: text.to_string(),
        };
        let _ = self.inner.tx.try_send(Cmd::Message(Box::new(m)));
    }

    pub fn subscribe_alerts(&self) -> Subscription<Alert> {
        self.inner.alerts.subscribe()
    }

    pub fn subscribe_logs(&self) -> Subscription<Log> {
        self.inner.logs.subscribe()
    }

    pub fn subscribe_messages(&self) -> Subscription<Message> {
        self.inner.messages.subscribe()
    }

    /// Resolves once every event emitted before the call has been processed.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx_cmd = self.inner.tx.clone();
        // The queue may be full: wait for room off the async runtime.
        let sent = tokio::task::spawn_blocking(move || tx_cmd.send(Cmd::Flush(tx)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            emitted: c.emitted.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            alerts_sent: c.alerts_sent.load(Ordering::Relaxed),
            logs_sent: c.logs_sent.load(Ordering::Relaxed),
            alert_subscriber_drops: self.inner.alerts.total_drops(),
            log_subscriber_drops: self.inner.logs.total_drops(),
            log_lines_dropped: (self.inner.log_lines_dropped)(),
            alert_subscribers: self.inner.alerts.len(),
            log_subscribers: self.inner.logs.len(),
        }
    }

    /// Processes what is queued, flushes `logPath` and stops the worker. Later `emit`s are
    /// dropped.
    pub fn shutdown(&self) {
        let handle = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = self.inner.tx.send(Cmd::Stop);
            let _ = h.join();
        }
    }
}

struct Worker {
    stamp: Stamp,
    throttle: Throttle<String>,
    writer: Option<LogWriter>,
    writer_drops: Arc<AtomicU64>,
    drop_process_resource: bool,
    alerts: Arc<fanout::Fanout<Alert>>,
    logs: Arc<fanout::Fanout<Log>>,
    messages: Arc<fanout::Fanout<Message>>,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Cmd>) {
        let start = Instant::now();
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Event(e) => self.process(*e, start.elapsed()),
                Cmd::Message(m) => self.messages.send(Arc::new(*m)),
                Cmd::Flush(done) => {
                    let _ = done.send(());
                }
                Cmd::Stop => break,
            }
        }
        if let Some(mut w) = self.writer.take() {
            w.stop();
        }
    }

    fn process(&mut self, mut e: Event, now: Duration) {
        if e.record.r#type.is_empty() {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        event::complete(&mut e.record, &self.stamp, time::now);
        if let Some(w) = &self.writer {
            // Upstream's native line normally has no clusterName (spec §1.10).
            let cluster = std::mem::take(&mut e.record.cluster_name);
            w.write(json::native(&e.record, e.oid));
            e.record.cluster_name = cluster;
            self.writer_drops.store(w.dropped(), Ordering::Relaxed);
        }
        match event::route(&e.record) {
            Route::Alert => {
                if event::throttled_here(&e) {
                    match self.throttle.check(&e.record.container_id, now) {
                        Verdict::Pass => {}
                        Verdict::Drop => {
                            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Verdict::Notice => {
                            let c = self.throttle.config();
                            event::into_throttle_notice(
                                &mut e.record,
                                c.max_alerts_per_sec,
                                c.throttle_secs,
                            );
                        }
                    }
                }
                self.counters.alerts_sent.fetch_add(1, Ordering::Relaxed);
                self.alerts.send(Arc::new(e.record));
            }
            Route::Log => {
                let mut log = Log::from(e.record);
                if self.drop_process_resource && log.operation == operation::PROCESS {
                    log.resource.clear();
                }
                self.counters.logs_sent.fetch_add(1, Ordering::Relaxed);
                self.logs.send(Arc::new(log));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn settings(log_path: LogPath, max: u32) -> Settings {
        Settings {
            stamp: Stamp {
                cluster: "default".into(),
                host: "vm-1".into(),
                node_id: "id".into(),
            },
            throttle: ThrottleConfig {
                enabled: true,
                max_alerts_per_sec: max,
                throttle_secs: 30,
            },
            log_path,
            debug: false,
            drop_resource_from_process_logs: true,
            subscriber_buffer: 16,
        }
    }

    fn event(t: &str, op: &str) -> Event {
        Event::new(Alert {
            r#type: t.into(),
            operation: op.into(),
            resource: "/usr/bin/ls -l".into(),
            ..Alert::default()
        })
    }

    #[tokio::test]
    async fn routes_throttles_and_writes_native_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        let p = Pipeline::start(settings(LogPath::File(path.clone()), 2)).unwrap();
        let mut alerts = p.subscribe_alerts();
        let mut logs = p.subscribe_logs();
        for _ in 0..5 {
            assert!(p.emit(event("MatchedHostPolicy", "Process")));
        }
        assert!(p.emit(event("HostLog", "Process")));
        assert!(p.emit(Event::new(Alert::default())));
        p.flush().await;

        let got: Vec<_> = std::iter::from_fn(|| alerts.try_recv()).collect();
        assert_eq!(got.len(), 3, "two alerts, then the notice, then drops");
        assert_eq!(got[0].r#type, "MatchedHostPolicy");
        assert_eq!(got[0].host_name, "vm-1");
        assert_eq!(got[2].r#type, "SystemEvent");
        assert_eq!(got[2].operation, "AlertThreshold");
        assert_eq!(got[2].max_alerts_per_sec, 2);
        let log = logs.try_recv().unwrap();
        assert_eq!(log.r#type, "HostLog");
        assert_eq!(log.resource, "", "dropResourceFromProcessLogs");
        let s = p.stats();
        assert_eq!(s.throttled, 2);
        assert_eq!(s.malformed, 1);
        assert_eq!(s.alerts_sent, 3);
        p.shutdown();
        let text = std::fs::read_to_string(&path).unwrap();
        // Every typed event, before throttling.
        assert_eq!(text.lines().count(), 6);
        assert!(text.lines().all(|l| l.starts_with("{\"timestamp\":")));
        assert!(!text.contains("clusterName"));
        assert!(!p.emit(event("HostLog", "File")));
    }

    #[tokio::test]
    async fn messages_only_in_debug_mode() {
        let p = Pipeline::start(settings(LogPath::None, 10)).unwrap();
        let mut m = p.subscribe_messages();
        p.message("INFO", "hello");
        p.flush().await;
        assert!(m.try_recv().is_none());
        p.shutdown();

        let mut s = settings(LogPath::None, 10);
        s.debug = true;
        let p = Pipeline::start(s).unwrap();
        let mut m = p.subscribe_messages();
        p.message("INFO", "hello");
        p.flush().await;
        let got = m.try_recv().unwrap();
        assert_eq!(got.message, "hello");
        assert_eq!(got.r#type, "Message");
        assert_eq!(got.level, "INFO");
        p.shutdown();
    }
}
