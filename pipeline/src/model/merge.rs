//! Merging points that share a series once labels were removed, by type: sums add (cumulative and
//! delta alike: the totals of different series add), histograms add bucket by bucket, exponential
//! histograms add at their common scale, gauges combine by a chosen function. Summaries cannot be
//! merged (quantiles do not add) and are refused.

use std::sync::Arc;

use serde::Deserialize;

use super::series::SeriesIndex;
use super::{Histogram, MetricKind, Point, Value};

/// Exemplars kept on one merged point.
const MAX_EXEMPLARS: usize = 16;

/// How gauges of merged series combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GaugeFn {
    /// The newest value.
    Last,
    Sum,
    Min,
    Max,
    #[default]
    Mean,
}

/// What happens when histograms with different bucket bounds meet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundsPolicy {
    /// Move the newcomer's counts into the first histogram's buckets (see `Histogram::rebucketed`).
    #[default]
    Convert,
    /// Leave the newcomer out (counted and reported).
    Refuse,
}

/// Why a point could not join its series.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MergeError {
    #[error("{metric}: histogram bounds {theirs:?} differ from {ours:?}")]
    Bounds { metric: String, ours: Vec<f64>, theirs: Vec<f64> },
    #[error("{metric}: summaries cannot be merged (quantiles do not add)")]
    Summary { metric: String },
    #[error("{metric}: a {theirs} point met a {ours} series of the same name")]
    Kind { metric: String, ours: &'static str, theirs: &'static str },
}

/// Running statistics of a merged gauge.
#[derive(Clone, Copy)]
struct GaugeAcc {
    sum: f64,
    min: f64,
    max: f64,
    count: u32,
    newest: (u64, f64),
}

/// Merges points into one point per series, keeping the order in which each series first appeared, so
/// results are deterministic.
#[derive(Default)]
pub struct Merger {
    index: SeriesIndex,
    merged: Vec<Point>,
    /// For gauge slots, what the chosen function needs.
    gauges: Vec<Option<GaugeAcc>>,
    gauge_fn: GaugeFn,
    bounds: BoundsPolicy,
}

impl Merger {
    pub fn new(gauge_fn: GaugeFn, bounds: BoundsPolicy) -> Merger {
        Merger { gauge_fn, bounds, ..Merger::default() }
    }

    pub fn with_capacity(capacity: usize) -> Merger {
        Merger {
            index: SeriesIndex::with_capacity(capacity),
            merged: Vec::with_capacity(capacity),
            gauges: Vec::with_capacity(capacity),
            ..Merger::default()
        }
    }

    /// The same merger with other policies.
    pub fn policies(self, gauge_fn: GaugeFn, bounds: BoundsPolicy) -> Merger {
        Merger { gauge_fn, bounds, ..self }
    }

    /// Adds a point to its series; on `Err` the point was left out.
    pub fn add(&mut self, point: Point) -> Result<(), MergeError> {
        let fingerprint = point.fingerprint();
        match self.index.find_or_insert(fingerprint, &point, &self.merged, self.merged.len()) {
            Some(at) => self.merge_into(at, point),
            None => {
                self.gauges.push(gauge_start(&point));
                self.merged.push(point);
                Ok(())
            }
        }
    }

    /// Number of series so far.
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty()
    }

    pub fn finish(mut self) -> Vec<Point> {
        for (point, acc) in self.merged.iter_mut().zip(&self.gauges) {
            if let Some(acc) = acc {
                point.value = Value::Number(match self.gauge_fn {
                    GaugeFn::Last => acc.newest.1,
                    GaugeFn::Sum => acc.sum,
                    GaugeFn::Min => acc.min,
                    GaugeFn::Max => acc.max,
                    GaugeFn::Mean => acc.sum / f64::from(acc.count),
                });
            }
        }
        self.merged
    }

    fn merge_into(&mut self, at: usize, point: Point) -> Result<(), MergeError> {
        let existing = &mut self.merged[at];
        let ours = existing.kind();
        let theirs = point.kind();
        if std::mem::discriminant(&ours) != std::mem::discriminant(&theirs) {
            return Err(MergeError::Kind {
                metric: point.name().to_string(),
                ours: ours.name(),
                theirs: theirs.name(),
            });
        }
        match (&mut existing.value, &point.value) {
            (Value::Number(total), Value::Number(n)) => match &mut self.gauges[at] {
                Some(acc) => {
                    acc.sum += n;
                    acc.min = acc.min.min(*n);
                    acc.max = acc.max.max(*n);
                    acc.count += 1;
                    if point.time_ns >= acc.newest.0 {
                        acc.newest = (point.time_ns, *n);
                    }
                }
                None => *total += n,
            },
            (total, value) => add_value(total, value, self.bounds, point.name())?,
        }
        existing.time_ns = existing.time_ns.max(point.time_ns);
        existing.start_ns = earliest_start(existing.start_ns, point.start_ns);
        let room = MAX_EXEMPLARS.saturating_sub(existing.exemplars.len());
        existing.exemplars.extend(point.exemplars.into_iter().take(room));
        Ok(())
    }
}

