//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]` annotations and
//! the types they take and return, served at `GET /api/v1/openapi.json`.
//!
//! Two things are not written on each handler but added here from one place, so they cannot drift:
//! - who may call an operation comes from the route table (`routes::endpoints()`), as the security
//!   requirement of each operation;
//! - every operation may answer an error as a problem document (`default` response), since any route
//!   can fail with 400, 401, 403, 404, 409, 413, 415, 422, 429 or 503 depending on the input and state.
//!
//! A unit test below fails when a row of the route table has no operation in the document.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::HttpResponse;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::access::Access;
use super::error::{FieldProblem, Problem, PROBLEM_JSON};
use super::routes::{endpoints, Endpoint};
use super::{agent, analytics, auth, dashboard, deployments, enrollment, experiments, fleet, ops, pipelines, tasks};
use super::{audit, users, ws};

/// Security scheme of user access tokens (from `/api/v1/auth/login`).
const USER_TOKEN: &str = "user_token";
/// Security scheme of agent credentials (from `/api/v1/agent/enroll`).
const AGENT_CREDENTIAL: &str = "agent_credential";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Phoenix",
        description = "Control plane that cuts metrics cardinality and proves every cut with A/B pipeline \
                       experiments. Errors are RFC 9457 problem documents (`application/problem+json`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        ops::get_health, ops::get_readiness, ops::get_metrics, ops::get_version, get_openapi,
        dashboard::get_index, dashboard::get_asset,
        auth::register_user, auth::login, auth::refresh_session, auth::logout, auth::change_password, auth::get_me,
        users::list_users, users::create_user, users::get_user, users::update_user, audit::list_audit,
        pipelines::list_templates, pipelines::create_template, pipelines::get_template,
        pipelines::validate_pipeline, pipelines::render_pipeline, pipelines::preview_pipelines,
        deployments::list_deployments, deployments::create_deployment, deployments::get_deployment,
        deployments::update_deployment, deployments::delete_deployment, deployments::list_versions,
        deployments::get_version, deployments::diff_versions, deployments::rollback_deployment,
        deployments::get_status, deployments::pause_deployment, deployments::resume_deployment,
        deployments::list_events,
        experiments::list_experiments, experiments::create_experiment, experiments::get_experiment,
        experiments::delete_experiment, experiments::start_experiment, experiments::stop_experiment,
        experiments::promote_experiment, experiments::rollback_experiment, experiments::list_experiment_events,
        experiments::get_experiment_kpis, experiments::get_experiment_metrics, experiments::get_experiment_cost,
        fleet::list_agents, enrollment::create_enrollment_token, fleet::get_agent, fleet::update_agent,
        fleet::delete_agent, enrollment::revoke_agent_credential,
        tasks::list_tasks, tasks::create_task, tasks::get_queue_stats, tasks::get_task, tasks::cancel_task,
        analytics::get_cardinality, analytics::get_cost_analytics, analytics::get_overview,
        ws::connect,
        enrollment::enroll_agent, enrollment::get_agent_me, enrollment::issue_nats_credentials, agent::post_heartbeat, agent::poll_tasks,
        agent::post_task_status, agent::post_metrics,
    ),
    components(schemas(Problem, FieldProblem)),
    modifiers(&FromRouteTable),
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document = ApiDoc::openapi();
        document.info.version = env!("CARGO_PKG_VERSION").to_string();
        document
    })
}

/// The document's JSON, rendered once, with the NUL rule on every free-text string.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising these types cannot fail; an empty object would still be a valid answer.
        let mut json = serde_json::to_value(document()).unwrap_or_default();
        open_all_of_members(&mut json);
        forbid_nul_in_strings(&mut json);
        serde_json::to_string(&json).unwrap_or_else(|_| "{}".to_string())
    })
}

