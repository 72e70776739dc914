//! Operational endpoints: liveness, readiness, metrics and version.

use actix_web::{http::header, web, HttpResponse};
use serde::Serialize;
use serde_json::{json, Map};

use super::{ApiError, AppState};
use crate::metrics::Snapshot;

/// `GET /healthz`: the process is up and serving HTTP. Checks nothing else on purpose, so an
/// orchestrator does not restart the server because the database blipped.
pub async fn get_health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[derive(Debug, Serialize)]
struct Check {
    ok: bool,
    detail: String,
}

/// `GET /readyz`: 200 when the database and the bus answer; 503 naming the failing part otherwise.
pub async fn get_readiness(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let database = match state.store.ping().await {
        Ok(()) => Check { ok: true, detail: format!("{} reachable", state.store.backend_name()) },
        Err(e) => Check {
            ok: false,
            detail: format!("{} unreachable: {}", state.store.backend_name(), crate::telemetry::error_chain(&e)),
        },
    };
    let health = state.bus.health().await;
    let bus = Check { ok: health.connected, detail: format!("{}: {}", state.bus.kind(), health.detail) };
    let failing: Vec<&str> =
        [("database", &database), ("bus", &bus)].iter().filter(|(_, check)| !check.ok).map(|(name, _)| *name).collect();
    let checks = json!({"database": database, "bus": bus});
    if failing.is_empty() {
        return Ok(HttpResponse::Ok().json(json!({"status": "ready", "checks": checks})));
    }
    let mut extra = Map::new();
    extra.insert("checks".into(), checks);
    Err(ApiError::Unavailable { detail: format!("not ready: {} failing", failing.join(" and ")), extra })
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn get_metrics(state: web::Data<AppState>) -> HttpResponse {
    let (agent_sessions, long_poll_waiters) = state.registry.counts().await;
    let ingest = state.gateway.stats();
    let snapshot = Snapshot {
        pool: state.db.pool_usage(),
        bus_connected: state.bus.health().await.connected,
        agent_sessions,
        long_poll_waiters,
        ingest: &ingest,
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .body(state.metrics.render(snapshot))
}

/// `GET /version`: what is running, and on what.
pub async fn get_version(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "phoenix",
        "version": env!("CARGO_PKG_VERSION"),
        "database": state.store.backend_name(),
        "bus": state.bus.kind(),
    }))
}
