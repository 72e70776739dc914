//! Per-agent quotas: one enrolled agent must not be able to fill the database or hold the server's
//! connections (one wrote 60 MB of samples in 1.3 s; another held 500 long-polls). Samples are metered
//! by a token bucket per agent (a minute's worth may come at once, then the rate); long-polls held at
//! once are counted per agent. Both are per replica, like the failed-login limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an agent may use (the `[agents]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Samples an agent may send per minute, and at once.
    pub samples_per_minute: u64,
    /// Long-polls an agent may hold open at once.
    pub long_polls: usize,
}

/// A quota that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    /// More samples than the rate allows.
    #[error("this agent sends more than {per_minute} samples a minute; try again in {retry_after_secs} s")]
    Samples { per_minute: u64, retry_after_secs: u64 },
    /// More long-polls at once than allowed.
    #[error("this agent already holds {held} long-polls (at most {held} at once)")]
    LongPolls { held: usize },
}

impl QuotaExceeded {
    /// Seconds after which the same request may succeed.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            QuotaExceeded::Samples { retry_after_secs, .. } => *retry_after_secs,
            QuotaExceeded::LongPolls { .. } => 1,
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes `n` tokens if there are that many after refilling up to `now`; else how long until there are.
    fn take(&mut self, n: u64, capacity: u64, now: Instant) -> Result<(), Duration> {
        let per_sec = capacity as f64 / 60.0;
        let refilled = self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_sec;
        self.tokens = refilled.min(capacity as f64);
        self.at = now;
        let wanted = n as f64;
        if wanted <= self.tokens {
            self.tokens -= wanted;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((wanted - self.tokens) / per_sec.max(f64::MIN_POSITIVE)))
        }
    }
}

/// The quotas of every agent this replica serves.
#[derive(Clone)]
pub struct AgentQuotas {
    settings: QuotaSettings,
    samples: Arc<Mutex<HashMap<String, Bucket>>>,
    polls: Arc<Mutex<HashMap<String, usize>>>,
}

impl AgentQuotas {
    pub fn new(settings: QuotaSettings) -> Self {
        AgentQuotas { settings, samples: Arc::default(), polls: Arc::default() }
    }

    /// Meters `samples` samples (at least one: an empty batch still costs a round trip) of `agent_id`.
    pub fn take_samples(&self, agent_id: &str, samples: usize) -> Result<(), QuotaExceeded> {
        self.take_samples_at(agent_id, samples, Instant::now())
    }

    fn take_samples_at(&self, agent_id: &str, samples: usize, now: Instant) -> Result<(), QuotaExceeded> {
        let capacity = self.settings.samples_per_minute;
        let mut buckets = self.samples.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > MAX_BUCKETS {
            // An idle bucket has refilled: forgetting it changes nothing, a new one starts full too.
            buckets.retain(|_, bucket| now.saturating_duration_since(bucket.at) < Duration::from_secs(60));
            if buckets.len() > MAX_BUCKETS {
                // All busy: start every agent afresh rather than walk them all on every batch.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(agent_id.to_string()).or_insert(Bucket { tokens: capacity as f64, at: now });
        bucket
            .take(samples.max(1) as u64, capacity, now)
            .map_err(|wait| QuotaExceeded::Samples { per_minute: capacity, retry_after_secs: wait.as_secs().max(1) })
    }

    /// A permit for one more long-poll of `agent_id`, held for as long as the poll waits.
    pub fn enter_long_poll(&self, agent_id: &str) -> Result<LongPollPermit, QuotaExceeded> {
        let mut polls = self.polls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = polls.entry(agent_id.to_string()).or_default();
        if *held >= self.settings.long_polls {
            return Err(QuotaExceeded::LongPolls { held: *held });
        }
        *held += 1;
        Ok(LongPollPermit { polls: self.polls.clone(), agent_id: agent_id.to_string() })
    }
}

/// Agents' sample buckets kept before idle (full) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

/// One long-poll held; dropping it (the poll answered, or its client gone) gives the place back.
pub struct LongPollPermit {
    polls: Arc<Mutex<HashMap<String, usize>>>,
    agent_id: String,
}

impl Drop for LongPollPermit {
    fn drop(&mut self) {
        let mut polls = self.polls.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = polls.get_mut(&self.agent_id) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                polls.remove(&self.agent_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(samples_per_minute: u64, long_polls: usize) -> AgentQuotas {
        AgentQuotas::new(QuotaSettings { samples_per_minute, long_polls })
    }

    #[test]
    fn a_minute_of_samples_may_come_at_once_then_the_rate_holds() {
        let quotas = quotas(600, 4);
        let start = Instant::now();
        assert_eq!(quotas.take_samples_at("a", 600, start), Ok(()));
        let refused = quotas.take_samples_at("a", 100, start);
        assert_eq!(refused, Err(QuotaExceeded::Samples { per_minute: 600, retry_after_secs: 10 }), "10 a second");
        assert_eq!(quotas.take_samples_at("b", 600, start), Ok(()), "each agent has its own bucket");
        assert_eq!(quotas.take_samples_at("a", 100, start + Duration::from_secs(10)), Ok(()));
        assert!(quotas.take_samples_at("a", 1, start + Duration::from_secs(10)).is_err());
        assert_eq!(quotas.take_samples_at("a", 600, start + Duration::from_secs(3600)), Ok(()), "never above a minute");
        assert!(quotas.take_samples_at("a", 1, start + Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn an_empty_batch_still_costs_one() {
        let quotas = quotas(2, 4);
        let now = Instant::now();
        assert_eq!(quotas.take_samples_at("a", 0, now), Ok(()));
        assert_eq!(quotas.take_samples_at("a", 0, now), Ok(()));
        assert!(quotas.take_samples_at("a", 0, now).is_err());
    }

    #[test]
    fn long_polls_are_limited_while_held_and_given_back_when_dropped() {
        let quotas = quotas(600, 2);
        let first = quotas.enter_long_poll("a").expect("first");
        let _second = quotas.enter_long_poll("a").expect("second");
        assert_eq!(quotas.enter_long_poll("a").err(), Some(QuotaExceeded::LongPolls { held: 2 }));
        assert!(quotas.enter_long_poll("b").is_ok(), "another agent's polls are its own");
        drop(first);
        assert!(quotas.enter_long_poll("a").is_ok(), "a finished poll gives its place back");
    }
}
