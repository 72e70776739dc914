//! The `otlp` receiver: OpenTelemetry's protocol, metrics signal. Points received between two flushes
//! wait in a bounded buffer that the pipeline drains at each flush; a full buffer refuses new requests
//! (the sender retries), so a stalled pipeline can never make the agent grow without bound.
//!
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       http: {endpoint: 127.0.0.1:4318}
//! ```

pub mod decode;
pub mod http;

use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::model::Batch;
use crate::sources::Source;
use crate::Problem;

/// Where OTLP/HTTP listens when the config does not say (loopback: nothing outside the host can send
/// unless the config opens it).
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:4318";
/// The OTLP request body limit, compressed or not.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Points waiting for the next flush, at most.
pub const DEFAULT_MAX_BUFFERED_POINTS: usize = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    #[serde(default)]
    pub protocols: Protocols,
    /// Keep the points' exemplars (dropped by default: they are not series, and cost memory).
    #[serde(default)]
    pub keep_exemplars: bool,
    #[serde(default = "default_max_buffered_points")]
    pub max_buffered_points: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    pub http: Option<HttpConfig>,
    /// OTLP/gRPC: refused with a problem until it is implemented (never silently ignored).
    pub grpc: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

fn default_http_endpoint() -> String {
    DEFAULT_HTTP_ENDPOINT.to_string()
}

fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

fn default_max_buffered_points() -> usize {
    DEFAULT_MAX_BUFFERED_POINTS
}

impl OtlpConfig {
    /// The problems of a config, without binding anything.
    pub fn check(&self, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.protocols.grpc.is_some() {
            problems.push(Problem::new(
                &format!("{path}.protocols.grpc"),
                "OTLP/gRPC is not available in this version; use protocols.http (OTLP/HTTP, port 4318)",
            ));
        }
        match &self.protocols.http {
            None if self.protocols.grpc.is_none() => {
                problems.push(Problem::new(&format!("{path}.protocols"), "name at least one protocol: http"))
            }
            Some(http) => {
                if http.endpoint.parse::<std::net::SocketAddr>().is_err() {
                    problems.push(Problem::new(
                        &format!("{path}.protocols.http.endpoint"),
                        format!("'{}' is not an address like {DEFAULT_HTTP_ENDPOINT}", http.endpoint),
                    ));
                }
                if http.max_request_bytes == 0 {
                    problems.push(Problem::new(&format!("{path}.protocols.http.max_request_bytes"), "must be ≥ 1"));
                }
            }
            None => {}
        }
        if self.max_buffered_points == 0 {
            problems.push(Problem::new(&format!("{path}.max_buffered_points"), "must be ≥ 1"));
        }
        problems
    }
}

/// The receiver as a pipeline source: its servers fill the buffer, each flush drains it.
pub struct OtlpSource {
    shared: Arc<http::Shared>,
    server: tokio::task::JoinHandle<()>,
    /// Where it listens (the port the OS chose when the config said 0).
    pub http_addr: std::net::SocketAddr,
}

impl OtlpSource {
    /// Binds and starts serving; needs a tokio runtime.
    pub fn start(config: OtlpConfig, path: &str) -> Result<OtlpSource, Vec<Problem>> {
        let problems = config.check(path);
        if !problems.is_empty() {
            return Err(problems);
        }
        let Some(http_config) = config.protocols.http else {
            return Err(vec![Problem::new(&format!("{path}.protocols"), "name at least one protocol: http")]);
        };
        let listener = crate::net::listen(&http_config.endpoint).map_err(|e| vec![Problem::new(path, e)])?;
        let http_addr = listener.local_addr().map_err(|e| vec![Problem::new(path, e.to_string())])?;
        tracing::info!(receiver = path, address = %http_addr, "OTLP/HTTP receiver listening");
        let shared = Arc::new(http::Shared {
            buffer: Mutex::new(Vec::new()),
            max_buffered_points: config.max_buffered_points,
            max_request_bytes: http_config.max_request_bytes,
            keep_exemplars: config.keep_exemplars,
            counters: http::ReceiverCounters::default(),
        });
        let server = http::serve(listener, shared.clone());
        Ok(OtlpSource { shared, server, http_addr })
    }

    pub fn counters(&self) -> &http::ReceiverCounters {
        &self.shared.counters
    }
}

impl Drop for OtlpSource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Source for OtlpSource {
    fn collect(&mut self, _now_ms: i64) -> Batch {
        self.take_pending()
    }

