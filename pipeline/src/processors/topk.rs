//! `topk`: keeps every series of the `k` processes with the highest value of `metric`; the series of
//! all other processes are aggregated, per metric, into one series with `<key>="other"`. Series
//! without the process key pass through.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::{default_process_labels, Processor};
use crate::model::{Batch, Merger, Point};
use crate::Problem;

/// The label value of the aggregate of the processes not kept.
pub const OTHER: &str = "other";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKConfig {
    /// How many processes to keep.
    k: usize,
    /// The metric that ranks processes.
    #[serde(default = "default_metric")]
    metric: String,
    /// The label that identifies a process.
    #[serde(default = "default_key")]
    key: String,
    /// Labels removed from the `other` aggregate (they differ per process).
    #[serde(default = "default_process_labels")]
    process_labels: Vec<String>,
}

pub fn default_metric() -> String {
    "process.cpu.time".into()
}

pub fn default_key() -> String {
    "pid".into()
}

pub struct TopK {
    k: usize,
    metric: String,
    key: Arc<str>,
    process_labels: HashSet<String>,
    other: Arc<str>,
}

impl TopK {
    pub fn new(config: TopKConfig, path: &str) -> Result<TopK, Vec<Problem>> {
        if config.k < 1 {
            return Err(vec![Problem::new(&format!("{path}.k"), "must be ≥ 1")]);
        }
        let mut process_labels: HashSet<String> = config.process_labels.into_iter().collect();
        process_labels.insert(config.key.clone());
        Ok(TopK {
            k: config.k,
            metric: config.metric,
            key: Arc::from(config.key),
            process_labels,
            other: Arc::from(OTHER),
        })
    }
}

/// The `k` processes ranking highest on `metric` (ties broken by the process key, so results are
/// deterministic).
pub fn top_processes(batch: &[Point], metric: &str, key: &str, k: usize) -> HashSet<Arc<str>> {
    let mut ranked: Vec<(f64, &Arc<str>)> =
        batch.iter().filter(|p| &*p.metric == metric).filter_map(|p| p.label(key).map(|id| (p.value, id))).collect();
    let by_rank = |a: &(f64, &Arc<str>), b: &(f64, &Arc<str>)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1));
    if ranked.len() > k {
        ranked.select_nth_unstable_by(k - 1, by_rank);
        ranked.truncate(k);
    }
    ranked.into_iter().map(|(_, id)| id.clone()).collect()
}

/// The series a dropped process's point is aggregated into: process labels removed, `<key>="other"`.
pub fn into_other(mut point: Point, process_labels: &HashSet<String>, key: &Arc<str>, other: &Arc<str>) -> Point {
    point.labels.retain(|(k, _)| !process_labels.contains(&**k));
    let at = point.labels.partition_point(|(k, _)| k < key);
    point.labels.insert(at, (key.clone(), other.clone()));
    point
}

impl Processor for TopK {
    fn process(&mut self, batch: Batch) -> Batch {
        let keep = top_processes(&batch, &self.metric, &self.key, self.k);
        let mut out = Vec::with_capacity(batch.len().min(self.k * 8 + 16));
        let mut rest = Merger::default();
        for point in batch {
            match point.label(&self.key) {
                Some(id) if !keep.contains(id) => {
                    rest.add(into_other(point, &self.process_labels, &self.key, &self.other))
                }
                _ => out.push(point),
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

    fn topk(k: usize) -> TopK {
        TopK::new(serde_yaml_ng::from_str(&format!("k: {k}")).expect("yaml"), "processors.topk").expect("valid")
    }

    #[test]
    fn keeps_the_top_k_processes_and_aggregates_the_rest_into_other() {
        let out = topk(10).process(processes(1000));
        assert_eq!(series_count(&out), 2 * 11, "10 processes + other, for each of the two metrics");
        let cpu: Vec<&Point> = out.iter().filter(|p| &*p.metric == "process.cpu.time").collect();
        let kept: HashSet<&str> =
            cpu.iter().filter_map(|p| p.label("pid").map(|v| &**v)).filter(|v| *v != OTHER).collect();
        assert_eq!(kept, (991..=1000).map(|p| p.to_string()).collect::<Vec<_>>().iter().map(String::as_str).collect());
        let other = cpu.iter().find(|p| p.label("pid").map(|v| &**v) == Some(OTHER)).expect("other");
        assert_eq!(other.value, (1..=990).sum::<u32>() as f64, "other is the sum of the rest");
        assert_eq!(other.label("host").map(|v| &**v), Some("h1"), "labels shared by processes stay");
        assert!(other.label("executable").is_none());
        let rss_other =
            out.iter().find(|p| &*p.metric == "process.memory.rss" && p.label("pid").map(|v| &**v) == Some(OTHER));
        assert_eq!(rss_other.map(|p| p.value), Some(990_000.0));
    }

    #[test]
    fn ties_are_broken_by_process_id() {
        let batch: Vec<Point> = ["3", "1", "2"]
            .iter()
            .map(|pid| Point::new("process.cpu.time", MetricKind::Sum, &[("pid", pid)], 5.0, 0))
            .collect();
        let out = topk(2).process(batch);
        let pids: Vec<&str> = out.iter().filter_map(|p| p.label("pid").map(|v| &**v)).collect();
        assert_eq!(pids, ["1", "2", OTHER]);
    }

    #[test]
    fn fewer_processes_than_k_pass_unchanged_and_k_zero_is_refused() {
        let input = processes(3);
        assert_eq!(topk(10).process(input.clone()), input);
        let problems = crate::processors::test_support::problems(TopK::new(
            serde_yaml_ng::from_str("k: 0").expect("yaml"),
            "processors.topk",
        ));
        assert_eq!(problems[0].path, "processors.topk.k");
    }
}