/// A type that flattens a closed one (`ExperimentView` = `ExperimentSpec` + its state) is an `allOf`
/// of the two; a member with `additionalProperties: false` would refuse every real answer (its other
/// fields are "additional" to it). Such a member points instead at an open copy, `<Name>Fields`; the
/// request schema it came from stays closed.
fn open_all_of_members(document: &mut serde_json::Value) {
    let Some(schemas) = document.pointer("/components/schemas").and_then(|s| s.as_object()) else { return };
    let closed: BTreeMap<String, serde_json::Value> = schemas
        .iter()
        .filter(|(_, schema)| schema["additionalProperties"] == serde_json::Value::Bool(false))
        .map(|(name, schema)| (format!("#/components/schemas/{name}"), schema.clone()))
        .collect();
    let mut copies = BTreeMap::new();
    point_all_of_at_open_copies(document, &closed, &mut copies);
    if let Some(schemas) = document.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) {
        schemas.extend(copies);
    }
}

/// Everywhere in `node` (components, and schemas inlined in operations or in generic pages), an
/// `allOf` member naming a `closed` schema is pointed at its open copy, which is added to `copies`.
fn point_all_of_at_open_copies(
    node: &mut serde_json::Value,
    closed: &BTreeMap<String, serde_json::Value>,
    copies: &mut BTreeMap<String, serde_json::Value>,
) {
    match node {
        serde_json::Value::Object(map) => {
            for member in map.get_mut("allOf").and_then(|m| m.as_array_mut()).into_iter().flatten() {
                let Some(target) = member.get("$ref").and_then(|r| r.as_str()).map(str::to_owned) else { continue };
                let Some(schema) = closed.get(&target) else { continue };
                let open_name = format!("{}Fields", target.trim_start_matches("#/components/schemas/"));
                let mut open = schema.clone();
                open.as_object_mut().map(|o| o.remove("additionalProperties"));
                member["$ref"] = serde_json::Value::String(format!("#/components/schemas/{open_name}"));
                copies.insert(open_name, open);
            }
            map.values_mut().for_each(|value| point_all_of_at_open_copies(value, closed, copies));
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|item| point_all_of_at_open_copies(item, closed, copies))
        }
        _ => {}
    }
}

/// No string the API takes may hold NUL (the middleware refuses it: PostgreSQL cannot store it), so
/// every string schema without a pattern, format or fixed values of its own says so, and so does every
/// object's property names.
fn forbid_nul_in_strings(node: &mut serde_json::Value) {
    match node {
        serde_json::Value::Object(map) => {
            let is_string = match map.get("type") {
                Some(serde_json::Value::String(t)) => t == "string",
                Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            let constrained = ["pattern", "format", "enum", "const"].iter().any(|k| map.contains_key(*k));
            if is_string && !constrained {
                map.insert("pattern".into(), serde_json::Value::String(NO_NUL_PATTERN.into()));
            }
            // Property names are strings too (a map's keys, or members the server ignores).
            let is_object = map.get("type").is_some_and(|t| t == "object");
            if is_object && !map.contains_key("propertyNames") {
                map.insert("propertyNames".into(), serde_json::json!({"pattern": NO_NUL_PATTERN}));
            }
            map.values_mut().for_each(forbid_nul_in_strings);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(forbid_nul_in_strings),
        _ => {}
    }
}

/// A string without the NUL character.
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CONTENT_TYPE, "application/json")).body(document_json())
}

/// Adds what the route table knows to every operation: its security and its error answer.
struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(USER_TOKEN, bearer("A user's access token, from POST /api/v1/auth/login"));
        components
            .add_security_scheme(AGENT_CREDENTIAL, bearer("An agent's credential, from POST /api/v1/agent/enroll"));
        for endpoint in endpoints() {
            if let Some(operation) = operation_mut(document, &endpoint) {
                operation.security = Some(security_of(endpoint.access));
                add_problem_answer(operation);
            }
        }
    }
}

fn bearer(description: &str) -> SecurityScheme {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.to_string());
    SecurityScheme::Http(http)
}

/// Public operations need nothing (an empty list overrides any document-wide requirement).
fn security_of(access: Access) -> Vec<SecurityRequirement> {
    match access {
        Access::Public => Vec::new(),
        Access::User(_) | Access::UserOrQueryToken(_) => {
            vec![SecurityRequirement::new(USER_TOKEN, Vec::<String>::new())]
        }
        Access::Agent => vec![SecurityRequirement::new(AGENT_CREDENTIAL, Vec::<String>::new())],
    }
}

