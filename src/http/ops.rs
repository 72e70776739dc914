//! Operational endpoints: liveness, readiness, metrics and version.

use actix_web::{http::header, web, HttpResponse};
use serde::Serialize;
use serde_json::{json, Map};
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::metrics::Snapshot;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /healthz`: the process is up and serving HTTP. Checks nothing else on purpose, so an
/// orchestrator does not restart the server because the database blipped.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Up", body = Health)))]
pub async fn get_health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// One dependency's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    ok: bool,
    /// e.g. `postgres reachable`, or why not.
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready` (a 503 problem document otherwise, with the same `checks`).
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    database: Check,
    bus: Check,
}

/// `GET /readyz`: 200 when the database and the bus answer; 503 naming the failing part otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "The database and the bus answer", body = Readiness)))]
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
    let checks = Checks { database, bus };
    if failing.is_empty() {
        return Ok(HttpResponse::Ok().json(Readiness { status: "ready", checks }));
    }
    let mut extra = Map::new();
    extra.insert("checks".into(), json!(checks));
    Err(ApiError::Unavailable { detail: format!("not ready: {} failing", failing.join(" and ")), extra })
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200,
    description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String)))]
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

#[derive(Serialize, ToSchema)]
pub struct VersionInfo {
    /// Always `phoenix`.
    name: &'static str,
    version: &'static str,
    /// `postgres` or `sqlite`.
    database: &'static str,
    /// `nats` or `local`.
    bus: &'static str,
}

/// `GET /version`: what is running, and on what.
#[utoipa::path(get, path = "/version", tag = "ops", responses((status = 200, description = "What is running", body = VersionInfo)))]
pub async fn get_version(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(VersionInfo {
        name: "phoenix",
        version: env!("CARGO_PKG_VERSION"),
        database: state.store.backend_name(),
        bus: state.bus.kind(),
    })
}
