//! Agent identity over HTTP: enrolment tokens (admins), enrolment (agents), credential checks and
//! revocation.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use phoenix_actors::labels::Labels;
use phoenix_actors::store::AgentIdentity;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{CurrentAgent, CurrentUser};
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    /// How many agents may enrol with the token (default 1).
    #[serde(default = "one")]
    uses: i32,
    /// Lifetime; default `auth.enrollment_token_ttl_secs`.
    ttl_secs: Option<u64>,
    /// Labels every agent enrolled with it gets.
    #[serde(default)]
    labels: Labels,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// An enrolment token from an admin.
    token: String,
    hostname: String,
    /// Labels of the agent's own, on top of the token's.
    #[serde(default)]
    labels: Labels,
}

/// A new enrolment token. The token itself is shown in this answer only.
#[derive(Serialize, ToSchema)]
pub struct NewEnrollmentToken {
    id: String,
    token: String,
    expires_at: DateTime<Utc>,
    uses_left: i32,
    labels: Labels,
}

/// What an enrolled agent keeps: its id and credential, and where to reach NATS.
#[derive(Serialize, ToSchema)]
pub struct Enrolled {
    agent_id: String,
    /// Sent as `Authorization: Bearer <credential>` (HTTP) or in the envelope's `auth` (NATS).
    credential: String,
    labels: Labels,
    /// The NATS URL agents should use, when the server has one for them.
    nats_url: Option<String>,
}

/// `POST /agents/enrollment-tokens`: the token is shown in this answer only.
#[utoipa::path(post, path = "/api/v1/agents/enrollment-tokens", tag = "fleet", request_body = CreateEnrollmentTokenRequest,
    responses((status = 201, description = "The token", body = NewEnrollmentToken)))]
pub async fn create_enrollment_token(
    state: web::Data<AppState>,
    caller: CurrentUser,
    body: web::Json<CreateEnrollmentTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (token, record) =
        state.auth.create_enrollment_token(body.uses, body.ttl_secs, body.labels, &caller.user.id).await?;
    Ok(HttpResponse::Created().json(NewEnrollmentToken {
        id: record.id,
        token,
        expires_at: record.expires_at,
        uses_left: record.uses_left,
        labels: record.labels,
    }))
}

/// `POST /agent/enroll`: exchanges an enrolment token for an agent id and credential, plus the NATS
/// URL the agent should use when the server has one for agents.
#[utoipa::path(post, path = "/api/v1/agent/enroll", tag = "agent", request_body = EnrollRequest,
    responses((status = 201, description = "Enrolled", body = Enrolled)))]
pub async fn enroll_agent(
    state: web::Data<AppState>,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let enrollment = state.auth.enroll(&body.token, &body.hostname, body.labels).await?;
    // The token is spent and the credential exists: answer it whatever happens next. The session
    // (so an agent that never heartbeats still goes offline) and the event are best effort.
    match state.store.get_agent(&enrollment.agent_id).await {
        Ok(agent) => {
            state.events.publish("agent", &agent.id, "agent.enrolled", &agent).await;
            if let Err(e) = state.registry.rehydrate(vec![agent]).await {
                tracing::warn!(agent.id = %enrollment.agent_id, error = %e, "cannot start the new agent's session");
            }
        }
        Err(e) => tracing::warn!(agent.id = %enrollment.agent_id, error = %e, "cannot read the new agent back"),
    }
    let nats_url = state.settings.bus.agent_nats_url.as_ref().map(|url| url.expose().to_string());
    Ok(HttpResponse::Created().json(Enrolled {
        agent_id: enrollment.agent_id,
        credential: enrollment.credential,
        labels: enrollment.labels,
        nats_url,
    }))
}

/// `GET /agent/me`: lets an agent check its stored credential still works, and who it is.
#[utoipa::path(get, path = "/api/v1/agent/me", tag = "agent", responses((status = 200, description = "The calling agent", body = AgentIdentity)))]
pub async fn get_agent_me(agent: CurrentAgent) -> HttpResponse {
    HttpResponse::Ok().json(agent.0)
}

/// `DELETE /agents/{id}/credential`: every later call with the agent's credential is refused.
#[utoipa::path(delete, path = "/api/v1/agents/{id}/credential", tag = "fleet",
    params(("id" = String, Path, description = "Agent id")), responses((status = 204, description = "Revoked")))]
pub async fn revoke_agent_credential(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.store.revoke_agent_credential(&id).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    state.registry.forget(&id);
    state.events.publish("agent", &id, "agent.credential_revoked", serde_json::json!({"id": *id})).await;
    tracing::info!(agent.id = %id, "agent credential revoked");
    Ok(HttpResponse::NoContent().finish())
}
