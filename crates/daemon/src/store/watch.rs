//! Watching the policy directory: inotify (through `notify`) for prompt reloads, plus a slow
//! periodic rescan as a safety net (events lost on queue overflow, the directory replaced or
//! created later, filesystems without inotify). A rescan of an unchanged directory only
//! `stat`s its files.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::PolicyStore;

/// Quiet time after the last inotify event before rescanning (editors write in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// Safety-net rescan period with inotify; and without it.
pub const POLL_WITH_INOTIFY: Duration = Duration::from_secs(30);
pub const POLL_WITHOUT_INOTIFY: Duration = Duration::from_secs(2);

/// Runs until `shutdown` turns true.
pub async fn run(store: Arc<PolicyStore>, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let dir = store.dir().to_path_buf();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // Coalesce: one pending wake-up is enough.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let poll = match &watcher {
        Ok(_) => {
            tracing::info!("watching the policy directory {} (inotify)", dir.display());
            POLL_WITH_INOTIFY
        }
        Err(e) => {
            tracing::warn!(
                "cannot watch the policy directory {} with inotify ({e}); rescanning every {:?}",
                dir.display(),
                POLL_WITHOUT_INOTIFY
            );
            POLL_WITHOUT_INOTIFY
        }
    };
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(()) = rx.recv() => {
                // Let a burst of events settle.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(DEBOUNCE) => break,
                        Some(()) = rx.recv() => continue,
                    }
                }
            }
            _ = ticker.tick() => {}
        }
        let s = store.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.rescan()).await {
            tracing::error!("policy directory rescan failed: {e}");
        }
    }
    drop(watcher);
}
