//! `memory_limiter`, with the Collector's meaning: every `check_interval` the agent's memory in use (its
//! resident set, from `/proc/self/statm`) is compared with the limits; above the soft limit
//! (`limit_mib - spike_limit_mib`) the pipeline's receivers refuse new points (OTLP answers
//! `UNAVAILABLE`/503, remote write 503, a scrape is dropped; all counted) until it is back under it, so
//! senders retry later instead of the agent growing past the limit. The points already taken pass on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Outcome, Processor};
use crate::model::Batch;
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    #[serde(default = "default_check_interval")]
    pub check_interval: String,
    /// The hard limit, MiB (or `limit_percentage` of the host's memory).
    #[serde(default)]
    pub limit_mib: u64,
    /// Headroom below the hard limit, MiB; 20 % of the limit when not given, as in the Collector.
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    #[serde(default)]
    pub limit_percentage: u64,
    #[serde(default)]
    pub spike_limit_percentage: Option<u64>,
}

fn default_check_interval() -> String {
    "1s".into()
}

/// The shared verdict the receivers ask before taking points.
#[derive(Debug)]
pub struct MemoryGate {
    soft_limit_bytes: u64,
    check_interval: Duration,
    last_check: Mutex<Option<Instant>>,
    refusing: AtomicBool,
    /// Memory in use at the last check, bytes.
    pub in_use_bytes: AtomicU64,
}

impl MemoryGate {
    pub fn new(soft_limit_bytes: u64, check_interval: Duration) -> MemoryGate {
        MemoryGate {
            soft_limit_bytes,
            check_interval,
            last_check: Mutex::new(None),
            refusing: AtomicBool::new(false),
            in_use_bytes: AtomicU64::new(0),
        }
    }

    /// True while memory in use is under the soft limit (measured at most once per check interval).
    pub fn admits(&self) -> bool {
        let due = self.last_check.lock().map(|mut last| {
            let due = last.is_none_or(|at| at.elapsed() >= self.check_interval);
            if due {
                *last = Some(Instant::now());
            }
            due
        });
        if due.unwrap_or(false) {
            let in_use = crate::procfs::resident_bytes();
            self.in_use_bytes.store(in_use, Ordering::Relaxed);
            let over = in_use > self.soft_limit_bytes;
            if over != self.refusing.swap(over, Ordering::Relaxed) {
                let mib = in_use >> 20;
                let limit = self.soft_limit_bytes >> 20;
                if over {
                    tracing::warn!(in_use_mib = mib, soft_limit_mib = limit, "memory limiter: refusing new points");
                } else {
                    tracing::info!(in_use_mib = mib, soft_limit_mib = limit, "memory limiter: taking points again");
                }
            }
        }
        !self.refusing.load(Ordering::Relaxed)
    }
}

pub struct MemoryLimiter {
    gate: Arc<MemoryGate>,
}

impl MemoryLimiter {
    pub fn new(config: MemoryLimiterConfig, path: &str) -> Result<MemoryLimiter, Vec<Problem>> {
        let mut problems = Vec::new();
        let check_interval = crate::config::parse_duration(&config.check_interval).unwrap_or_else(|why| {
            problems.push(Problem::new(&format!("{path}.check_interval"), why));
            Duration::from_secs(1)
        });
        let (hard, spike) = match (config.limit_mib, config.limit_percentage) {
            (0, 0) => {
                problems.push(Problem::new(path, "set limit_mib (or limit_percentage of the host's memory)"));
                (0, 0)
            }
            (mib, 0) => (mib << 20, config.spike_limit_mib.map_or((mib << 20) / 5, |s| s << 20)),
            (0, percent) if percent <= 100 => {
                let host = crate::procfs::MemInfo::read().bytes("MemTotal:");
                let spike = config.spike_limit_percentage.unwrap_or(percent / 5);
                (host / 100 * percent, host / 100 * spike)
            }
            (0, _) => {
                problems.push(Problem::new(&format!("{path}.limit_percentage"), "must be at most 100"));
                (0, 0)
            }
            _ => {
                problems.push(Problem::new(path, "set limit_mib or limit_percentage, not both"));
                (0, 0)
            }
        };
        if hard > 0 && spike >= hard {
            problems.push(Problem::new(path, "the spike limit must be below the limit"));
        }
        if problems.is_empty() {
            Ok(MemoryLimiter { gate: Arc::new(MemoryGate::new(hard - spike, check_interval)) })
        } else {
            Err(problems)
        }
    }
}

impl Processor for MemoryLimiter {
    fn process(&mut self, batch: Batch, _: &mut Outcome) -> Batch {
        batch
    }

    fn memory_gate(&self) -> Option<Arc<MemoryGate>> {
        Some(self.gate.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(yaml: &str) -> Result<MemoryLimiter, Vec<Problem>> {
        MemoryLimiter::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "processors.memory_limiter")
    }

    #[test]
    fn the_gate_follows_the_real_resident_set() {
        let in_use_mib = crate::procfs::resident_bytes() >> 20;
        assert!(in_use_mib > 0, "/proc/self/statm is readable");
        let tight = limiter("limit_mib: 2\nspike_limit_mib: 1\ncheck_interval: 10ms").expect("valid");
        assert!(!tight.gate.admits(), "{in_use_mib} MiB in use is over a 1 MiB soft limit");
        let roomy = format!("limit_mib: {}\ncheck_interval: 10ms", in_use_mib * 4 + 100);
        assert!(limiter(&roomy).expect("valid").gate.admits());
    }

    #[test]
    fn limits_are_checked_as_in_the_collector() {
        let paths = |yaml: &str| -> Vec<String> {
            limiter(yaml).err().unwrap_or_default().into_iter().map(|p| p.path).collect()
        };
        assert_eq!(paths("check_interval: 1s"), ["processors.memory_limiter"]);
        assert_eq!(paths("limit_mib: 100\nspike_limit_mib: 100"), ["processors.memory_limiter"]);
        assert_eq!(paths("limit_percentage: 150"), ["processors.memory_limiter.limit_percentage"]);
        assert!(paths("limit_percentage: 80\nspike_limit_percentage: 20").is_empty());
        let default_spike = limiter("limit_mib: 100").expect("valid");
        assert_eq!(default_spike.gate.soft_limit_bytes, 80 << 20, "the spike is 20 % of the limit");
    }
}
