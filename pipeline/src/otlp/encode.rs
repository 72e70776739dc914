//! Points of the model as an OTLP `ExportMetricsServiceRequest` (what the `otlp` and `otlphttp`
//! exporters send): points grouped by resource, then scope, then metric, in the order first met.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as otlp;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::model::{Attributes, Buckets, Exemplar, Label, Metric, MetricKind, Point, Scope, Temporality, Value};

/// A metric's place: resource and scope indexes, name, unit and type.
type MetricKey = (usize, usize, Arc<str>, Arc<str>, MetricKind);

/// The request carrying `points`.
pub fn request(points: &[Point]) -> ExportMetricsServiceRequest {
    let mut resources: Vec<otlp::ResourceMetrics> = Vec::new();
    let mut resource_at: HashMap<Arc<Attributes>, usize> = HashMap::new();
    let mut scope_at: HashMap<(usize, Arc<Scope>), usize> = HashMap::new();
    // Metrics of one name but different types stay apart (OTLP carries one type per metric).
    let mut metric_at: HashMap<MetricKey, usize> = HashMap::new();
    for point in points {
        let r = *resource_at.entry(point.resource.clone()).or_insert_with(|| {
            let resource = Resource { attributes: key_values(point.resource.labels()), ..Default::default() };
            resources.push(otlp::ResourceMetrics { resource: Some(resource), ..Default::default() });
            resources.len() - 1
        });
        let scopes = &mut resources[r].scope_metrics;
        let s = *scope_at.entry((r, point.scope.clone())).or_insert_with(|| {
            let scope = InstrumentationScope {
                name: point.scope.name.to_string(),
                version: point.scope.version.to_string(),
                ..Default::default()
            };
            scopes.push(otlp::ScopeMetrics { scope: Some(scope), ..Default::default() });
            scopes.len() - 1
        });
        let metrics = &mut scopes[s].metrics;
        let metric = &point.metric;
        let key = (r, s, metric.name.clone(), metric.unit.clone(), metric.kind);
        let m = *metric_at.entry(key).or_insert_with(|| {
            metrics.push(empty_metric(metric));
            metrics.len() - 1
        });
        push(&mut metrics[m], point);
    }
    ExportMetricsServiceRequest { resource_metrics: resources }
}

