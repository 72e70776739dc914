//! Prometheus samples (from a scrape or a remote-write request) as points of the model: a counter's
//! samples become a cumulative monotonic sum, a gauge's (and an untyped one's) a gauge; a histogram's
//! `_bucket{le}`, `_sum` and `_count` series become one histogram point per series, a summary's
//! `{quantile}`, `_sum` and `_count` one summary point. Types come from `# TYPE` lines or remote-write
//! metadata; without them, `_bucket` series with an `le` make a histogram and a `_total` suffix a counter,
//! as Prometheus's own conventions say. Exported back through [`super`]'s translation, each series keeps
//! its name and labels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::model::{Attributes, Histogram, Label, Metric, MetricKind, Point, Quantile, Summary, Value};

/// The NaN Prometheus writes as a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A family's type as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// Declared `untyped`/`unknown`, or a type the model has no counterpart for (info, stateset, gauge
    /// histogram): each series is carried as it is.
    Untyped,
}

impl FamilyType {
    /// The type of a `# TYPE` line.
    pub fn from_text(text: &str) -> FamilyType {
        match text {
            "counter" => FamilyType::Counter,
            "gauge" => FamilyType::Gauge,
            "histogram" => FamilyType::Histogram,
            "summary" => FamilyType::Summary,
            _ => FamilyType::Untyped,
        }
    }
}

/// Label names and values as Prometheus has them, `__name__` apart.
pub type LabelPairs = Vec<(String, String)>;

/// One sample as Prometheus has it: the series name, its other labels, a value, a time in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSample {
    pub name: String,
    pub labels: LabelPairs,
    pub value: f64,
    pub time_ms: i64,
}

/// What a set of samples yielded.
#[derive(Debug, Default)]
pub struct Assembled {
    pub points: Vec<Point>,
    /// Samples left out: non-finite values, histograms whose buckets do not add up.
    pub rejected: u64,
    pub reason: Option<String>,
}

impl Assembled {
    fn reject(&mut self, count: u64, reason: impl FnOnce() -> String) {
        self.rejected += count;
        if self.reason.is_none() {
            self.reason = Some(reason());
        }
    }
}

/// What one sample is part of.
enum Role {
    /// A series of its own (counter, gauge, untyped).
    Plain(MetricKind),
    Bucket(f64),
    Quantile(f64),
    Sum,
    Count,
}

/// The samples of one histogram or summary series, collected before it is built.
#[derive(Default)]
struct Parts {
    buckets: Vec<(f64, f64)>,
    quantiles: Vec<Quantile>,
    sum: Option<f64>,
    count: Option<f64>,
    time_ms: i64,
}

/// Converts `samples`; `types` gives a family's declared type.
pub fn assemble(samples: Vec<FlatSample>, types: &dyn Fn(&str) -> Option<FamilyType>) -> Assembled {
    let mut out = Assembled::default();
    let inferred_histograms: HashSet<String> = samples
        .iter()
        .filter(|s| s.labels.iter().any(|(k, _)| k == "le"))
        .filter_map(|s| s.name.strip_suffix("_bucket").map(str::to_string))
        .filter(|family| types(family).is_none())
        .collect();
    let mut metrics = MetricCache::default();
    // Histogram and summary series in the order first met, so the output order follows the input.
    let mut parts: BTreeMap<(usize, String, LabelPairs), Parts> = BTreeMap::new();
    let mut order: HashMap<(String, LabelPairs), usize> = HashMap::new();
    for sample in samples {
        let (family, role) = role(&sample, types, &inferred_histograms);
        if sample.value.to_bits() == STALE_NAN {
            // Prometheus's mark for a series that ended: not a value, nothing to reject.
            continue;
        }
        if !sample.value.is_finite() {
            out.reject(1, || format!("{}: a NaN or infinite value", sample.name));
            continue;
        }
        let kind = match role {
            Role::Plain(kind) => {
                let metric = metrics.get(&sample.name, kind);
                out.points.push(point(metric, sample.labels, Value::Number(sample.value), sample.time_ms));
                continue;
            }
            _ => role,
        };
        let mut labels = sample.labels;
        labels
            .retain(|(k, _)| !matches!((k.as_str(), &kind), ("le", Role::Bucket(_)) | ("quantile", Role::Quantile(_))));
        let next = order.len();
        let at = *order.entry((family.clone(), labels.clone())).or_insert(next);
        let entry = parts.entry((at, family, labels)).or_default();
        entry.time_ms = entry.time_ms.max(sample.time_ms);
        match kind {
            Role::Bucket(le) => entry.buckets.push((le, sample.value)),
            Role::Quantile(quantile) => entry.quantiles.push(Quantile { quantile, value: sample.value }),
            Role::Sum => entry.sum = Some(sample.value),
            Role::Count => entry.count = Some(sample.value),
            Role::Plain(_) => {}
        }
    }
    for ((_, family, labels), parts) in parts {
        let (kind, value) = if parts.buckets.is_empty() && !parts.quantiles.is_empty()
            || parts.buckets.is_empty() && types(&family) == Some(FamilyType::Summary)
        {
            let summary = Summary {
                count: whole(parts.count.unwrap_or(0.0)),
                sum: parts.sum.unwrap_or(0.0),
                quantiles: parts.quantiles,
            };
            (MetricKind::Summary, Value::Summary(Box::new(summary)))
        } else {
            match histogram(parts.buckets, parts.count, parts.sum) {
                Some(h) => (MetricKind::Histogram { temporality: crate::model::Temporality::Cumulative }, h),
                None => {
                    out.reject(1, || format!("{family}: bucket counts that do not grow with `le`"));
                    continue;
                }
            }
        };
        let metric = metrics.get(&family, kind);
        out.points.push(point(metric, labels, value, parts.time_ms));
    }
    out
}

