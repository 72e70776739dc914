//! Points as Prometheus samples, for the exposition endpoint and remote write, translated as
//! Prometheus's own OTLP translator does:
//!
//! - metric names: characters outside `[a-zA-Z0-9_:]` become `_`, a leading digit gets a `_` in front,
//!   monotonic cumulative sums end in `_total` (no unit suffixes are added);
//! - label names: characters outside `[a-zA-Z0-9_]` become `_`; a name starting with a digit gets
//!   `key_` in front, one starting with a single `_` gets `key` (`__` names are left alone);
//! - attributes that sanitise to the same label name are joined with `;`;
//! - the resource: `service.namespace/service.name` becomes `job`, `service.instance.id` becomes
//!   `instance`; its other attributes are left out of every series (Prometheus keeps them in
//!   `target_info`, which Phoenix does not send);
//! - histograms: `_bucket{le=…}` (cumulative counts, `+Inf` last), `_sum`, `_count`; exponential
//!   histograms are sent as explicit buckets at their bucket bounds; summaries: `{quantile=…}`,
//!   `_sum`, `_count`;
//! - delta sums and histograms cannot be represented (Prometheus has no deltas): they are left out and
//!   counted by the caller.

pub mod assemble;
pub mod relabel;
pub mod text;
pub mod wire;

use crate::model::{ExponentialHistogram, Histogram, MetricKind, Point, Temporality, Value};

/// One Prometheus sample: a full series name with labels, a value and a time in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sorted by name, `__name__` not included.
    pub labels: Vec<(String, String)>,
    pub name: String,
    pub value: f64,
    pub time_ms: i64,
}

/// The Prometheus type of a point's family, or `None` when it cannot be represented (deltas).
pub fn family_type(kind: MetricKind) -> Option<&'static str> {
    match kind {
        MetricKind::Gauge => Some("gauge"),
        MetricKind::Sum { temporality: Temporality::Cumulative, monotonic: true } => Some("counter"),
        // An up-down counter goes down: Prometheus's translator makes it a gauge.
        MetricKind::Sum { temporality: Temporality::Cumulative, monotonic: false } => Some("gauge"),
        MetricKind::Histogram { temporality: Temporality::Cumulative }
        | MetricKind::ExponentialHistogram { temporality: Temporality::Cumulative } => Some("histogram"),
        MetricKind::Summary => Some("summary"),
        _ => None,
    }
}

/// The family name of a metric.
pub fn metric_name(name: &str, kind: MetricKind) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == ':' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if family_type(kind) == Some("counter") && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

/// A label name Prometheus accepts.
pub fn label_name(key: &str) -> String {
    let out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{out}")
    } else if out.starts_with('_') && !out.starts_with("__") {
        format!("key{out}")
    } else if out.is_empty() {
        "key_".to_string()
    } else {
        out
    }
}

/// The labels of a point's series, sorted by name: its attributes, `job` and `instance` from its
/// resource. Attributes whose names sanitise to the same label are joined with `;` in the order of
/// their original names, as Prometheus's translator does.
pub fn series_labels(point: &Point) -> Vec<(String, String)> {
    // The point's labels are sorted by their own names; sanitised names may sort otherwise or meet.
    let mut labels: Vec<(String, String)> =
        point.labels.iter().map(|(key, value)| (label_name(key), value.to_string())).collect();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1.push(';');
            first.1.push_str(&later.1);
        }
        same
    });
    let resource = &point.resource;
    if let Some(service) = resource.get("service.name") {
        let job = match resource.get("service.namespace") {
            Some(namespace) => format!("{namespace}/{service}"),
            None => service.to_string(),
        };
        set_label(&mut labels, "job", job);
    }
    if let Some(instance) = resource.get("service.instance.id") {
        set_label(&mut labels, "instance", instance.to_string());
    }
    labels
}

/// Sets `name` in labels sorted by name, keeping them sorted.
pub fn set_label(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(at) => labels[at].1 = value,
        Err(at) => labels.insert(at, (name.to_string(), value)),
    }
}

/// The samples of one point; empty for types Prometheus cannot represent.
pub fn samples(point: &Point) -> Vec<Sample> {
    if family_type(point.kind()).is_none() {
        return Vec::new();
    }
    let name = metric_name(point.name(), point.kind());
    let labels = series_labels(point);
    let time_ms = (point.time_ns / 1_000_000) as i64;
    let sample = |suffix: &str, extra: Option<(&str, String)>, value: f64| {
        let mut labels = labels.clone();
        if let Some((key, value)) = extra {
            let at = labels.partition_point(|(k, _)| k.as_str() < key);
            labels.insert(at, (key.to_string(), value));
        }
        Sample { labels, name: format!("{name}{suffix}"), value, time_ms }
    };
    match &point.value {
        Value::Number(n) => vec![sample("", None, *n)],
        Value::Histogram(h) => histogram_samples(h, &sample),
        Value::ExponentialHistogram(h) => histogram_samples(&explicit(h), &sample),
        Value::Summary(s) => {
            let mut out: Vec<Sample> =
                s.quantiles.iter().map(|q| sample("", Some(("quantile", format_float(q.quantile))), q.value)).collect();
            out.push(sample("_sum", None, s.sum));
            out.push(sample("_count", None, s.count as f64));
            out
        }
    }
}

/// Makes one sample of a point: a name suffix, an extra label, a value.
type MakeSample<'a> = dyn Fn(&str, Option<(&str, String)>, f64) -> Sample + 'a;

