//! `/api/v1/experiments`: create, list, read, delete, the phase actions, and what was measured.

use actix_web::{web, HttpResponse};
use phoenix_actors::experiments::kpis::MIN_INTERVALS;
use phoenix_actors::experiments::runtime::{Command, CommandError, PromoteRequest};
use phoenix_actors::experiments::view::ExperimentView;
use phoenix_actors::experiments::{Action, Experiment, ExperimentEvent, ExperimentSpec, NewExperiment, Phase, Target};
use phoenix_actors::labels::validate_labels;
use phoenix_actors::limits;
use phoenix_actors::paging::Page;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::IntoParams;

use super::access::CurrentUser;
use super::analytics::PriceModel;
use super::paging::PageQuery;
use super::pipelines::resolve;
use super::{ApiError, AppState};

/// Longest measurement window: 30 days.
const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;
/// Longest warm-up: one day.
const MAX_WARMUP_SECS: u64 = 24 * 3600;
/// Most agents listed by id, and most critical processes.
const MAX_LISTED: usize = 10_000;
const MAX_CRITICAL: usize = 1000;

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::NotAllowed { action, phase, allowed } => {
                let mut extra = Map::new();
                extra.insert("phase".into(), json!(phase));
                extra.insert("allowed_actions".into(), json!(allowed));
                let allowed_text = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
                ApiError::StateConflict {
                    detail: format!(
                        "cannot {action} an experiment that is {}; allowed now: {allowed_text}",
                        phase.as_str()
                    ),
                    extra,
                }
            }
            CommandError::Invalid(reason) => ApiError::invalid(vec![("target".into(), reason)]),
            CommandError::Conflict(reason) => ApiError::Conflict(reason),
            CommandError::Missing(what) => ApiError::NotFound(what),
            CommandError::Unavailable(detail) => ApiError::Unavailable { detail, extra: Map::new() },
            CommandError::Store(e) => ApiError::from(e),
        }
    }
}

/// Every problem of a target (experiments and deployments share the shape).
pub(super) fn check_target(target: &Target) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match target {
        Target::Agents(ids) if ids.is_empty() || ids.len() > MAX_LISTED => {
            problems.push(("target.agents".into(), format!("must list 1 to {MAX_LISTED} agent ids")))
        }
        Target::Agents(ids) if ids.iter().any(|id| id.trim().is_empty()) => {
            problems.push(("target.agents".into(), "agent ids must not be empty".into()))
        }
        Target::Selector(labels) => {
            for (path, message) in validate_labels(labels) {
                problems.push((path.replacen("labels", "target.selector", 1), message));
            }
        }
        Target::Agents(_) => {}
    }
    problems
}

/// Every problem of the submitted fields other than the pipelines. Agents measure every
/// `measure_interval_secs`; a window too short for the KPIs' minimum of intervals could only end in
/// "not enough data", so it is refused up front.
fn check_spec(spec: &ExperimentSpec, measure_interval_secs: u64) -> Vec<(String, String)> {
    let mut problems = check_target(&spec.target);
    let mut problem = |path: &str, message: String| problems.push((path.to_string(), message));
    let texts =
        [limits::bad_name("name", &spec.name), limits::too_long("description", &spec.description, limits::TEXT_CHARS)];
    for (path, message) in texts.into_iter().flatten() {
        problem(&path, message);
    }
    if spec.duration_secs == 0 || spec.duration_secs > MAX_DURATION_SECS {
        problem("duration_secs", format!("must be between 1 and {MAX_DURATION_SECS} (30 days)"));
    } else if spec.duration_secs < MIN_INTERVALS as u64 * measure_interval_secs {
        problem(
            "duration_secs",
            format!(
                "must be at least {} s: the KPIs need {MIN_INTERVALS} measurements and agents measure every {measure_interval_secs} s",
                MIN_INTERVALS as u64 * measure_interval_secs
            ),
        );
    }
    if spec.warmup_secs > MAX_WARMUP_SECS {
        problem("warmup_secs", format!("must be at most {MAX_WARMUP_SECS} (a day)"));
    }
    if spec.critical_processes.len() > MAX_CRITICAL {
        problem("critical_processes", format!("at most {MAX_CRITICAL}"));
    }
    if spec.critical_processes.iter().any(|p| p.trim().is_empty() || p.len() > 255) {
        problem("critical_processes", "names must be 1 to 255 characters".into());
    }
    for (i, entry) in spec.critical_processes.iter().enumerate() {
        if phoenix_pipeline::selector::Selector::is_selector(entry) {
            if let Err(why) = phoenix_pipeline::selector::Selector::parse(entry) {
                problem(&format!("critical_processes[{i}]"), format!("not a series selector: {why}"));
            }
        }
    }
    let c = &spec.success_criteria;
    for (path, value) in [
        ("success_criteria.min_cardinality_reduction_pct", c.min_cardinality_reduction_pct),
        ("success_criteria.min_accuracy_pct", c.min_accuracy_pct),
    ] {
        if !(0.0..=100.0).contains(&value) {
            problem(path, "must be between 0 and 100".into());
        }
    }
    if !c.max_cpu_overhead_pct.is_finite() || c.max_cpu_overhead_pct < 0.0 {
        problem("success_criteria.max_cpu_overhead_pct", "must be a number of at least 0".into());
    }
    problems
}

