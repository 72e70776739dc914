//! The metrics model the engine works on, general enough for OTLP and Prometheus: each point carries its
//! metric (name, description, unit, type with temporality and monotonicity), its resource and scope, its
//! own attributes (`labels`), start and observation times, a value of its type, and exemplars when kept.
//!
//! Names, attribute parts, metrics, resources and scopes are shared (`Arc`), so copying a point between
//! stages is cheap. Attribute values are carried as strings (an OTLP integer `7` becomes `"7"`): every
//! processor matches, groups and hashes them as text, as Prometheus labels are.

mod merge;
mod series;
mod value;

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHasher;

pub use merge::{add_value, earliest_start, BoundsPolicy, GaugeFn, MergeError, Merger};
pub use series::{keep_newest_levels, series_count, SeriesIndex};
pub use value::{Buckets, ExponentialHistogram, Histogram, Quantile, Summary, Value};

/// One attribute, `key=value`.
pub type Label = (Arc<str>, Arc<str>);

/// Points being processed together (one flush of a pipeline).
pub type Batch = Vec<Point>;

/// Whether a point's value counts from the start time (cumulative) or covers only since the previous
/// point (delta).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    Cumulative,
    Delta,
}

/// A metric's type, as OTLP defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A level sampled at a time (a utilisation, a temperature): series do not add.
    Gauge,
    /// A total: counters (`monotonic`) and up-down counters.
    Sum { temporality: Temporality, monotonic: bool },
    /// Counts of values in explicit buckets.
    Histogram { temporality: Temporality },
    /// Counts of values in exponentially sized buckets.
    ExponentialHistogram { temporality: Temporality },
    /// Precomputed quantiles: they cannot be merged across series.
    Summary,
}

impl MetricKind {
    /// A cumulative monotonic sum (a counter, e.g. CPU seconds).
    pub const COUNTER: MetricKind = MetricKind::Sum { temporality: Temporality::Cumulative, monotonic: true };
    /// A cumulative non-monotonic sum (an up-down counter, e.g. bytes in use).
    pub const UP_DOWN_COUNTER: MetricKind = MetricKind::Sum { temporality: Temporality::Cumulative, monotonic: false };

    /// The temporality, for the types that have one.
    pub fn temporality(self) -> Option<Temporality> {
        match self {
            MetricKind::Sum { temporality, .. }
            | MetricKind::Histogram { temporality }
            | MetricKind::ExponentialHistogram { temporality } => Some(temporality),
            MetricKind::Gauge | MetricKind::Summary => None,
        }
    }

    /// True when a point replaces the series' previous one (gauges, cumulative types, summaries) rather
    /// than adding to it (deltas).
    pub fn is_level(self) -> bool {
        self.temporality() != Some(Temporality::Delta)
    }

    /// A short name for logs, files and the REST API: `gauge`, `sum`, `histogram`, …
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum { .. } => "sum",
            MetricKind::Histogram { .. } => "histogram",
            MetricKind::ExponentialHistogram { .. } => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// What a metric is. Points of one metric share one `Arc<Metric>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: Arc<str>,
    pub description: Arc<str>,
    pub unit: Arc<str>,
    pub kind: MetricKind,
}

impl Metric {
    pub fn new(name: &str, kind: MetricKind) -> Metric {
        Metric { name: Arc::from(name), description: empty_str(), unit: empty_str(), kind }
    }
}

/// Sorted, unique attributes with their fingerprint computed once (a resource's are shared by every
/// point of the resource, so hashing them per point would be waste).
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    labels: Vec<Label>,
    fingerprint: u64,
}

impl Attributes {
    /// Attributes in any order; the last of a repeated key wins.
    pub fn new(mut labels: Vec<Label>) -> Attributes {
        sort_labels(&mut labels);
        let mut hasher = FxHasher::default();
        labels.hash(&mut hasher);
        Attributes { labels, fingerprint: hasher.finish() }
    }

    /// The shared empty set.
    pub fn empty() -> Arc<Attributes> {
        static EMPTY: OnceLock<Arc<Attributes>> = OnceLock::new();
        EMPTY.get_or_init(|| Arc::new(Attributes::new(Vec::new()))).clone()
    }

    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    pub fn get(&self, key: &str) -> Option<&Arc<str>> {
        find(&self.labels, key)
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

// Equal attributes have equal fingerprints, so the fingerprint is their hash (maps keyed by resource).
impl Eq for Attributes {}

impl Hash for Attributes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

/// The instrumentation scope (library) that produced a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub name: Arc<str>,
    pub version: Arc<str>,
    fingerprint: u64,
}

impl Scope {
    pub fn new(name: &str, version: &str) -> Scope {
        let mut hasher = FxHasher::default();
        (name, version).hash(&mut hasher);
        Scope { name: Arc::from(name), version: Arc::from(version), fingerprint: hasher.finish() }
    }

    /// The shared unnamed scope.
    pub fn empty() -> Arc<Scope> {
        static EMPTY: OnceLock<Arc<Scope>> = OnceLock::new();
        EMPTY.get_or_init(|| Arc::new(Scope::new("", ""))).clone()
    }
}

impl Eq for Scope {}

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

/// A measurement attached to a point (usually with the trace it came from).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub time_ns: u64,
    pub value: f64,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub labels: Vec<Label>,
}

