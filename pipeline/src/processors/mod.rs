//! Processors: each takes one interval's batch and returns what goes on. Built from their config
//! section, so validating a config and building it check exactly the same things.

mod adaptive_filter;
mod cardinality_limit;
mod drop_labels;
mod filter;
#[cfg(test)]
mod properties;
mod topk;

use serde::de::DeserializeOwned;

use super::model::Batch;
use super::Problem;

pub use adaptive_filter::AdaptiveFilter;
pub use cardinality_limit::CardinalityLimit;
pub use drop_labels::DropLabels;
pub use filter::Filter;
pub use topk::TopK;

/// The processor types a config may name.
pub const KINDS: [&str; 5] = ["filter", "drop_labels", "topk", "adaptive_filter", "cardinality_limit"];

/// One stage of a pipeline.
pub trait Processor: Send {
    /// Turns one interval's points into what goes on to the next stage.
    fn process(&mut self, batch: Batch) -> Batch;

    /// True when every output point is a different series by construction (so counting the output's
    /// series needs no second hash pass).
    fn output_is_distinct(&self) -> bool {
        false
    }

    /// Bytes of state kept between intervals (for the pipeline's memory measurement).
    fn state_bytes(&self) -> usize {
        0
    }
}

/// Builds the processor of type `kind` from its config section; `path` prefixes every problem.
pub fn build(kind: &str, config: &serde_yaml_ng::Value, path: &str) -> Result<Box<dyn Processor>, Vec<Problem>> {
    match kind {
        "filter" => Filter::new(parse(config, path)?, path).map(boxed),
        "drop_labels" => DropLabels::new(parse(config, path)?, path).map(boxed),
        "topk" => TopK::new(parse(config, path)?, path).map(boxed),
        "adaptive_filter" => AdaptiveFilter::new(parse(config, path)?, path).map(boxed),
        "cardinality_limit" => CardinalityLimit::new(parse(config, path)?, path).map(boxed),
        other => {
            Err(vec![Problem::new(path, format!("unknown processor type '{other}' (known: {})", KINDS.join(", ")))])
        }
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
    use crate::model::{MetricKind, Point};
    use crate::Problem;

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
            batch.push(Point::new("process.cpu.time", MetricKind::Sum, &labels, f64::from(pid), 0));
            batch.push(Point::new("process.memory.rss", MetricKind::Sum, &labels, 1000.0, 0));
        }
        batch
    }
}
