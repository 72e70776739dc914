//! `synthetic`: simulated processes shaped like what the `process` source reads, for load tests,
//! previews and repeatable tests. Deterministic for a seed.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{process_metrics, Source};

use crate::model::{millis_to_nanos, Batch, Label, Metric, Point, Value};
use crate::Problem;

/// Most processes a synthetic source may simulate.
pub const MAX_PROCESSES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The same processes, steady rates.
    Steady,
    /// Many processes with unique command lines and a high churn: the worst case for cardinality.
    HighCardinality,
    /// Steady, with a tenth of the processes bursting to ten times their rate every fifth interval.
    Spike,
    /// A heavy-tailed mix of well-known executables (a few busy ones, many idle), with some churn.
    Realistic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    pub profile: Profile,
    pub processes: usize,
    /// Share of processes replaced by new ones each interval (0–1); by default per profile.
    pub churn: Option<f64>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated seconds per interval (CPU time grows by rate x this).
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
}

fn default_seed() -> u64 {
    1
}

fn default_interval() -> f64 {
    10.0
}

/// The churn of a config: as given, or the profile's default.
fn churn_of(config: &SyntheticConfig) -> f64 {
    config.churn.unwrap_or(match config.profile {
        Profile::HighCardinality => 0.2,
        Profile::Realistic => 0.02,
        Profile::Steady | Profile::Spike => 0.0,
    })
}

/// SplitMix64: tiny, fast, and the same sequence everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const EXECUTABLES: [&str; 12] = [
    "nginx",
    "postgres",
    "java",
    "python3",
    "node",
    "redis-server",
    "sshd",
    "systemd",
    "kworker",
    "bash",
    "containerd",
    "envoy",
];
const OWNERS: [&str; 4] = ["root", "www-data", "postgres", "app"];

struct SimProcess {
    /// Sorted: command, executable, owner, pid — built once, shared by the process's five series.
    labels: Vec<Label>,
    cpu_rate: f64,
    cpu_total: f64,
    rss: f64,
    threads: f64,
    fds: f64,
}

pub struct SyntheticSource {
    config: SyntheticConfig,
    /// Interned label keys (command, executable, owner, pid) and metric names.
    keys: [Arc<str>; 4],
    metrics: [Arc<Metric>; 5],
    churn: f64,
    rng: Rng,
    next_pid: u64,
    interval: u64,
    processes: Vec<SimProcess>,
}

impl SyntheticSource {
    /// The problems of a config, without simulating anything (checking must stay cheap).
    pub fn check(config: &SyntheticConfig, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if config.processes < 1 || config.processes > MAX_PROCESSES {
            problems.push(Problem::new(&format!("{path}.processes"), format!("must be between 1 and {MAX_PROCESSES}")));
        }
        if !(0.0..=1.0).contains(&churn_of(config)) {
            problems.push(Problem::new(&format!("{path}.churn"), "must be between 0 and 1"));
        }
        if !config.interval_secs.is_finite() || config.interval_secs <= 0.0 {
            problems.push(Problem::new(&format!("{path}.interval_secs"), "must be a finite number > 0"));
        }
        problems
    }

    pub fn new(config: SyntheticConfig, path: &str) -> Result<SyntheticSource, Vec<Problem>> {
        let problems = Self::check(&config, path);
        if !problems.is_empty() {
            return Err(problems);
        }
        let churn = churn_of(&config);
        let mut source = SyntheticSource {
            rng: Rng(config.seed),
            churn,
            next_pid: 1000,
            interval: 0,
            processes: Vec::new(),
            keys: ["command", "executable", "owner", "pid"].map(Arc::from),
            metrics: process_metrics(),
            config,
        };
        source.processes = (0..source.config.processes).map(|_| source.spawn()).collect();
        Ok(source)
    }

