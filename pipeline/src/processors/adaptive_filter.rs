//! `adaptive_filter`: keeps the groups (by default processes, `group_by: [pid]`, ranked by
//! `process.cpu.time`) whose total of `metric` is above a threshold that adapts every flush towards the
//! value that would keep `target_series` groups; for other groups without `metric`, each metric ranks
//! and thresholds its own. Groups
//! matching `critical` (process names) are always kept; the other groups' series are dropped.
//!
//! Ties never let more than the target through: groups strictly above the threshold are kept, and of
//! those exactly at it only as many as still fit the target, in group order. (On a real host most
//! processes sit at 0 s of CPU: a threshold of 0 with ties kept would keep them all.)

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use super::groups::{Grouping, Kept, Ranked};
use super::{Outcome, Processor};
use crate::model::{Batch, Point};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveFilterConfig {
    /// Groups per metric to aim for.
    target_series: usize,
    /// The metric whose total ranks the groups (see `Grouping::from_config` for the default).
    metric: Option<String>,
    group_by: Option<Vec<String>>,
    /// The one group attribute, as in earlier configs (`key: pid`).
    key: Option<String>,
    /// Process names (the `executable` attribute, or a word of `command`) that are always kept.
    #[serde(default)]
    critical: Vec<String>,
    /// How far the threshold moves towards its ideal each flush (0 < s ≤ 1).
    #[serde(default = "default_smoothing")]
    smoothing: f64,
    /// Threshold for the first flush; by default the ideal threshold of the first flush.
    initial_threshold: Option<f64>,
}

fn default_smoothing() -> f64 {
    0.5
}

pub struct AdaptiveFilter {
    target: usize,
    grouping: Grouping,
    critical: Vec<String>,
    smoothing: f64,
    initial: Option<f64>,
    /// The threshold in force per ranking metric.
    thresholds: FxHashMap<Arc<str>, f64>,
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
        let grouping = Grouping::from_config(config.group_by, config.key, config.metric, None, path)
            .map_err(|more| problems.extend(more))
            .ok();
        let (Some((grouping, _)), true) = (grouping, problems.is_empty()) else {
            return Err(problems);
        };
        Ok(AdaptiveFilter {
            target: config.target_series,
            grouping,
            critical: config.critical,
            smoothing: config.smoothing,
            initial: config.initial_threshold,
            thresholds: FxHashMap::default(),
        })
    }

    /// The threshold in force for ranking metric `metric` (for tests and measurements).
    pub fn threshold(&self, metric: &str) -> Option<f64> {
        self.thresholds.get(metric).copied()
    }

    fn is_critical(&self, point: &Point) -> bool {
        let executable = point.label("executable").map(|v| &**v);
        let command = point.label("command").map(|v| &**v).unwrap_or("");
        self.critical
            .iter()
            .any(|name| executable == Some(name.as_str()) || command.split([' ', '/']).any(|word| word == name))
    }

    /// Moves the metric's threshold towards this flush's ideal (the `target`-th best score) and returns
    /// the groups it keeps. The threshold moves before filtering, so it uses the freshest information;
    /// smoothing keeps the kept set from flapping when the ranking jitters.
    fn kept_groups<'a>(&mut self, metric: &Arc<str>, ranked: &'a [Ranked]) -> &'a [Ranked] {
        if ranked.len() <= self.target {
            // Everything fits the target: keep everything, and start afresh when it no longer does.
            self.thresholds.remove(metric);
            return ranked;
        }
        let ideal = ranked[self.target - 1].score;
        let threshold = match self.thresholds.get(metric).copied().or(self.initial) {
            Some(current) if current.is_finite() => current + self.smoothing * (ideal - current),
            _ => ideal,
        };
        self.thresholds.insert(metric.clone(), threshold);
        let above = ranked.iter().take_while(|r| r.score > threshold).count();
        let ties = ranked[above..].iter().take_while(|r| r.score == threshold).count();
        let kept = above + ties.min(self.target.saturating_sub(above));
        &ranked[..kept]
    }
}

impl Processor for AdaptiveFilter {
    fn process(&mut self, mut batch: Batch, _: &mut Outcome) -> Batch {
        let mut keep = Kept::default();
        for (metric, ranked) in self.grouping.rank(&batch) {
            for group in self.kept_groups(&metric, &ranked) {
                keep.insert(&metric, group.key);
            }
        }
        let critical: FxHashSet<u64> =
            batch.iter().filter(|p| self.is_critical(p)).filter_map(|p| self.grouping.group_key(p)).collect();
        batch.retain(|p| match self.grouping.group_key(p) {
            Some(group) => critical.contains(&group) || keep.contains(self.grouping.ranking_key(p), group),
            None => true,
        });
        batch
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.critical.iter().map(String::len).sum::<usize>()
            + self.thresholds.keys().map(|k| k.len() + 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{series_count, MetricKind};
    use crate::processors::test_support::processes;
    use crate::processors::test_support::Run;

    fn filter(yaml: &str) -> AdaptiveFilter {
        AdaptiveFilter::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "p").expect("valid")
    }

    fn kept_processes(batch: &[Point]) -> usize {
        batch.iter().filter(|p| p.name() == "process.cpu.time").count()
    }

    #[test]
    fn the_threshold_converges_to_keep_the_target() {
        // Starts far too low (keeps everything) and must converge to keeping ~50 of 1,000.
        let mut f = filter("target_series: 50\ninitial_threshold: 0.0\nsmoothing: 0.5");
        let kept: Vec<usize> = (0..12).map(|_| kept_processes(&f.run(processes(1000)))).collect();
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
            MetricKind::COUNTER,
            &[("pid", "9999"), ("executable", "nginx")],
            0.0,
            0,
        ));
        batch.push(Point::new(
            "process.memory.rss",
            MetricKind::COUNTER,
            &[("pid", "9999"), ("executable", "nginx")],
            5.0,
            0,
        ));
        let mut f = filter("target_series: 5\ncritical: [nginx]");
        let out = f.run(batch);
        assert_eq!(kept_processes(&out), 6, "5 by value + the critical one");
        assert_eq!(out.iter().filter(|p| p.label("pid").map(|v| &**v) == Some("9999")).count(), 2, "all its series");
        assert_eq!(series_count(&out), 12);
    }

    #[test]
    fn when_everything_fits_the_target_everything_is_kept() {
        let mut f = filter("target_series: 50");
        f.run(processes(1000));
        assert_eq!(kept_processes(&f.run(processes(30))), 30, "30 processes fit a target of 50");
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
