//! The `prometheus_remote_write` receiver: takes Prometheus remote write 1.0 (`POST /api/v1/write`, a
//! Snappy block-compressed protobuf `WriteRequest`), so Phoenix can sit between a Prometheus and its
//! backend. Samples become points as in [`crate::prom::assemble`]; the families' types come from the
//! metadata Prometheus sends in requests of their own (remembered, bounded), else from naming conventions.
//!
//! Answers as remote-write senders expect: 204 when taken; 400 for a body that does not decode (not
//! retried); 413 over the size limit; 415 for another content type or encoding; 503 with `Retry-After`
//! when the pipeline's buffer is full (retried).
//!
//! ```yaml
//! receivers:
//!   prometheus_remote_write: {endpoint: 127.0.0.1:19291}
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prost::Message;
use serde::Deserialize;

use super::buffer::{PointBuffer, ReceiverCounters};
use super::Source;
use crate::model::Batch;
use crate::processors::memory_limiter::MemoryGate;
use crate::prom::assemble::{assemble, FamilyType, FlatSample};
use crate::prom::wire::{MetricType, WriteRequest};
use crate::Problem;

/// Where it listens when the config does not say (Thanos Receive's remote-write port; loopback).
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:19291";
/// The compressed body limit.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;
/// Families whose metadata is remembered, at most (a sender cannot make the agent grow by naming more).
const MAX_REMEMBERED_FAMILIES: usize = 100_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteReceiverConfig {
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default = "default_max_buffered_points")]
    pub max_buffered_points: usize,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

fn default_max_buffered_points() -> usize {
    1_000_000
}

impl RemoteWriteReceiverConfig {
    pub fn check(&self, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.endpoint.parse::<std::net::SocketAddr>().is_err() {
            problems.push(Problem::new(
                &format!("{path}.endpoint"),
                format!("'{}' is not an address like {DEFAULT_ENDPOINT}", self.endpoint),
            ));
        }
        for (field, value) in
            [("max_request_bytes", self.max_request_bytes), ("max_buffered_points", self.max_buffered_points)]
        {
            if value == 0 {
                problems.push(Problem::new(&format!("{path}.{field}"), "must be ≥ 1"));
            }
        }
        problems
    }
}

/// What the connections share.
struct Shared {
    buffer: PointBuffer,
    max_request_bytes: usize,
    /// Replaced whole when metadata arrives (rarely), so a request reads it without copying it.
    types: Mutex<Arc<HashMap<String, FamilyType>>>,
}

pub struct RemoteWriteSource {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    /// Where it listens (the port the OS chose when the config said 0).
    pub addr: std::net::SocketAddr,
}

impl RemoteWriteSource {
    /// Binds and starts serving; needs a tokio runtime.
    pub fn start(config: RemoteWriteReceiverConfig, path: &str) -> Result<RemoteWriteSource, Vec<Problem>> {
        let problems = config.check(path);
        if !problems.is_empty() {
            return Err(problems);
        }
        let at = format!("{path}.endpoint");
        let listener = crate::net::listen(&config.endpoint).map_err(|e| vec![Problem::new(&at, e)])?;
        let addr = listener.local_addr().map_err(|e| vec![Problem::new(&at, e.to_string())])?;
        tracing::info!(receiver = path, address = %addr, "Prometheus remote-write receiver listening");
        let shared = Arc::new(Shared {
            buffer: PointBuffer::new(config.max_buffered_points),
            max_request_bytes: config.max_request_bytes,
            types: Mutex::new(Arc::new(HashMap::new())),
        });
        let served = shared.clone();
        let server = crate::net::serve_http1(listener, move |request| {
            let shared = served.clone();
            async move { handle(request, &shared).await }
        });
        Ok(RemoteWriteSource { shared, server, addr })
    }

    pub fn counters(&self) -> &ReceiverCounters {
        &self.shared.buffer.counters
    }
}

