//! `/api/v1/pipelines/*`: templates, validation, rendering and preview.

use actix_web::{web, HttpResponse};
use phoenix_actors::limits;
use phoenix_actors::paging::Page;
use phoenix_actors::pipelines::PipelineSpec;
use phoenix_actors::store::StoredTemplate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::access::CurrentUser;
use super::{ApiError, AppState};
use phoenix_pipeline::config::{config_hash, validate_text, PipelineConfig};
use phoenix_pipeline::preview::{self, PreviewResult, PreviewSource};
use phoenix_pipeline::templates::{self, ParamSpec, Template};
use phoenix_pipeline::{as_pairs, Problem};

/// A config that rendered (or parsed) and validated.
pub struct Resolved {
    pub text: String,
    pub config: PipelineConfig,
    pub hash: String,
    pub warnings: Vec<Problem>,
}

/// A 422 listing every problem, with the warnings alongside.
fn unprocessable(errors: Vec<Problem>, warnings: Vec<Problem>) -> ApiError {
    let mut error = ApiError::invalid(as_pairs(errors));
    if let ApiError::Unprocessable { extra, .. } = &mut error {
        extra.insert("warnings".into(), serde_json::to_value(warnings).unwrap_or(Value::Null));
    }
    error
}

fn prefixed(prefix: &str, problems: Vec<Problem>) -> Vec<Problem> {
    if prefix.is_empty() {
        return problems;
    }
    problems
        .into_iter()
        .map(|p| Problem::new(format!("{prefix}.{}", p.path).trim_end_matches('.'), p.message))
        .collect()
}

fn from_stored(stored: StoredTemplate) -> Result<Template, ApiError> {
    let parameters: Vec<ParamSpec> = serde_json::from_value(stored.parameters).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("stored template {} has corrupt parameters: {e}", stored.name))
    })?;
    Ok(Template { name: stored.name, description: stored.description, parameters, body: stored.body, builtin: false })
}

/// A built-in or user template by name.
async fn find_template(state: &AppState, name: &str) -> Result<Option<Template>, ApiError> {
    if let Some(builtin) = templates::builtin(name) {
        return Ok(Some(builtin));
    }
    state.store.get_template(name).await?.map(from_stored).transpose()
}

/// Renders or parses a spec and validates it; problems are prefixed with `prefix` (`baseline`, …).
pub async fn resolve(state: &AppState, spec: &PipelineSpec, prefix: &str) -> Result<Resolved, ApiError> {
    let text = match spec {
        PipelineSpec::Template { template, parameters } => {
            let Some(found) = find_template(state, template).await? else {
                let path = if prefix.is_empty() { "template".to_string() } else { format!("{prefix}.template") };
                return Err(unprocessable(vec![Problem::new(&path, format!("no template '{template}'"))], Vec::new()));
            };
            templates::render(&found, parameters)
                .map_err(|problems| unprocessable(prefixed(prefix, problems), Vec::new()))?
                .config
        }
        PipelineSpec::Inline { config } => config.clone(),
    };
    let (config, validation) = validate_text(&text);
    match config {
        Some(config) if validation.is_valid() => {
            Ok(Resolved { hash: config_hash(&text), text, config, warnings: prefixed(prefix, validation.warnings) })
        }
        _ => Err(unprocessable(prefixed(prefix, validation.errors), prefixed(prefix, validation.warnings))),
    }
}

/// A template without its body.
#[derive(Serialize, ToSchema)]
pub struct TemplateSummary {
    name: String,
    description: String,
    parameters: Vec<ParamSpec>,
    builtin: bool,
}

/// `GET /pipelines/templates`: built-in templates first, then user templates by name.
#[utoipa::path(get, path = "/api/v1/pipelines/templates", tag = "pipelines",
    responses((status = 200, description = "Every template (one page)", body = Page<TemplateSummary>)))]
pub async fn list_templates(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut all = templates::builtins();
    for stored in state.store.list_templates().await? {
        all.push(from_stored(stored)?);
    }
    let items: Vec<TemplateSummary> = all
        .into_iter()
        .map(|t| TemplateSummary {
            name: t.name,
            description: t.description,
            parameters: t.parameters,
            builtin: t.builtin,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor: None }))
}

/// `GET /pipelines/templates/{name}`: with its body.
#[utoipa::path(get, path = "/api/v1/pipelines/templates/{name}", tag = "pipelines",
    params(("name" = String, Path, description = "Template name")),
    responses((status = 200, description = "The template", body = Template)))]
pub async fn get_template(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let template =
        find_template(&state, &name).await?.ok_or_else(|| ApiError::NotFound(format!("template {name} not found")))?;
    Ok(HttpResponse::Ok().json(template))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Vec<ParamSpec>,
    body: String,
}

