//! Operational endpoints and the shape of errors, on every database x bus combination.

use reqwest::StatusCode;
use serde_json::Value;

use crate::each_env;
use crate::helpers::{spawn_app, spawn_with, test_settings, Env, TestDb};

async fn json(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

fn assert_problem(res: &reqwest::Response, status: StatusCode) {
    assert_eq!(res.status(), status);
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/problem+json");
}

async fn healthz_and_readyz_answer_ok(env: Env) {
    let app = spawn_app(env).await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "ok");

    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    assert_eq!(body["checks"]["bus"]["ok"], true, "{body}");
}
each_env!(healthz_and_readyz_answer_ok);

async fn version_names_the_database_and_bus_in_use(env: Env) {
    let app = spawn_app(env).await;
    let body = json(app.get("/version").await).await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["database"], env.backend().as_str());
    assert_eq!(body["bus"], if env.uses_nats() { "nats" } else { "local" });
}
each_env!(version_names_the_database_and_bus_in_use);

async fn readyz_is_503_naming_the_database_when_it_cannot_be_reached(env: Env) {
    let db = TestDb::new(env.backend());
    let mut settings = test_settings(env, &db);
    settings.database.migrate = false;
    settings.database.url = phoenix::config::SensitiveUrl::new(match env.backend() {
        phoenix::db::Backend::Sqlite => "sqlite:///nonexistent-dir/phoenix.db".to_string(),
        phoenix::db::Backend::Postgres => "postgres://phoenix@127.0.0.1:1/phoenix".to_string(),
    });
    let app = spawn_with(env, db, settings).await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK, "liveness does not depend on the database");
    let res = app.get("/readyz").await;
    assert_problem(&res, StatusCode::SERVICE_UNAVAILABLE);
    let body = json(res).await;
    assert_eq!(body["code"], "unavailable");
    assert!(body["detail"].as_str().unwrap_or_default().contains("database"), "{body}");
    assert_eq!(body["checks"]["database"]["ok"], false);
    assert_eq!(body["checks"]["bus"]["ok"], true);
}
each_env!(readyz_is_503_naming_the_database_when_it_cannot_be_reached);

#[actix_web::test]
async fn readyz_turns_503_when_postgres_goes_away_and_healthz_stays_up() {
    let mut app = spawn_app(Env::PostgresLocal).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.db.drop_now();
    let res = app.get("/readyz").await;
    assert_problem(&res, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json(res).await["checks"]["database"]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("postgres unreachable"));
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

async fn metrics_count_requests_by_route_and_status(env: Env) {
    let app = spawn_app(env).await;
    app.get("/healthz").await;
    app.get("/healthz").await;
    app.get("/no/such/route").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("text");
    assert!(text.contains(r#"phoenix_http_requests_total{method="GET",route="/healthz",status="200"} 2"#), "{text}");
    assert!(text.contains(r#"phoenix_http_requests_total{method="GET",route="unmatched",status="404"} 1"#), "{text}");
    assert!(text.contains("phoenix_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("phoenix_db_pool_max_connections 10"), "{text}");
    assert!(text.contains(r#"phoenix_db_pool_connections{state="idle"}"#), "{text}");
    assert!(text.contains("phoenix_bus_connected 1"), "{text}");
}
each_env!(metrics_count_requests_by_route_and_status);

async fn unknown_routes_are_404_problem_documents_with_the_request_id(env: Env) {
    let app = spawn_app(env).await;
    let res =
        app.client.get(app.url("/api/v1/nothing-here")).header("x-request-id", "req-42").send().await.expect("send");
    assert_problem(&res, StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let body = json(res).await;
    for field in ["type", "title", "status", "detail", "code"] {
        assert!(body.get(field).is_some(), "problem document lacks {field}: {body}");
    }
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["request_id"], "req-42");

    let generated = app.get("/healthz").await;
    assert_eq!(generated.headers()["x-request-id"].len(), 36, "a request without an id gets one");
}
each_env!(unknown_routes_are_404_problem_documents_with_the_request_id);

async fn a_known_path_with_the_wrong_method_is_a_405_problem(env: Env) {
    let app = spawn_app(env).await;
    let res = app.client.delete(app.url("/healthz")).send().await.expect("send");
    assert_problem(&res, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(json(res).await["code"], "method_not_allowed");
}
each_env!(a_known_path_with_the_wrong_method_is_a_405_problem);

async fn a_body_over_the_limit_is_a_413_problem(env: Env) {
    let app = spawn_app(env).await;
    let body = vec![b'x'; 1024 * 1024 + 1];
    let res = app.client.post(app.url("/api/v1/anything")).body(body).send().await.expect("send");
    assert_problem(&res, StatusCode::PAYLOAD_TOO_LARGE);
    let problem = json(res).await;
    assert_eq!(problem["code"], "payload_too_large");
    assert!(problem["detail"].as_str().unwrap_or_default().contains("1048576"));
}
each_env!(a_body_over_the_limit_is_a_413_problem);
