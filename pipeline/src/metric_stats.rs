//! Per metric, what one interval of a pipeline did: series in, series out, and the total its output
//! carries (sums' values, histograms' and summaries' counts) — what an experiment compares between a
//! baseline and a candidate metric by metric, and what a cut must preserve. Gauges have no total (a
//! level does not add up).
//!
//! Counted as points after the engine kept the newest point per level series, so a level series is one
//! point; a delta series sent twice in an interval counts twice.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::model::{Metric, MetricKind, Point};

/// Most metrics one interval reports on: the largest by input series.
pub const MAX_METRICS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricStats {
    pub metric: String,
    pub input_series: usize,
    pub output_series: usize,
    /// `None` for gauges.
    pub output_total: Option<f64>,
}

/// Points per metric name, and the total of their values (counts for histograms and summaries).
#[derive(Default)]
pub struct Tally {
    /// Keyed by the shared `Metric` (one hash of a pointer per point), folded by name at the end.
    by_metric: FxHashMap<*const Metric, (Arc<Metric>, usize, f64)>,
}

impl Tally {
    pub fn of(points: &[Point]) -> Tally {
        let mut tally = Tally::default();
        for point in points {
            let entry =
                tally.by_metric.entry(Arc::as_ptr(&point.metric)).or_insert_with(|| (point.metric.clone(), 0, 0.0));
            entry.1 += 1;
            entry.2 += point.value.magnitude();
        }
        tally
    }

    /// By metric name: (points, total, a kind seen).
    fn by_name(&self) -> FxHashMap<&str, (usize, f64, MetricKind)> {
        let mut named: FxHashMap<&str, (usize, f64, MetricKind)> = FxHashMap::default();
        for (metric, points, total) in self.by_metric.values() {
            let entry = named.entry(&metric.name).or_insert((0, 0.0, metric.kind));
            entry.0 += points;
            entry.1 += total;
        }
        named
    }
}

/// The largest `MAX_METRICS` metrics of the input, with their output.
pub fn per_metric(input: &Tally, output: &Tally) -> Vec<MetricStats> {
    let output = output.by_name();
    let mut stats: Vec<MetricStats> = input
        .by_name()
        .into_iter()
        .map(|(name, (input_series, _, kind))| {
            let (output_series, total) = output.get(name).map_or((0, 0.0), |(points, total, _)| (*points, *total));
            let output_total = (kind != MetricKind::Gauge).then_some(total);
            MetricStats { metric: name.to_string(), input_series, output_series, output_total }
        })
        .collect();
    stats.sort_by(|a, b| b.input_series.cmp(&a.input_series).then_with(|| a.metric.cmp(&b.metric)));
    stats.truncate(MAX_METRICS);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_totals_per_metric_the_largest_first() {
        let input = vec![
            Point::new("requests", MetricKind::COUNTER, &[("user", "a")], 2.0, 1),
            Point::new("requests", MetricKind::COUNTER, &[("user", "b")], 3.0, 1),
            Point::new("temp", MetricKind::Gauge, &[], 20.0, 1),
        ];
        let output = vec![Point::new("requests", MetricKind::COUNTER, &[], 5.0, 1)];
        let stats = per_metric(&Tally::of(&input), &Tally::of(&output));
        assert_eq!(
            stats,
            [
                MetricStats { metric: "requests".into(), input_series: 2, output_series: 1, output_total: Some(5.0) },
                MetricStats { metric: "temp".into(), input_series: 1, output_series: 0, output_total: None },
            ]
        );
    }
}