/// Adds `value` to `total`, both of one additive type (sums, histograms, exponential histograms).
pub fn add_value(total: &mut Value, value: &Value, bounds: BoundsPolicy, metric: &str) -> Result<(), MergeError> {
    match (total, value) {
        (Value::Number(total), Value::Number(n)) => *total += n,
        (Value::Histogram(total), Value::Histogram(h)) => add_histogram(total, h, bounds, metric)?,
        (Value::ExponentialHistogram(total), Value::ExponentialHistogram(h)) => total.add(h),
        (Value::Summary(_), _) | (_, Value::Summary(_)) => {
            return Err(MergeError::Summary { metric: metric.to_string() })
        }
        (total, value) => {
            return Err(MergeError::Kind {
                metric: metric.to_string(),
                ours: value_kind(total),
                theirs: value_kind(value),
            })
        }
    }
    Ok(())
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Number(_) => "number",
        Value::Histogram(_) => "histogram",
        Value::ExponentialHistogram(_) => "exponential_histogram",
        Value::Summary(_) => "summary",
    }
}

fn gauge_start(point: &Point) -> Option<GaugeAcc> {
    match (point.kind(), &point.value) {
        (MetricKind::Gauge, Value::Number(n)) => {
            Some(GaugeAcc { sum: *n, min: *n, max: *n, count: 1, newest: (point.time_ns, *n) })
        }
        _ => None,
    }
}

fn add_histogram(total: &mut Histogram, h: &Histogram, policy: BoundsPolicy, metric: &str) -> Result<(), MergeError> {
    if Arc::ptr_eq(&total.bounds, &h.bounds) || total.bounds == h.bounds {
        total.add_same_bounds(h);
        return Ok(());
    }
    match policy {
        BoundsPolicy::Convert => {
            total.add_same_bounds(&h.rebucketed(&total.bounds));
            Ok(())
        }
        BoundsPolicy::Refuse => Err(MergeError::Bounds {
            metric: metric.to_string(),
            ours: total.bounds.to_vec(),
            theirs: h.bounds.to_vec(),
        }),
    }
}

/// The earlier of two start times, where 0 means unknown.
pub fn earliest_start(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metric, Temporality};

    fn gauges(f: GaugeFn) -> f64 {
        let mut merger = Merger::new(f, BoundsPolicy::Convert);
        for (value, time) in [(2.0, 3), (8.0, 1), (5.0, 2)] {
            merger.add(Point::new("load", MetricKind::Gauge, &[("host", "a")], value, time)).expect("merge");
        }
        merger.finish()[0].number()
    }

    #[test]
    fn gauges_combine_by_the_chosen_function() {
        assert_eq!(gauges(GaugeFn::Last), 2.0, "the newest by time, not the last added");
        assert_eq!(gauges(GaugeFn::Sum), 15.0);
        assert_eq!(gauges(GaugeFn::Min), 2.0);
        assert_eq!(gauges(GaugeFn::Max), 8.0);
        assert_eq!(gauges(GaugeFn::Mean), 5.0);
    }

    #[test]
    fn sums_add_and_keep_the_earliest_start_and_newest_time() {
        let mut merger = Merger::default();
        let mut a = Point::new("cpu", MetricKind::COUNTER, &[("host", "a")], 2.0, 10);
        a.start_ns = 5;
        let mut b = Point::new("cpu", MetricKind::COUNTER, &[("host", "a")], 3.0, 20);
        b.start_ns = 3;
        merger.add(a).expect("merge");
        merger.add(b).expect("merge");
        let out = merger.finish();
        assert_eq!((out[0].number(), out[0].start_ns, out[0].time_ns), (5.0, 3, 20));
    }

    fn histogram_point(bounds: &[f64], counts: &[u64]) -> Point {
        let metric = Arc::new(Metric::new("latency", MetricKind::Histogram { temporality: Temporality::Delta }));
        let value = Value::Histogram(Box::new(Histogram::of_counts(bounds, counts, Some(1.0))));
        Point::of(metric, Vec::new(), value, 0)
    }

    #[test]
    fn mismatched_histogram_bounds_are_converted_or_refused_as_configured() {
        let mut convert = Merger::new(GaugeFn::Mean, BoundsPolicy::Convert);
        convert.add(histogram_point(&[1.0, 2.0], &[1, 1, 1])).expect("first");
        convert.add(histogram_point(&[1.5], &[4, 5])).expect("converted");
        let Value::Histogram(h) = &convert.finish()[0].value else { panic!("a histogram") };
        assert_eq!((h.counts.clone(), h.count), (vec![1, 5, 6], 12));
        let mut refuse = Merger::new(GaugeFn::Mean, BoundsPolicy::Refuse);
        refuse.add(histogram_point(&[1.0, 2.0], &[1, 1, 1])).expect("first");
        let error = refuse.add(histogram_point(&[1.5], &[4, 5])).expect_err("refused");
        assert!(error.to_string().contains("latency: histogram bounds [1.5] differ"), "{error}");
    }

    #[test]
    fn summaries_and_mixed_types_are_refused() {
        let summary = |v| {
            let metric = Arc::new(Metric::new("rpc", MetricKind::Summary));
            let value = Value::Summary(Box::new(crate::model::Summary { count: v, sum: 1.0, quantiles: Vec::new() }));
            Point::of(metric, Vec::new(), value, 0)
        };
        let mut merger = Merger::default();
        merger.add(summary(1)).expect("first");
        assert!(matches!(merger.add(summary(2)), Err(MergeError::Summary { .. })));
        merger.add(Point::new("x", MetricKind::Gauge, &[], 1.0, 0)).expect("first");
        assert!(matches!(merger.add(Point::new("x", MetricKind::COUNTER, &[], 1.0, 0)), Err(MergeError::Kind { .. })));
    }
}
