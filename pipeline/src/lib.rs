//! Pipelines: the config users write (shaped like an OpenTelemetry Collector config), templates that
//! render it from parameters, validation that reports every problem with its path, and the engine that
//! runs it — sources -> processors -> exporters — measuring itself every interval. Used by the server
//! (validation, rendering, preview) and by the agent (running pipelines).

pub mod config;
pub mod diff;
pub mod engine;
pub mod exporters;
pub mod loadgen;
pub mod metric_stats;
pub mod model;
pub mod net;
pub mod otlp;
pub mod preview;
pub mod processors;
pub mod procfs;
pub mod prom;
pub mod selector;
pub mod sources;
pub mod telemetry;
pub mod templates;

use serde::Serialize;

/// One problem (or warning) in a config, with where it is: `processors.topk.k: must be ≥ 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ConfigProblem))]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: &str, message: impl Into<String>) -> Problem {
        Problem { path: path.to_string(), message: message.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Converts problems to the `(path, message)` pairs of a 422 answer.
pub fn as_pairs(problems: Vec<Problem>) -> Vec<(String, String)> {
    problems.into_iter().map(|p| (p.path, p.message)).collect()
}
