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
use crate::nats_identity::{AgentNatsCredential, IssueError};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    /// How many agents may enrol with the token (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 100000)]
    uses: i32,
    /// Lifetime; default `auth.enrollment_token_ttl_secs`.
    #[schema(minimum = 1, maximum = 31622400)]
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
    #[schema(min_length = 1, max_length = 253, pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")]
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
    /// The first token(s) of every NATS subject of this installation.
    nats_subject_prefix: String,
    /// `agent_jwt`: before connecting to `nats_url` the agent makes its own NATS user key and gets a
    /// JWT for it from `POST /api/v1/agent/nats-credentials`; `url`: any credentials are in `nats_url`.
    nats_auth: NatsAuth,
}

/// How an agent authenticates to NATS.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NatsAuth {
    /// Its own NATS user key and a JWT Phoenix signs for it.
    AgentJwt,
    /// What `nats_url` carries (the shared `agent` user), or nothing.
    Url,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsCredentialsRequest {
    /// The agent's own NATS user public key (`U…`, an nkey); its seed never leaves the agent.
    public_key: String,
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
        nats_subject_prefix: state.settings.bus.subject_prefix.clone(),
        nats_auth: if state.nats_identities.is_some() { NatsAuth::AgentJwt } else { NatsAuth::Url },
    }))
}

/// `POST /agent/nats-credentials`: a NATS user JWT for the calling agent's own key, allowing only its
/// own subjects. Registering a new key revokes the agent's earlier ones.
#[utoipa::path(post, path = "/api/v1/agent/nats-credentials", tag = "agent", request_body = NatsCredentialsRequest,
    responses((status = 200, description = "The agent's NATS credential", body = AgentNatsCredential),
        (status = 404, description = "The server gives agents no NATS identities of their own"),
        (status = 409, description = "The key was revoked or is another agent's: make a new one"),
        (status = 429, description = "The agent registered as many new keys as it may in a day"),
        (status = 422, description = "Not a NATS user public key")))]
pub async fn issue_nats_credentials(
    state: web::Data<AppState>,
    agent: CurrentAgent,
    body: web::Json<NatsCredentialsRequest>,
) -> Result<HttpResponse, ApiError> {
    let Some(identities) = &state.nats_identities else {
        // 404: there is no such thing on this server; the agent uses the NATS URL as it is.
        return Err(ApiError::NotFound(
            "this server gives agents no NATS identities of their own (no bus.nats_trust_file)".into(),
        ));
    };
    match identities.issue(&agent.0.id, &body.public_key).await {
        Ok(credential) => Ok(HttpResponse::Ok().json(credential)),
        Err(IssueError::BadKey(detail)) => Err(ApiError::invalid(vec![("public_key".into(), detail)])),
        Err(IssueError::Refused(detail)) => Err(ApiError::Conflict(detail)),
        Err(e @ IssueError::TooManyKeys) => {
            // Refused and counted like the gateway's refusals of agent messages.
            state.gateway.stats().dropped("too_many_nats_keys");
            Err(ApiError::TooManyRequests { code: "too_many_nats_keys", detail: e.to_string(), retry_after_secs: 3600 })
        }
        Err(IssueError::Store(e)) => Err(e.into()),
        Err(IssueError::Trust(e)) => Err(ApiError::Internal(e.into())),
    }
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
    if let Some(identities) = &state.nats_identities {
        identities.revocations_changed();
    }
    state.registry.forget(&id);
    state.events.publish("agent", &id, "agent.credential_revoked", serde_json::json!({"id": *id})).await;
    tracing::info!(agent.id = %id, "agent credential revoked");
    Ok(HttpResponse::NoContent().finish())
}
