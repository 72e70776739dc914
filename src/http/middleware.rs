//! The middleware every request passes through: request id, one tracing span and one log line per
//! request, Prometheus counters, and the early 413 for bodies announced as too large.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CONTENT_LENGTH};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use super::error::ApiError;
use super::request_id;
use super::AppState;

/// Wraps the whole app; see the module docs.
pub async fn observe<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = request_id::from_header(req.headers().get(&request_id::HEADER));
    let method = metric_method(req.method());
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!(
        "http.request",
        http.method = %method,
        http.route = %route,
        http.status_code = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        request_id = %id,
    );
    let limit = state.as_ref().map(|s| s.settings.server.body_limit_bytes);
    let response = request_id::scope(id.clone(), async move {
        match announced_too_large(&req, limit) {
            Some(limit) => Ok(req.error_response(ApiError::PayloadTooLarge { limit })),
            None => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        }
    })
    .instrument(span.clone())
    .await;

    let status = match &response {
        Ok(res) => res.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    let elapsed = started.elapsed();
    span.record("http.status_code", status.as_u16());
    span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request completed"));
    if let Some(state) = state {
        state.metrics.observe_request(&method, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    response.map(|mut res| {
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(request_id::HEADER.clone(), value);
        }
        res
    })
}

fn announced_too_large(req: &ServiceRequest, limit: Option<usize>) -> Option<usize> {
    let limit = limit?;
    let length: usize = req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?;
    (length > limit).then_some(limit)
}

/// The method as a metric label: a client may send any token as a method, so anything unusual is
/// `OTHER`, keeping the number of series bounded.
fn metric_method(method: &actix_web::http::Method) -> String {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    let name = method.as_str();
    if KNOWN.contains(&name) {
        name.to_string()
    } else {
        "OTHER".to_string()
    }
}
