//! Alert throttling, KubeArmor's state machine (runtime spec §3).
//!
//! Per key (a container, or the host), alerts are counted in one-second windows. The alert that
//! exceeds `maxAlertPerSec` in a window becomes the throttle notice; after it everything is
//! dropped until `throttleSec` seconds after the **start of that window**; the next alert after
//! that opens a new window.
//!
//! Pure: the caller passes the time, so tests need no clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::config::ThrottleConfig;

/// What to do with one candidate alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Silently dropped: the key is throttled.
    Drop,
    /// This alert exceeded the limit: emit it rewritten as the `AlertThreshold` notice.
    Notice,
}

#[derive(Debug, Clone, Copy)]
struct State {
    first: Duration,
    count: u32,
    throttle: bool,
}

/// Entries kept before stale ones are pruned (a bound on memory for keys never removed).
const PRUNE_AT: usize = 16_384;

#[derive(Debug)]
pub struct Throttle<K> {
    config: ThrottleConfig,
    states: HashMap<K, State>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            states: HashMap::new(),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    /// Decides for an alert of `key` at monotonic time `now`.
    pub fn check(&mut self, key: &K, now: Duration) -> Verdict {
        if !self.config.enabled {
            return Verdict::Pass;
        }
        let period = Duration::from_secs(u64::from(self.config.throttle_secs));
        let Some(st) = self.states.get_mut(key) else {
            if self.states.len() >= PRUNE_AT {
                self.prune(now);
            }
            self.states.insert(
                key.clone(),
                State {
                    first: now,
                    count: 1,
                    throttle: false,
                },
            );
            return Verdict::Pass;
        };
        let elapsed = now.saturating_sub(st.first);
        if st.throttle && elapsed < period {
            return Verdict::Drop;
        }
        if elapsed >= Duration::from_secs(1) {
            st.first = now;
            st.count = 1;
            st.throttle = false;
        } else {
            st.count = st.count.saturating_add(1);
        }
        if st.count > self.config.max_alerts_per_sec {
            st.count = 0;
            st.throttle = true;
            Verdict::Notice
        } else {
            Verdict::Pass
        }
    }

    /// Forgets a key (a container that went away).
    pub fn remove(&mut self, key: &K) {
        self.states.remove(key);
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Drops entries whose window and throttle period are over: they would restart anyway.
    fn prune(&mut self, now: Duration) {
        let period =
            Duration::from_secs(u64::from(self.config.throttle_secs)).max(Duration::from_secs(1));
        self.states
            .retain(|_, st| now.saturating_sub(st.first) < period);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cfg(max: u32, secs: u32) -> ThrottleConfig {
        ThrottleConfig {
            enabled: true,
            max_alerts_per_sec: max,
            throttle_secs: secs,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_pass_ten_then_notice_then_drop_until_thirty_seconds_after_window_start() {
        let mut t = Throttle::new(cfg(10, 30));
        for i in 0..10 {
            assert_eq!(t.check(&"c", ms(1000 + i * 10)), Verdict::Pass, "alert {i}");
        }
        assert_eq!(t.check(&"c", ms(1500)), Verdict::Notice);
        // Dropped until 30 s after the window began (t = 1 s), not after the notice.
        assert_eq!(t.check(&"c", ms(2000)), Verdict::Drop);
        assert_eq!(t.check(&"c", ms(30_999)), Verdict::Drop);
        // The next alert after that opens a new window.
        assert_eq!(t.check(&"c", ms(31_000)), Verdict::Pass);
        assert_eq!(t.check(&"c", ms(31_001)), Verdict::Pass);
    }

    #[test]
    fn window_is_anchored_at_its_start() {
        let mut t = Throttle::new(cfg(2, 5));
        assert_eq!(t.check(&1, ms(0)), Verdict::Pass);
        assert_eq!(t.check(&1, ms(900)), Verdict::Pass);
        // 1 s after the window began: a new window, even though 100 ms passed since the last.
        assert_eq!(t.check(&1, ms(1000)), Verdict::Pass);
        assert_eq!(t.check(&1, ms(1100)), Verdict::Pass);
        assert_eq!(t.check(&1, ms(1200)), Verdict::Notice);
        assert_eq!(t.check(&1, ms(5999)), Verdict::Drop);
        assert_eq!(t.check(&1, ms(6000)), Verdict::Pass);
    }

    #[test]
    fn keys_are_independent() {
        let mut t = Throttle::new(cfg(1, 30));
        assert_eq!(t.check(&"a", ms(0)), Verdict::Pass);
        assert_eq!(t.check(&"a", ms(1)), Verdict::Notice);
        assert_eq!(t.check(&"b", ms(2)), Verdict::Pass);
        assert_eq!(t.check(&"a", ms(3)), Verdict::Drop);
        t.remove(&"a");
        assert_eq!(t.check(&"a", ms(4)), Verdict::Pass);
    }

    #[test]
    fn disabled_passes_everything() {
        let mut t = Throttle::new(ThrottleConfig {
            enabled: false,
            ..cfg(1, 30)
        });
        for i in 0..100 {
            assert_eq!(t.check(&0, ms(i)), Verdict::Pass);
        }
        assert!(t.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Throttle::new(cfg(10, 1));
        for i in 0..(PRUNE_AT as u64 * 2) {
            // Every key is stale two seconds later.
            t.check(&i, Duration::from_secs(i / 1000 * 2));
        }
        assert!(t.len() <= PRUNE_AT);
    }
}
