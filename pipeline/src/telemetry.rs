//! A running pipeline's own telemetry: what each receiver took and refused, what each exporter sent,
//! dropped and still holds, and the last interval's measurement — as points, so the agent serves them
//! on its metrics endpoint with the same exposition as any `prometheus` exporter.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::engine::IntervalStats;
use crate::exporters::delivery::DeliveryCounters;
use crate::model::{Metric, MetricKind, Point};
use crate::sources::buffer::ReceiverCounts;

/// One receiver's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverTelemetry {
    /// Its id in the config (`otlp`, `prometheus/app`).
    pub id: String,
    pub accepted_points: u64,
    pub rejected_points: u64,
    pub refused_requests: u64,
}

impl ReceiverTelemetry {
    pub fn of(id: &str, counts: ReceiverCounts) -> ReceiverTelemetry {
        ReceiverTelemetry {
            id: id.to_string(),
            accepted_points: counts.accepted_points,
            rejected_points: counts.rejected_points,
            refused_requests: counts.refused_requests,
        }
    }
}

/// One exporter's counts and queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterTelemetry {
    pub id: String,
    pub sent_requests: u64,
    pub sent_points: u64,
    pub dropped_requests: u64,
    pub dropped_points: u64,
    pub unrepresentable_points: u64,
    /// Requests waiting to be sent.
    pub queue_depth: usize,
}

impl ExporterTelemetry {
    pub fn of(id: &str, counters: &DeliveryCounters, queue_depth: usize) -> ExporterTelemetry {
        ExporterTelemetry {
            id: id.to_string(),
            sent_requests: counters.sent_requests.load(Ordering::Relaxed),
            sent_points: counters.sent_points.load(Ordering::Relaxed),
            dropped_requests: counters.dropped_requests.load(Ordering::Relaxed),
            dropped_points: counters.dropped_points.load(Ordering::Relaxed),
            unrepresentable_points: counters.unrepresentable_points.load(Ordering::Relaxed),
            queue_depth,
        }
    }
}

/// Everything a pipeline counts about its receivers and exporters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub receivers: Vec<ReceiverTelemetry>,
    pub exporters: Vec<ExporterTelemetry>,
}

/// Pipeline `name`'s telemetry and last interval as points (`phoenix_agent_…`), stamped `time_ns`.
pub fn points(name: &str, telemetry: &Telemetry, last: &IntervalStats, time_ns: u64) -> Vec<Point> {
    let mut out = Vec::new();
    let mut push = |metric: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64| {
        let mut labels: Vec<(&str, &str)> = labels.to_vec();
        labels.push(("pipeline", name));
        let mut point = Point::new(metric, kind, &labels, value, time_ns);
        point.metric = Arc::new(Metric { description: description(metric).into(), ..(*point.metric).clone() });
        out.push(point);
    };
    for r in &telemetry.receivers {
        let labels = [("receiver", r.id.as_str())];
        push("phoenix_agent_receiver_accepted_points", MetricKind::COUNTER, &labels, r.accepted_points as f64);
        push("phoenix_agent_receiver_rejected_points", MetricKind::COUNTER, &labels, r.rejected_points as f64);
        push("phoenix_agent_receiver_refused_requests", MetricKind::COUNTER, &labels, r.refused_requests as f64);
    }
    for e in &telemetry.exporters {
        let labels = [("exporter", e.id.as_str())];
        push("phoenix_agent_exporter_sent_requests", MetricKind::COUNTER, &labels, e.sent_requests as f64);
        push("phoenix_agent_exporter_sent_points", MetricKind::COUNTER, &labels, e.sent_points as f64);
        push("phoenix_agent_exporter_dropped_requests", MetricKind::COUNTER, &labels, e.dropped_requests as f64);
        push("phoenix_agent_exporter_dropped_points", MetricKind::COUNTER, &labels, e.dropped_points as f64);
        push(
            "phoenix_agent_exporter_unrepresentable_points",
            MetricKind::COUNTER,
            &labels,
            e.unrepresentable_points as f64,
        );
        push("phoenix_agent_exporter_queue_depth", MetricKind::Gauge, &labels, e.queue_depth as f64);
    }
    push("phoenix_agent_pipeline_input_series", MetricKind::Gauge, &[], last.input_series as f64);
    push("phoenix_agent_pipeline_input_points", MetricKind::Gauge, &[], last.input_points as f64);
    push("phoenix_agent_pipeline_output_series", MetricKind::Gauge, &[], last.output_series as f64);
    push("phoenix_agent_pipeline_output_points", MetricKind::Gauge, &[], last.output_points as f64);
    push("phoenix_agent_pipeline_dropped_points", MetricKind::Gauge, &[], last.dropped_points as f64);
    out
}

fn description(metric: &str) -> &'static str {
    match metric.trim_start_matches("phoenix_agent_") {
        "receiver_accepted_points" => "Points a receiver took.",
        "receiver_rejected_points" => "Points left out of accepted requests (NaN values, bad histograms).",
        "receiver_refused_requests" => "Requests or scrapes refused whole (bad, too large, buffer full, memory limit).",
        "exporter_sent_requests" => "Requests an exporter delivered.",
        "exporter_sent_points" => "Points an exporter delivered.",
        "exporter_dropped_requests" => {
            "Requests dropped: refused for good, out of retries, or pushed out of a full queue."
        }
        "exporter_dropped_points" => "Points of the dropped requests.",
        "exporter_unrepresentable_points" => "Points the destination's format cannot carry (deltas for Prometheus).",
        "exporter_queue_depth" => "Requests waiting to be sent.",
        "pipeline_input_series" => "Series into the processors in the last interval.",
        "pipeline_input_points" => "Points into the processors in the last interval.",
        "pipeline_output_series" => "Series out of the processors in the last interval.",
        "pipeline_output_points" => "Points out of the processors in the last interval.",
        "pipeline_dropped_points" => "Points the processors left out in the last interval.",
        _ => "",
    }
}
