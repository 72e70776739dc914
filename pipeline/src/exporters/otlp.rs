//! `otlp` (OTLP/gRPC) and `otlphttp` (OTLP/HTTP, protobuf): send each flush's output to an OpenTelemetry
//! backend or Collector, through the [`delivery`](super::delivery) queue. Settings keep the Collector's
//! names, so a Collector config's exporter section mostly works as it is:
//!
//! ```yaml
//! exporters:
//!   otlp:     {endpoint: collector:4317, tls: {insecure: true}}
//!   otlphttp: {endpoint: https://otlp.example.com, headers: {Authorization: "Bearer …"}}
//! ```
//!
//! Retries follow the OTLP specification: gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `ABORTED`,
//! `CANCELLED`, `DEADLINE_EXCEEDED`, `OUT_OF_RANGE`, `DATA_LOSS` and no answer; HTTP 429, 502, 503, 504
//! and no answer. Everything else is final.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use serde::Deserialize;

use super::delivery::{self, DeliveryCounters, DeliveryQueue, Failure, Limits, Transport};
use super::Exporter;
use crate::config::parse_duration;
use crate::model::Point;
use crate::Problem;

/// The settings both OTLP exporters share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// `otlp`: `host:port` (TLS unless `tls.insecure`, or `http://host:port`); `otlphttp`: the base URL,
    /// metrics are sent to `<endpoint>/v1/metrics`.
    pub endpoint: String,
    /// `otlphttp` only: the full URL for metrics, instead of `<endpoint>/v1/metrics`.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (the default) or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Per request, e.g. `5s`, `500ms`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Requests waiting to be sent, at most.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Tries per request before it is dropped.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Plain text to a `host:port` endpoint (the Collector's name for it).
    #[serde(default)]
    pub insecure: bool,
}

fn default_compression() -> String {
    "gzip".into()
}

fn default_timeout() -> String {
    "5s".into()
}

fn default_max_queue() -> usize {
    100
}

fn default_max_attempts() -> u32 {
    5
}

/// Which of the two exporters a config is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl OtlpExporterConfig {
    pub fn check(&self, protocol: Protocol, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Err(why) = self.target(protocol) {
            problems.push(Problem::new(&format!("{path}.endpoint"), why));
        }
        if protocol == Protocol::Grpc && self.metrics_endpoint.is_some() {
            problems.push(Problem::new(&format!("{path}.metrics_endpoint"), "is an otlphttp setting"));
        }
        if !matches!(self.compression.as_str(), "gzip" | "none") {
            problems.push(Problem::new(&format!("{path}.compression"), "must be gzip or none"));
        }
        if let Err(why) = parse_duration(&self.timeout) {
            problems.push(Problem::new(&format!("{path}.timeout"), why));
        }
        problems.extend(delivery::check_headers(&self.headers, path));
        if self.max_queue == 0 {
            problems.push(Problem::new(&format!("{path}.max_queue"), "must be ≥ 1"));
        }
        if self.max_attempts == 0 {
            problems.push(Problem::new(&format!("{path}.max_attempts"), "must be ≥ 1"));
        }
        problems
    }

    /// The URL requests go to: for gRPC with the scheme TLS or not decides, for HTTP the metrics URL.
    fn target(&self, protocol: Protocol) -> Result<String, String> {
        let target = match protocol {
            Protocol::Http => match &self.metrics_endpoint {
                Some(url) => url.clone(),
                None => format!("{}/v1/metrics", self.endpoint.trim_end_matches('/')),
            },
            Protocol::Grpc if self.endpoint.contains("://") => self.endpoint.clone(),
            Protocol::Grpc if self.tls.insecure => format!("http://{}", self.endpoint),
            Protocol::Grpc => format!("https://{}", self.endpoint),
        };
        let url = reqwest::Url::parse(&target).map_err(|e| format!("'{target}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            let example = match protocol {
                Protocol::Grpc => "collector:4317",
                Protocol::Http => "http://collector:4318",
            };
            return Err(format!("'{}' is not an endpoint like {example}", self.endpoint));
        }
        Ok(target)
    }

    fn limits(&self) -> Limits {
        Limits { max_queue: self.max_queue, max_attempts: self.max_attempts }
    }
}

