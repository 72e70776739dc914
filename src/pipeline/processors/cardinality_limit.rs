//! `cardinality_limit`: at most `max_series` series per metric, as the OpenTelemetry SDKs do: the first
//! series seen are admitted and stay admitted; points of any further series go to one overflow series
//! per metric, labelled `otel.metric.overflow="true"`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use super::Processor;
use crate::pipeline::model::{Batch, Label, Merger, Point};
use crate::pipeline::Problem;

/// The label of the overflow series.
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardinalityLimitConfig {
    max_series: usize,
}

pub struct CardinalityLimit {
    max: usize,
    admitted: HashMap<Arc<str>, HashSet<Vec<Label>>>,
    overflow: Vec<Label>,
}

impl CardinalityLimit {
    pub fn new(config: CardinalityLimitConfig, path: &str) -> Result<CardinalityLimit, Vec<Problem>> {
        if config.max_series < 1 {
            return Err(vec![Problem::new(&format!("{path}.max_series"), "must be ≥ 1")]);
        }
        Ok(CardinalityLimit {
            max: config.max_series,
            admitted: HashMap::new(),
            overflow: vec![(Arc::from(OVERFLOW_LABEL), Arc::from("true"))],
        })
    }
}

impl Processor for CardinalityLimit {
    fn process(&mut self, batch: Batch) -> Batch {
        let mut out = Vec::with_capacity(batch.len());
        let mut overflow = Merger::default();
        for point in batch {
            let admitted = self.admitted.entry(point.metric.clone()).or_default();
            if admitted.contains(&point.labels) || admitted.len() < self.max && admitted.insert(point.labels.clone()) {
                out.push(point);
            } else {
                overflow.add(Point { labels: self.overflow.clone(), ..point });
            }
        }
        out.extend(overflow.finish());
        out
    }

    fn state_bytes(&self) -> usize {
        let label_bytes = |labels: &Vec<Label>| labels.iter().map(|(k, v)| k.len() + v.len() + 32).sum::<usize>() + 24;
        self.admitted.values().flat_map(|set| set.iter()).map(label_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::model::series_count;
    use crate::pipeline::processors::test_support::processes;

    #[test]
    fn series_past_the_limit_go_to_one_overflow_series_per_metric() {
        let mut limit =
            CardinalityLimit::new(serde_yaml_ng::from_str("max_series: 10").expect("yaml"), "p").expect("valid");
        let out = limit.process(processes(100));
        assert_eq!(series_count(&out), 2 * 11);
        let overflow: Vec<&Point> = out.iter().filter(|p| p.label(OVERFLOW_LABEL).is_some()).collect();
        assert_eq!(overflow.len(), 2);
        let cpu = overflow.iter().find(|p| &*p.metric == "process.cpu.time").expect("cpu overflow");
        assert_eq!(cpu.value, (11..=100).sum::<u32>() as f64);
        assert_eq!(cpu.labels.len(), 1, "only the overflow label");
    }

    #[test]
    fn admitted_series_stay_admitted_in_later_intervals() {
        let mut limit =
            CardinalityLimit::new(serde_yaml_ng::from_str("max_series: 3").expect("yaml"), "p").expect("valid");
        limit.process(processes(3));
        let mut later = processes(6);
        later.reverse();
        let out = limit.process(later);
        let kept: HashSet<&str> = out
            .iter()
            .filter(|p| &*p.metric == "process.cpu.time")
            .filter_map(|p| p.label("pid").map(|v| &**v))
            .collect();
        assert_eq!(kept, HashSet::from(["1", "2", "3"]));
    }
}