    fn take_pending(&mut self) -> Batch {
        self.shared.buffer.lock().map(|mut buffer| std::mem::take(&mut *buffer)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use prost::Message;

    use super::*;

    fn receiver(max_request_bytes: usize, max_buffered_points: usize) -> OtlpSource {
        let config = OtlpConfig {
            protocols: Protocols {
                http: Some(HttpConfig { endpoint: "127.0.0.1:0".into(), max_request_bytes }),
                grpc: None,
            },
            keep_exemplars: false,
            max_buffered_points,
        };
        OtlpSource::start(config, "receivers.otlp").expect("start")
    }

    fn gauge_request(values: &[f64]) -> ExportMetricsServiceRequest {
        let data_points = values
            .iter()
            .map(|v| NumberDataPoint {
                value: Some(number_data_point::Value::AsDouble(*v)),
                time_unix_nano: 1,
                ..Default::default()
            })
            .collect();
        let metric =
            Metric { name: "temp".into(), data: Some(Data::Gauge(Gauge { data_points })), ..Default::default() };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![metric], ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    async fn post(source: &OtlpSource, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/v1/metrics", source.http_addr))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("Content-Encoding", encoding);
        }
        let answer = request.send().await.expect("answer");
        (answer.status().as_u16(), answer.bytes().await.expect("body").to_vec())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[tokio::test]
    async fn protobuf_json_and_gzip_are_accepted_and_nan_is_a_partial_success() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut source = receiver(DEFAULT_MAX_REQUEST_BYTES, 1000);
        let (status, body) =
            post(&source, "application/x-protobuf", None, gauge_request(&[1.0, f64::NAN]).encode_to_vec()).await;
        assert_eq!(status, 200);
        let answer = ExportMetricsServiceResponse::decode(body.as_slice()).expect("a response message");
        let partial = answer.partial_success.expect("partial success");
        assert_eq!(partial.rejected_data_points, 1);
        assert!(partial.error_message.contains("NaN"), "{}", partial.error_message);
        let json = serde_json::to_vec(&gauge_request(&[2.0])).expect("json");
        assert_eq!(post(&source, "application/json", None, json).await.0, 200);
        let zipped = gzip(&gauge_request(&[3.0]).encode_to_vec());
        assert_eq!(post(&source, "application/x-protobuf", Some("gzip"), zipped).await.0, 200);
        let values: Vec<f64> = source.collect(0).iter().map(|p| p.number()).collect();
        assert_eq!(values, [1.0, 2.0, 3.0]);
        assert!(source.collect(0).is_empty(), "a flush drains the buffer");
        assert_eq!(source.counters().rejected_points.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn bad_requests_get_clear_answers_and_are_counted() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let source = receiver(4096, 2);
        assert_eq!(post(&source, "text/plain", None, b"x".to_vec()).await.0, 415);
        let (status, body) = post(&source, "application/x-protobuf", None, vec![0xff, 0xff, 0xff]).await;
        assert_eq!(status, 400);
        let status_message = super::http::tests_support::decode_status(&body);
        assert!(status_message.contains("not an ExportMetricsServiceRequest"), "{status_message}");
        assert_eq!(post(&source, "application/x-protobuf", None, vec![0; 8192]).await.0, 413);
        // A gzip bomb: a small body that inflates past the limit stops at the limit.
        let bomb = gzip(&vec![0; 2 << 20]);
        assert!(bomb.len() < 4096, "small enough to pass the body limit: {}", bomb.len());
        assert_eq!(post(&source, "application/x-protobuf", Some("gzip"), bomb).await.0, 413);
        assert_eq!(post(&source, "application/x-protobuf", Some("br"), vec![1]).await.0, 415);
        // The buffer holds two points: a third is refused whole, with a retry hint.
        assert_eq!(
            post(&source, "application/x-protobuf", None, gauge_request(&[1.0, 2.0]).encode_to_vec()).await.0,
            200
        );
        assert_eq!(post(&source, "application/x-protobuf", None, gauge_request(&[3.0]).encode_to_vec()).await.0, 503);
        assert_eq!(source.counters().refused_requests.load(std::sync::atomic::Ordering::Relaxed), 6);
    }

    #[test]
    fn grpc_is_refused_with_a_problem_rather_than_ignored() {
        let config: OtlpConfig = serde_yaml_ng::from_str("protocols: {grpc: {}}").expect("yaml");
        let problems = config.check("receivers.otlp");
        assert_eq!(problems[0].path, "receivers.otlp.protocols.grpc");
    }
}
