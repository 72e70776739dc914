//! Counting failures per key (a username, a client address) in a sliding window. In memory, per
//! server process: with several replicas each one enforces the limit on what it sees.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When the map grows past this many keys, keys with no failure left in the window are dropped.
const PRUNE_AT_KEYS: usize = 10_000;

pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter { max_failures: max_failures as usize, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(retry_after)` while `key` has used up its failures in the window.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        let Some(times) = failures.get_mut(key) else { return Ok(()) };
        self.forget_old(times, now);
        match times.front() {
            Some(oldest) if times.len() >= self.max_failures => Err(self.window.saturating_sub(now - *oldest)),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= PRUNE_AT_KEYS {
            failures.retain(|_, times| times.back().is_some_and(|last| now - *last < self.window));
        }
        let times = failures.entry(key.to_string()).or_default();
        self.forget_old(times, now);
        times.push_back(now);
    }

    /// Takes back the most recent failure of `key` (a reservation made before the outcome was known).
    pub fn forget_last(&self, key: &str) {
        let mut failures = self.lock();
        if let Some(times) = failures.get_mut(key) {
            times.pop_back();
        }
    }

    /// Forgets the failures of `key` (after a successful login).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn forget_old(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        // A poisoned lock only means another thread panicked mid-update; the counts are still usable.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_blocked_after_max_failures_until_the_window_passes() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
            limiter.record_failure("alice");
        }
        let retry_after = limiter.check("alice").expect_err("blocked");
        assert_eq!(retry_after, Duration::from_secs(60));
        assert!(limiter.check("bob").is_ok(), "other keys are not affected");

        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(limiter.check("alice"), Err(Duration::from_secs(40)));
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(limiter.check("alice").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn reset_clears_a_key() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(60));
        limiter.record_failure("alice");
        assert!(limiter.check("alice").is_err());
        limiter.reset("alice");
        assert!(limiter.check("alice").is_ok());
    }
}