/// `POST /pipelines/templates`: validated before it is saved (it must render into a valid config).
#[utoipa::path(post, path = "/api/v1/pipelines/templates", tag = "pipelines", request_body = NewTemplate,
    responses((status = 201, description = "The template", body = Template)))]
pub async fn create_template(
    state: web::Data<AppState>,
    caller: CurrentUser,
    body: web::Json<NewTemplate>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if templates::builtin(&body.name).is_some() {
        return Err(ApiError::Conflict(format!("'{}' is a built-in template", body.name)));
    }
    let template = Template {
        name: body.name,
        description: body.description,
        parameters: body.parameters,
        body: body.body,
        builtin: false,
    };
    let mut problems = templates::check_template(&template);
    if let Some((path, message)) = limits::too_long("description", &template.description, limits::TEXT_CHARS) {
        problems.push(Problem::new(&path, message));
    }
    if !problems.is_empty() {
        return Err(unprocessable(problems, Vec::new()));
    }
    let stored = StoredTemplate {
        name: template.name.clone(),
        description: template.description.clone(),
        parameters: serde_json::to_value(&template.parameters).map_err(|e| ApiError::Internal(e.into()))?,
        body: template.body.clone(),
        created_by: Some(caller.user.id),
        created_at: chrono::Utc::now(),
    };
    state.store.create_template(stored).await.map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("a template named '{}' exists", template.name)),
        other => other,
    })?;
    Ok(HttpResponse::Created().json(template))
}

/// A pipeline that rendered (a 422 lists the problems otherwise).
#[derive(Serialize, ToSchema)]
pub struct Rendered {
    /// The config in YAML.
    config: String,
    config_hash: String,
    warnings: Vec<phoenix_pipeline::Problem>,
}

impl From<Resolved> for Rendered {
    fn from(resolved: Resolved) -> Rendered {
        Rendered { config: resolved.text, config_hash: resolved.hash, warnings: resolved.warnings }
    }
}

/// A pipeline that rendered and validated.
#[derive(Serialize, ToSchema)]
pub struct Validated {
    /// Always true (a 422 lists the problems otherwise).
    valid: bool,
    #[serde(flatten)]
    rendered: Rendered,
}

/// `POST /pipelines/validate` with a spec: 200 `{valid, config, config_hash, warnings}` or 422 listing
/// every problem.
#[utoipa::path(post, path = "/api/v1/pipelines/validate", tag = "pipelines", request_body = PipelineSpec,
    responses((status = 200, description = "Valid: the config and its warnings", body = Validated)))]
pub async fn validate_pipeline(
    state: web::Data<AppState>,
    body: web::Json<PipelineSpec>,
) -> Result<HttpResponse, ApiError> {
    let resolved = resolve(&state, &body, "").await?;
    Ok(HttpResponse::Ok().json(Validated { valid: true, rendered: resolved.into() }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    template: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// `POST /pipelines/render`: `{config, config_hash, warnings}`.
#[utoipa::path(post, path = "/api/v1/pipelines/render", tag = "pipelines", request_body = RenderRequest,
    responses((status = 200, description = "The rendered config and its warnings", body = Rendered)))]
pub async fn render_pipeline(
    state: web::Data<AppState>,
    body: web::Json<RenderRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let spec = PipelineSpec::Template { template: body.template, parameters: body.parameters };
    let resolved = resolve(&state, &spec, "").await?;
    Ok(HttpResponse::Ok().json(Rendered::from(resolved)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    baseline: PipelineSpec,
    candidate: PipelineSpec,
    source: PreviewSource,
    #[serde(default = "default_intervals")]
    intervals: u32,
}

fn default_intervals() -> u32 {
    3
}

/// `POST /pipelines/preview`: both pipelines over the same synthetic input, measured.
#[utoipa::path(post, path = "/api/v1/pipelines/preview", tag = "pipelines", request_body = PreviewRequest,
    responses((status = 200, description = "What each pipeline emitted", body = PreviewResult)))]
pub async fn preview_pipelines(
    state: web::Data<AppState>,
    body: web::Json<PreviewRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let baseline = resolve(&state, &body.baseline, "baseline").await?;
    let candidate = resolve(&state, &body.candidate, "candidate").await?;
    let (source, intervals) = (body.source, body.intervals);
    // CPU-bound work: off the async threads.
    let outcome = web::block(move || preview::run(&baseline.config, &candidate.config, source, intervals))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("preview worker failed: {e}")))?;
    let result = outcome.map_err(|problems| unprocessable(problems, Vec::new()))?;
    Ok(HttpResponse::Ok().json(result))
}