fn role(sample: &FlatSample, types: &dyn Fn(&str) -> Option<FamilyType>, inferred: &HashSet<String>) -> (String, Role) {
    let name = sample.name.as_str();
    // A bound or quantile that is not a number (NaN, or no number at all) makes the sample a series of
    // its own: it cannot take a place among the buckets.
    let label = |key: &str| {
        sample.labels.iter().find(|(k, _)| k == key).and_then(|(_, v)| parse_float(v)).filter(|v| !v.is_nan())
    };
    let own = types(name);
    match own {
        Some(FamilyType::Counter) => return (name.into(), Role::Plain(MetricKind::COUNTER)),
        Some(FamilyType::Gauge) => return (name.into(), Role::Plain(MetricKind::Gauge)),
        Some(FamilyType::Summary) => {
            if let Some(q) = label("quantile") {
                return (name.into(), Role::Quantile(q));
            }
        }
        _ => {}
    }
    // OpenMetrics' `_created` series stay gauges of their own, as Prometheus stores them.
    for suffix in ["_bucket", "_sum", "_count", "_total"] {
        let Some(family) = name.strip_suffix(suffix) else { continue };
        let declared = types(family);
        let histogram = declared == Some(FamilyType::Histogram) || inferred.contains(family);
        let summary = declared == Some(FamilyType::Summary);
        let role = match suffix {
            "_bucket" if histogram => label("le").map(Role::Bucket),
            "_sum" if histogram || summary => Some(Role::Sum),
            "_count" if histogram || summary => Some(Role::Count),
            "_total" if declared == Some(FamilyType::Counter) => Some(Role::Plain(MetricKind::COUNTER)),
            _ => None,
        };
        if let Some(role) = role {
            return (family.into(), role);
        }
    }
    let kind = if own.is_none() && name.ends_with("_total") { MetricKind::COUNTER } else { MetricKind::Gauge };
    (name.into(), Role::Plain(kind))
}

/// A histogram from cumulative bucket counts (`+Inf` last, or the count standing in for it).
fn histogram(mut buckets: Vec<(f64, f64)>, count: Option<f64>, sum: Option<f64>) -> Option<Value> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
        buckets.push((f64::INFINITY, count.or(buckets.last().map(|b| b.1)).unwrap_or(0.0)));
    }
    if buckets.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        // Two series for one bound: which one counts cannot be known.
        return None;
    }
    let mut counts = Vec::with_capacity(buckets.len());
    let mut below = 0.0;
    for &(_, cumulative) in &buckets {
        if cumulative < below || cumulative < 0.0 {
            return None;
        }
        counts.push(whole(cumulative - below));
        below = cumulative;
    }
    let bounds: Vec<f64> = buckets[..buckets.len() - 1].iter().map(|b| b.0).collect();
    // Prometheus's `_count` and `+Inf` bucket should agree; the buckets carry the distribution, so
    // they win when they do not. Counts that add up past what a count can hold are no histogram.
    counts.iter().try_fold(0u64, |total, &c| total.checked_add(c))?;
    Some(Value::Histogram(Box::new(Histogram::of_counts(&bounds, &counts, sum))))
}

/// A count carried as a float in Prometheus.
fn whole(value: f64) -> u64 {
    value.max(0.0).round() as u64
}

/// `le` and `quantile` values, including `+Inf`.
pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn point(metric: Arc<Metric>, labels: Vec<(String, String)>, value: Value, time_ms: i64) -> Point {
    let labels: Vec<Label> = labels.into_iter().map(|(k, v)| (Arc::from(k), Arc::from(v))).collect();
    let labels = Attributes::new(labels).labels().to_vec();
    Point::of(metric, labels, value, crate::model::millis_to_nanos(time_ms))
}

