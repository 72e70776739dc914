//! Request ids: taken from `X-Request-Id` when the client sends a sane one, generated otherwise. The id
//! is echoed in the response header, recorded on the request's span (so every log line of the request
//! carries it) and put into problem documents through a task-local.

use actix_web::http::header::{HeaderName, HeaderValue};

/// Header carrying the id in both directions.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// The client's id when it is short, printable ASCII; a new UUIDv7 otherwise.
pub fn from_header(value: Option<&HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_client_id_and_replaces_a_hostile_one() {
        assert_eq!(from_header(Some(&HeaderValue::from_static("abc-123"))), "abc-123");
        let long = HeaderValue::from_str(&"x".repeat(500)).expect("ascii");
        assert_ne!(from_header(Some(&long)).len(), 500);
        assert_ne!(from_header(Some(&HeaderValue::from_static("has space"))), "has space");
        assert_eq!(from_header(None).len(), 36);
    }
}
