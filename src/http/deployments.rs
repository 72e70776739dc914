//! `/api/v1/pipelines/deployments`: a pipeline on a fleet, its immutable versions, rollback, and the
//! rollout the supervisor drives.

use actix_web::{web, HttpResponse};
use phoenix_actors::deployments::rollout::AgentRollout;
use phoenix_actors::deployments::supervisor::Operation;
use phoenix_actors::deployments::{
    Deployment, DeploymentChange, DeploymentEvent, DeploymentFilter, DeploymentStatus, DeploymentVersion,
    DeploymentView, NewDeployment, NewVersion, Rollout,
};
use phoenix_actors::experiments::Target;
use phoenix_actors::limits;
use phoenix_actors::paging::Page;
use phoenix_actors::pipelines::PipelineSpec;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::CurrentUser;
use super::experiments::check_target;
use super::paging::PageQuery;
use super::pipelines::resolve;
use super::{ApiError, AppState};
use phoenix_pipeline::diff::{diff_lines, unified, DiffLine};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    name: String,
    pipeline: PipelineSpec,
    target: Target,
    /// All at once unless given.
    #[serde(default = "all_at_once")]
    rollout: Rollout,
    /// Notes of version 1.
    #[serde(default)]
    notes: String,
}

fn all_at_once() -> Rollout {
    Rollout::AllAtOnce
}

fn check_rollout(rollout: &Rollout, problems: &mut Vec<(String, String)>) {
    if let Rollout::Waves { first_batch, growth, interval_secs, max_failures: _ } = rollout {
        if *first_batch == 0 {
            problems.push(("rollout.first_batch".into(), "must be at least 1".into()));
        }
        if !growth.is_finite() || *growth < 1.0 || *growth > 100.0 {
            problems.push(("rollout.growth".into(), "must be between 1 and 100".into()));
        }
        if *interval_secs > 24 * 3600 {
            problems.push(("rollout.interval_secs".into(), "must be at most 86400 (a day)".into()));
        }
    }
}

fn check_name(name: &str, problems: &mut Vec<(String, String)>) {
    problems.extend(limits::bad_name("name", name));
}

/// Renders and validates the pipeline; every problem of the request in one 422.
async fn new_version(
    state: &AppState,
    pipeline: PipelineSpec,
    notes: String,
    actor: &str,
    mut problems: Vec<(String, String)>,
) -> Result<NewVersion, ApiError> {
    problems.extend(limits::too_long("notes", &notes, limits::TEXT_CHARS));
    match resolve(state, &pipeline, "pipeline").await {
        Ok(resolved) if problems.is_empty() => Ok(NewVersion {
            pipeline,
            config: resolved.text,
            config_hash: resolved.hash,
            notes,
            created_by: Some(actor.to_string()),
        }),
        Ok(_) => Err(ApiError::invalid(problems)),
        Err(ApiError::Unprocessable { errors, .. }) => {
            problems.extend(errors.into_iter().map(|p| (p.path, p.message)));
            Err(ApiError::invalid(problems))
        }
        Err(other) => Err(other),
    }
}

async fn announce_version(state: &AppState, version: &DeploymentVersion) {
    state.events.publish("deployment", &version.deployment_id, "deployment.version_created", version).await;
    state.deployments.nudge(&version.deployment_id);
}

/// `POST /pipelines/deployments`: rendered and validated; version 1 recorded and rolled out.
#[utoipa::path(post, path = "/api/v1/pipelines/deployments", tag = "deployments", request_body = CreateRequest,
    responses((status = 201, description = "The deployment", body = DeploymentView)))]
