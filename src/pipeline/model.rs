//! The in-memory metric model the engine works on: points with a name, a kind, sorted labels, a value
//! and a time. Names and label parts are `Arc<str>`, so copying a point between stages is cheap.

use std::collections::HashMap;
use std::sync::Arc;

/// How values of one series combine when series are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Additive (a count, a total, bytes in use): merged series add up.
    Sum,
    /// A level that does not add across series (a utilisation, a load): merged series average.
    Gauge,
}

/// One label, `key=value`.
pub type Label = (Arc<str>, Arc<str>);

/// One measured value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Arc<str>,
    pub kind: MetricKind,
    /// Sorted by key, keys unique.
    pub labels: Vec<Label>,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
}

impl Point {
    /// A point with labels given in any order (they are sorted here).
    pub fn new(metric: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> Point {
        let mut labels: Vec<Label> = labels.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v))).collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|a, b| a.0 == b.0);
        Point { metric: Arc::from(metric), kind, labels, value, ts_ms }
    }

    /// The value of label `key`, if the point has it.
    pub fn label(&self, key: &str) -> Option<&Arc<str>> {
        self.labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
    }

    /// The identity of the series this point belongs to.
    pub fn series(&self) -> SeriesKey {
        SeriesKey { metric: self.metric.clone(), labels: self.labels.clone() }
    }
}

/// What identifies a series: its metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub metric: Arc<str>,
    pub labels: Vec<Label>,
}

/// Points of one interval.
pub type Batch = Vec<Point>;

/// Number of distinct series in a batch.
pub fn series_count(batch: &[Point]) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    batch.iter().filter(|p| seen.insert((p.metric.clone(), p.labels.clone()))).count()
}

/// Merges points that share a series: values add for sums and average for gauges. The output keeps
/// the order in which each series first appeared, so results are deterministic.
#[derive(Default)]
pub struct Merger {
    index: HashMap<SeriesKey, usize>,
    merged: Vec<(Point, u32)>,
}

impl Merger {
    pub fn with_capacity(capacity: usize) -> Merger {
        Merger { index: HashMap::with_capacity(capacity), merged: Vec::with_capacity(capacity) }
    }

    pub fn add(&mut self, point: Point) {
        let key = SeriesKey { metric: point.metric.clone(), labels: point.labels.clone() };
        match self.index.get(&key) {
            Some(&i) => {
                let (existing, count) = &mut self.merged[i];
                existing.value += point.value;
                existing.ts_ms = existing.ts_ms.max(point.ts_ms);
                *count += 1;
            }
            None => {
                self.index.insert(key, self.merged.len());
                self.merged.push((point, 1));
            }
        }
    }

    pub fn finish(self) -> Batch {
        self.merged
            .into_iter()
            .map(|(mut point, count)| {
                if point.kind == MetricKind::Gauge && count > 1 {
                    point.value /= f64::from(count);
                }
                point
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_sums_and_averages_gauges() {
        let mut merger = Merger::default();
        merger.add(Point::new("cpu", MetricKind::Sum, &[("host", "a")], 2.0, 1));
        merger.add(Point::new("load", MetricKind::Gauge, &[("host", "a")], 1.0, 1));
        merger.add(Point::new("cpu", MetricKind::Sum, &[("host", "a")], 3.0, 2));
        merger.add(Point::new("load", MetricKind::Gauge, &[("host", "a")], 3.0, 1));
        let out = merger.finish();
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].value, out[0].ts_ms), (5.0, 2));
        assert_eq!(out[1].value, 2.0);
    }

    #[test]
    fn labels_are_kept_sorted() {
        let point = Point::new("m", MetricKind::Sum, &[("z", "1"), ("a", "2")], 1.0, 0);
        assert_eq!(&*point.labels[0].0, "a");
        assert_eq!(point.label("z").map(|v| &**v), Some("1"));
    }
}
