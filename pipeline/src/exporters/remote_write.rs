//! `prometheusremotewrite`: sends each flush's output to a Prometheus remote-write 1.0 endpoint (a
//! `WriteRequest` in protobuf, Snappy block-compressed), translated as in [`crate::prom`].
//!
//! Requests go through the [`delivery`](super::delivery) queue: a 5xx or 429 answer (or no answer) is
//! retried with backoff, other 4xx answers are final, a full queue drops the oldest, all counted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;
use serde::Deserialize;

use super::delivery::{self, DeliveryCounters, DeliveryQueue, Failure, Limits, Transport};
use super::Exporter;
use crate::model::Point;
use crate::prom;
use crate::Problem;

use crate::prom::wire::{self, WriteRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// `http(s)://host:port/api/v1/write`.
    pub endpoint: String,
    /// Extra request headers (an `Authorization`, a tenant id).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Requests waiting to be sent, at most.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Tries per request before it is dropped.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_timeout_secs() -> u64 {
    10
}

fn default_max_queue() -> usize {
    100
}

fn default_max_attempts() -> u32 {
    5
}

impl RemoteWriteConfig {
    pub fn check(&self, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let url = reqwest::Url::parse(&self.endpoint);
        if !url.as_ref().is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
            problems.push(Problem::new(
                &format!("{path}.endpoint"),
                format!("'{}' is not an http(s) URL like http://127.0.0.1:9090/api/v1/write", self.endpoint),
            ));
        }
        problems.extend(delivery::check_headers(&self.headers, path));
        for (field, value) in [("timeout_secs", self.timeout_secs), ("max_queue", self.max_queue as u64)] {
            if value == 0 {
                problems.push(Problem::new(&format!("{path}.{field}"), "must be ≥ 1"));
            }
        }
        if self.max_attempts == 0 {
            problems.push(Problem::new(&format!("{path}.max_attempts"), "must be ≥ 1"));
        }
        problems
    }
}

pub struct RemoteWriteExporter {
    queue: DeliveryQueue<Vec<u8>>,
}

/// POSTs Snappy-compressed `WriteRequest`s.
struct RemoteWriteHttp {
    client: reqwest::Client,
    endpoint: String,
}

impl Transport for RemoteWriteHttp {
    type Request = Vec<u8>;

    async fn send(&self, body: &Vec<u8>) -> Result<(), Failure> {
        let answer = self
            .client
            .post(&self.endpoint)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone())
            .send()
            .await;
        delivery::judge_http_answer(answer, &self.endpoint, |status| {
            status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        })
        .await
    }
}

impl RemoteWriteExporter {
    /// Starts the sending task; needs a tokio runtime.
    pub fn start(config: RemoteWriteConfig) -> Result<RemoteWriteExporter, String> {
        let client = delivery::http_client(Duration::from_secs(config.timeout_secs), &config.headers)?;
        let limits = Limits { max_queue: config.max_queue, max_attempts: config.max_attempts };
        let transport = RemoteWriteHttp { client, endpoint: config.endpoint };
        Ok(RemoteWriteExporter { queue: DeliveryQueue::start("prometheusremotewrite", transport, limits) })
    }

    pub fn counters(&self) -> &DeliveryCounters {
        self.queue.counters()
    }

    /// Requests waiting to be sent.
    pub fn queue_depth(&self) -> usize {
        self.queue.depth()
    }
}

impl Exporter for RemoteWriteExporter {
    fn take_undelivered(&mut self) -> u64 {
        self.queue.take_undelivered()
    }

    fn delivery(&self) -> Option<(&DeliveryCounters, usize)> {
        Some((self.counters(), self.queue_depth()))
    }

    fn export(&mut self, batch: &[Point]) -> Result<(), String> {
        let (request, unrepresentable) = write_request(batch);
        self.counters().unrepresentable_points.fetch_add(unrepresentable, Ordering::Relaxed);
        let samples = request.timeseries.iter().map(|t| t.samples.len() as u64).sum();
        if samples == 0 {
            return Ok(());
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| format!("cannot compress the remote-write request: {e}"))?;
        self.queue.push(body, samples)
    }
}

