//! The `otlp` receiver: OpenTelemetry's protocol, metrics signal, over gRPC and HTTP. Points received
//! between two flushes wait in a bounded buffer that the pipeline drains at each flush; a full buffer
//! refuses new requests (the sender retries), so a stalled pipeline can never make the agent grow
//! without bound.
//!
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc: {endpoint: 127.0.0.1:4317}
//!       http:                              # empty: the defaults (127.0.0.1:4318)
//! ```

pub mod decode;
pub mod encode;
pub mod grpc;
pub mod http;
pub mod intake;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::model::Batch;
pub use crate::sources::buffer::ReceiverCounters;
use crate::sources::Source;
use crate::Problem;

/// Where OTLP/gRPC listens when the config does not say (loopback: nothing outside the host can send
/// unless the config opens it).
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:4317";
/// Where OTLP/HTTP listens when the config does not say.
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

/// The transports to serve. A protocol named with no settings (`http:`, as Collector configs write it)
/// is served with its defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "named_with_defaults")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "named_with_defaults")]
    pub http: Option<HttpConfig>,
}

/// A present key is a protocol to serve, with its defaults when it has no value.
fn named_with_defaults<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(deserializer)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// The largest message taken, in MiB (the Collector's name for it).
    #[serde(default = "default_max_recv_msg_size_mib")]
    pub max_recv_msg_size_mib: usize,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig { endpoint: default_grpc_endpoint(), max_recv_msg_size_mib: default_max_recv_msg_size_mib() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { endpoint: default_http_endpoint(), max_request_bytes: default_max_request_bytes() }
    }
}

fn default_grpc_endpoint() -> String {
    DEFAULT_GRPC_ENDPOINT.to_string()
}

fn default_max_recv_msg_size_mib() -> usize {
    DEFAULT_MAX_REQUEST_BYTES >> 20
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
        if self.protocols.grpc.is_none() && self.protocols.http.is_none() {
            problems.push(Problem::new(&format!("{path}.protocols"), "name at least one protocol: grpc or http"));
        }
        let mut endpoint = |protocol: &str, endpoint: &str, default: &str| {
            if endpoint.parse::<SocketAddr>().is_err() {
                problems.push(Problem::new(
                    &format!("{path}.protocols.{protocol}.endpoint"),
                    format!("'{endpoint}' is not an address like {default}"),
                ));
            }
        };
        if let Some(grpc) = &self.protocols.grpc {
            endpoint("grpc", &grpc.endpoint, DEFAULT_GRPC_ENDPOINT);
        }
        if let Some(http) = &self.protocols.http {
            endpoint("http", &http.endpoint, DEFAULT_HTTP_ENDPOINT);
        }
        let limits = [
            ("protocols.grpc.max_recv_msg_size_mib", self.protocols.grpc.as_ref().map(|g| g.max_recv_msg_size_mib)),
            ("protocols.http.max_request_bytes", self.protocols.http.as_ref().map(|h| h.max_request_bytes)),
            ("max_buffered_points", Some(self.max_buffered_points)),
        ];
        for (field, value) in limits {
            if value == Some(0) {
                problems.push(Problem::new(&format!("{path}.{field}"), "must be ≥ 1"));
            }
        }
        problems
    }

    /// The addresses it would listen on, with the path of each.
    pub fn endpoints(&self, path: &str) -> Vec<(String, SocketAddr)> {
        let grpc = self.protocols.grpc.as_ref().map(|g| ("grpc", &g.endpoint));
        let http = self.protocols.http.as_ref().map(|h| ("http", &h.endpoint));
        [grpc, http]
            .into_iter()
            .flatten()
            .filter_map(|(protocol, endpoint)| {
                Some((format!("{path}.protocols.{protocol}.endpoint"), endpoint.parse().ok()?))
            })
            .collect()
    }
}

/// The receiver as a pipeline source: its servers fill the intake, each flush drains it.
pub struct OtlpSource {
    intake: Arc<intake::Intake>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// Where OTLP/gRPC listens (the port the OS chose when the config said 0).
    pub grpc_addr: Option<SocketAddr>,
    /// Where OTLP/HTTP listens.
    pub http_addr: Option<SocketAddr>,
}

impl OtlpSource {
    /// Binds and starts serving; needs a tokio runtime.
    pub fn start(config: OtlpConfig, path: &str) -> Result<OtlpSource, Vec<Problem>> {
        let problems = config.check(path);
        if !problems.is_empty() {
            return Err(problems);
        }
        let intake = Arc::new(intake::Intake::new(config.max_buffered_points, config.keep_exemplars));
        let mut source = OtlpSource { intake: intake.clone(), servers: Vec::new(), grpc_addr: None, http_addr: None };
        if let Some(grpc) = config.protocols.grpc {
            let (listener, addr) = bind(&grpc.endpoint, &format!("{path}.protocols.grpc.endpoint"))?;
            tracing::info!(receiver = path, address = %addr, "OTLP/gRPC receiver listening");
            let max_bytes = grpc.max_recv_msg_size_mib.saturating_mul(1 << 20);
            source.servers.push(grpc::serve(listener, intake.clone(), max_bytes));
            source.grpc_addr = Some(addr);
        }
        if let Some(http) = config.protocols.http {
            let (listener, addr) = bind(&http.endpoint, &format!("{path}.protocols.http.endpoint"))?;
            tracing::info!(receiver = path, address = %addr, "OTLP/HTTP receiver listening");
            let shared = Arc::new(http::Shared { intake: intake.clone(), max_request_bytes: http.max_request_bytes });
            source.servers.push(http::serve(listener, shared));
            source.http_addr = Some(addr);
        }
        Ok(source)
    }