impl Drop for RemoteWriteSource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Source for RemoteWriteSource {
    fn collect(&mut self, _now_ms: i64) -> Batch {
        self.take_pending()
    }

    fn receiver_counts(&self) -> Option<crate::sources::buffer::ReceiverCounts> {
        Some(self.shared.buffer.counters.snapshot())
    }

    fn take_pending(&mut self) -> Batch {
        self.shared.buffer.drain()
    }

    fn limit_memory(&mut self, gate: Arc<MemoryGate>) {
        self.shared.buffer.limit_memory(gate);
    }
}

async fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let answer = write(request, shared).await;
    if !answer.status().is_success() {
        shared.buffer.refused();
    }
    answer
}

async fn write(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if request.uri().path() != "/api/v1/write" {
        return plain(StatusCode::NOT_FOUND, "this receiver takes remote write on /api/v1/write");
    }
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST a remote-write request");
    }
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let content_type = header(hyper::header::CONTENT_TYPE);
    if !content_type.starts_with("application/x-protobuf") {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "remote write is application/x-protobuf");
    }
    if content_type.contains("io.prometheus.write.v2") {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "remote write 2.0 is not supported; send 1.0");
    }
    if header(hyper::header::CONTENT_ENCODING) != "snappy" {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "remote write bodies are snappy-compressed");
    }
    let limit = shared.max_request_bytes;
    let Some(body) = crate::net::body_within(request, limit).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, &format!("the body is over {limit} bytes"));
    };
    let request = match decode_body(&body, limit) {
        Ok(request) => request,
        Err((code, why)) => return plain(code, &why),
    };
    let samples = take_metadata_and_flatten(request, shared);
    let assembled = {
        let types = shared.types.lock().map(|t| Arc::clone(&t)).unwrap_or_default();
        assemble(samples, &|name| types.get(name).copied())
    };
    match shared.buffer.push(assembled.points, assembled.rejected) {
        Ok(()) => respond(StatusCode::NO_CONTENT, Vec::new()),
        Err(refusal) => {
            let mut answer = plain(StatusCode::SERVICE_UNAVAILABLE, refusal.message());
            answer.headers_mut().insert(hyper::header::RETRY_AFTER, "1".parse().expect("static header"));
            answer
        }
    }
}

/// Inflates and decodes a body; the inflated size is bounded too (8 times the body limit), so a small
/// body that claims a huge size is refused before any memory is taken for it.
pub fn decode_body(body: &[u8], limit: usize) -> Result<WriteRequest, (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let inflated = snap::raw::decompress_len(body).map_err(|e| bad(format!("not snappy: {e}")))?;
    if inflated > limit.saturating_mul(8) {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("the body inflates to {inflated} bytes")));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| bad(format!("not snappy: {e}")))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| bad(format!("not a WriteRequest: {e}")))
}

/// Remembers the request's metadata and returns its samples.
fn take_metadata_and_flatten(request: WriteRequest, shared: &Shared) -> Vec<FlatSample> {
    let (samples, declared) = read(request);
    if declared.is_empty() {
        return samples;
    }
    if let Ok(mut types) = shared.types.lock() {
        let mut updated = HashMap::clone(&types);
        for (family, kind) in declared {
            if updated.len() < MAX_REMEMBERED_FAMILIES || updated.contains_key(&family) {
                updated.insert(family, kind);
            }
        }
        *types = Arc::new(updated);
    }
    samples
}

