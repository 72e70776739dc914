//! OTLP/gRPC for metrics: the `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` call over
//! HTTP/2, gzip accepted. Answers as the OTLP specification says: OK with a partial success naming the
//! rejected points; `UNAVAILABLE` (which senders retry) when the pipeline's buffer is full;
//! `RESOURCE_EXHAUSTED`/`OUT_OF_RANGE` from tonic for a message over the limit and `INTERNAL` for one
//! that does not decode. Every call answered with another status than OK is counted as refused.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use tonic::codec::CompressionEncoding;
use tower::ServiceExt;

use super::intake::Intake;

/// The gRPC service: hands each request to the intake.
struct Export {
    intake: Arc<Intake>,
}

#[tonic::async_trait]
impl MetricsService for Export {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        match self.intake.accept(request.into_inner()) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(refusal) if refusal.is_temporary() => Err(tonic::Status::unavailable(refusal.message())),
            Err(refusal) => Err(tonic::Status::internal(refusal.message())),
        }
    }
}

/// Serves OTLP/gRPC on `listener` until the returned task is aborted.
pub fn serve(
    listener: tokio::net::TcpListener,
    intake: Arc<Intake>,
    max_request_bytes: usize,
) -> tokio::task::JoinHandle<()> {
    let service = MetricsServiceServer::new(Export { intake: intake.clone() })
        .max_decoding_message_size(max_request_bytes)
        .accept_compressed(CompressionEncoding::Gzip);
    crate::net::serve_connections(listener, move |stream| {
        let service = service.clone();
        let intake = intake.clone();
        async move {
            let counted = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let intake = intake.clone();
                let call = service.clone().oneshot(request);
                async move {
                    let answer = call.await?;
                    // An error is a trailers-only answer: its status is among the headers (a success's
                    // comes in the trailers).
                    if answer.headers().get("grpc-status").is_some_and(|code| code.as_bytes() != b"0") {
                        intake.buffer.refused();
                    }
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                // A connection that stops answering pings is closed rather than held forever.
                .keep_alive_interval(Duration::from_secs(60))
                .keep_alive_timeout(Duration::from_secs(20))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), counted)
                .await;
        }
    })
}
