//! An OTLP `ExportMetricsServiceRequest` as points of the model. Every data point that cannot be taken
//! (NaN or infinite values, histograms whose counts do not fit their bounds, metrics without data) is
//! counted as rejected, with the first reason, for the partial-success answer.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as otlp;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;

use crate::model::{
    Attributes, Buckets, Exemplar, ExponentialHistogram, Histogram, Label, Metric, MetricKind, Point, Quantile, Scope,
    Summary, Temporality, Value,
};

/// What a request yielded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub points: Vec<Point>,
    pub rejected: u64,
    /// Why the first rejected point was rejected.
    pub reason: Option<String>,
}

impl Decoded {
    fn reject(&mut self, count: u64, reason: impl FnOnce() -> String) {
        self.rejected += count;
        if self.reason.is_none() && count > 0 {
            self.reason = Some(reason());
        }
    }
}

/// Converts a request; `keep_exemplars` keeps the points' exemplars (dropped otherwise).
pub fn decode(request: ExportMetricsServiceRequest, keep_exemplars: bool) -> Decoded {
    let mut out = Decoded::default();
    let mut texts = Interner::default();
    for resource_metrics in request.resource_metrics {
        let resource = resource_metrics.resource.map(|r| labels(&r.attributes, &mut texts)).unwrap_or_default();
        let resource = Arc::new(Attributes::new(resource));
        for scope_metrics in resource_metrics.scope_metrics {
            let scope = match &scope_metrics.scope {
                Some(scope) => Arc::new(Scope::new(&scope.name, &scope.version)),
                None => Scope::empty(),
            };
            for metric in scope_metrics.metrics {
                let context = Context { resource: &resource, scope: &scope, keep_exemplars };
                decode_metric(metric, &context, &mut texts, &mut out);
            }
        }
    }
    out
}

/// One `Arc` per distinct attribute key or value of a request: the points of a request repeat the same
/// few keys and many values, and allocating each anew was a third of the receiver's time.
#[derive(Default)]
struct Interner {
    texts: rustc_hash::FxHashSet<Arc<str>>,
}

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.texts.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.texts.insert(shared.clone());
        shared
    }
}

struct Context<'a> {
    resource: &'a Arc<Attributes>,
    scope: &'a Arc<Scope>,
    keep_exemplars: bool,
}

