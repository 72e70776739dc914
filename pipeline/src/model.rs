//! The in-memory metric model the engine works on: points with a name, a kind, sorted labels, a value
//! and a time. Names and label parts are `Arc<str>`, so copying a point between stages is cheap.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

/// Inserting into the fingerprint index without replacing a colliding entry.
trait InsertFree {
    /// Inserts when the key is free; true when it was taken (a collision to record elsewhere).
    fn try_insert_free(&mut self, key: u64, value: usize) -> bool;
}

impl InsertFree for FxHashMap<u64, usize> {
    fn try_insert_free(&mut self, key: u64, value: usize) -> bool {
        match self.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
                false
            }
        }
    }
}

/// How values of one series combine when series are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// A point whose labels are already sorted by key (sources build them once per process and share
    /// the `Arc`s between that process's metrics).
    pub fn with_labels(metric: Arc<str>, kind: MetricKind, labels: Vec<Label>, value: f64, ts_ms: i64) -> Point {
        debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "labels must be sorted and unique");
        Point { metric, kind, labels, value, ts_ms }
    }

    /// The identity of the series this point belongs to.
    pub fn series(&self) -> SeriesKey {
        SeriesKey { metric: self.metric.clone(), labels: self.labels.clone() }
    }

    /// A 64-bit fingerprint of the series (metric and labels), cheap to compute and to hash again.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = FxHasher::default();
        self.metric.hash(&mut hasher);
        self.labels.hash(&mut hasher);
        hasher.finish()
    }

    fn same_series(&self, other: &Point) -> bool {
        self.metric == other.metric && self.labels == other.labels
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

/// Number of distinct series in a batch, by fingerprint (a 64-bit collision would undercount by one,
/// which is far below any measurement's noise).
pub fn series_count(batch: &[Point]) -> usize {
    let mut seen = FxHashSet::with_capacity_and_hasher(batch.len(), Default::default());
    batch.iter().filter(|p| seen.insert(p.fingerprint())).count()
}

/// Merges points that share a series: values add for sums and average for gauges. The output keeps
/// the order in which each series first appeared, so results are deterministic.
#[derive(Default)]
pub struct Merger {
    /// Fingerprint -> index of the merged point with it.
    index: FxHashMap<u64, usize>,
    /// Further points whose fingerprint collided with another series' (practically never).
    collided: Vec<(u64, usize)>,
    merged: Vec<Point>,
    /// How many points went into each merged point (gauges are averaged over it).
    counts: Vec<u32>,
}

impl Merger {
    pub fn with_capacity(capacity: usize) -> Merger {
        Merger {
            index: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            collided: Vec::new(),
            merged: Vec::with_capacity(capacity),
            counts: Vec::with_capacity(capacity),
        }
    }

    pub fn add(&mut self, point: Point) {
        let fingerprint = point.fingerprint();
        let found = match self.index.get(&fingerprint) {
            None => None,
            Some(&i) if self.merged[i].same_series(&point) => Some(i),
            Some(_) => self
                .collided
                .iter()
                .find(|(f, i)| *f == fingerprint && self.merged[*i].same_series(&point))
                .map(|(_, i)| *i),
        };
        match found {
            Some(i) => {
                let existing = &mut self.merged[i];
                existing.value += point.value;
                existing.ts_ms = existing.ts_ms.max(point.ts_ms);
                self.counts[i] += 1;
            }
            None => {
                let at = self.merged.len();
                if self.index.try_insert_free(fingerprint, at) {
                    self.collided.push((fingerprint, at));
                }
                self.merged.push(point);
                self.counts.push(1);
            }
        }
    }

    pub fn finish(mut self) -> Batch {
        for (point, &count) in self.merged.iter_mut().zip(&self.counts) {
            if point.kind == MetricKind::Gauge && count > 1 {
                point.value /= f64::from(count);
            }
        }
        self.merged
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