/// An exporter whose requests are OTLP messages, over either transport.
pub struct OtlpExporter {
    queue: DeliveryQueue<ExportMetricsServiceRequest>,
}

impl OtlpExporter {
    /// Starts the sending task; needs a tokio runtime. Nothing is connected yet: an unreachable
    /// endpoint is a delivery failure, retried and counted, not a failed start.
    pub fn start(config: OtlpExporterConfig, protocol: Protocol) -> Result<OtlpExporter, String> {
        let target = config.target(protocol)?;
        let timeout = parse_duration(&config.timeout)?;
        let gzip = config.compression == "gzip";
        let limits = config.limits();
        let queue = match protocol {
            Protocol::Http => {
                let client = delivery::http_client(timeout, &config.headers)?;
                DeliveryQueue::start("otlphttp", OtlpHttp { client, url: target, gzip }, limits)
            }
            Protocol::Grpc => {
                DeliveryQueue::start("otlp", OtlpGrpc::new(&target, timeout, gzip, &config.headers)?, limits)
            }
        };
        Ok(OtlpExporter { queue })
    }

    pub fn counters(&self) -> &DeliveryCounters {
        self.queue.counters()
    }

    /// Requests waiting to be sent.
    pub fn queue_depth(&self) -> usize {
        self.queue.depth()
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, batch: &[Point]) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        self.queue.push(crate::otlp::encode::request(batch), batch.len() as u64)
    }

    fn take_undelivered(&mut self) -> u64 {
        self.queue.take_undelivered()
    }

    fn delivery(&self) -> Option<(&DeliveryCounters, usize)> {
        Some((self.counters(), self.queue_depth()))
    }
}

/// OTLP/HTTP: a protobuf POST.
struct OtlpHttp {
    client: reqwest::Client,
    url: String,
    gzip: bool,
}

impl Transport for OtlpHttp {
    type Request = ExportMetricsServiceRequest;

    async fn send(&self, request: &ExportMetricsServiceRequest) -> Result<(), Failure> {
        let mut body = request.encode_to_vec();
        let mut post = self.client.post(&self.url).header("Content-Type", "application/x-protobuf");
        if self.gzip {
            body = gzip(&body).map_err(|e| Failure::Final(format!("cannot compress the request: {e}")))?;
            post = post.header("Content-Encoding", "gzip");
        }
        let answer = post.body(body).send().await;
        delivery::judge_http_answer(answer, &self.url, |status| matches!(status.as_u16(), 429 | 502 | 503 | 504)).await
    }
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

/// OTLP/gRPC: the `MetricsService/Export` call on a channel that connects (and reconnects) on demand.
struct OtlpGrpc {
    client: MetricsServiceClient<tonic::transport::Channel>,
    target: String,
    timeout: Duration,
    headers: tonic::metadata::MetadataMap,
}

impl OtlpGrpc {
    fn new(
        target: &str,
        timeout: Duration,
        gzip: bool,
        headers: &BTreeMap<String, String>,
    ) -> Result<OtlpGrpc, String> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(target.to_string())
            .map_err(|e| format!("'{target}' is not a gRPC endpoint: {e}"))?
            .connect_timeout(timeout);
        if target.starts_with("https://") {
            let tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS for '{target}': {e}"))?;
        }
        let mut client = MetricsServiceClient::new(endpoint.connect_lazy());
        if gzip {
            client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in headers {
            let key = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("header '{name}': {e}"))?;
            metadata.insert(key, value.parse().map_err(|e| format!("header '{name}': {e}"))?);
        }
        Ok(OtlpGrpc { client, target: target.to_string(), timeout, headers: metadata })
    }
}

impl Transport for OtlpGrpc {
    type Request = ExportMetricsServiceRequest;

