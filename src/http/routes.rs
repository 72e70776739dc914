//! The route table: every path the server answers, with who may call it, in one place. A test walks
//! this table with every kind of caller, so a route cannot be added without declaring its access.

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, Route};
use phoenix_actors::users::Role;

use super::access::{authorize, Access};
use super::error::method_not_allowed;
use super::{
    agent, analytics, audit, auth, dashboard, deployments, enrollment, experiments, fleet, openapi, ops, pipelines,
    tasks, users, ws,
};

/// One row of the table.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    route: Route,
}

fn endpoint(method: Method, path: &'static str, access: Access, route: Route) -> Endpoint {
    Endpoint { method, path, access, route }
}

const VIEWER: Access = Access::User(Role::Viewer);
const OPERATOR: Access = Access::User(Role::Operator);
const ADMIN: Access = Access::User(Role::Admin);

/// Every route. Static paths come before parameterised ones that could also match them.
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Agent, Public};
    use Method as M;
    vec![
        endpoint(M::GET, "/healthz", Public, web::to(ops::get_health)),
        endpoint(M::GET, "/readyz", Public, web::to(ops::get_readiness)),
        endpoint(M::GET, "/metrics", Public, web::to(ops::get_metrics)),
        endpoint(M::GET, "/version", Public, web::to(ops::get_version)),
        endpoint(M::GET, "/api/v1/openapi.json", Public, web::to(openapi::get_openapi)),
        // the dashboard: its page and its files (no data; everything it shows comes from the API)
        endpoint(M::GET, "/", Public, web::to(dashboard::get_index)),
        endpoint(M::GET, "/ui/{file:.+}", Public, web::to(dashboard::get_asset)),
        // auth
        endpoint(M::POST, "/api/v1/auth/register", Public, web::to(auth::register_user)),
        endpoint(M::POST, "/api/v1/auth/login", Public, web::to(auth::login)),
        endpoint(M::POST, "/api/v1/auth/refresh", Public, web::to(auth::refresh_session)),
        endpoint(M::POST, "/api/v1/auth/logout", VIEWER, web::to(auth::logout)),
        endpoint(M::POST, "/api/v1/auth/password", VIEWER, web::to(auth::change_password)),
        endpoint(M::GET, "/api/v1/auth/me", VIEWER, web::to(auth::get_me)),
        // users
        endpoint(M::GET, "/api/v1/users", ADMIN, web::to(users::list_users)),
        endpoint(M::POST, "/api/v1/users", ADMIN, web::to(users::create_user)),
        endpoint(M::GET, "/api/v1/audit", ADMIN, web::to(audit::list_audit)),
        endpoint(M::GET, "/api/v1/users/{id}", ADMIN, web::to(users::get_user)),
        endpoint(M::PATCH, "/api/v1/users/{id}", ADMIN, web::to(users::update_user)),
        // pipelines
        endpoint(M::GET, "/api/v1/pipelines/templates", VIEWER, web::to(pipelines::list_templates)),
        endpoint(M::POST, "/api/v1/pipelines/templates", OPERATOR, web::to(pipelines::create_template)),
        endpoint(M::GET, "/api/v1/pipelines/templates/{name}", VIEWER, web::to(pipelines::get_template)),
        endpoint(M::POST, "/api/v1/pipelines/validate", VIEWER, web::to(pipelines::validate_pipeline)),
        endpoint(M::POST, "/api/v1/pipelines/render", VIEWER, web::to(pipelines::render_pipeline)),
        endpoint(M::POST, "/api/v1/pipelines/preview", VIEWER, web::to(pipelines::preview_pipelines)),
        // deployments
        endpoint(M::GET, "/api/v1/pipelines/deployments", VIEWER, web::to(deployments::list_deployments)),
        endpoint(M::POST, "/api/v1/pipelines/deployments", OPERATOR, web::to(deployments::create_deployment)),
        endpoint(M::GET, "/api/v1/pipelines/deployments/{id}", VIEWER, web::to(deployments::get_deployment)),
        endpoint(M::PATCH, "/api/v1/pipelines/deployments/{id}", OPERATOR, web::to(deployments::update_deployment)),
        endpoint(M::DELETE, "/api/v1/pipelines/deployments/{id}", OPERATOR, web::to(deployments::delete_deployment)),
        endpoint(M::GET, "/api/v1/pipelines/deployments/{id}/versions", VIEWER, web::to(deployments::list_versions)),
        endpoint(
            M::GET,
            "/api/v1/pipelines/deployments/{id}/versions/{version}",
            VIEWER,
            web::to(deployments::get_version),
        ),
        endpoint(
            M::GET,
            "/api/v1/pipelines/deployments/{id}/versions/{version}/diff",
            VIEWER,
            web::to(deployments::diff_versions),
        ),
        endpoint(
            M::POST,
            "/api/v1/pipelines/deployments/{id}/rollback",
            OPERATOR,
            web::to(deployments::rollback_deployment),
        ),
        endpoint(M::GET, "/api/v1/pipelines/deployments/{id}/status", VIEWER, web::to(deployments::get_status)),
        endpoint(M::POST, "/api/v1/pipelines/deployments/{id}/pause", OPERATOR, web::to(deployments::pause_deployment)),
        endpoint(
            M::POST,
            "/api/v1/pipelines/deployments/{id}/resume",
            OPERATOR,
            web::to(deployments::resume_deployment),
        ),
        endpoint(M::GET, "/api/v1/pipelines/deployments/{id}/events", VIEWER, web::to(deployments::list_events)),
        // experiments
        endpoint(M::GET, "/api/v1/experiments", VIEWER, web::to(experiments::list_experiments)),
        endpoint(M::POST, "/api/v1/experiments", OPERATOR, web::to(experiments::create_experiment)),
        endpoint(M::GET, "/api/v1/experiments/{id}", VIEWER, web::to(experiments::get_experiment)),
        endpoint(M::DELETE, "/api/v1/experiments/{id}", OPERATOR, web::to(experiments::delete_experiment)),
        endpoint(M::POST, "/api/v1/experiments/{id}/start", OPERATOR, web::to(experiments::start_experiment)),
        endpoint(M::POST, "/api/v1/experiments/{id}/stop", OPERATOR, web::to(experiments::stop_experiment)),
        endpoint(M::POST, "/api/v1/experiments/{id}/promote", OPERATOR, web::to(experiments::promote_experiment)),
        endpoint(M::POST, "/api/v1/experiments/{id}/rollback", OPERATOR, web::to(experiments::rollback_experiment)),
        endpoint(M::GET, "/api/v1/experiments/{id}/events", VIEWER, web::to(experiments::list_experiment_events)),
        endpoint(M::GET, "/api/v1/experiments/{id}/kpis", VIEWER, web::to(experiments::get_experiment_kpis)),
        endpoint(M::GET, "/api/v1/experiments/{id}/metrics", VIEWER, web::to(experiments::get_experiment_metrics)),
        endpoint(M::GET, "/api/v1/experiments/{id}/cost-analysis", VIEWER, web::to(experiments::get_experiment_cost)),
        // fleet
        endpoint(M::GET, "/api/v1/agents", VIEWER, web::to(fleet::list_agents)),
        endpoint(M::POST, "/api/v1/agents/enrollment-tokens", ADMIN, web::to(enrollment::create_enrollment_token)),
        endpoint(M::GET, "/api/v1/agents/{id}", VIEWER, web::to(fleet::get_agent)),
        endpoint(M::PATCH, "/api/v1/agents/{id}", OPERATOR, web::to(fleet::update_agent)),
        endpoint(M::DELETE, "/api/v1/agents/{id}", ADMIN, web::to(fleet::delete_agent)),
        endpoint(M::DELETE, "/api/v1/agents/{id}/credential", ADMIN, web::to(enrollment::revoke_agent_credential)),
        // tasks and analytics
        endpoint(M::GET, "/api/v1/tasks", VIEWER, web::to(tasks::list_tasks)),
        endpoint(M::POST, "/api/v1/tasks", OPERATOR, web::to(tasks::create_task)),
        endpoint(M::GET, "/api/v1/tasks/queue", VIEWER, web::to(tasks::get_queue_stats)),
        endpoint(M::GET, "/api/v1/tasks/{id}", VIEWER, web::to(tasks::get_task)),
        endpoint(M::POST, "/api/v1/tasks/{id}/cancel", OPERATOR, web::to(tasks::cancel_task)),
        endpoint(M::GET, "/api/v1/metrics/cardinality", VIEWER, web::to(analytics::get_cardinality)),
        endpoint(M::GET, "/api/v1/cost-analytics", VIEWER, web::to(analytics::get_cost_analytics)),
        endpoint(M::GET, "/api/v1/overview", VIEWER, web::to(analytics::get_overview)),
        // live updates
        endpoint(M::GET, "/api/v1/ws", Access::UserOrQueryToken(Role::Viewer), web::to(ws::connect)),
        // agent side
        endpoint(M::POST, "/api/v1/agent/enroll", Public, web::to(enrollment::enroll_agent)),
        endpoint(M::GET, "/api/v1/agent/me", Agent, web::to(enrollment::get_agent_me)),
        endpoint(M::POST, "/api/v1/agent/nats-credentials", Agent, web::to(enrollment::issue_nats_credentials)),
        endpoint(M::POST, "/api/v1/agent/heartbeat", Agent, web::to(agent::post_heartbeat)),
        endpoint(M::GET, "/api/v1/agent/tasks", Agent, web::to(agent::poll_tasks)),
        endpoint(M::POST, "/api/v1/agent/tasks/{id}/status", Agent, web::to(agent::post_task_status)),
        endpoint(M::POST, "/api/v1/agent/metrics", Agent, web::to(agent::post_metrics)),
    ]
}

