//! Sources (the config's `receivers`): where a pipeline's points come from each interval.

pub mod buffer;
mod host;
mod process;
pub mod remote_write;
pub mod scrape;
pub mod shared;
pub mod synthetic;

use std::sync::Arc;

use super::model::{Batch, Metric, MetricKind};
use super::otlp::{OtlpConfig, OtlpSource};
use super::processors::parse;
use super::Problem;

pub use host::HostSource;
pub use process::ProcessSource;
pub use remote_write::{RemoteWriteReceiverConfig, RemoteWriteSource};
pub use scrape::{ScrapeReceiverConfig, ScrapeSource};
pub use synthetic::SyntheticSource;

/// The metrics every process yields, in this order, from the real and the simulated process sources
/// alike (so a candidate tried on synthetic load sees the names it will meet in production).
pub const PROCESS_METRICS: [&str; 5] = [
    "process.cpu.time",
    "process.memory.rss",
    "process.memory.virtual",
    "process.threads",
    "process.open_file_descriptors",
];

/// The metrics of [`PROCESS_METRICS`] with their types: CPU time only grows (a counter); memory,
/// threads and descriptors go up and down (up-down counters, as OpenTelemetry's process metrics are).
pub fn process_metrics() -> [Arc<Metric>; 5] {
    PROCESS_METRICS.map(|name| {
        let kind = if name == "process.cpu.time" { MetricKind::COUNTER } else { MetricKind::UP_DOWN_COUNTER };
        Arc::new(Metric::new(name, kind))
    })
}

/// The receiver types a config may name.
pub const KINDS: [&str; 6] = ["otlp", "prometheus", "prometheus_remote_write", "process", "host", "synthetic"];

/// Produces one interval's points.
pub trait Source: Send {
    /// The points of this interval, stamped `now_ms`.
    fn collect(&mut self, now_ms: i64) -> Batch;

    /// Points received but not yet collected (push receivers), handed to a pipeline's next version.
    fn take_pending(&mut self) -> Batch {
        Vec::new()
    }

    /// What a receiver that takes points from senders counts (none for sources that read the host).
    fn receiver_counts(&self) -> Option<buffer::ReceiverCounts> {
        None
    }

    /// Makes the receiver refuse points while `gate` says the agent is over its memory limit (receivers
    /// that take points from senders; sources that read the host have nothing to refuse).
    fn limit_memory(&mut self, _gate: Arc<crate::processors::memory_limiter::MemoryGate>) {}
}

/// Builds the source of type `kind` from its config section.
pub fn build(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Result<Box<dyn Source>, Vec<Problem>> {
    match kind {
        "process" => Ok(Box::new(ProcessSource::new(parse(config, path)?))),
        "host" => Ok(Box::new(HostSource::new(parse(config, path)?))),
        "synthetic" => SyntheticSource::new(parse(config, path)?, path).map(|s| Box::new(s) as Box<dyn Source>),
        "otlp" => OtlpSource::start(parse(config, path)?, path).map(|s| Box::new(s) as Box<dyn Source>),
        "prometheus" => ScrapeSource::start(parse(config, path)?, path).map(|s| Box::new(s) as Box<dyn Source>),
        "prometheus_remote_write" => {
            RemoteWriteSource::start(parse(config, path)?, path).map(|s| Box::new(s) as Box<dyn Source>)
        }
        other => {
            Err(vec![Problem::new(path, format!("unknown receiver type '{other}' (known: {})", KINDS.join(", ")))])
        }
    }
}

/// The problems of a receiver section, found without building it (a synthetic source with a million
/// processes would be expensive to build only to check it).
pub fn check(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Vec<Problem> {
    match kind {
        "synthetic" => match parse::<synthetic::SyntheticConfig>(config, path) {
            Ok(config) => SyntheticSource::check(&config, path),
            Err(problems) => problems,
        },
        // Checked without binding its ports (the server validates configs it never runs).
        "otlp" => match parse::<OtlpConfig>(config, path) {
            Ok(config) => config.check(path),
            Err(problems) => problems,
        },
        "prometheus_remote_write" => match parse::<RemoteWriteReceiverConfig>(config, path) {
            Ok(config) => config.check(path),
            Err(problems) => problems,
        },
        "prometheus" => match parse::<ScrapeReceiverConfig>(config, path) {
            Ok(config) => config.check(path),
            Err(problems) => problems,
        },
        _ => build(kind, config, path).err().unwrap_or_default(),
    }
}