pub async fn create_deployment(
    state: web::Data<AppState>,
    caller: CurrentUser,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut problems = check_target(&body.target);
    check_name(&body.name, &mut problems);
    check_rollout(&body.rollout, &mut problems);
    let version = new_version(&state, body.pipeline, body.notes, &caller.user.id, problems).await?;
    let new = NewDeployment { name: body.name, target: body.target, rollout: body.rollout, version };
    let (deployment, version) = state.store.create_deployment(new, chrono::Utc::now()).await?;
    state.events.publish("deployment", &deployment.id, "deployment.created", deployment.view()).await;
    announce_version(&state, &version).await;
    Ok(HttpResponse::Created().json(deployment.view()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only deployments in this status.
    #[param(value_type = Option<DeploymentStatus>)]
    status: Option<String>,
    /// Only the deployment of this name.
    name: Option<String>,
    /// Only deployments whose current version comes from this template.
    template: Option<String>,
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /pipelines/deployments?status=&name=&template=` (newest first; deleted ones are not listed)
#[utoipa::path(get, path = "/api/v1/pipelines/deployments", tag = "deployments", params(ListQuery),
    responses((status = 200, description = "A page of deployments", body = Page<DeploymentView>)))]
pub async fn list_deployments(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = DeploymentFilter {
        status: query
            .status
            .as_deref()
            .map(str::parse::<DeploymentStatus>)
            .transpose()
            .map_err(ApiError::BadRequest)?,
        name: query.name.clone(),
        template: query.template.clone(),
    };
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() }.page()?;
    let found = state.store.list_deployments(&filter, page).await?;
    let items: Vec<_> = found.items.iter().map(Deployment::view).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor: found.next_cursor }))
}

async fn load(state: &AppState, id: &str) -> Result<Deployment, ApiError> {
    state.store.get_deployment(id).await.map_err(|e| ApiError::from(e).for_entity("deployment", id))
}

/// A deployment that may still change: 409 once deleted.
async fn load_live(state: &AppState, id: &str) -> Result<Deployment, ApiError> {
    let deployment = load(state, id).await?;
    if deployment.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("deployment {id} was deleted")));
    }
    Ok(deployment)
}

/// `GET /pipelines/deployments/{id}` (deleted ones too, with status `deleted`)
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 200, description = "The deployment", body = DeploymentView)))]
pub async fn get_deployment(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load(&state, &id).await?.view()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    pipeline: Option<PipelineSpec>,
    target: Option<Target>,
    rollout: Option<Rollout>,
    #[serde(default)]
    notes: String,
}

/// A deployment after a change, and the version the change made.
#[derive(Serialize, ToSchema)]
pub struct Changed<'a> {
    #[serde(flatten)]
    deployment: DeploymentView<'a>,
    /// The version the change created (`null` when the config did not change).
    new_version: Option<i32>,
}

/// `PATCH /pipelines/deployments/{id}`: a new version when the rendered config changes (the same
/// config makes none); target and rollout changes are recorded in the history.
#[utoipa::path(patch, path = "/api/v1/pipelines/deployments/{id}", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    request_body = PatchRequest, responses((status = 200, description = "The deployment", body = Changed)))]
pub async fn update_deployment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
    body: web::Json<PatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    load_live(&state, &id).await?;
    let mut problems = body.target.as_ref().map(check_target).unwrap_or_default();
    if let Some(rollout) = &body.rollout {
        check_rollout(rollout, &mut problems);
    }
    let version = match body.pipeline {
        Some(pipeline) => Some(new_version(&state, pipeline, body.notes, &caller.user.id, problems).await?),
        None if !problems.is_empty() => return Err(ApiError::invalid(problems)),
        None => None,
    };
    let change = DeploymentChange { version, target: body.target, rollout: body.rollout, actor: Some(caller.user.id) };
    let (deployment, created) = state
        .store
        .change_deployment(&id, change, chrono::Utc::now())
        .await
        .map_err(|e| ApiError::from(e).for_entity("deployment", &id))?;
    if let Some(version) = &created {
        announce_version(&state, version).await;
    } else {
        state.deployments.nudge(&deployment.id);
    }
    Ok(HttpResponse::Ok().json(Changed { deployment: deployment.view(), new_version: created.map(|v| v.version) }))
}

async fn operate(
    state: &AppState,
    id: &str,
    operation: Operation,
    caller: CurrentUser,
) -> Result<Deployment, ApiError> {
    load(state, id).await?;
    Ok(state.deployments.operate(id, operation, Some(caller.user.id)).await?)
}

/// `DELETE /pipelines/deployments/{id}`: removes the pipeline from every agent, then marks it deleted.
#[utoipa::path(delete, path = "/api/v1/pipelines/deployments/{id}", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_deployment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    operate(&state, &id, Operation::Delete, caller).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /pipelines/deployments/{id}/versions` (newest first)
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}/versions", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id"), PageQuery),
    responses((status = 200, description = "A page of versions", body = Page<DeploymentVersion>)))]
pub async fn list_versions(
    state: web::Data<AppState>,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = state
        .store
        .deployment_versions(&id, page.page()?)
        .await
        .map_err(|e| ApiError::from(e).for_entity("deployment", &id))?;
    Ok(HttpResponse::Ok().json(found))
}

async fn version(state: &AppState, id: &str, version: i32) -> Result<DeploymentVersion, ApiError> {
    load(state, id).await?;
    state.store.deployment_version(id, version).await.map_err(|e| match ApiError::from(e) {
        ApiError::NotFound(_) => ApiError::NotFound(format!("deployment {id} has no version {version}")),
        other => other,
    })
}

/// `GET /pipelines/deployments/{id}/versions/{version}` (with the rendered config)
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}/versions/{version}", tag = "deployments", params(("id" = String, Path, description = "Deployment id"), ("version" = i32, Path, description = "Version number")),
    responses((status = 200, description = "The version", body = DeploymentVersion)))]