    pub fn counters(&self) -> &ReceiverCounters {
        &self.intake.buffer.counters
    }
}

fn bind(endpoint: &str, path: &str) -> Result<(tokio::net::TcpListener, SocketAddr), Vec<Problem>> {
    let listener = crate::net::listen(endpoint).map_err(|e| vec![Problem::new(path, e)])?;
    let addr = listener.local_addr().map_err(|e| vec![Problem::new(path, e.to_string())])?;
    Ok((listener, addr))
}

impl Drop for OtlpSource {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Source for OtlpSource {
    fn collect(&mut self, _now_ms: i64) -> Batch {
        self.take_pending()
    }

    fn receiver_counts(&self) -> Option<crate::sources::buffer::ReceiverCounts> {
        Some(self.intake.buffer.counters.snapshot())
    }

    fn take_pending(&mut self) -> Batch {
        self.intake.buffer.drain()
    }

    fn limit_memory(&mut self, gate: Arc<crate::processors::memory_limiter::MemoryGate>) {
        self.intake.buffer.limit_memory(gate);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
    use prost::Message;

    use super::http::tests_support::gauge_request;
    use super::*;

    fn receiver(max_request_bytes: usize, max_buffered_points: usize) -> OtlpSource {
        let config = OtlpConfig {
            protocols: Protocols {
                http: Some(HttpConfig { endpoint: "127.0.0.1:0".into(), max_request_bytes }),
                grpc: Some(GrpcConfig { endpoint: "127.0.0.1:0".into(), max_recv_msg_size_mib: 1 }),
            },
            keep_exemplars: false,
            max_buffered_points,
        };
        OtlpSource::start(config, "receivers.otlp").expect("start")
    }

    async fn post(source: &OtlpSource, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/v1/metrics", source.http_addr.expect("http")))
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

    #[tokio::test]
    async fn grpc_takes_points_and_refuses_what_is_too_large_or_does_not_fit() {
        use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
        let mut source = receiver(DEFAULT_MAX_REQUEST_BYTES, 3);
        let address = format!("http://{}", source.grpc_addr.expect("grpc"));
        let mut client = MetricsServiceClient::connect(address).await.expect("connect");
        let answer = client.export(gauge_request(&[1.0, f64::INFINITY])).await.expect("accepted");
        let partial = answer.into_inner().partial_success.expect("partial success");
        assert_eq!(partial.rejected_data_points, 1);
        let mut zipped = client.clone().send_compressed(tonic::codec::CompressionEncoding::Gzip);
        zipped.export(gauge_request(&[2.0])).await.expect("gzip is accepted");
        // The buffer holds three points: two more do not fit, and the sender is told to retry.
        let full = client.export(gauge_request(&[3.0, 4.0])).await.expect_err("refused");
        assert_eq!(full.code(), tonic::Code::Unavailable, "{full:?}");
        // The limit is 1 MiB here.
        let huge: Vec<f64> = (0..100_000).map(f64::from).collect();
        let too_large = client.export(gauge_request(&huge)).await.expect_err("refused");
        assert_eq!(too_large.code(), tonic::Code::OutOfRange, "{too_large:?}");
        assert_eq!(source.counters().refused_requests.load(std::sync::atomic::Ordering::Relaxed), 2);
        let values: Vec<f64> = source.collect(0).iter().map(|p| p.number()).collect();
        assert_eq!(values, [1.0, 2.0]);
    }

    /// A gRPC call whose message is not an `ExportMetricsServiceRequest`, sent by hand (a tonic client
    /// cannot send one): a gRPC error status, counted, and the receiver keeps serving.
    #[tokio::test]
    async fn grpc_refuses_a_message_that_does_not_decode() {
        let source = receiver(DEFAULT_MAX_REQUEST_BYTES, 10);
        let addr = source.grpc_addr.expect("grpc");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("HTTP/2");
        tokio::spawn(connection);
        // The gRPC frame: not compressed, 3 bytes long, then bytes no protobuf message starts with.
        let frame = vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        let request = hyper::Request::post(format!(
            "http://{addr}/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .expect("request");
        let answer = sender.send_request(request).await.expect("an answer");
        let status = answer.headers().get("grpc-status").map(|v| v.to_str().unwrap_or_default().to_string());
        assert!(status.is_some_and(|code| code != "0"), "refused: {:?}", answer.headers());
        assert_eq!(source.counters().refused_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
        let mut client =
            opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient::connect(
                format!("http://{addr}"),
            )
            .await
            .expect("connect");
        client.export(gauge_request(&[1.0])).await.expect("still serving");
    }

    #[test]
    fn a_protocol_named_without_settings_is_served_with_its_defaults() {
        let config: OtlpConfig = serde_yaml_ng::from_str("protocols: {grpc: , http: }").expect("yaml");
        assert!(config.check("receivers.otlp").is_empty());
        let endpoints: Vec<String> = config.endpoints("r").into_iter().map(|(_, a)| a.to_string()).collect();
        assert_eq!(endpoints, [DEFAULT_GRPC_ENDPOINT, DEFAULT_HTTP_ENDPOINT]);
        let none: OtlpConfig = serde_yaml_ng::from_str("protocols: {}").expect("yaml");
        assert_eq!(none.check("r")[0].path, "r.protocols");
    }
}