fn decode_metric(metric: otlp::Metric, context: &Context, texts: &mut Interner, out: &mut Decoded) {
    let name = metric.name.clone();
    // A metric without data carries no points: nothing to take, nothing to reject.
    let Some(data) = metric.data else { return };
    if name.is_empty() {
        out.reject(data_points(&data), || "a metric without a name".into());
        return;
    }
    let kind = match &data {
        Data::Gauge(_) => MetricKind::Gauge,
        Data::Sum(sum) => {
            MetricKind::Sum { temporality: temporality(sum.aggregation_temporality), monotonic: sum.is_monotonic }
        }
        Data::Histogram(h) => MetricKind::Histogram { temporality: temporality(h.aggregation_temporality) },
        Data::ExponentialHistogram(h) => {
            MetricKind::ExponentialHistogram { temporality: temporality(h.aggregation_temporality) }
        }
        Data::Summary(_) => MetricKind::Summary,
    };
    let shared = Arc::new(Metric {
        name: Arc::from(name.as_str()),
        description: Arc::from(metric.description.as_str()),
        unit: Arc::from(metric.unit.as_str()),
        kind,
    });
    let mut push = |attributes: &[KeyValue], start: u64, time: u64, value: Value, exemplars: &[otlp::Exemplar]| {
        if value.has_non_finite() {
            out.reject(1, || format!("{name}: a NaN or infinite value"));
            return;
        }
        if let Value::Histogram(h) = &value {
            if !h.is_consistent() {
                out.reject(1, || format!("{name}: bucket counts do not match the bounds or the count"));
                return;
            }
        }
        let mut point = Point::of(shared.clone(), sorted(labels(attributes, texts)), value, time);
        point.resource = context.resource.clone();
        point.scope = context.scope.clone();
        point.start_ns = start;
        if context.keep_exemplars {
            point.exemplars = exemplars.iter().map(|e| exemplar(e, texts)).collect();
        }
        out.points.push(point);
    };
    match data {
        Data::Gauge(otlp::Gauge { data_points }) | Data::Sum(otlp::Sum { data_points, .. }) => {
            for p in data_points {
                let value = match p.value {
                    Some(NumberValue::AsDouble(d)) => d,
                    Some(NumberValue::AsInt(i)) => i as f64,
                    // A point with no value: the sender says "no recorded value" (flag), nothing to keep.
                    None => continue,
                };
                push(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, Value::Number(value), &p.exemplars);
            }
        }
        Data::Histogram(h) => {
            for p in h.data_points {
                let value = Value::Histogram(Box::new(Histogram {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    bounds: Arc::from(p.explicit_bounds.as_slice()),
                    counts: if p.bucket_counts.is_empty() { vec![p.count] } else { p.bucket_counts },
                }));
                push(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, value, &p.exemplars);
            }
        }
        Data::ExponentialHistogram(h) => {
            for p in h.data_points {
                let buckets = |b: Option<otlp::exponential_histogram_data_point::Buckets>| {
                    b.map(|b| Buckets { offset: b.offset, counts: b.bucket_counts }).unwrap_or_default()
                };
                let value = Value::ExponentialHistogram(Box::new(ExponentialHistogram {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    zero_threshold: p.zero_threshold,
                    positive: buckets(p.positive),
                    negative: buckets(p.negative),
                }));
                push(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, value, &p.exemplars);
            }
        }
        Data::Summary(s) => {
            for p in s.data_points {
                let quantiles =
                    p.quantile_values.iter().map(|q| Quantile { quantile: q.quantile, value: q.value }).collect();
                let value = Value::Summary(Box::new(Summary { count: p.count, sum: p.sum, quantiles }));
                push(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, value, &[]);
            }
        }
    }
}

fn data_points(data: &Data) -> u64 {
    (match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }) as u64
}

fn temporality(value: i32) -> Temporality {
    // 1 is DELTA; 2 is CUMULATIVE; an unspecified one is read as cumulative, the safer assumption
    // (a cumulative value is never added to itself).
    if value == otlp::AggregationTemporality::Delta as i32 {
        Temporality::Delta
    } else {
        Temporality::Cumulative
    }
}

/// Attributes as text labels (the model carries values as strings).
fn labels(attributes: &[KeyValue], texts: &mut Interner) -> Vec<Label> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => texts.get(s),
                _ => texts.get(&text(kv.value.as_ref()?)?),
            };
            Some((texts.get(&kv.key), value))
        })
        .collect()
}

fn sorted(mut labels: Vec<Label>) -> Vec<Label> {
    crate::model::sort_labels(&mut labels);
    labels
}

/// An attribute value as text: strings as they are, numbers and booleans as written, arrays and maps
/// as JSON; bytes as hex. An empty value has no text (the attribute is left out).
fn text(value: &AnyValue) -> Option<String> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
        any_value::Value::ArrayValue(a) => serde_json::Value::Array(
            a.values.iter().map(|v| text(v).map(serde_json::Value::from).unwrap_or_default()).collect(),
        )
        .to_string(),
        any_value::Value::KvlistValue(kv) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (kv.key.clone(), kv.value.as_ref().and_then(text).map(serde_json::Value::from).unwrap_or_default())
                })
                .collect(),
        )
        .to_string(),
        any_value::Value::StringValueStrindex(_) => return None,
    })
}

fn exemplar(e: &otlp::Exemplar, texts: &mut Interner) -> Exemplar {
    let value = match e.value {
        Some(otlp::exemplar::Value::AsDouble(d)) => d,
        Some(otlp::exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    Exemplar {
        time_ns: e.time_unix_nano,
        value,
        trace_id: e.trace_id.clone(),
        span_id: e.span_id.clone(),
        labels: sorted(labels(&e.filtered_attributes, texts)),
    }
}
