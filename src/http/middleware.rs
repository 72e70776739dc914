//! The middleware every request passes through: request id, one tracing span and one log line per
//! request, Prometheus counters, the early 413 for bodies announced as too large, and the 400 for a
//! NUL character anywhere a handler could read it.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use futures_util::StreamExt;
use tracing::Instrument;

use super::error::ApiError;
use super::request_id;
use super::AppState;

/// Wraps the whole app; see the module docs.
pub async fn observe<B: MessageBody + 'static>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = request_id::from_header(req.headers().get(&request_id::HEADER));
    let method = metric_method(req.method());
    // HEAD is GET without the body: routed as GET; the HTTP layer, which saw HEAD, sends no body.
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
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
        if let Some(limit) = announced_too_large(&req, limit) {
            return Ok(req.error_response(ApiError::PayloadTooLarge { limit }));
        }
        let req = match check_body(req, limit).await {
            Ok(req) => req,
            Err((req, error)) => return Ok(req.error_response(error)),
        };
        next.call(req).await.map(ServiceResponse::map_into_boxed_body)
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

/// PostgreSQL cannot store the NUL character in text and no field has a use for it, so a request that
/// carries one — `%00` in its path or query, `\u0000` in a JSON body — is refused here with a 400, the
/// same on both backends, instead of failing deep inside a query. Every JSON body the API takes is an
/// object: an array or a scalar is a 422 here (serde would read a struct from an array, by position);
/// `null` counts as no body. A JSON body is read (up to the body limit) and handed on unchanged.
async fn check_body(
    mut req: ServiceRequest,
    limit: Option<usize>,
) -> Result<ServiceRequest, (ServiceRequest, ApiError)> {
    let refused =
        || ApiError::BadRequest("the request contains a NUL character (%00 or \\u0000), which no field accepts".into());
    let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    if target.contains("%00") {
        return Err((req, refused()));
    }
    let (Some(limit), true) = (limit, is_json(&req)) else {
        return Ok(req);
    };
    let mut payload = req.parts_mut().1.take();
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Err((req, ApiError::BadRequest("the request body could not be read".into())));
        };
        if body.len() + chunk.len() > limit {
            return Err((req, ApiError::PayloadTooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    if json_has_nul(&body) {
        return Err((req, refused()));
    }
    if !is_object_or_empty(&body) {
        let problem = ApiError::invalid(vec![("body".into(), "must be a JSON object".into())]);
        return Err((req, problem));
    }
    req.set_payload(actix_web::dev::Payload::from(body.freeze()));
    Ok(req)
}

/// A body the JSON extractor would read: the same rule as actix-web's (`*/json` or `*/*+json`, so
/// `text/json` too).
fn is_json(req: &ServiceRequest) -> bool {
    let Some(content_type) = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let subtype = essence.split_once('/').map_or("", |(_, subtype)| subtype);
    subtype == "json" || subtype.ends_with("+json")
}

/// Whether a JSON text is an object, or empty or `null` (no body: the extractor says whether one is
/// needed).
fn is_object_or_empty(json: &[u8]) -> bool {
    let text = json.trim_ascii();
    text.is_empty() || text == b"null" || text.starts_with(b"{")
}

/// Whether a JSON text has a `\u0000` escape inside a string (the only way valid JSON can carry NUL;
/// an escaped backslash followed by `u0000` is text, not NUL).
fn json_has_nul(json: &[u8]) -> bool {
    let (mut in_string, mut i) = (false, 0);
    while i < json.len() {
        match json[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                if json[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                i += 1; // the escaped character
            }
            0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
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

#[cfg(test)]
mod tests {
    use super::{is_object_or_empty, json_has_nul};

    #[test]
    fn only_an_object_or_nothing_is_a_body() {
        assert!(is_object_or_empty(b" \n{\"a\": 1}"));
        assert!(is_object_or_empty(b"  "));
        assert!(is_object_or_empty(b" null "), "null is no body");
        for not_an_object in [&b"[\"operator\", null]"[..], b"\"x\"", b"1", b"nullx"] {
            assert!(!is_object_or_empty(not_an_object), "{}", String::from_utf8_lossy(not_an_object));
        }
    }

    #[test]
    fn only_a_nul_escape_inside_a_string_is_nul() {
        assert!(json_has_nul(br#"{"name": "a\u0000b"}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#), "an escaped backslash, then the escape");
        assert!(!json_has_nul(br#"{"name": "a\\u0000b"}"#), "an escaped backslash, then text");
        assert!(!json_has_nul(br#"{"name": "a\"u0000"}"#));
        assert!(json_has_nul(b"{\"raw\": \"\0\"}"), "a raw NUL byte (invalid JSON anyway)");
    }
}
