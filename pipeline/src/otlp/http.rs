//! OTLP/HTTP for metrics: `POST /v1/metrics` with a protobuf (`application/x-protobuf`) or JSON
//! (`application/json`) `ExportMetricsServiceRequest`, optionally gzip-compressed. Answers as the OTLP
//! specification says: 200 with an `ExportMetricsServiceResponse` (a partial success naming the
//! rejected points), 400 with a `google.rpc.Status` for a body that does not decode, 413 for a body
//! over the limit (compressed or not: a gzip bomb stops at the limit), 415 for another content type or
//! encoding, 503 with `Retry-After` when the pipeline's buffer is full (the sender retries).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::intake::Intake;

/// `google.rpc.Status`, the body of OTLP/HTTP's error answers (field numbers from its `.proto`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// What the connections share: the intake and this transport's body limit.
pub struct Shared {
    pub intake: Arc<Intake>,
    pub max_request_bytes: usize,
}

/// The two encodings of OTLP/HTTP.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Serves OTLP/HTTP on `listener` until the returned task is aborted.
pub fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    crate::net::serve_http1(listener, move |request| {
        let shared = shared.clone();
        async move { handle(request, &shared).await }
    })
}

async fn handle(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let answer = export(request, shared).await;
    if answer.status() != StatusCode::OK {
        shared.intake.buffer.refused();
    }
    answer
}

async fn export(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if request.uri().path() != "/v1/metrics" {
        return plain(StatusCode::NOT_FOUND, "this receiver takes metrics on /v1/metrics");
    }
    if request.method() != Method::POST {
        let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, "POST an ExportMetricsServiceRequest");
        answer.headers_mut().insert(hyper::header::ALLOW, "POST".parse().expect("static header"));
        return answer;
    }
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let encoding = match header(CONTENT_TYPE).split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("content type '{other}' is not OTLP: use application/x-protobuf or application/json"),
            )
        }
    };
    let gzip = match header(CONTENT_ENCODING).as_str() {
        "" | "identity" => false,
        "gzip" => true,
        other => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                encoding,
                &format!("content encoding '{other}' is not supported (gzip is)"),
            )
        }
    };
    let limit = shared.max_request_bytes;
    let Some(body) = crate::net::body_within(request, limit).await else {
        return status(StatusCode::PAYLOAD_TOO_LARGE, encoding, &format!("the body is over {limit} bytes"));
    };
    let body = if gzip {
        match gunzip(&body, limit) {
            Ok(body) => Bytes::from(body),
            Err(answer) => return status(answer.0, encoding, &answer.1),
        }
    } else {
        body
    };
    let parsed = match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => serde_json::from_slice::<ExportMetricsServiceRequest>(&body).map_err(|e| e.to_string()),
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return status(StatusCode::BAD_REQUEST, encoding, &format!("not an ExportMetricsServiceRequest: {e}"))
        }
    };
    let response = match shared.intake.accept(parsed) {
        Ok(response) => response,
        Err(refusal) if refusal.is_temporary() => {
            let mut answer = status(StatusCode::SERVICE_UNAVAILABLE, encoding, refusal.message());
            answer.headers_mut().insert(RETRY_AFTER, "1".parse().expect("static header"));
            return answer;
        }
        Err(refusal) => return status(StatusCode::INTERNAL_SERVER_ERROR, encoding, refusal.message()),
    };
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_default(),
    };
    respond(StatusCode::OK, encoding.content_type(), body)
}

/// Inflates a gzip body, stopping at `limit` bytes of output.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let mut out = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| (StatusCode::BAD_REQUEST, format!("not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("the body inflates to over {limit} bytes")));
    }
    Ok(out)
}

/// An error answer with a `google.rpc.Status` body in the request's encoding.
fn status(code: StatusCode, encoding: Encoding, message: &str) -> Response<Full<Bytes>> {
    let status = Status { code: rpc_code(code), message: message.to_string() };
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    respond(code, encoding.content_type(), body)
}

/// The gRPC status code matching an HTTP one (OTLP/HTTP's `Status.code`).
fn rpc_code(code: StatusCode) -> i32 {
    match code {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,                                // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
        _ => 13,                                                           // INTERNAL
    }
}

fn plain(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(code, "text/plain; charset=utf-8", format!("{message}\n").into_bytes())
}

fn respond(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = code;
    if let Ok(value) = content_type.parse() {
        answer.headers_mut().insert(CONTENT_TYPE, value);
    }
    answer
}

#[cfg(test)]
pub mod tests_support {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, Gauge, Metric, NumberDataPoint};
    use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
    use prost::Message;

    /// A request with one point of gauge `temp` per value.
    pub fn gauge_request(values: &[f64]) -> ExportMetricsServiceRequest {
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

    /// POSTs one gauge point per value to an OTLP/HTTP receiver on `port`; panics unless it is taken.
    pub async fn post_gauge(port: u16, values: &[f64]) {
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/metrics"))
            .header("Content-Type", "application/x-protobuf")
            .body(gauge_request(values).encode_to_vec())
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 200);
    }

    /// The message of a protobuf `google.rpc.Status` answer.
    pub fn decode_status(body: &[u8]) -> String {
        super::Status::decode(body).expect("a google.rpc.Status").message
    }
}
