//! The audit log over HTTP: every mutating request is recorded by the route middleware
//! ([`RequestFacts`], called from `access::authorize`), login outcomes by their handler, and admins read
//! the log with `GET /api/v1/audit`. Nothing from a body is recorded: the action is the method and
//! route pattern, the target the route's `{id}`.

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use phoenix_actors::audit::{ActorKind, AuditEntry, AuditFilter, NewAuditEntry, Outcome};
use phoenix_actors::paging::Page;
use serde::Deserialize;
use utoipa::IntoParams;

use super::access::{Access, CurrentUser};
use super::paging::PageQuery;
use super::{request_id, ApiError, AppState};
use crate::auth::{AuthError, Session};

/// Routes whose handlers record what happened themselves (with the username a login tried).
const RECORDED_BY_HANDLER: [&str; 2] = ["/api/v1/auth/login", "/api/v1/auth/refresh"];

/// What the middleware learns of a request before it runs, to record after.
pub struct RequestFacts {
    action: String,
    target: Option<String>,
    client: Option<String>,
    access: Access,
}

impl RequestFacts {
    /// The facts of a request to audit: every mutating one, except the agent protocol's (whose
    /// refusals the agent gateway records) and those whose handlers record themselves.
    pub fn of(req: &ServiceRequest, access: Access) -> Option<RequestFacts> {
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        let route = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
        if RECORDED_BY_HANDLER.contains(&route.as_str()) {
            return None;
        }
        let state = req.app_data::<web::Data<AppState>>()?;
        Some(RequestFacts {
            action: format!("{} {route}", req.method()),
            target: req.match_info().get("id").map(str::to_owned),
            client: client_of(req.request(), state),
            access,
        })
    }

    /// Records the request with how it ended. An agent's call is recorded only when its credential
    /// was refused; refusals of callers nobody knows are rate-limited (`audit::REFUSAL_EVERY`).
    pub async fn record(self, response: &ServiceResponse) {
        let Some(state) = response.request().app_data::<web::Data<AppState>>().cloned() else { return };
        let status = response.status().as_u16();
        let outcome = Outcome::of_status(status);
        if self.access == Access::Agent && status != 401 {
            return;
        }
        let user = response.request().extensions().get::<CurrentUser>().map(|c| c.user.clone());
        let mut entry = NewAuditEntry::new(
            if user.is_some() { ActorKind::User } else { ActorKind::Anonymous },
            self.action,
            outcome,
        );
        entry.actor_id = user.as_ref().map(|u| u.id.clone());
        entry.actor_name = user.map(|u| u.username);
        entry.target = self.target;
        entry.status = Some(status);
        entry.client = self.client;
        entry.request_id = request_id::current();
        if entry.actor_kind == ActorKind::Anonymous && outcome == Outcome::Refused {
            state.audit.record_refusal(entry).await;
        } else {
            state.audit.record(entry).await;
        }
    }
}

fn client_of(req: &HttpRequest, state: &AppState) -> Option<String> {
    super::client_addr::client_address(req, &state.settings.server.trusted_proxies).map(|ip| ip.to_string())
}

/// Records a login attempt: the user on success, the name tried on failure (never the password).
pub async fn record_login(state: &AppState, req: &HttpRequest, username: &str, result: &Result<Session, AuthError>) {
    let (action, outcome) = match result {
        Ok(_) => ("auth.login", Outcome::Succeeded),
        Err(_) => ("auth.login_failed", Outcome::Refused),
    };
    let mut entry = NewAuditEntry::new(ActorKind::User, action, outcome);
    entry.actor_id = result.as_ref().ok().map(|session| session.user.id.clone());
    entry.actor_name = Some(username.to_owned());
    entry.client = client_of(req, state);
    entry.request_id = request_id::current();
    if let Err(e) = result {
        entry.detail = Some(e.to_string());
    }
    state.audit.record(entry).await;
}

/// Records a security event about a user (a reused refresh token).
pub async fn record_security_event(state: &AppState, req: &HttpRequest, action: &str, user_id: Option<String>) {
    let mut entry = NewAuditEntry::new(ActorKind::User, action, Outcome::Refused);
    entry.actor_id = user_id;
    entry.client = client_of(req, state);
    entry.request_id = request_id::current();
    state.audit.record(entry).await;
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this actor (a user's or agent's id, or a username).
    actor: Option<String>,
    /// Only actions starting with this, e.g. `POST /api/v1/experiments` or `auth.`.
    action: Option<String>,
    /// Only this outcome: succeeded, refused, failed.
    outcome: Option<Outcome>,
    /// Only entries at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /audit`: the audit log, newest first (admins).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "A page of audit entries, newest first", body = Page<AuditEntry>)))]
pub async fn list_audit(state: web::Data<AppState>, query: web::Query<AuditQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let (Some(since), Some(until)) = (query.since, query.until) {
        if since >= until {
            return Err(ApiError::BadRequest("since must be before until".into()));
        }
    }
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        outcome: query.outcome,
        since: query.since,
        until: query.until,
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor }.page()?;
    Ok(HttpResponse::Ok().json(state.audit.list(&filter, page).await?))
}