/// Registers every endpoint, one resource per path. A known path asked with another method answers
/// 405 (a problem document).
/// The `Allow` header of a path's 405: its methods, and HEAD wherever GET is (the middleware answers
/// HEAD as GET without the body).
fn allowed_methods(group: &[Endpoint]) -> String {
    let mut methods: Vec<&str> = group.iter().map(|ep| ep.method.as_str()).collect();
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.join(", ")
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut by_path: Vec<(&'static str, Vec<Endpoint>)> = Vec::new();
    for ep in endpoints() {
        match by_path.iter_mut().find(|(path, _)| *path == ep.path) {
            Some((_, group)) => group.push(ep),
            None => by_path.push((ep.path, vec![ep])),
        }
    }
    for (path, group) in by_path {
        let allow = allowed_methods(&group);
        let refuse = move |req: actix_web::HttpRequest| {
            let allow = allow.clone();
            async move { Err::<actix_web::HttpResponse, _>(method_not_allowed(&req, &allow)) }
        };
        let mut resource = web::resource(path).default_service(web::to(refuse));
        for ep in group {
            let access = ep.access;
            let guarded = ep.route.method(ep.method).wrap(from_fn(move |req, next| authorize(access, req, next)));
            resource = resource.route(guarded);
        }
        cfg.service(resource);
    }
}