fn add_problem_answer(operation: &mut Operation) {
    let problem = ResponseBuilder::new()
        .description("An error, as a problem document: `code` names its kind; a 422 lists each invalid field.")
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build();
    operation.responses.responses.entry("default".to_string()).or_insert(problem.into());
}

/// The route table's path in OpenAPI's form: `{file:.+}` (an actix pattern) is `{file}`.
pub fn openapi_path(route_path: &str) -> String {
    let mut path = String::with_capacity(route_path.len());
    let mut in_pattern = false;
    for c in route_path.chars() {
        match c {
            ':' if path.rfind('{') > path.rfind('}') => in_pattern = true,
            '}' => {
                in_pattern = false;
                path.push(c);
            }
            _ if in_pattern => {}
            _ => path.push(c),
        }
    }
    path
}

fn operation_mut<'a>(document: &'a mut Document, endpoint: &Endpoint) -> Option<&'a mut Operation> {
    let item = document.paths.paths.get_mut(&openapi_path(endpoint.path))?;
    let slot = match http_method(endpoint)? {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Post => &mut item.post,
        HttpMethod::Patch => &mut item.patch,
        HttpMethod::Delete => &mut item.delete,
        HttpMethod::Put => &mut item.put,
        _ => return None,
    };
    slot.as_mut()
}

fn http_method(endpoint: &Endpoint) -> Option<HttpMethod> {
    Some(match endpoint.method.as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "PUT" => HttpMethod::Put,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_all_of_member_refuses_the_fields_of_the_others() {
        let json: serde_json::Value = serde_json::from_str(document_json()).expect("JSON");
        let schemas = json["components"]["schemas"].as_object().expect("schemas");
        let view = &schemas["ExperimentView"]["allOf"];
        assert_eq!(view[0]["$ref"], "#/components/schemas/ExperimentSpecFields", "{view}");
        assert_eq!(schemas["ExperimentSpec"]["additionalProperties"], false, "requests stay closed");
        // Everywhere: components, and schemas inlined in operations and generic pages.
        fn check(node: &serde_json::Value, schemas: &serde_json::Map<String, serde_json::Value>, at: &str) {
            match node {
                serde_json::Value::Object(map) => {
                    if let Some(members) = map.get("allOf") {
                        for member in members.as_array().unwrap_or_else(|| panic!("allOf at {at} is not a list")) {
                            let name = member["$ref"].as_str().map(|r| r.trim_start_matches("#/components/schemas/"));
                            let target = name.and_then(|n| schemas.get(n)).unwrap_or(member);
                            assert_ne!(target["additionalProperties"], false, "a closed allOf member at {at}");
                        }
                    }
                    map.iter().for_each(|(key, value)| check(value, schemas, &format!("{at}/{key}")));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|item| check(item, schemas, at)),
                _ => {}
            }
        }
        check(&json, schemas, "");
    }

    #[test]
    fn every_route_in_the_table_has_an_operation_with_its_access() {
        let mut document = ApiDoc::openapi();
        let mut missing = Vec::new();
        for endpoint in endpoints() {
            match operation_mut(&mut document, &endpoint) {
                None => missing.push(format!("{} {}", endpoint.method, endpoint.path)),
                Some(operation) => {
                    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                    // The modifier ran: the security matches the table and errors are documented.
                    assert_eq!(secured, endpoint.access != Access::Public, "{} {}", endpoint.method, endpoint.path);
                    assert!(operation.responses.responses.contains_key("default"), "{}", endpoint.path);
                }
            }
        }
        assert!(missing.is_empty(), "routes without an OpenAPI operation: {missing:?}");
    }

    #[test]
    fn every_operation_in_the_document_is_a_route() {
        let routes: Vec<(String, String)> =
            endpoints().iter().map(|e| (e.method.as_str().to_lowercase(), openapi_path(e.path))).collect();
        let json = serde_json::to_value(document()).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                assert!(
                    routes.contains(&(method.clone(), path.clone())),
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let json = serde_json::to_value(document()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let text = json.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }

    #[test]
    fn route_patterns_become_openapi_parameters() {
        assert_eq!(openapi_path("/ui/{file:.+}"), "/ui/{file}");
        assert_eq!(openapi_path("/api/v1/x/{id}/versions/{version}"), "/api/v1/x/{id}/versions/{version}");
    }
}