/// A request's samples, and the family types its metadata declares.
pub fn read(request: WriteRequest) -> (Vec<FlatSample>, Vec<(String, FamilyType)>) {
    let declared = request
        .metadata
        .into_iter()
        .map(|metadata| {
            let kind = match MetricType::try_from(metadata.r#type) {
                Ok(MetricType::Counter) => FamilyType::Counter,
                Ok(MetricType::Gauge) => FamilyType::Gauge,
                Ok(MetricType::Histogram) => FamilyType::Histogram,
                Ok(MetricType::Summary) => FamilyType::Summary,
                _ => FamilyType::Untyped,
            };
            (metadata.metric_family_name, kind)
        })
        .collect();
    let mut samples = Vec::new();
    for series in request.timeseries {
        let mut name = String::new();
        let mut labels = Vec::with_capacity(series.labels.len());
        for label in series.labels {
            if label.name == "__name__" {
                name = label.value;
            } else {
                labels.push((label.name, label.value));
            }
        }
        if name.is_empty() {
            continue;
        }
        for sample in series.samples {
            samples.push(FlatSample {
                name: name.clone(),
                labels: labels.clone(),
                value: sample.value,
                time_ms: sample.timestamp,
            });
        }
    }
    (samples, declared)
}

fn plain(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut answer = respond(code, format!("{message}\n").into_bytes());
    answer.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("static"));
    answer
}

fn respond(code: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = code;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporters::remote_write::write_request;
    use crate::model::{MetricKind, Point};

    fn receiver(max_buffered_points: usize) -> RemoteWriteSource {
        let config =
            RemoteWriteReceiverConfig { endpoint: "127.0.0.1:0".into(), max_request_bytes: 4096, max_buffered_points };
        RemoteWriteSource::start(config, "receivers.prometheus_remote_write").expect("start")
    }

    async fn post(source: &RemoteWriteSource, content_type: &str, encoding: &str, body: Vec<u8>) -> u16 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/write", source.addr))
            .header("Content-Type", content_type)
            .header("Content-Encoding", encoding)
            .body(body)
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16()
    }

    fn snappy(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).expect("snappy")
    }

    #[tokio::test]
    async fn what_our_exporter_writes_comes_back_as_the_same_series() {
        let mut source = receiver(100);
        let batch = vec![
            Point::new("jobs", MetricKind::COUNTER, &[("queue", "a")], 3.0, 5_000_000),
            Point::new("temp", MetricKind::Gauge, &[("room", "k")], 21.0, 5_000_000),
        ];
        let (request, _) = write_request(&batch);
        assert_eq!(post(&source, "application/x-protobuf", "snappy", snappy(&request)).await, 204);
        let got = source.collect(0);
        let summary: Vec<(&str, &str, f64)> = got.iter().map(|p| (p.name(), p.kind().name(), p.number())).collect();
        assert_eq!(summary, [("jobs_total", "sum", 3.0), ("temp", "gauge", 21.0)]);
        assert_eq!(got[0].time_ns, 5_000_000);
    }

    #[tokio::test]
    async fn bad_requests_get_clear_answers_and_are_counted() {
        let source = receiver(1);
        assert_eq!(post(&source, "text/plain", "snappy", vec![1]).await, 415);
        assert_eq!(post(&source, "application/x-protobuf", "gzip", vec![1]).await, 415);
        assert_eq!(post(&source, "application/x-protobuf", "snappy", vec![0xff; 10]).await, 400);
        assert_eq!(post(&source, "application/x-protobuf", "snappy", vec![0; 8192]).await, 413);
        // A small body whose header claims it inflates to 1 GiB: refused before anything is allocated.
        let bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x00];
        assert_eq!(snap::raw::decompress_len(&bomb).expect("a snappy header"), 1 << 30);
        assert_eq!(post(&source, "application/x-protobuf", "snappy", bomb).await, 413);
        let two = write_request(&[
            Point::new("a", MetricKind::Gauge, &[("k", "1")], 1.0, 1),
            Point::new("a", MetricKind::Gauge, &[("k", "2")], 1.0, 1),
        ])
        .0;
        assert_eq!(post(&source, "application/x-protobuf", "snappy", snappy(&two)).await, 503, "over the buffer");
        assert_eq!(source.counters().refused_requests.load(std::sync::atomic::Ordering::Relaxed), 6);
    }
}