/// The problems of a 422, or nothing.
fn problems_of(error: ApiError) -> Result<Vec<(String, String)>, ApiError> {
    match error {
        ApiError::Unprocessable { errors, .. } => Ok(errors.into_iter().map(|p| (p.path, p.message)).collect()),
        other => Err(other),
    }
}

/// `POST /experiments`: both pipelines rendered and validated; 422 lists every problem at once.
#[utoipa::path(post, path = "/api/v1/experiments", tag = "experiments", request_body = ExperimentSpec,
    responses((status = 201, description = "The experiment, `created`", body = ExperimentView)))]
pub async fn create_experiment(
    state: web::Data<AppState>,
    caller: CurrentUser,
    body: web::Json<ExperimentSpec>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner();
    let mut problems = check_spec(&spec, state.settings.agents.heartbeat_interval_secs);
    let baseline = resolve(&state, &spec.baseline, "baseline").await;
    let candidate = resolve(&state, &spec.candidate, "candidate").await;
    let (baseline, candidate) = match (baseline, candidate) {
        (Ok(b), Ok(c)) => (Some(b), Some(c)),
        (b, c) => {
            for outcome in [b.err(), c.err()].into_iter().flatten() {
                problems.extend(problems_of(outcome)?);
            }
            (None, None)
        }
    };
    let (Some(baseline), Some(candidate)) = (baseline, candidate) else {
        return Err(ApiError::invalid(problems));
    };
    if let Err(why) = spec.candidate_as_tried(&candidate.text) {
        problems.push(("shadow_exporter".into(), why));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let new = NewExperiment {
        spec,
        baseline_config: baseline.text,
        candidate_config: candidate.text,
        created_by: Some(caller.user.id),
    };
    let experiment = state.experiments.create(new).await?;
    Ok(HttpResponse::Created().json(experiment.view()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExperimentListQuery {
    /// Only experiments in this phase.
    #[param(value_type = Option<Phase>)]
    phase: Option<String>,
    /// Deprecated name of `phase`.
    #[param(value_type = Option<Phase>)]
    status: Option<String>,
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /experiments?phase=&limit=&cursor=` (newest first)
#[utoipa::path(get, path = "/api/v1/experiments", tag = "experiments", params(ExperimentListQuery),
    responses((status = 200, description = "A page of experiments", body = Page<ExperimentView>)))]
pub async fn list_experiments(
    state: web::Data<AppState>,
    query: web::Query<ExperimentListQuery>,
) -> Result<HttpResponse, ApiError> {
    let phase = match (query.phase.as_deref(), query.status.as_deref()) {
        (Some(phase), Some(status)) if phase != status => {
            return Err(ApiError::BadRequest(format!(
                "phase={phase} and status={status} name the same filter (status is its old name): give one"
            )));
        }
        (phase, status) => phase.or(status),
    };
    let phase = phase.map(str::parse::<Phase>).transpose().map_err(ApiError::BadRequest)?;
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() }.page()?;
    let found = state.store.list_experiments(phase, page).await?;
    let items: Vec<_> = found.items.iter().map(Experiment::view).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor: found.next_cursor }))
}

async fn load(state: &AppState, id: &str) -> Result<Experiment, ApiError> {
    state.store.get_experiment(id).await.map_err(|e| ApiError::from(e).for_entity("experiment", id))
}

/// `GET /experiments/{id}`
#[utoipa::path(get, path = "/api/v1/experiments/{id}", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "The experiment", body = ExperimentView)))]
pub async fn get_experiment(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load(&state, &id).await?.view()))
}

/// `DELETE /experiments/{id}`: 409 while active.
#[utoipa::path(delete, path = "/api/v1/experiments/{id}", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete_experiment(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.experiments.delete(&id).await.map_err(|e| ApiError::from(e).for_entity("experiment", &id))?;
    Ok(HttpResponse::NoContent().finish())
}

async fn act(
    state: &AppState,
    id: &str,
    caller: CurrentUser,
    action: Action,
    promote: PromoteRequest,
) -> Result<HttpResponse, ApiError> {
    let command = Command { action, actor: Some(caller.user.id), promote };
    let experiment = state.experiments.command(id, command).await.map_err(|e| match e {
        // The experiment itself is missing; other missing things name themselves.
        CommandError::Store(phoenix_actors::StoreError::NotFound) => ApiError::from(e).for_entity("experiment", id),
        other => ApiError::from(other),
    })?;
    Ok(HttpResponse::Ok().json(experiment.view()))
}

/// `POST /experiments/{id}/start`
#[utoipa::path(post, path = "/api/v1/experiments/{id}/start", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Started: `pending`, then `deploying`", body = ExperimentView)))]
pub async fn start_experiment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    act(&state, &id, caller, Action::Start, PromoteRequest::default()).await
}

/// `POST /experiments/{id}/stop`
#[utoipa::path(post, path = "/api/v1/experiments/{id}/stop", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Stopping", body = ExperimentView)))]
pub async fn stop_experiment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    act(&state, &id, caller, Action::Stop, PromoteRequest::default()).await
}

/// `POST /experiments/{id}/rollback`
#[utoipa::path(post, path = "/api/v1/experiments/{id}/rollback", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Rolling back", body = ExperimentView)))]
pub async fn rollback_experiment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
) -> Result<HttpResponse, ApiError> {
    act(&state, &id, caller, Action::Rollback, PromoteRequest::default()).await
}

/// `POST /experiments/{id}/promote {deployment_id?, name?, notes?}` (an empty body is fine).
#[utoipa::path(post, path = "/api/v1/experiments/{id}/promote", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    request_body(content = Option<PromoteRequest>, description = "May be empty: a new deployment named after the experiment"),
    responses((status = 200, description = "Promoted: the candidate is a deployment's new version", body = ExperimentView)))]
pub async fn promote_experiment(
    state: web::Data<AppState>,
    id: web::Path<String>,
    caller: CurrentUser,
    body: Option<web::Json<PromoteRequest>>,
) -> Result<HttpResponse, ApiError> {
    let request = body.map(web::Json::into_inner).unwrap_or_default();
    let mut problems = Vec::new();
    problems.extend(request.name.as_deref().and_then(|name| limits::bad_name("name", name)));
    if request.name.is_some() && request.deployment_id.is_some() {
        problems.push(("name".into(), "a new deployment's name; not with deployment_id".into()));
    }
    problems.extend(request.notes.as_deref().and_then(|notes| limits::too_long("notes", notes, limits::TEXT_CHARS)));
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    act(&state, &id, caller, Action::Promote, request).await
}

/// `GET /experiments/{id}/events`: the history, oldest first.
#[utoipa::path(get, path = "/api/v1/experiments/{id}/events", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "The whole history (one page)", body = Page<ExperimentEvent>)))]
pub async fn list_experiment_events(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let items: Vec<ExperimentEvent> =
        state.store.experiment_events(&id).await.map_err(|e| ApiError::from(e).for_entity("experiment", &id))?;
    Ok(HttpResponse::Ok().json(Page { items, next_cursor: None }))
}

/// The KPIs: the stored final ones once analysed, else computed live from the window so far.
async fn current_kpis(state: &AppState, experiment: &Experiment) -> Result<Value, ApiError> {
    if let Some(results) = &experiment.results {
        return Ok(results.clone());
    }
    Ok(state.experiments.runtime().kpis(experiment, false).await?)
}

/// `GET /experiments/{id}/kpis`: live during `running`, final after.
#[utoipa::path(get, path = "/api/v1/experiments/{id}/kpis", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "The KPIs of both variants, the comparison and the verdict once final \
        (`final`, `baseline`, `candidate`, `comparison`, `cost`, `verdict`, `insufficient_data`, `phase`)", body = Object)))]
pub async fn get_experiment_kpis(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let experiment = load(&state, &id).await?;
    let mut kpis = current_kpis(&state, &experiment).await?;
    kpis["phase"] = json!(experiment.phase);
    Ok(HttpResponse::Ok().json(kpis))
}

/// `GET /experiments/{id}/metrics`: per-variant, per-interval measurements for charts.
#[utoipa::path(get, path = "/api/v1/experiments/{id}/metrics", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Per variant, one point per measured interval", body = Object)))]
pub async fn get_experiment_metrics(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let experiment = load(&state, &id).await?;
    Ok(HttpResponse::Ok().json(state.experiments.runtime().timeline(&experiment).await?))
}

/// `GET /experiments/{id}/cost-analysis`: what each variant costs under the configured price model.
#[utoipa::path(get, path = "/api/v1/experiments/{id}/cost-analysis", tag = "experiments", params(("id" = String, Path, description = "Experiment id")),
    responses((status = 200, description = "Each variant's series, points and cost a month and a year, the savings, \
        and the price model; `insufficient_data` instead while too little was measured", body = Object)))]
pub async fn get_experiment_cost(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let experiment = load(&state, &id).await?;
    let kpis = current_kpis(&state, &experiment).await?;
    let price_model = PriceModel::of(&state);
    let body = match kpis.get("cost") {
        Some(cost) => json!({
            "final": kpis["final"],
            "price_model": price_model,
            "baseline": {"active_series": kpis["baseline"]["series"]["mean"], "points_per_sec": kpis["baseline"]["points_per_sec"]["mean"],
                         "monthly": cost["baseline_monthly"], "yearly": kpis["baseline"]["cost_yearly"]},
            "candidate": {"active_series": kpis["candidate"]["series"]["mean"], "points_per_sec": kpis["candidate"]["points_per_sec"]["mean"],
                          "monthly": cost["candidate_monthly"], "yearly": kpis["candidate"]["cost_yearly"]},
            "monthly_saving": cost["monthly_saving"],
            "yearly_saving": cost["yearly_saving"],
        }),
        None => {
            json!({"final": kpis["final"], "price_model": price_model, "insufficient_data": kpis["insufficient_data"]})
        }
    };
    Ok(HttpResponse::Ok().json(body))
}
