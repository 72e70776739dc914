//! `/api/v1/agents`: the fleet as operators see it.

use actix_web::{web, HttpResponse};
use phoenix_actors::agents::{Agent, AgentFilter, AgentState};
use phoenix_actors::labels::{validate_labels, LabelSelector, Labels};
use phoenix_actors::paging::Page;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::paging::PageQuery;
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentListQuery {
    /// Only agents in this state.
    #[param(value_type = Option<AgentState>)]
    state: Option<String>,
    /// Only agents with all these labels: `env=prod,region=eu`.
    selector: Option<String>,
    // Written out rather than flattened: serde_urlencoded cannot parse numbers inside a flattened struct.
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    /// The agent's new labels (all of them).
    labels: Labels,
}

/// `GET /agents?state=&selector=&limit=&cursor=`
#[utoipa::path(get, path = "/api/v1/agents", tag = "fleet", params(AgentListQuery),
    responses((status = 200, description = "A page of agents", body = Page<Agent>)))]
pub async fn list_agents(
    state: web::Data<AppState>,
    query: web::Query<AgentListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = AgentFilter {
        state: query.state.as_deref().map(str::parse::<AgentState>).transpose().map_err(ApiError::BadRequest)?,
        selector: query
            .selector
            .as_deref()
            .map(LabelSelector::parse)
            .transpose()
            .map_err(ApiError::BadRequest)?
            .unwrap_or_default(),
    };
    Ok(HttpResponse::Ok().json(
        state
            .store
            .list_agents(&filter, PageQuery { limit: query.limit, cursor: query.cursor.clone() }.page()?)
            .await?,
    ))
}

/// `GET /agents/{id}`
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "fleet", params(("id" = String, Path, description = "Agent id")),
    responses((status = 200, description = "The agent", body = Agent)))]
pub async fn get_agent(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let agent = state.store.get_agent(&id).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    Ok(HttpResponse::Ok().json(agent))
}

/// `PATCH /agents/{id}` `{labels}`: replaces the labels.
#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "fleet", params(("id" = String, Path, description = "Agent id")), request_body = UpdateAgentRequest,
    responses((status = 200, description = "The agent", body = Agent)))]
pub async fn update_agent(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UpdateAgentRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let problems = validate_labels(&body.labels);
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let agent =
        state.store.set_agent_labels(&id, body.labels).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    Ok(HttpResponse::Ok().json(agent))
}

/// `DELETE /agents/{id}`: decommissions the agent — its record, credential and tasks are removed.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "fleet", params(("id" = String, Path, description = "Agent id")), responses((status = 204, description = "Decommissioned")))]
pub async fn delete_agent(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.store.delete_agent(&id).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    if let Some(identities) = &state.nats_identities {
        identities.revocations_changed();
    }
    state.registry.forget(&id);
    state.events.publish("agent", &id, "agent.deleted", serde_json::json!({"id": *id})).await;
    tracing::info!(agent.id = %id, "agent decommissioned");
    Ok(HttpResponse::NoContent().finish())
}
