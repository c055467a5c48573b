//! Fan-out to stream subscribers, each with its own bounded buffer.
//!
//! Sending never waits: a subscriber whose buffer is full loses that item (counted, and logged
//! on the first drop and every 10,000 after, as upstream), and never holds up the producer or
//! the other subscribers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::mpsc;

/// Upstream's per-subscriber channel size.
pub const SUBSCRIBER_BUFFER: usize = 1000;
/// Drops are logged on the first and then every this many.
const DROP_LOG_EVERY: u64 = 10_000;

struct Sub<T> {
    id: u64,
    tx: mpsc::Sender<Arc<T>>,
    drops: Arc<AtomicU64>,
}

/// The subscribers of one stream.
pub struct Fanout<T> {
    name: &'static str,
    capacity: usize,
    subs: Mutex<Vec<Sub<T>>>,
    next_id: AtomicU64,
    total_drops: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is a plain list; a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> Fanout<T> {
    pub fn new(name: &'static str, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            name,
            capacity: capacity.max(1),
            subs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            total_drops: AtomicU64::new(0),
        })
    }

    /// Adds a subscriber. Dropping the returned [`Subscription`] removes it.
    pub fn subscribe(self: &Arc<Self>) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let drops = Arc::new(AtomicU64::new(0));
        lock(&self.subs).push(Sub {
            id,
            tx,
            drops: drops.clone(),
        });
        Subscription {
            id,
            rx,
            drops,
            owner: Arc::downgrade(self),
        }
    }

    /// Offers `item` to every subscriber without waiting.
    pub fn send(&self, item: Arc<T>) {
        let mut subs = lock(&self.subs);
        subs.retain(|s| match s.tx.try_send(item.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = s.drops.fetch_add(1, Ordering::Relaxed) + 1;
                self.total_drops.fetch_add(1, Ordering::Relaxed);
                if n == 1 || n.is_multiple_of(DROP_LOG_EVERY) {
                    tracing::warn!(
                        stream = self.name,
                        subscriber = s.id,
                        dropped = n,
                        "a {} subscriber is not keeping up: its buffer of {} is full, events for it are dropped",
                        self.name,
                        self.capacity
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    pub fn len(&self) -> usize {
        lock(&self.subs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items dropped for full buffers, over all subscribers ever.
    pub fn total_drops(&self) -> u64 {
        self.total_drops.load(Ordering::Relaxed)
    }

    fn remove(&self, id: u64) {
        lock(&self.subs).retain(|s| s.id != id);
    }
}

/// A subscriber's end: receive with [`Subscription::recv`] or turn into a stream.
pub struct Subscription<T> {
    id: u64,
    rx: mpsc::Receiver<Arc<T>>,
    drops: Arc<AtomicU64>,
    owner: Weak<Fanout<T>>,
}

impl<T> Subscription<T> {
    pub async fn recv(&mut self) -> Option<Arc<T>> {
        self.rx.recv().await
    }

    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<T>>> {
        self.rx.poll_recv(cx)
    }

    pub fn try_recv(&mut self) -> Option<Arc<T>> {
        self.rx.try_recv().ok()
    }

    /// Items this subscriber lost because its buffer was full.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_full_subscriber_drops_without_holding_up_the_others() {
        let f = Fanout::<u32>::new("test", 2);
        let mut slow = f.subscribe();
        let mut fast = f.subscribe();
        let mut got = Vec::new();
        for i in 0..10 {
            f.send(Arc::new(i));
            while let Some(v) = fast.try_recv() {
                got.push(*v);
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(slow.drops(), 8);
        assert_eq!(fast.drops(), 0);
        assert_eq!(f.total_drops(), 8);
        assert_eq!(*slow.try_recv().unwrap(), 0);
        assert_eq!(*slow.try_recv().unwrap(), 1);
        assert!(slow.try_recv().is_none());
    }

    #[test]
    fn dropping_a_subscription_unsubscribes() {
        let f = Fanout::<u32>::new("test", 2);
        let a = f.subscribe();
        let _b = f.subscribe();
        assert_eq!(f.len(), 2);
        drop(a);
        assert_eq!(f.len(), 1);
        f.send(Arc::new(1));
        assert_eq!(f.len(), 1);
    }
}
