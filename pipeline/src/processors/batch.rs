//! `batch`, with the Collector's meaning where Phoenix's engine allows it: the Collector sends a batch
//! when `send_batch_size` points have gathered or `timeout` has passed. A Phoenix pipeline gathers
//! everything its receivers took during one interval and sends at the end of it, so the interval plays
//! `timeout`'s part; `batch` splits each interval's output into requests of at most `send_batch_size`
//! points (what a Collector under steady load sends), so no exporter request grows with the traffic.
//! The points themselves pass unchanged.

use serde::Deserialize;

use super::{Outcome, Processor};
use crate::model::Batch;
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: usize,
    /// 0: no limit of its own (the requests are `send_batch_size` points at most anyway).
    #[serde(default)]
    pub send_batch_max_size: usize,
    /// Accepted for Collector configs; the pipeline's interval decides when points are sent.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Accepted for Collector configs (batching per metadata value is not done).
    #[serde(default)]
    pub metadata_keys: Vec<String>,
}

fn default_send_batch_size() -> usize {
    8192
}

pub struct BatchProcessor {
    request_points: usize,
}

impl BatchProcessor {
    pub fn new(config: BatchConfig, path: &str) -> Result<BatchProcessor, Vec<Problem>> {
        let mut problems = Vec::new();
        if config.send_batch_size == 0 {
            problems.push(Problem::new(&format!("{path}.send_batch_size"), "must be ≥ 1"));
        }
        if config.send_batch_max_size != 0 && config.send_batch_max_size < config.send_batch_size {
            problems.push(Problem::new(
                &format!("{path}.send_batch_max_size"),
                "must be 0 or at least send_batch_size, as in the Collector",
            ));
        }
        if let Some(timeout) = &config.timeout {
            if let Err(why) = crate::config::parse_duration(timeout) {
                problems.push(Problem::new(&format!("{path}.timeout"), why));
            }
        }
        if problems.is_empty() {
            Ok(BatchProcessor { request_points: config.send_batch_size })
        } else {
            Err(problems)
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, _: &mut Outcome) -> Batch {
        batch
    }

    fn max_request_points(&self) -> Option<usize> {
        Some(self.request_points)
    }
}

/// The warnings a `batch` section earns: what Phoenix does instead of a setting it does not use.
pub fn warnings(config: &BatchConfig, path: &str) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if config.timeout.is_some() {
        warnings.push(Problem::new(
            &format!("{path}.timeout"),
            "not used: a Phoenix pipeline sends at the end of each interval",
        ));
    }
    if !config.metadata_keys.is_empty() {
        warnings.push(Problem::new(&format!("{path}.metadata_keys"), "not used: batches are not split by metadata"));
    }
    warnings
}