pub async fn get_version(state: web::Data<AppState>, path: web::Path<(String, i32)>) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    Ok(HttpResponse::Ok().json(version(&state, &id, number).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The version compared against (the older one, usually).
    against: i32,
}

/// What changed from one version's config to another's.
#[derive(Serialize, ToSchema)]
pub struct Diff {
    from: i32,
    to: i32,
    /// Whether the rendered configs differ.
    changed: bool,
    lines: Vec<DiffLine>,
    /// The same as a unified diff.
    unified: String,
}

/// `GET /pipelines/deployments/{id}/versions/{v}/diff?against=w`: what changed from w to v.
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}/versions/{version}/diff", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id"), ("version" = i32, Path, description = "Version number"), DiffQuery),
    responses((status = 200, description = "The diff", body = Diff)))]
pub async fn diff_versions(
    state: web::Data<AppState>,
    path: web::Path<(String, i32)>,
    query: web::Query<DiffQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, number) = path.into_inner();
    let new = version(&state, &id, number).await?;
    let old = version(&state, &id, query.against).await?;
    let lines = diff_lines(&old.config, &new.config);
    Ok(HttpResponse::Ok().json(Diff {
        from: old.version,
        to: new.version,
        changed: old.config_hash != new.config_hash,
        unified: unified(&lines),
        lines,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version whose config to restore; the previous one when not given.
    version: Option<i32>,
    notes: Option<String>,
}

/// The deployment after a rollback, and the version the rollback made.
#[derive(Serialize, ToSchema)]
pub struct RolledBack<'a> {
    deployment: DeploymentView<'a>,
    version: DeploymentVersion,
}

/// `POST /pipelines/deployments/{id}/rollback {version?, notes?}`: version n+1 with the config of
/// `version` (default: the previous one); 409 when that version does not exist.
#[utoipa::path(post, path = "/api/v1/pipelines/deployments/{id}/rollback", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    request_body(content = Option<RollbackRequest>, description = "May be empty"),
    responses((status = 200, description = "The new version", body = RolledBack)))]
pub async fn rollback_deployment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
    body: Option<web::Json<RollbackRequest>>,
) -> Result<HttpResponse, ApiError> {
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    if let Some(problem) = body.notes.as_deref().and_then(|n| limits::too_long("notes", n, limits::TEXT_CHARS)) {
        return Err(ApiError::invalid(vec![problem]));
    }
    load_live(&state, &id).await?;
    let (deployment, version) = state
        .store
        .rollback_deployment(&id, body.version, body.notes, Some(caller.user.id), chrono::Utc::now())
        .await
        .map_err(|e| ApiError::from(e).for_entity("deployment", &id))?;
    announce_version(&state, &version).await;
    Ok(HttpResponse::Ok().json(RolledBack { deployment: deployment.view(), version }))
}

/// Where a deployment's rollout stands, agent by agent.
#[derive(Serialize, ToSchema)]
pub struct RolloutStatus {
    deployment_id: String,
    status: DeploymentStatus,
    status_detail: Option<serde_json::Value>,
    current_version: i32,
    agents: Vec<AgentRollout>,
}

/// `GET /pipelines/deployments/{id}/status`: per agent, the desired and applied version, state and error.
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}/status", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 200, description = "The rollout, per agent", body = RolloutStatus)))]
pub async fn get_status(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let deployment = load(&state, &id).await?;
    let agents = state.rollouts.agent_status(&deployment).await?;
    Ok(HttpResponse::Ok().json(RolloutStatus {
        deployment_id: deployment.id,
        status: deployment.status,
        status_detail: deployment.status_detail,
        current_version: deployment.current_version,
        agents,
    }))
}

/// `POST /pipelines/deployments/{id}/pause`: nothing more is sent until resumed.
#[utoipa::path(post, path = "/api/v1/pipelines/deployments/{id}/pause", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 200, description = "The deployment", body = DeploymentView)))]
pub async fn pause_deployment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(operate(&state, &id, Operation::Pause, caller).await?.view()))
}

/// `POST /pipelines/deployments/{id}/resume`: the rollout continues; agents that failed before get
/// another try. 409 unless paused.
#[utoipa::path(post, path = "/api/v1/pipelines/deployments/{id}/resume", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 200, description = "The deployment", body = DeploymentView)))]
pub async fn resume_deployment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(operate(&state, &id, Operation::Resume, caller).await?.view()))
}

/// `GET /pipelines/deployments/{id}/events`: the history, oldest first.
#[utoipa::path(get, path = "/api/v1/pipelines/deployments/{id}/events", tag = "deployments", params(("id" = String, Path, description = "Deployment id")),
    responses((status = 200, description = "The whole history (one page)", body = Page<DeploymentEvent>)))]
pub async fn list_events(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let items: Vec<DeploymentEvent> =
        state.store.deployment_events(&id).await.map_err(|e| ApiError::from(e).for_entity("deployment", &id))?;
    Ok(HttpResponse::Ok().json(Page { items, next_cursor: None }))
}