    fn spawn(&mut self) -> SimProcess {
        self.next_pid += 1;
        // Never a real pid: simulated processes mixed into a host's own must not collide with them.
        let pid = format!("sim-{}", self.next_pid);
        let executable = EXECUTABLES[(self.rng.next() % EXECUTABLES.len() as u64) as usize];
        let command = match self.config.profile {
            Profile::HighCardinality => format!("{executable} --worker-id={pid} --session={:x}", self.rng.next()),
            _ => format!("/usr/bin/{executable} --config /etc/{executable}.conf"),
        };
        let cpu_rate = match self.config.profile {
            // Pareto(alpha = 1.2): most processes nearly idle, a few very busy.
            Profile::Realistic => 0.001 * (1.0 - self.rng.unit()).powf(-1.0 / 1.2),
            _ => 0.01 + self.rng.unit() * 0.2,
        };
        let owner = OWNERS[(self.rng.next() % OWNERS.len() as u64) as usize];
        let k = &self.keys;
        let labels = vec![
            (k[0].clone(), Arc::from(command.as_str())),
            (k[1].clone(), Arc::from(executable)),
            (k[2].clone(), Arc::from(owner)),
            (k[3].clone(), Arc::from(pid.as_str())),
        ];
        SimProcess {
            labels,
            cpu_rate,
            cpu_total: self.rng.unit() * 100.0,
            rss: (5.0 + self.rng.unit() * 500.0) * 1024.0 * 1024.0,
            threads: 1.0 + (self.rng.next() % 64) as f64,
            fds: 3.0 + (self.rng.next() % 200) as f64,
        }
    }

    fn advance(&mut self) {
        let n = self.processes.len();
        let replaced = ((n as f64 * self.churn).round() as usize).min(n);
        // Distinct victims: the first `replaced` steps of a Fisher-Yates shuffle of the indices.
        let mut indices: Vec<usize> = (0..n).collect();
        for k in 0..replaced {
            let j = k + (self.rng.next() % (n - k) as u64) as usize;
            indices.swap(k, j);
            self.processes[indices[k]] = self.spawn();
        }
        let bursting = self.config.profile == Profile::Spike && self.interval % 5 == 4;
        for (i, p) in self.processes.iter_mut().enumerate() {
            let boost = if bursting && i % 10 == 0 { 10.0 } else { 1.0 };
            p.cpu_total += p.cpu_rate * boost * self.config.interval_secs;
        }
        self.interval += 1;
    }
}

impl Source for SyntheticSource {
    fn collect(&mut self, now_ms: i64) -> Batch {
        self.advance();
        let mut batch = Vec::with_capacity(self.processes.len() * 5);
        for p in &self.processes {
            let values = [p.cpu_total, p.rss, p.rss * 4.0, p.threads, p.fds];
            for (metric, value) in self.metrics.iter().zip(values) {
                batch.push(Point::of(metric.clone(), p.labels.clone(), Value::Number(value), millis_to_nanos(now_ms)));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series_count;

    fn source(profile: &str, processes: usize, seed: u64) -> SyntheticSource {
        let yaml = format!("profile: {profile}\nprocesses: {processes}\nseed: {seed}");
        SyntheticSource::new(serde_yaml_ng::from_str(&yaml).expect("yaml"), "receivers.synthetic").expect("valid")
    }

    #[test]
    fn the_same_seed_gives_the_same_points() {
        let a = source("realistic", 50, 7).collect(0);
        let b = source("realistic", 50, 7).collect(0);
        assert_eq!(a, b);
        assert_ne!(a, source("realistic", 50, 8).collect(0));
    }

    #[test]
    fn five_series_per_process_and_churn_adds_new_ones() {
        let mut s = source("high_cardinality", 100, 1);
        let first = s.collect(0);
        assert_eq!(series_count(&first), 500);
        let second = s.collect(1);
        let first_pids: std::collections::HashSet<_> = first.iter().filter_map(|p| p.label("pid").cloned()).collect();
        let new = second.iter().filter_map(|p| p.label("pid")).filter(|pid| !first_pids.contains(*pid)).count();
        assert_eq!(new, 20 * 5, "20% of 100 processes replaced, 5 series each");
    }

    #[test]
    fn invalid_settings_are_reported_with_their_paths() {
        let config = serde_yaml_ng::from_str("profile: steady\nprocesses: 0\nchurn: 2").expect("yaml");
        let problems = crate::processors::test_support::problems(SyntheticSource::new(config, "receivers.synthetic"));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["receivers.synthetic.processes", "receivers.synthetic.churn"]);
    }
}
