//! A load generator for the receivers: `metrics` counters, each with `values ^ labels` series (label
//! `l<j>` takes `values` distinct values), sent at `rate` points per second for `duration` over OTLP/gRPC,
//! OTLP/HTTP or remote write, in requests of `batch` points. Every series' counter grows by one each
//! time it is sent, so what arrived can be checked. Used by `phoenix loadgen` and the benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use prost::Message;

use crate::model::{Attributes, Metric, MetricKind, Point, Value};

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub metrics: usize,
    pub labels: u32,
    pub values: usize,
    /// Points per second in all; 0: as fast as the receiver takes them.
    pub rate: u64,
    pub duration: Duration,
    /// Points per request.
    pub batch: usize,
    /// `service.name` of the resource (becomes `job` in Prometheus).
    pub service: String,
}

impl LoadSpec {
    /// Series per metric: every combination of the label values.
    pub fn series_per_metric(&self) -> Result<usize, String> {
        (self.values.max(1))
            .checked_pow(self.labels)
            .filter(|&n| n <= 10_000_000)
            .ok_or_else(|| format!("{} ^ {} series per metric is over 10,000,000", self.values, self.labels))
    }
}

/// Where to send it.
#[derive(Debug, Clone)]
pub enum Target {
    /// `http://host:4317`
    OtlpGrpc(String),
    /// `http://host:4318` (metrics go to `/v1/metrics`)
    OtlpHttp(String),
    /// `http://host:19291/api/v1/write`
    RemoteWrite(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::OtlpGrpc(endpoint) => write!(f, "{endpoint} (OTLP/gRPC)"),
            Target::OtlpHttp(endpoint) => write!(f, "{endpoint} (OTLP/HTTP)"),
            Target::RemoteWrite(url) => write!(f, "{url} (remote write)"),
        }
    }
}

/// What was sent.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    pub requests: u64,
    pub points: u64,
    pub failed_requests: u64,
    /// The first failure, when there was one.
    pub first_error: Option<String>,
    pub series: u64,
    pub seconds: f64,
}

/// The series, built once: metric, labels, and the counter each is at.
struct Series {
    metrics: Vec<Arc<Metric>>,
    labels: Vec<Vec<crate::model::Label>>,
    resource: Arc<Attributes>,
    counters: Vec<f64>,
}

impl Series {
    fn new(spec: &LoadSpec) -> Result<Series, String> {
        let per_metric = spec.series_per_metric()?;
        let metrics = (0..spec.metrics)
            .map(|m| Arc::new(Metric::new(&format!("loadgen.metric{m}"), MetricKind::COUNTER)))
            .collect();
        let labels = (0..per_metric)
            .map(|s| {
                let values = (0..spec.labels).map(|j| {
                    let value = s / spec.values.max(1).pow(j) % spec.values.max(1);
                    (Arc::from(format!("l{j}").as_str()), Arc::from(format!("v{value}").as_str()))
                });
                Attributes::new(values.collect()).labels().to_vec()
            })
            .collect();
        let resource = Arc::new(Attributes::new(vec![(Arc::from("service.name"), Arc::from(spec.service.as_str()))]));
        Ok(Series { metrics, labels, resource, counters: vec![0.0; spec.metrics * per_metric] })
    }

    fn total(&self) -> usize {
        self.counters.len()
    }

    /// The points of series `from..from + n` (wrapping), each counter one higher.
    fn next_points(&mut self, from: usize, n: usize, time_ns: u64) -> Vec<Point> {
        let per_metric = self.labels.len();
        (0..n)
            .map(|i| {
                let at = (from + i) % self.total();
                self.counters[at] += 1.0;
                let metric = self.metrics[at / per_metric].clone();
                let mut point =
                    Point::of(metric, self.labels[at % per_metric].clone(), Value::Number(self.counters[at]), time_ns);
                point.resource = self.resource.clone();
                point.start_ns = 1;
                point
            })
            .collect()
    }
}

