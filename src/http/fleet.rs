//! `/api/v1/agents`: the fleet as operators see it.

use actix_web::{web, HttpResponse};
use phoenix_actors::agents::{AgentFilter, AgentState};
use phoenix_actors::labels::{validate_labels, LabelSelector, Labels};
use serde::Deserialize;

use super::paging::PageQuery;
use super::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct AgentListQuery {
    state: Option<String>,
    /// `env=prod,region=eu`
    selector: Option<String>,
    // Written out rather than flattened: serde_urlencoded cannot parse numbers inside a flattened struct.
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    labels: Labels,
}

/// `GET /agents?state=&selector=&limit=&cursor=`
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
pub async fn get_agent(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let agent = state.store.get_agent(&id).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    Ok(HttpResponse::Ok().json(agent))
}

/// `PATCH /agents/{id}` `{labels}`: replaces the labels.
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
pub async fn delete_agent(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.store.delete_agent(&id).await.map_err(|e| ApiError::from(e).for_entity("agent", &id))?;
    state.registry.forget(&id);
    state.events.publish("agent", &id, "agent.deleted", serde_json::json!({"id": *id})).await;
    tracing::info!(agent.id = %id, "agent decommissioned");
    Ok(HttpResponse::NoContent().finish())
}
