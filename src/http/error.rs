//! The one error type of the HTTP layer and its mapping to RFC 9457 problem documents. Every error a
//! client can see, including the ones actix produces itself (bad JSON, oversized bodies, unknown
//! routes), goes through here so they all share one shape.

use actix_web::http::{header, StatusCode};
use actix_web::{error::JsonPayloadError, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};

use super::request_id;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with, in kinds that map to one HTTP status each.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    /// A 409 for an action the entity's current state does not allow, saying what is allowed now.
    #[error("{detail}")]
    StateConflict { detail: String, extra: Map<String, Value> },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Unprocessable { detail: String, errors: Vec<FieldProblem>, extra: Map<String, Value> },
    #[error("{detail}")]
    TooManyRequests { code: &'static str, detail: String, retry_after_secs: u64 },
    #[error("{detail}")]
    Unavailable { detail: String, extra: Map<String, Value> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// One invalid field of a 422 answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field, as a dotted path into the request (e.g. `success_criteria.min_accuracy_pct`).
    pub path: String,
    /// What is wrong with it, in words.
    pub message: String,
}

/// An error (RFC 9457 problem document), plus `code` and the request id. Some kinds carry more
/// members: a 409 on an experiment names its `phase` and `allowed_actions`, a 503 from `/readyz` its
/// `checks`, a 429 comes with `Retry-After`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` tells the kinds apart.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, in words.
    pub detail: String,
    /// Stable, machine-readable kind, e.g. `not_found`, `validation_failed`, `illegal_transition`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// The request's id (also the `X-Request-Id` header), to find it in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Every invalid field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldProblem>>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// Stable, machine-readable name of the error kind (the problem's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::StateConflict { .. } => "illegal_transition",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable { .. } => "validation_failed",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status_code();
        let (errors, extra) = match self {
            ApiError::Unprocessable { errors, extra, .. } => (Some(errors.clone()), extra.clone()),
            ApiError::Unavailable { extra, .. } | ApiError::StateConflict { extra, .. } => (None, extra.clone()),
            _ => (None, Map::new()),
        };
        let code = self.code();
        Problem {
            // RFC 9457: with `about:blank` the title is the status phrase; `code` tells kinds apart.
            kind: "about:blank".to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
            request_id: request_id::current(),
            errors,
            extra,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::StateConflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(source) = self {
            // Logged once here, with its cause chain; the client only sees the request id.
            tracing::error!(error = format!("{source:#}"), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::Unauthorized { .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::TooManyRequests { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, allow.clone()));
            }
            _ => {}
        }
        response.json(self.problem())
    }
}

/// Makes the extractors (JSON, raw body, path, query) answer their failures with problem documents.
pub fn configure_extractors(cfg: &mut actix_web::web::ServiceConfig, body_limit: usize) {
    use actix_web::web;
    cfg.app_data(web::JsonConfig::default().limit(body_limit).error_handler(json_error))
        .app_data(web::PayloadConfig::default().limit(body_limit))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .app_data(web::QueryConfig::default().error_handler(query_error));
}

/// Maps the JSON extractor's failures: too big -> 413, not JSON -> 400, JSON of the wrong shape -> 422.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge { limit: *limit }
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("expected a body of type application/json".into())
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Unprocessable {
            detail: format!("the request body is not valid: {e}"),
            errors: vec![FieldProblem { path: "body".into(), message: e.to_string() }],
            extra: Map::new(),
        },
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        other => ApiError::BadRequest(format!("cannot read the request body: {other}")),
    };
    api.into()
}

/// Bad path segments (e.g. a non-numeric version) and bad query strings are the client's mistake.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

/// Answer for any path the route table does not know.
pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

/// Answer for a known path asked with a method it does not support; `allow` lists those it does.
pub fn method_not_allowed(req: &HttpRequest, allow: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        detail: format!("{} is not allowed on {} (allowed: {allow})", req.method(), req.path()),
        allow: allow.to_owned(),
    }
}