    async fn send(&self, request: &ExportMetricsServiceRequest) -> Result<(), Failure> {
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(self.timeout);
        *call.metadata_mut() = self.headers.clone();
        match self.client.clone().export(call).await {
            Ok(_) => Ok(()),
            Err(status) => {
                use tonic::Code::*;
                let why = format!("{} answered {:?}: {}", self.target, status.code(), status.message());
                match status.code() {
                    Unavailable | ResourceExhausted | Aborted | Cancelled | DeadlineExceeded | OutOfRange
                    | DataLoss => Err(Failure::Retryable(why)),
                    _ => Err(Failure::Final(why)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricKind, Point};
    use crate::otlp::{GrpcConfig, HttpConfig, OtlpConfig, OtlpSource, Protocols};
    use crate::sources::Source;

    fn config(yaml: &str) -> OtlpExporterConfig {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    #[test]
    fn collector_style_settings_are_checked() {
        assert!(config("endpoint: collector:4317\ntls: {insecure: true}").check(Protocol::Grpc, "e").is_empty());
        assert!(config("endpoint: https://otlp.example.com").check(Protocol::Http, "e").is_empty());
        let bad = config("endpoint: 'not a url'\ncompression: zstd\ntimeout: soon\nmax_attempts: 0");
        let paths: Vec<String> = bad.check(Protocol::Http, "e").into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["e.endpoint", "e.compression", "e.timeout", "e.max_attempts"]);
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    /// Sends a batch through each exporter into a real receiver (ours, over the same transport) and
    /// checks what arrived.
    #[tokio::test]
    async fn both_transports_deliver_into_an_otlp_receiver() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let receiver = OtlpConfig {
            protocols: Protocols {
                grpc: Some(GrpcConfig { endpoint: "127.0.0.1:0".into(), ..Default::default() }),
                http: Some(HttpConfig { endpoint: "127.0.0.1:0".into(), ..Default::default() }),
            },
            keep_exemplars: false,
            max_buffered_points: 1000,
        };
        let mut source = OtlpSource::start(receiver, "r").expect("receiver");
        let grpc = config(&format!("endpoint: {}\ntls: {{insecure: true}}", source.grpc_addr.expect("grpc")));
        let http = config(&format!("endpoint: http://{}\ncompression: none", source.http_addr.expect("http")));
        let mut exporters = [
            OtlpExporter::start(grpc, Protocol::Grpc).expect("otlp"),
            OtlpExporter::start(http, Protocol::Http).expect("otlphttp"),
        ];
        for (n, exporter) in exporters.iter_mut().enumerate() {
            let batch = vec![Point::new("requests", MetricKind::COUNTER, &[("via", &n.to_string())], 7.0, 1)];
            exporter.export(&batch).expect("queued");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut received = Vec::new();
        while received.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "received only {received:?}");
            received.extend(source.collect(0).into_iter().map(|p| p.label("via").map(|v| v.to_string())));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        received.sort();
        assert_eq!(received, [Some("0".to_string()), Some("1".to_string())]);
        assert!(exporters.iter().all(|e| e.counters().sent_points.load(std::sync::atomic::Ordering::Relaxed) == 1));
    }

    #[tokio::test]
    async fn an_unreachable_grpc_endpoint_is_retried_then_counted_as_dropped() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let yaml = format!("endpoint: http://127.0.0.1:{port}\nmax_attempts: 2\ntimeout: 1s");
        let mut exporter = OtlpExporter::start(config(&yaml), Protocol::Grpc).expect("start");
        exporter.export(&[Point::new("a", MetricKind::Gauge, &[], 1.0, 1)]).expect("queued");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while exporter.take_undelivered() == 0 {
            assert!(std::time::Instant::now() < deadline, "nobody listens: the request is dropped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = exporter.counters().last_error.lock().expect("lock").clone().unwrap_or_default();
        assert!(last.contains("after 2 attempts"), "{last}");
    }
}