fn histogram_samples(h: &Histogram, sample: &MakeSample) -> Vec<Sample> {
    let mut out = Vec::with_capacity(h.counts.len() + 2);
    let mut cumulative = 0u64;
    for (i, count) in h.counts.iter().enumerate() {
        cumulative += count;
        let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| format_float(*b));
        out.push(sample("_bucket", Some(("le", le)), cumulative as f64));
    }
    if let Some(sum) = h.sum {
        out.push(sample("_sum", None, sum));
    }
    out.push(sample("_count", None, h.count as f64));
    out
}

/// An exponential histogram as explicit buckets at its own bucket bounds (`base^index`).
fn explicit(h: &ExponentialHistogram) -> Histogram {
    let base = 2f64.powf(2f64.powi(-h.scale));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    // Negative buckets, most negative first: bucket i holds (-base^(i+1), -base^i].
    for (i, count) in h.negative.counts.iter().enumerate().rev() {
        bounds.push(-base.powi(h.negative.offset + i as i32));
        counts.push(*count);
    }
    bounds.push(h.zero_threshold);
    counts.push(h.zero_count);
    for (i, count) in h.positive.counts.iter().enumerate() {
        bounds.push(base.powi(h.positive.offset + i as i32 + 1));
        counts.push(*count);
    }
    let mut merged_bounds: Vec<f64> = Vec::with_capacity(bounds.len());
    let mut merged_counts: Vec<u64> = Vec::with_capacity(counts.len());
    for (bound, count) in bounds.into_iter().zip(&counts) {
        // Bounds must grow; equal ones (a zero threshold of 0 meeting -base^0) share a bucket.
        match merged_bounds.last() {
            Some(last) if bound <= *last => *merged_counts.last_mut().expect("parallel") += count,
            _ => {
                merged_bounds.push(bound);
                merged_counts.push(*count);
            }
        }
    }
    // Nothing lies above the last positive bucket's bound.
    merged_counts.push(0);
    Histogram {
        count: h.count,
        sum: h.sum,
        min: h.min,
        max: h.max,
        bounds: merged_bounds.into(),
        counts: merged_counts,
    }
}

/// A float as Prometheus writes it in labels and the text format.
pub fn format_float(value: f64) -> String {
    if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else if value.is_nan() {
        "NaN".into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Attributes, Buckets, Metric};

    #[test]
    fn names_are_sanitised_as_prometheus_does() {
        assert_eq!(metric_name("http.server.requests", MetricKind::COUNTER), "http_server_requests_total");
        assert_eq!(metric_name("x_total", MetricKind::COUNTER), "x_total");
        assert_eq!(metric_name("9lives", MetricKind::Gauge), "_9lives");
        assert_eq!(label_name("user.id"), "user_id");
        assert_eq!(label_name("9x"), "key_9x");
        assert_eq!(label_name("_x"), "key_x");
        assert_eq!(label_name("__x"), "__x");
    }

    #[test]
    fn attributes_that_sanitise_alike_are_joined() {
        let point = Point::new("m", MetricKind::Gauge, &[("a.b", "1"), ("a_b", "2"), ("a-b", "3")], 1.0, 0);
        assert_eq!(series_labels(&point), [("a_b".to_string(), "3;1;2".to_string())], "in the order a-b, a.b, a_b");
    }

    #[test]
    fn a_histogram_becomes_cumulative_buckets_a_sum_and_a_count() {
        let metric = Arc::new(Metric::new("latency", MetricKind::Histogram { temporality: Temporality::Cumulative }));
        let value = Value::Histogram(Box::new(Histogram::of_counts(&[0.5, 1.0], &[1, 2, 3], Some(12.5))));
        let mut point = Point::of(metric, vec![(Arc::from("route"), Arc::from("/"))], value, 2_000_000);
        point.resource = Arc::new(Attributes::new(vec![(Arc::from("service.name"), Arc::from("shop"))]));
        let out = samples(&point);
        let view: Vec<(String, Option<String>, f64)> = out
            .iter()
            .map(|s| (s.name.clone(), s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone()), s.value))
            .collect();
        assert_eq!(
            view,
            [
                ("latency_bucket".into(), Some("0.5".into()), 1.0),
                ("latency_bucket".into(), Some("1".into()), 3.0),
                ("latency_bucket".into(), Some("+Inf".into()), 6.0),
                ("latency_sum".into(), None, 12.5),
                ("latency_count".into(), None, 6.0),
            ]
        );
        assert!(out[0].labels.contains(&("job".into(), "shop".into())));
        assert_eq!(out[0].time_ms, 2);
    }

    #[test]
    fn an_exponential_histogram_keeps_its_count_as_explicit_buckets() {
        let h = ExponentialHistogram {
            count: 7,
            sum: Some(10.0),
            min: None,
            max: None,
            scale: 0,
            zero_count: 1,
            zero_threshold: 0.0,
            positive: Buckets { offset: 0, counts: vec![2, 3] },
            negative: Buckets { offset: 0, counts: vec![1] },
        };
        let explicit = explicit(&h);
        assert_eq!(explicit.bounds.to_vec(), vec![-1.0, 0.0, 2.0, 4.0]);
        assert_eq!(explicit.counts, vec![1, 1, 2, 3, 0]);
        assert!(explicit.is_consistent());
    }

    #[test]
    fn deltas_are_not_represented() {
        let delta = MetricKind::Sum { temporality: Temporality::Delta, monotonic: true };
        assert!(samples(&Point::new("d", delta, &[], 1.0, 0)).is_empty());
    }
}