/// Sends `spec` to `target`; an unreachable target is counted in `failed_requests`, not an error.
pub async fn run(spec: &LoadSpec, target: &Target) -> Result<Sent, String> {
    let mut series = Series::new(spec)?;
    let sender = Sender::new(target).await?;
    let batch = spec.batch.max(1);
    let started = Instant::now();
    let mut sent = Sent { series: series.total() as u64, ..Sent::default() };
    let mut next = 0;
    // Points tried, delivered or not: the pace follows them, so a receiver that refuses is not hammered.
    let mut tried = 0u64;
    while started.elapsed() < spec.duration {
        if spec.rate > 0 {
            // Ahead of the rate: wait until the points tried so far are due.
            let due = Duration::from_secs_f64(tried as f64 / spec.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let now_ns = crate::model::millis_to_nanos(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
        );
        let points = series.next_points(next, batch, now_ns);
        next = (next + batch) % series.total();
        sent.requests += 1;
        tried += points.len() as u64;
        match sender.send(&points).await {
            Ok(()) => sent.points += points.len() as u64,
            Err(why) => {
                sent.failed_requests += 1;
                sent.first_error.get_or_insert(why);
                // Nobody listening, or a refusal: a pause before the next try, whatever the rate.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    sent.seconds = started.elapsed().as_secs_f64();
    Ok(sent)
}

enum Sender {
    Grpc(MetricsServiceClient<tonic::transport::Channel>),
    Http { client: reqwest::Client, url: String, remote_write: bool },
}

impl Sender {
    async fn new(target: &Target) -> Result<Sender, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = || reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string());
        Ok(match target {
            Target::OtlpGrpc(endpoint) => {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| format!("'{endpoint}' is not a gRPC endpoint: {e}"))?
                    .connect_lazy();
                Sender::Grpc(MetricsServiceClient::new(channel).max_decoding_message_size(64 << 20))
            }
            Target::OtlpHttp(endpoint) => Sender::Http {
                client: client()?,
                url: format!("{}/v1/metrics", endpoint.trim_end_matches('/')),
                remote_write: false,
            },
            Target::RemoteWrite(url) => Sender::Http { client: client()?, url: url.clone(), remote_write: true },
        })
    }

    async fn send(&self, points: &[Point]) -> Result<(), String> {
        match self {
            Sender::Grpc(client) => client
                .clone()
                .export(crate::otlp::encode::request(points))
                .await
                .map(|_| ())
                .map_err(|status| format!("{:?}: {}", status.code(), status.message())),
            Sender::Http { client, url, remote_write } => {
                let request = if *remote_write {
                    let body = crate::exporters::remote_write::write_request(points).0.encode_to_vec();
                    let body = snap::raw::Encoder::new().compress_vec(&body).map_err(|e| e.to_string())?;
                    client
                        .post(url)
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body)
                } else {
                    let body = crate::otlp::encode::request(points).encode_to_vec();
                    client.post(url).header("Content-Type", "application/x-protobuf").body(body)
                };
                let answer = request.send().await.map_err(|e| e.to_string())?;
                if answer.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("{url} answered {}", answer.status()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{GrpcConfig, OtlpConfig, OtlpSource, Protocols};
    use crate::sources::Source;

    #[tokio::test]
    async fn what_it_sends_arrives_series_by_series() {
        let config = OtlpConfig {
            protocols: Protocols {
                grpc: Some(GrpcConfig { endpoint: "127.0.0.1:0".into(), ..Default::default() }),
                http: None,
            },
            keep_exemplars: false,
            max_buffered_points: 1_000_000,
        };
        let mut receiver = OtlpSource::start(config, "r").expect("receiver");
        let spec = LoadSpec {
            metrics: 2,
            labels: 2,
            values: 3,
            rate: 0,
            duration: Duration::from_millis(200),
            batch: 5,
            service: "load".into(),
        };
        let target = Target::OtlpGrpc(format!("http://{}", receiver.grpc_addr.expect("grpc")));
        let sent = run(&spec, &target).await.expect("ran");
        assert_eq!(sent.series, 18, "2 metrics x 3^2");
        assert_eq!(sent.failed_requests, 0, "{:?}", sent.first_error);
        let received = receiver.collect(0);
        assert_eq!(received.len() as u64, sent.points);
        let distinct = crate::model::series_count(&received);
        assert_eq!(distinct as u64, sent.series.min(sent.points));
        assert!(received
            .iter()
            .all(|p| p.label("l1").is_some() && p.label("service.name").map(|v| &**v) == Some("load")));
    }
}
