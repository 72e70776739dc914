//! `drop_labels`: removes labels; series that then collide are merged (sums add, gauges average).

use std::collections::HashSet;

use serde::Deserialize;

use super::Processor;
use crate::model::{Batch, Merger};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropLabelsConfig {
    labels: Vec<String>,
}

pub struct DropLabels {
    labels: HashSet<String>,
}

impl DropLabels {
    pub fn new(config: DropLabelsConfig, path: &str) -> Result<DropLabels, Vec<Problem>> {
        if config.labels.is_empty() {
            return Err(vec![Problem::new(&format!("{path}.labels"), "must name at least one label")]);
        }
        Ok(DropLabels { labels: config.labels.into_iter().collect() })
    }
}

impl Processor for DropLabels {
    fn process(&mut self, batch: Batch) -> Batch {
        let mut merger = Merger::with_capacity(batch.len());
        for mut point in batch {
            point.labels.retain(|(key, _)| !self.labels.contains(&**key));
            merger.add(point);
        }
        merger.finish()
    }

    fn output_is_distinct(&self) -> bool {
        // The merger emits one point per series.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, Point};

    #[test]
    fn dropping_a_label_merges_colliding_series_by_kind() {
        let mut drop = DropLabels::new(serde_yaml_ng::from_str("labels: [pid]").expect("yaml"), "p").expect("valid");
        let batch = vec![
            Point::new("cpu", MetricKind::Sum, &[("pid", "1"), ("exe", "nginx")], 1.5, 0),
            Point::new("cpu", MetricKind::Sum, &[("pid", "2"), ("exe", "nginx")], 2.5, 0),
            Point::new("cpu", MetricKind::Sum, &[("pid", "3"), ("exe", "redis")], 4.0, 0),
            Point::new("util", MetricKind::Gauge, &[("pid", "1"), ("exe", "nginx")], 0.2, 0),
            Point::new("util", MetricKind::Gauge, &[("pid", "2"), ("exe", "nginx")], 0.6, 0),
        ];
        let out = drop.process(batch);
        let values: Vec<(&str, &str, f64)> =
            out.iter().map(|p| (&*p.metric, &**p.label("exe").expect("exe"), p.value)).collect();
        assert_eq!(values, [("cpu", "nginx", 4.0), ("cpu", "redis", 4.0), ("util", "nginx", 0.4)]);
        assert!(out.iter().all(|p| p.label("pid").is_none()));
        assert!(drop.output_is_distinct());
        assert_eq!(crate::model::series_count(&out), out.len(), "one point per series, as claimed");
    }
}