/// A batch as a `WriteRequest` (one time series per Prometheus series, samples in time order), and how
/// many points could not be represented.
pub fn write_request(batch: &[Point]) -> (WriteRequest, u64) {
    // Series in the order first met (Prometheus needs no order between series, only within one), found
    // again by a hash of their labels.
    let mut index: rustc_hash::FxHashMap<u64, usize> = Default::default();
    let mut series: Vec<(prom::assemble::LabelPairs, Vec<wire::Sample>)> = Vec::with_capacity(batch.len());
    let mut unrepresentable = 0;
    for point in batch {
        let samples = prom::samples(point);
        if samples.is_empty() {
            unrepresentable += 1;
        }
        for sample in samples {
            let mut labels = sample.labels;
            prom::set_label(&mut labels, "__name__", sample.name);
            let value = wire::Sample { value: sample.value, timestamp: sample.time_ms };
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut hasher = rustc_hash::FxHasher::default();
                labels.hash(&mut hasher);
                hasher.finish()
            };
            match index.get(&hash) {
                Some(&at) if series[at].0 == labels => series[at].1.push(value),
                // Two label sets of one hash (all but impossible) become two series entries, which
                // remote write accepts.
                _ => {
                    index.insert(hash, series.len());
                    series.push((labels, vec![value]));
                }
            }
        }
    }
    let timeseries = series
        .into_iter()
        .map(|(labels, mut samples)| {
            if samples.len() > 1 {
                samples.sort_by_key(|s| s.timestamp);
            }
            let labels = labels.into_iter().map(|(name, value)| wire::Label { name, value }).collect();
            wire::TimeSeries { labels, samples }
        })
        .collect();
    (WriteRequest { timeseries, metadata: Vec::new() }, unrepresentable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, Point, Temporality};

    #[test]
    fn a_batch_becomes_one_time_series_per_prometheus_series_with_sorted_labels() {
        let batch = vec![
            Point::new("http.requests", MetricKind::COUNTER, &[("route", "/a"), ("Code", "200")], 3.0, 2_000_000),
            Point::new("http.requests", MetricKind::COUNTER, &[("route", "/a"), ("Code", "200")], 5.0, 1_000_000),
            Point::new("d", MetricKind::Sum { temporality: Temporality::Delta, monotonic: true }, &[], 1.0, 0),
        ];
        let (request, unrepresentable) = write_request(&batch);
        assert_eq!(unrepresentable, 1, "the delta");
        assert_eq!(request.timeseries.len(), 1);
        let names: Vec<&str> = request.timeseries[0].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Code", "__name__", "route"], "sorted by name, as Prometheus requires");
        assert_eq!(request.timeseries[0].labels[1].value, "http_requests_total");
        let times: Vec<i64> = request.timeseries[0].samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [1, 2], "in time order");
    }

    #[tokio::test]
    async fn what_cannot_be_delivered_is_counted_once() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = format!("endpoint: http://127.0.0.1:{port}/api/v1/write\nmax_attempts: 1\ntimeout_secs: 2");
        let mut exporter = RemoteWriteExporter::start(serde_yaml_ng::from_str(&config).expect("yaml")).expect("start");
        let batch = vec![
            Point::new("a", MetricKind::Gauge, &[("k", "1")], 1.0, 1),
            Point::new("a", MetricKind::Gauge, &[("k", "2")], 2.0, 1),
            Point::new("d", MetricKind::Sum { temporality: Temporality::Delta, monotonic: true }, &[], 1.0, 0),
        ];
        exporter.export(&batch).expect("queued, never blocked");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exporter.counters().dropped_requests.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "nobody listens: the request is dropped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(exporter.take_undelivered(), 3, "two samples of the dropped request and the delta");
        assert_eq!(exporter.take_undelivered(), 0, "each is reported once");
        assert!(exporter.counters().last_error.lock().expect("lock").is_some());
    }

    #[tokio::test]
    async fn a_dropped_exporter_still_delivers_what_it_had_queued() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (delivered, mut received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and the body its Content-Length announces, then answer 200.
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if n == 0 || request.len() >= head_end + 4 + length {
                        break;
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                let _ = delivered.send(request.len());
            }
        });
        let config = format!("endpoint: http://127.0.0.1:{port}/api/v1/write");
        let mut exporter = RemoteWriteExporter::start(serde_yaml_ng::from_str(&config).expect("yaml")).expect("start");
        exporter.export(&[Point::new("a", MetricKind::Gauge, &[], 1.0, 1)]).expect("queued");
        drop(exporter);
        let got = tokio::time::timeout(Duration::from_secs(10), received.recv()).await;
        assert!(matches!(got, Ok(Some(bytes)) if bytes > 0), "the queued request was sent after the drop");
    }

    #[test]
    fn bad_settings_are_problems() {
        let config: RemoteWriteConfig =
            serde_yaml_ng::from_str("endpoint: ftp://x\nheaders: {\"bad name\": v}\nmax_queue: 0").expect("yaml");
        let paths: Vec<String> = config.check("e").into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["e.endpoint", "e.headers.bad name", "e.max_queue"]);
    }
}