fn empty_metric(metric: &Metric) -> otlp::Metric {
    let data = match metric.kind {
        MetricKind::Gauge => Data::Gauge(otlp::Gauge::default()),
        MetricKind::Sum { temporality: t, monotonic } => Data::Sum(otlp::Sum {
            aggregation_temporality: temporality(t),
            is_monotonic: monotonic,
            ..Default::default()
        }),
        MetricKind::Histogram { temporality: t } => {
            Data::Histogram(otlp::Histogram { aggregation_temporality: temporality(t), ..Default::default() })
        }
        MetricKind::ExponentialHistogram { temporality: t } => Data::ExponentialHistogram(otlp::ExponentialHistogram {
            aggregation_temporality: temporality(t),
            ..Default::default()
        }),
        MetricKind::Summary => Data::Summary(otlp::Summary::default()),
    };
    otlp::Metric {
        name: metric.name.to_string(),
        description: metric.description.to_string(),
        unit: metric.unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}

fn temporality(t: Temporality) -> i32 {
    match t {
        Temporality::Delta => otlp::AggregationTemporality::Delta as i32,
        Temporality::Cumulative => otlp::AggregationTemporality::Cumulative as i32,
    }
}

/// Adds `point` to `metric`'s data points. A value whose variant does not match the metric's type
/// cannot occur (sources and processors keep them together) and is left out.
fn push(metric: &mut otlp::Metric, point: &Point) {
    let attributes = key_values(&point.labels);
    let exemplars = point.exemplars.iter().map(exemplar).collect();
    let (start, time) = (point.start_ns, point.time_ns);
    match (metric.data.as_mut(), &point.value) {
        (Some(Data::Gauge(otlp::Gauge { data_points })), Value::Number(n))
        | (Some(Data::Sum(otlp::Sum { data_points, .. })), Value::Number(n)) => {
            data_points.push(otlp::NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(otlp::number_data_point::Value::AsDouble(*n)),
                exemplars,
                flags: 0,
            })
        }
        (Some(Data::Histogram(h)), Value::Histogram(v)) => h.data_points.push(otlp::HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: v.count,
            sum: v.sum,
            bucket_counts: v.counts.clone(),
            explicit_bounds: v.bounds.to_vec(),
            exemplars,
            flags: 0,
            min: v.min,
            max: v.max,
        }),
        (Some(Data::ExponentialHistogram(h)), Value::ExponentialHistogram(v)) => {
            let buckets = |b: &Buckets| otlp::exponential_histogram_data_point::Buckets {
                offset: b.offset,
                bucket_counts: b.counts.clone(),
            };
            h.data_points.push(otlp::ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: v.count,
                sum: v.sum,
                scale: v.scale,
                zero_count: v.zero_count,
                positive: Some(buckets(&v.positive)),
                negative: Some(buckets(&v.negative)),
                flags: 0,
                exemplars,
                min: v.min,
                max: v.max,
                zero_threshold: v.zero_threshold,
            })
        }
        (Some(Data::Summary(s)), Value::Summary(v)) => s.data_points.push(otlp::SummaryDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: v.count,
            sum: v.sum,
            quantile_values: v
                .quantiles
                .iter()
                .map(|q| otlp::summary_data_point::ValueAtQuantile { quantile: q.quantile, value: q.value })
                .collect(),
            flags: 0,
        }),
        _ => {}
    }
}

fn key_values(labels: &[Label]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_string())) }),
            ..Default::default()
        })
        .collect()
}

fn exemplar(e: &Exemplar) -> otlp::Exemplar {
    otlp::Exemplar {
        filtered_attributes: key_values(&e.labels),
        time_unix_nano: e.time_ns,
        value: Some(otlp::exemplar::Value::AsDouble(e.value)),
        span_id: e.span_id.clone(),
        trace_id: e.trace_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Histogram;

    #[test]
    fn decoding_what_was_encoded_gives_the_same_points() {
        let host = |name: &str| Arc::new(Attributes::new(vec![(Arc::from("host.name"), Arc::from(name))]));
        let mut a = Point::new("requests", MetricKind::COUNTER, &[("route", "/a")], 3.0, 20);
        a.resource = host("h1");
        a.start_ns = 10;
        let mut b = Point::new("requests", MetricKind::COUNTER, &[("route", "/b")], 4.0, 20);
        b.resource = host("h2");
        let mut c = Point::of(
            Arc::new(Metric::new("latency", MetricKind::Histogram { temporality: Temporality::Delta })),
            vec![],
            Value::Histogram(Box::new(Histogram::of_counts(&[1.0, 5.0], &[1, 2, 3], Some(40.0)))),
            20,
        );
        c.resource = host("h1");
        c.scope = Arc::new(Scope::new("lib", "1.0"));
        let mut d = Point::new("temp", MetricKind::Gauge, &[("room", "k")], 21.5, 20);
        d.resource = host("h1");
        let points = vec![a, b, c, d];
        let encoded = request(&points);
        assert_eq!(encoded.resource_metrics.len(), 2, "one entry per resource");
        assert_eq!(encoded.resource_metrics[0].scope_metrics.len(), 2, "h1 has two scopes");
        let decoded = super::super::decode::decode(encoded, false);
        assert_eq!(decoded.rejected, 0);
        let sort = |mut p: Vec<Point>| {
            p.sort_by_key(|p| (p.name().to_string(), p.resource.fingerprint()));
            p
        };
        assert_eq!(sort(decoded.points), sort(points));
    }
}