/// One value of one series at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub metric: Arc<Metric>,
    pub resource: Arc<Attributes>,
    pub scope: Arc<Scope>,
    /// The point's own attributes, sorted by key, keys unique.
    pub labels: Vec<Label>,
    /// Where a cumulative value counts from (0 when unknown), nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// When the value was observed, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub value: Value,
    /// Kept only when the receiver is configured to keep them.
    pub exemplars: Vec<Exemplar>,
}

impl Point {
    /// A number point with no resource or scope, labels in any order (tests, simple sources).
    pub fn new(metric: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64, time_ns: u64) -> Point {
        let mut labels: Vec<Label> = labels.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v))).collect();
        sort_labels(&mut labels);
        Point::of(Arc::new(Metric::new(metric, kind)), labels, Value::Number(value), time_ns)
    }

    /// A point of a shared metric whose labels are already sorted and unique (sources build them once
    /// and share the `Arc`s between a series' metrics).
    pub fn of(metric: Arc<Metric>, labels: Vec<Label>, value: Value, time_ns: u64) -> Point {
        debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "labels must be sorted and unique");
        Point {
            metric,
            resource: Attributes::empty(),
            scope: Scope::empty(),
            labels,
            start_ns: 0,
            time_ns,
            value,
            exemplars: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.metric.name
    }

    pub fn kind(&self) -> MetricKind {
        self.metric.kind
    }

    /// The value of attribute `key`: the point's own, else its resource's.
    pub fn label(&self, key: &str) -> Option<&Arc<str>> {
        find(&self.labels, key).or_else(|| self.resource.get(key))
    }

    /// The number of a gauge or sum; for the other types, their count (what rankings compare).
    pub fn number(&self) -> f64 {
        self.value.magnitude()
    }

    /// A 64-bit fingerprint of the series: metric name, resource, scope and attributes.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = FxHasher::default();
        self.metric.name.hash(&mut hasher);
        self.resource.fingerprint.hash(&mut hasher);
        self.scope.fingerprint.hash(&mut hasher);
        self.labels.hash(&mut hasher);
        hasher.finish()
    }

    /// True when both points belong to the same series.
    pub fn same_series(&self, other: &Point) -> bool {
        self.metric.name == other.metric.name
            && self.labels == other.labels
            && (Arc::ptr_eq(&self.resource, &other.resource) || self.resource == other.resource)
            && (Arc::ptr_eq(&self.scope, &other.scope) || self.scope == other.scope)
    }

    /// Sets attribute `key` (keeping the labels sorted).
    pub fn set_label(&mut self, key: Arc<str>, value: Arc<str>) {
        match self.labels.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
            Ok(at) => self.labels[at].1 = value,
            Err(at) => self.labels.insert(at, (key, value)),
        }
    }
}

/// Milliseconds since the Unix epoch as nanoseconds (negative times, before 1970, as 0).
pub fn millis_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn find<'a>(labels: &'a [Label], key: &str) -> Option<&'a Arc<str>> {
    labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| v)
}

/// Sorts by key; of a repeated key the last one is kept.
pub fn sort_labels(labels: &mut Vec<Label>) {
    labels.reverse();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|a, b| a.0 == b.0);
}

fn empty_str() -> Arc<str> {
    static EMPTY: OnceLock<Arc<str>> = OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_kept_sorted_and_the_last_of_a_repeated_key_wins() {
        let point = Point::new("m", MetricKind::COUNTER, &[("z", "1"), ("a", "2"), ("z", "3")], 1.0, 0);
        assert_eq!(&*point.labels[0].0, "a");
        assert_eq!(point.label("z").map(|v| &**v), Some("3"));
        assert_eq!(point.labels.len(), 2);
    }

    #[test]
    fn the_resource_is_part_of_the_series() {
        let a = Point::new("m", MetricKind::Gauge, &[("k", "v")], 1.0, 0);
        let mut b = a.clone();
        b.resource = Arc::new(Attributes::new(vec![(Arc::from("host.name"), Arc::from("h1"))]));
        assert!(!a.same_series(&b));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(b.label("host.name").map(|v| &**v), Some("h1"), "resource attributes are visible as labels");
        let mut c = b.clone();
        c.resource = Arc::new(Attributes::new(vec![(Arc::from("host.name"), Arc::from("h1"))]));
        assert!(b.same_series(&c), "equal resources in different allocations are the same");
        assert_eq!(b.fingerprint(), c.fingerprint());
    }

    #[test]
    fn set_label_keeps_the_order() {
        let mut point = Point::new("m", MetricKind::Gauge, &[("b", "1"), ("d", "2")], 1.0, 0);
        point.set_label(Arc::from("c"), Arc::from("x"));
        point.set_label(Arc::from("b"), Arc::from("y"));
        let keys: Vec<&str> = point.labels.iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["b", "c", "d"]);
        assert_eq!(point.label("b").map(|v| &**v), Some("y"));
    }
}
