//! `topk`: keeps every series of the `k` groups (by default processes, `group_by: [pid]`, ranked by
//! `process.cpu.time`) with the highest total of `metric` (for other groups without `metric`, each
//! metric's own top `k`); the series of all other
//! groups are merged, per metric, into one series whose group attributes say `"other"`. Series without
//! the group attributes pass through.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::groups::{Grouping, Kept};
use super::{Outcome, Processor};
use crate::model::{Batch, Merger, Point};
use crate::Problem;

/// The value of the group attributes of the merged rest.
pub const OTHER: &str = "other";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKConfig {
    k: usize,
    /// The metric whose total ranks the groups (see `Grouping::from_config` for the default).
    metric: Option<String>,
    /// The attributes that make a group (default: `[pid]`, one group per process).
    group_by: Option<Vec<String>>,
    /// The one group attribute, as in earlier configs (`key: pid`).
    key: Option<String>,
    /// Further attributes removed from the merged rest (default, for processes: executable, command,
    /// owner).
    process_labels: Option<Vec<String>>,
}

pub struct TopK {
    k: usize,
    grouping: Grouping,
    /// Attributes removed from the merged rest (the group attributes are set to `other` instead).
    removed: HashSet<String>,
    other: Arc<str>,
}

impl TopK {
    pub fn new(config: TopKConfig, path: &str) -> Result<TopK, Vec<Problem>> {
        if config.k < 1 {
            return Err(vec![Problem::new(&format!("{path}.k"), "must be ≥ 1")]);
        }
        let (grouping, removed) =
            Grouping::from_config(config.group_by, config.key, config.metric, config.process_labels, path)?;
        Ok(TopK { k: config.k, grouping, removed, other: Arc::from(OTHER) })
    }

    /// `point` as part of the merged rest.
    fn as_other(&self, mut point: Point) -> Point {
        point.labels.retain(|(k, _)| !self.removed.contains(&**k));
        for key in &self.grouping.keys {
            point.set_label(Arc::from(key.as_str()), self.other.clone());
        }
        point
    }
}

impl Processor for TopK {
    fn process(&mut self, batch: Batch, outcome: &mut Outcome) -> Batch {
        let mut keep = Kept::default();
        for (metric, ranked) in self.grouping.rank(&batch) {
            for group in ranked.iter().take(self.k) {
                keep.insert(&metric, group.key);
            }
        }
        let mut out = Vec::with_capacity(batch.len().min(self.k * 8 + 16));
        let mut rest = Merger::default();
        for point in batch {
            let Some(group) = self.grouping.group_key(&point) else {
                out.push(point);
                continue;
            };
            if keep.contains(self.grouping.ranking_key(&point), group) {
                out.push(point);
            } else if let Err(e) = rest.add(self.as_other(point)) {
                outcome.refuse(e.to_string());
            }
        }
        out.extend(rest.finish());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{series_count, MetricKind};
    use crate::processors::test_support::processes;
    use crate::processors::test_support::Run;

    fn topk(k: usize) -> TopK {
        TopK::new(serde_yaml_ng::from_str(&format!("k: {k}")).expect("yaml"), "processors.topk").expect("valid")
    }

    #[test]
    fn keeps_the_top_k_processes_and_aggregates_the_rest_into_other() {
        let out = topk(10).run(processes(1000));
        assert_eq!(series_count(&out), 2 * 11, "10 processes + other, for each of the two metrics");
        let cpu: Vec<&Point> = out.iter().filter(|p| p.name() == "process.cpu.time").collect();
        let kept: HashSet<&str> =
            cpu.iter().filter_map(|p| p.label("pid").map(|v| &**v)).filter(|v| *v != OTHER).collect();
        assert_eq!(kept, (991..=1000).map(|p| p.to_string()).collect::<Vec<_>>().iter().map(String::as_str).collect());
        let other = cpu.iter().find(|p| p.label("pid").map(|v| &**v) == Some(OTHER)).expect("other");
        assert_eq!(other.number(), (1..=990).sum::<u32>() as f64, "other is the sum of the rest");
        assert_eq!(other.label("host").map(|v| &**v), Some("h1"), "labels shared by processes stay");
        assert!(other.label("executable").is_none());
        let rss_other =
            out.iter().find(|p| p.name() == "process.memory.rss" && p.label("pid").map(|v| &**v) == Some(OTHER));
        assert_eq!(rss_other.map(|p| p.number()), Some(990_000.0));
    }

    #[test]
    fn ties_are_broken_by_process_id() {
        let batch: Vec<Point> = ["3", "1", "2"]
            .iter()
            .map(|pid| Point::new("process.cpu.time", MetricKind::COUNTER, &[("pid", pid)], 5.0, 0))
            .collect();
        let out = topk(2).run(batch);
        let pids: Vec<&str> = out.iter().filter_map(|p| p.label("pid").map(|v| &**v)).collect();
        assert_eq!(pids, ["1", "2", OTHER]);
    }

    #[test]
    fn fewer_processes_than_k_pass_unchanged_and_k_zero_is_refused() {
        let input = processes(3);
        assert_eq!(topk(10).run(input.clone()), input);
        let problems = crate::processors::test_support::problems(TopK::new(
            serde_yaml_ng::from_str("k: 0").expect("yaml"),
            "processors.topk",
        ));
        assert_eq!(problems[0].path, "processors.topk.k");
    }
}