impl ApiError {
    /// A 422 listing every invalid field.
    pub fn invalid(problems: Vec<(String, String)>) -> ApiError {
        let detail = problems.iter().map(|(path, message)| format!("{path}: {message}")).collect::<Vec<_>>().join("; ");
        ApiError::Unprocessable {
            detail,
            errors: problems.into_iter().map(|(path, message)| FieldProblem { path, message }).collect(),
            extra: Map::new(),
        }
    }

    /// Names the missing thing in a 404 (`user 0190… not found`).
    pub fn for_entity(self, entity: &str, id: &str) -> ApiError {
        match self {
            ApiError::NotFound(_) => ApiError::NotFound(format!("{entity} {id} not found")),
            other => other,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::Unauthorized { code: "unauthenticated", detail: detail.into() }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(err: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        let detail = err.to_string();
        match err {
            AuthError::InvalidCredentials => ApiError::Unauthorized { code: "invalid_credentials", detail },
            AuthError::RateLimited { retry_after } => ApiError::TooManyRequests {
                code: "too_many_requests",
                detail,
                retry_after_secs: retry_after.as_secs().max(1),
            },
            AuthError::RegistrationClosed => ApiError::Forbidden { code: "registration_closed", detail },
            AuthError::Unauthenticated(_) => ApiError::unauthorized(detail),
            AuthError::InvalidRefreshToken | AuthError::RefreshTokenReused { .. } => {
                ApiError::Unauthorized { code: "invalid_refresh_token", detail }
            }
            AuthError::InvalidEnrollmentToken => ApiError::Unauthorized { code: "invalid_enrollment_token", detail },
            AuthError::Invalid(problems) => ApiError::invalid(problems),
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(anyhow::anyhow!(e)),
        }
    }
}

impl From<phoenix_actors::StoreError> for ApiError {
    fn from(err: phoenix_actors::StoreError) -> Self {
        use phoenix_actors::StoreError;
        match err {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(detail) => ApiError::Conflict(detail),
            StoreError::Unavailable(_) => ApiError::Unavailable {
                detail: "the database is unavailable; try again shortly".into(),
                extra: Map::new(),
            },
            StoreError::Internal(e) => ApiError::Internal(anyhow::Error::from_boxed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: String,
    }

    async fn echo(_: web::Json<Body>) -> HttpResponse {
        HttpResponse::NoContent().finish()
    }

    async fn post(body: &'static str, content_type: &'static str) -> (StatusCode, serde_json::Value) {
        let app = test::init_service(
            App::new().configure(|cfg| configure_extractors(cfg, 64)).route("/echo", web::post().to(echo)),
        )
        .await;
        let req = test::TestRequest::post()
            .uri("/echo")
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(body)
            .to_request();
        let res = test::call_service(&app, req).await;
        let status = res.status();
        assert_eq!(res.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()), Some(PROBLEM_JSON.as_bytes()));
        (status, test::read_body_json(res).await)
    }

    #[actix_web::test]
    async fn malformed_json_is_a_400_problem() {
        let (status, body) = post("{\"name\": ", "application/json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "bad_request");
        assert_eq!(body["status"], 400);
        assert!(body["detail"].as_str().unwrap_or_default().contains("malformed JSON"), "{body}");
    }

    #[actix_web::test]
    async fn json_of_the_wrong_shape_is_a_422_problem() {
        let (status, body) = post("{\"name\": 5}", "application/json").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["errors"][0]["path"], "body");
    }

    #[actix_web::test]
    async fn a_body_over_the_limit_is_a_413_problem() {
        let big = Box::leak(format!("{{\"name\": \"{}\"}}", "x".repeat(100)).into_boxed_str());
        let (status, body) = post(big, "application/json").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["code"], "payload_too_large");
    }

    #[actix_web::test]
    async fn a_body_that_is_not_json_is_a_415_problem() {
        let (status, body) = post("name=x", "application/x-www-form-urlencoded").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["title"], "Unsupported Media Type");
    }
}
