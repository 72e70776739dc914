//! `cardinality_limit`: at most `max_series` series per metric, as the OpenTelemetry SDKs do: the first
//! series seen are admitted; points of any further series go to one overflow series per metric,
//! labelled `otel.metric.overflow="true"` (`action: overflow`, merged by type), or are dropped
//! (`action: drop`); either way they are counted. An admitted series not seen for
//! `forget_after_intervals` flushes gives its place up, so with churn the new series are admitted once
//! the old ones have gone, instead of all ending up in the overflow series.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::{Outcome, Processor};
use crate::model::{Batch, Merger, Point};
use crate::Problem;

/// The attribute of the overflow series (the OpenTelemetry SDKs' name for it).
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardinalityLimitConfig {
    max_series: usize,
    #[serde(default = "default_forget_after")]
    forget_after_intervals: u64,
    #[serde(default)]
    action: OverLimit,
}

fn default_forget_after() -> u64 {
    10
}

/// What happens to the points of series over the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverLimit {
    /// Merged into one overflow series per metric.
    #[default]
    Overflow,
    /// Dropped.
    Drop,
}

pub struct CardinalityLimit {
    max: usize,
    forget_after: u64,
    action: OverLimit,
    /// Flushes so far.
    interval: u64,
    /// Per metric: admitted series (by fingerprint) and the flush each was last seen in.
    admitted: FxHashMap<Arc<str>, FxHashMap<u64, u64>>,
    overflow: (Arc<str>, Arc<str>),
}

impl CardinalityLimit {
    pub fn new(config: CardinalityLimitConfig, path: &str) -> Result<CardinalityLimit, Vec<Problem>> {
        if config.max_series < 1 {
            return Err(vec![Problem::new(&format!("{path}.max_series"), "must be ≥ 1")]);
        }
        if config.forget_after_intervals < 1 {
            return Err(vec![Problem::new(&format!("{path}.forget_after_intervals"), "must be ≥ 1")]);
        }
        Ok(CardinalityLimit {
            max: config.max_series,
            forget_after: config.forget_after_intervals,
            action: config.action,
            interval: 0,
            admitted: FxHashMap::default(),
            overflow: (Arc::from(OVERFLOW_LABEL), Arc::from("true")),
        })
    }

    fn forget_stale_series(&mut self) {
        let oldest_kept = self.interval.saturating_sub(self.forget_after);
        for series in self.admitted.values_mut() {
            series.retain(|_, last_seen| *last_seen >= oldest_kept);
        }
        self.admitted.retain(|_, series| !series.is_empty());
    }

    /// True when the point's series is (or now becomes) admitted.
    fn admit(&mut self, point: &Point) -> bool {
        let now = self.interval;
        let admitted = match self.admitted.get_mut(&point.metric.name) {
            Some(admitted) => admitted,
            None => self.admitted.entry(point.metric.name.clone()).or_default(),
        };
        let fingerprint = point.fingerprint();
        if let Some(last_seen) = admitted.get_mut(&fingerprint) {
            *last_seen = now;
            true
        } else if admitted.len() < self.max {
            admitted.insert(fingerprint, now);
            true
        } else {
            false
        }
    }
}

impl Processor for CardinalityLimit {
    fn process(&mut self, batch: Batch, outcome: &mut Outcome) -> Batch {
        self.interval += 1;
        self.forget_stale_series();
        let mut out = Vec::with_capacity(batch.len());
        let mut overflow = Merger::default();
        for point in batch {
            if self.admit(&point) {
                out.push(point);
                continue;
            }
            outcome.over_limit += 1;
            if self.action == OverLimit::Drop {
                outcome.drop_points(1);
            } else {
                let folded = Point { labels: vec![self.overflow.clone()], ..point };
                if let Err(e) = overflow.add(folded) {
                    outcome.refuse(e.to_string());
                }
            }
        }
        out.extend(overflow.finish());
        out
    }

    fn state_bytes(&self) -> usize {
        self.admitted.iter().map(|(name, series)| name.len() + 48 + series.len() * 24).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::series_count;
    use crate::processors::test_support::processes;
    use crate::processors::test_support::Run;

    #[test]
    fn series_past_the_limit_go_to_one_overflow_series_per_metric() {
        let mut limit =
            CardinalityLimit::new(serde_yaml_ng::from_str("max_series: 10").expect("yaml"), "p").expect("valid");
        let out = limit.run(processes(100));
        assert_eq!(series_count(&out), 2 * 11);
        let overflow: Vec<&Point> = out.iter().filter(|p| p.label(OVERFLOW_LABEL).is_some()).collect();
        assert_eq!(overflow.len(), 2);
        let cpu = overflow.iter().find(|p| p.name() == "process.cpu.time").expect("cpu overflow");
        assert_eq!(cpu.number(), (11..=100).sum::<u32>() as f64);
        assert_eq!(cpu.labels.len(), 1, "only the overflow label");
    }

    #[test]
    fn admitted_series_stay_admitted_in_later_intervals() {
        let mut limit =
            CardinalityLimit::new(serde_yaml_ng::from_str("max_series: 3").expect("yaml"), "p").expect("valid");
        limit.run(processes(3));
        let mut later = processes(6);
        later.reverse();
        let out = limit.run(later);
        let kept: HashSet<&str> = out
            .iter()
            .filter(|p| p.name() == "process.cpu.time")
            .filter_map(|p| p.label("pid").map(|v| &**v))
            .collect();
        assert_eq!(kept, HashSet::from(["1", "2", "3"]));
    }

    fn cpu_pids(batch: &Batch) -> HashSet<String> {
        batch
            .iter()
            .filter(|p| p.name() == "process.cpu.time")
            .filter_map(|p| p.label("pid").map(|v| v.to_string()))
            .collect()
    }

    #[test]
    fn series_gone_for_longer_than_the_window_give_their_place_to_new_ones() {
        let config = "max_series: 3\nforget_after_intervals: 2";
        let mut limit = CardinalityLimit::new(serde_yaml_ng::from_str(config).expect("yaml"), "p").expect("valid");
        limit.run(processes(3));
        // Processes 1-3 exit; 4-6 replace them. Within the window the old series still hold the places.
        let replaced = || {
            processes(6)
                .into_iter()
                .filter(|p| p.label("pid").is_some_and(|v| v.parse::<u32>().unwrap() > 3))
                .collect::<Batch>()
        };
        for _ in 0..2 {
            assert!(cpu_pids(&limit.run(replaced())).is_empty(), "still within the window");
        }
        let later = limit.run(replaced());
        assert_eq!(cpu_pids(&later), HashSet::from(["4".to_string(), "5".to_string(), "6".to_string()]));
        assert!(later.iter().all(|p| p.label(OVERFLOW_LABEL).is_none()), "nothing overflows any more");
    }

    #[test]
    fn the_window_must_be_at_least_one_interval() {
        let config = serde_yaml_ng::from_str("max_series: 3\nforget_after_intervals: 0").expect("yaml");
        let problems = CardinalityLimit::new(config, "processors.cardinality_limit").err().expect("refused");
        assert_eq!(problems[0].path, "processors.cardinality_limit.forget_after_intervals");
    }
}
