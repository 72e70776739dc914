//! Agent enrolment and credentials.

use phoenix::db::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_app, Env};

async fn body(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

async fn an_enrolment_token_is_exchanged_for_a_working_agent_credential(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let request = json!({"uses": 1, "ttl_secs": 600, "labels": {"env": "prod"}});
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &request).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = body(res).await;
    assert_eq!(token["uses_left"], 1);
    assert!(token["token"].as_str().is_some_and(|t| t.starts_with("phx_enr_")));

    let enroll = json!({"token": token["token"], "hostname": "web-1", "labels": {"env": "dev", "rack": "a1"}});
    let res = app.post_json("/api/v1/agent/enroll", &enroll).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let agent = body(res).await;
    assert_eq!(agent["labels"], json!({"env": "prod", "rack": "a1"}), "the token's labels win");
    let credential = agent["credential"].as_str().expect("credential");

    let me = body(app.get_as("/api/v1/agent/me", credential).await).await;
    assert_eq!(me["id"], agent["agent_id"]);
    assert_eq!(me["hostname"], "web-1");

    let again = app.post_json("/api/v1/agent/enroll", &enroll).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "a single-use token is spent");
    assert_eq!(body(again).await["code"], "invalid_enrollment_token");
}
each_backend!(an_enrolment_token_is_exchanged_for_a_working_agent_credential);

async fn a_limited_use_token_enrols_exactly_that_many_agents(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &json!({"uses": 3})).await;
    let token = body(res).await["token"].clone();
    let bodies: Vec<Value> = (0..5).map(|i| json!({"token": token, "hostname": format!("h{i}")})).collect();
    let attempts = bodies.iter().map(|b| app.post_json("/api/v1/agent/enroll", b));
    let statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 2, "{statuses:?}");
}
each_backend!(a_limited_use_token_enrols_exactly_that_many_agents);

async fn enrolment_input_is_validated(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let bad = json!({"uses": 0, "ttl_secs": 0, "labels": {"bad key": "x"}});
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &bad).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body(res).await["errors"].as_array().map(Vec::len), Some(3));
    let res = app.post_json("/api/v1/agent/enroll", &json!({"token": "phx_enr_nope", "hostname": "h"})).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
each_backend!(enrolment_input_is_validated);

async fn a_revoked_agent_credential_is_refused(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.enroll_agent(&admin, "web-1").await;
    let credential = agent["credential"].as_str().expect("credential");
    assert_eq!(app.get_as("/api/v1/agent/me", credential).await.status(), 200);

    let path = format!("/api/v1/agents/{}/credential", agent["agent_id"].as_str().expect("id"));
    assert_eq!(app.send_as(Method::DELETE, &path, &admin, &json!({})).await.status(), StatusCode::NO_CONTENT);
    let res = app.get_as("/api/v1/agent/me", credential).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(body(res).await["detail"].as_str().unwrap_or_default().contains("revoked"));

    let missing = app.send_as(Method::DELETE, "/api/v1/agents/no-such-agent/credential", &admin, &json!({})).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
each_backend!(a_revoked_agent_credential_is_refused);

async fn many_agents_enrolling_at_once_all_succeed(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &json!({"uses": 50})).await;
    let token = body(res).await["token"].clone();
    let bodies: Vec<Value> = (0..50).map(|i| json!({"token": token, "hostname": format!("h{i}")})).collect();
    let attempts = bodies.iter().map(|b| app.post_json("/api/v1/agent/enroll", b));
    let statuses: Vec<u16> =
        futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 201), "concurrent enrolments must not trip over each other: {statuses:?}");
}
each_backend!(many_agents_enrolling_at_once_all_succeed);