/// One `Arc<Metric>` per name and type, shared by its points.
#[derive(Default)]
struct MetricCache(HashMap<(String, MetricKind), Arc<Metric>>);

impl MetricCache {
    fn get(&mut self, name: &str, kind: MetricKind) -> Arc<Metric> {
        self.0.entry((name.to_string(), kind)).or_insert_with(|| Arc::new(Metric::new(name, kind))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> FlatSample {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FlatSample { name: name.into(), labels, value, time_ms: 1000 }
    }

    fn typed(types: &'static [(&'static str, FamilyType)]) -> impl Fn(&str) -> Option<FamilyType> {
        move |name| types.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    #[test]
    fn a_histograms_series_become_one_point_and_translate_back_to_the_same_samples() {
        let samples = vec![
            sample("latency_bucket", &[("le", "0.1"), ("route", "/a")], 2.0),
            sample("latency_bucket", &[("le", "1"), ("route", "/a")], 5.0),
            sample("latency_bucket", &[("le", "+Inf"), ("route", "/a")], 6.0),
            sample("latency_sum", &[("route", "/a")], 3.5),
            sample("latency_count", &[("route", "/a")], 6.0),
            sample("up", &[], 1.0),
        ];
        // With `# TYPE` and without: the `le` series make it a histogram either way.
        for types in [&typed(&[("latency", FamilyType::Histogram)]) as &dyn Fn(&str) -> Option<FamilyType>, &|_| None] {
            let out = assemble(samples.clone(), types);
            assert_eq!(out.rejected, 0);
            assert_eq!(out.points.len(), 2, "{:?}", out.points);
            let h = out.points.iter().find(|p| p.name() == "latency").expect("histogram");
            let Value::Histogram(value) = &h.value else { panic!("{h:?}") };
            assert_eq!(
                (&*value.bounds, value.counts.as_slice(), value.count, value.sum),
                (&[0.1, 1.0][..], &[2, 3, 1][..], 6, Some(3.5))
            );
            let mut back: Vec<(String, f64)> =
                out.points.iter().flat_map(super::super::samples).map(|s| (s.name, s.value)).collect();
            back.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                ["latency_bucket", "latency_bucket", "latency_bucket", "latency_count", "latency_sum", "up"]
            );
            assert_eq!(back[2].1, 6.0, "+Inf carries the count");
        }
    }

    #[test]
    fn counters_summaries_and_openmetrics_suffixes() {
        let types = typed(&[("rpc", FamilyType::Summary), ("jobs", FamilyType::Counter), ("temp", FamilyType::Gauge)]);
        let samples = vec![
            sample("rpc", &[("quantile", "0.5")], 0.2),
            sample("rpc", &[("quantile", "0.99")], 0.9),
            sample("rpc_sum", &[], 10.0),
            sample("rpc_count", &[], 40.0),
            sample("jobs_total", &[], 7.0),
            sample("jobs_created", &[], 1.7e9),
            sample("temp", &[], f64::NAN),
            sample("errors_total", &[], 2.0),
        ];
        let out = assemble(samples, &types);
        assert_eq!(out.rejected, 1, "the NaN gauge");
        let kinds: Vec<(&str, &str)> = out.points.iter().map(|p| (p.name(), p.kind().name())).collect();
        assert_eq!(
            kinds,
            [("jobs_total", "sum"), ("jobs_created", "gauge"), ("errors_total", "sum"), ("rpc", "summary")]
        );
        let Value::Summary(s) = &out.points[3].value else { panic!() };
        assert_eq!((s.count, s.sum, s.quantiles.len()), (40, 10.0, 2));
    }

    #[test]
    fn buckets_whose_counts_cannot_be_held_are_rejected() {
        let samples = vec![
            sample("h_bucket", &[("le", "1")], 1.8e19),
            sample("h_bucket", &[("le", "2")], 3.6e19),
            sample("h_bucket", &[("le", "+Inf")], 3.6e19),
        ];
        let out = assemble(samples, &|_| None);
        assert_eq!((out.points.len(), out.rejected), (0, 1), "found by the prometheus_input fuzz target");
    }

    #[test]
    fn buckets_that_shrink_are_rejected() {
        let samples = vec![sample("h_bucket", &[("le", "1")], 5.0), sample("h_bucket", &[("le", "+Inf")], 3.0)];
        let out = assemble(samples, &|_| None);
        assert_eq!((out.points.len(), out.rejected), (0, 1));
    }
}
