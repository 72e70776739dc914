//! Processors: each takes one interval's batch and returns what goes on. Built from their config
//! section, so validating a config and building it check exactly the same things.

mod adaptive_filter;
mod aggregate;
mod attributes;
pub mod batch;
mod cardinality_limit;
mod filter;
mod groups;
pub mod memory_limiter;
mod names;
#[cfg(test)]
mod properties;
mod topk;

use serde::de::DeserializeOwned;

use crate::model::Batch;
use crate::Problem;

pub use adaptive_filter::AdaptiveFilter;
pub use aggregate::Aggregate;
pub use attributes::AttributeActions;
pub use cardinality_limit::{CardinalityLimit, OVERFLOW_LABEL};
pub use filter::Filter;
pub use topk::{TopK, OTHER};

/// The processor types a config may name (`drop_labels` is `aggregate` under its earlier name).
pub const KINDS: [&str; 9] = [
    "filter",
    "attributes",
    "aggregate",
    "drop_labels",
    "topk",
    "adaptive_filter",
    "cardinality_limit",
    "batch",
    "memory_limiter",
];

/// Most refusal reasons one flush keeps (the first ones; the rest are only counted).
const MAX_REFUSALS: usize = 5;

/// What a flush's processors report besides their output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Points of series over a cardinality limit (folded into an overflow series, or dropped).
    pub over_limit: u64,
    /// Points left out: dropped by a rule (`summary: drop`, `action: drop`) or refused by a merge.
    pub dropped: u64,
    /// Why merges refused points (the first few), for the log and the pipeline's status.
    pub refusals: Vec<String>,
}

impl Outcome {
    /// Counts one point a merge refused, and why.
    pub fn refuse(&mut self, reason: String) {
        self.dropped += 1;
        if self.refusals.len() < MAX_REFUSALS && !self.refusals.contains(&reason) {
            self.refusals.push(reason);
        }
    }

    /// Counts points dropped by a rule.
    pub fn drop_points(&mut self, count: u64) {
        self.dropped += count;
    }
}

/// One stage of a pipeline.
pub trait Processor: Send {
    /// Turns one flush's points into what goes on to the next stage; `outcome` counts what it left out.
    fn process(&mut self, batch: Batch, outcome: &mut Outcome) -> Batch;

    /// True when every output point is a different series by construction (so counting the output's
    /// series needs no second hash pass).
    fn output_is_distinct(&self) -> bool {
        false
    }

    /// Bytes of state kept between flushes (for the pipeline's memory measurement).
    fn state_bytes(&self) -> usize {
        0
    }

    /// The most points one exporter request may carry (`batch`).
    fn max_request_points(&self) -> Option<usize> {
        None
    }

    /// The gate the pipeline's receivers ask before taking points (`memory_limiter`).
    fn memory_gate(&self) -> Option<std::sync::Arc<memory_limiter::MemoryGate>> {
        None
    }
}

/// Builds the processor of type `kind` from its config section; `path` prefixes every problem.
pub fn build(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Result<Box<dyn Processor>, Vec<Problem>> {
    match kind {
        "filter" => Filter::new(parse(config, path)?, path).map(boxed),
        "attributes" => AttributeActions::new(parse(config, path)?, path).map(boxed),
        "aggregate" | "drop_labels" => Aggregate::new(parse(config, path)?, path).map(boxed),
        "topk" => TopK::new(parse(config, path)?, path).map(boxed),
        "adaptive_filter" => AdaptiveFilter::new(parse(config, path)?, path).map(boxed),
        "cardinality_limit" => CardinalityLimit::new(parse(config, path)?, path).map(boxed),
        "batch" => batch::BatchProcessor::new(parse(config, path)?, path).map(boxed),
        "memory_limiter" => memory_limiter::MemoryLimiter::new(parse(config, path)?, path).map(boxed),
        other => {
            Err(vec![Problem::new(path, format!("unknown processor type '{other}' (known: {})", KINDS.join(", ")))])
        }
    }
}

/// Warnings about a processor section that is valid: settings accepted for Collector configs but not used.
pub fn warnings(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Vec<Problem> {
    match kind {
        "batch" => parse::<batch::BatchConfig>(config, path).map(|c| batch::warnings(&c, path)).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn boxed<P: Processor + 'static>(processor: P) -> Box<dyn Processor> {
    Box::new(processor)
}

/// Deserialises a component's section (a missing section is an empty one), with the failing field in
/// the problem's path.
pub fn parse<T: DeserializeOwned>(config: &serde_yaml_ng::Value, path: &str) -> Result<T, Vec<Problem>> {
    let value = if config.is_null() { serde_yaml_ng::Value::Mapping(Default::default()) } else { config.clone() };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let at = if field == "." { path.to_string() } else { format!("{path}.{field}") };
        vec![Problem::new(&at, e.inner().to_string())]
    })
}

/// Labels that identify a process; processors that work per process remove them from aggregates.
pub fn default_process_labels() -> Vec<String> {
    ["pid", "executable", "command", "owner"].map(String::from).to_vec()
}

#[cfg(test)]
pub mod test_support {
    use super::{Outcome, Processor};
    use crate::model::{Batch, MetricKind, Point};
    use crate::Problem;

    /// Runs one flush, ignoring the outcome.
    pub trait Run {
        fn run(&mut self, batch: Batch) -> Batch;
    }

    impl<P: Processor + ?Sized> Run for P {
        fn run(&mut self, batch: Batch) -> Batch {
            self.process(batch, &mut Outcome::default())
        }
    }

    /// The problems of a result that must have failed.
    pub fn problems<T>(result: Result<T, Vec<Problem>>) -> Vec<Problem> {
        match result {
            Err(problems) => problems,
            Ok(_) => panic!("expected problems, got a valid result"),
        }
    }

    /// `n` processes with one `process.cpu.time` (value = pid) and one `process.memory.rss` each.
    pub fn processes(n: u32) -> Vec<Point> {
        let mut batch = Vec::new();
        for pid in 1..=n {
            let pid_text = pid.to_string();
            let exe = format!("proc{pid}");
            let labels = [("pid", pid_text.as_str()), ("executable", exe.as_str()), ("host", "h1")];
            batch.push(Point::new("process.cpu.time", MetricKind::COUNTER, &labels, f64::from(pid), 0));
            batch.push(Point::new("process.memory.rss", MetricKind::UP_DOWN_COUNTER, &labels, 1000.0, 0));
        }
        batch
    }
}
