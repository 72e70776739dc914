//! `adaptive_filter`: keeps the processes whose `metric` is at or above a threshold that adapts every
//! interval towards the value that would keep `target_series` processes; processes matching the
//! `critical` list are always kept. The other processes' series are dropped.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::topk::{default_key, default_metric};
use super::Processor;
use crate::model::{Batch, Point};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveFilterConfig {
    /// Process series per metric to aim for.
    target_series: usize,
    #[serde(default = "default_metric")]
    metric: String,
    #[serde(default = "default_key")]
    key: String,
    /// Process names (the `executable` label, or a word of `command`) that are always kept.
    #[serde(default)]
    critical: Vec<String>,
    /// How far the threshold moves towards its ideal each interval (0 < s ≤ 1).
    #[serde(default = "default_smoothing")]
    smoothing: f64,
    /// Threshold for the first interval; by default the ideal threshold of the first interval.
    initial_threshold: Option<f64>,
}

fn default_smoothing() -> f64 {
    0.5
}

pub struct AdaptiveFilter {
    target: usize,
    metric: String,
    key: String,
    critical: Vec<String>,
    smoothing: f64,
    threshold: Option<f64>,
}

impl AdaptiveFilter {
    pub fn new(config: AdaptiveFilterConfig, path: &str) -> Result<AdaptiveFilter, Vec<Problem>> {
        let mut problems = Vec::new();
        if config.target_series < 1 {
            problems.push(Problem::new(&format!("{path}.target_series"), "must be ≥ 1"));
        }
        if !(config.smoothing > 0.0 && config.smoothing <= 1.0) {
            problems.push(Problem::new(&format!("{path}.smoothing"), "must be in (0, 1]"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AdaptiveFilter {
            target: config.target_series,
            metric: config.metric,
            key: config.key,
            critical: config.critical,
            smoothing: config.smoothing,
            threshold: config.initial_threshold,
        })
    }

    /// The threshold in force (for tests and the pipeline's measurements).
    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }

    fn is_critical(&self, point: &Point) -> bool {
        let executable = point.label("executable").map(|v| &**v);
        let command = point.label("command").map(|v| &**v).unwrap_or("");
        self.critical
            .iter()
            .any(|name| executable == Some(name.as_str()) || command.split([' ', '/']).any(|word| word == name))
    }

    /// The value of the `target`-th highest process: the threshold that would keep exactly `target`.
    fn ideal_threshold(&self, batch: &[Point]) -> f64 {
        let mut values: Vec<f64> = batch
            .iter()
            .filter(|p| *p.metric == *self.metric && p.label(&self.key).is_some())
            .map(|p| p.value)
            .collect();
        if values.len() <= self.target {
            return f64::NEG_INFINITY;
        }
        let (_, nth, _) = values.select_nth_unstable_by(self.target - 1, |a, b| b.total_cmp(a));
        *nth
    }
}

impl Processor for AdaptiveFilter {
    fn process(&mut self, mut batch: Batch) -> Batch {
        // The threshold moves towards this interval's ideal before filtering, so it uses the freshest
        // information; smoothing keeps the kept set from flapping when the ranking jitters.
        let ideal = self.ideal_threshold(&batch);
        let threshold = match self.threshold {
            Some(current) if current.is_finite() && ideal.is_finite() => current + self.smoothing * (ideal - current),
            // No more processes than the target: everything fits, keep everything.
            _ if !ideal.is_finite() => f64::NEG_INFINITY,
            _ => ideal,
        };
        self.threshold = Some(threshold);
        let keep: HashSet<Arc<str>> = batch
            .iter()
            .filter(|p| *p.metric == *self.metric)
            .filter(|p| p.value >= threshold || self.is_critical(p))
            .filter_map(|p| p.label(&self.key).cloned())
            .collect();
        let critical: HashSet<Arc<str>> =
            batch.iter().filter(|p| self.is_critical(p)).filter_map(|p| p.label(&self.key).cloned()).collect();
        batch.retain(|p| match p.label(&self.key) {
            Some(id) => keep.contains(id) || critical.contains(id),
            None => true,
        });
        batch
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.critical.iter().map(String::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{series_count, MetricKind};
    use crate::processors::test_support::processes;

    fn filter(yaml: &str) -> AdaptiveFilter {
        AdaptiveFilter::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "p").expect("valid")
    }

    fn kept_processes(batch: &[Point]) -> usize {
        batch.iter().filter(|p| &*p.metric == "process.cpu.time").count()
    }

    #[test]
    fn the_threshold_converges_to_keep_the_target() {
        // Starts far too low (keeps everything) and must converge to keeping ~50 of 1,000.
        let mut f = filter("target_series: 50\ninitial_threshold: 0.0\nsmoothing: 0.5");
        let kept: Vec<usize> = (0..12).map(|_| kept_processes(&f.process(processes(1000)))).collect();
        assert_eq!(kept[0], 525, "half way from 0 to the ideal 951 in the first interval");
        assert!(kept.windows(2).all(|w| w[1] <= w[0]), "monotone approach: {kept:?}");
        let last = kept[kept.len() - 1];
        assert!((50..=51).contains(&last), "converged to the target: {kept:?}");
    }

    #[test]
    fn critical_processes_are_always_kept() {
        let mut batch = processes(100);
        batch.push(Point::new(
            "process.cpu.time",
            MetricKind::Sum,
            &[("pid", "9999"), ("executable", "nginx")],
            0.0,
            0,
        ));
        batch.push(Point::new(
            "process.memory.rss",
            MetricKind::Sum,
            &[("pid", "9999"), ("executable", "nginx")],
            5.0,
            0,
        ));
        let mut f = filter("target_series: 5\ncritical: [nginx]");
        let out = f.process(batch);
        assert_eq!(kept_processes(&out), 6, "5 by value + the critical one");
        assert_eq!(out.iter().filter(|p| p.label("pid").map(|v| &**v) == Some("9999")).count(), 2, "all its series");
        assert_eq!(series_count(&out), 12);
    }

    #[test]
    fn when_everything_fits_the_target_everything_is_kept() {
        let mut f = filter("target_series: 50");
        f.process(processes(1000));
        assert_eq!(kept_processes(&f.process(processes(30))), 30, "30 processes fit a target of 50");
    }

    #[test]
    fn invalid_parameters_are_reported_together() {
        let problems =
            AdaptiveFilter::new(serde_yaml_ng::from_str("target_series: 0\nsmoothing: 2").expect("yaml"), "p")
                .err()
                .expect("invalid");
        assert_eq!(problems.len(), 2);
    }
}
