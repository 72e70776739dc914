//! What an API fuzzer and a prober found, each checked on both backends: the NUL check covers every
//! JSON media type the extractor takes, a JSON body must be an object, a token from the future is
//! refused, 405 says what is allowed, HEAD works wherever GET does, a WebSocket message may come in
//! fragments, and two query parameters that contradict each other are refused.

use std::time::Duration;

use phoenix::auth::tokens::TokenIssuer;
use phoenix::db::Backend;
use phoenix::live::LiveClient;
use phoenix_actors::users::User;
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_app, Env, TestApp, PASSWORD, TEST_JWT_SECRET};

fn env(backend: Backend) -> Env {
    Env::local(backend)
}

async fn post_raw(app: &TestApp, path: &str, content_type: &str, body: &str) -> reqwest::Response {
    let request = app.client.post(app.url(path)).header("content-type", content_type).body(body.to_string());
    request.send().await.expect("request")
}

async fn every_json_media_type_is_checked_for_nul_and_must_be_an_object(backend: Backend) {
    let app = spawn_app(env(backend)).await;
    let admin = app.bootstrap_admin().await;

    // `text/json` is JSON to the extractor, so it is to the NUL check too (it reached PostgreSQL
    // before authentication and answered 500).
    let nul = json!({"username": "admin\u{0}", "password": PASSWORD}).to_string();
    for content_type in ["application/json", "text/json", "application/problem+json"] {
        let res = post_raw(&app, "/api/v1/auth/login", content_type, &nul).await;
        assert_eq!(res.status(), 400, "{content_type}");
    }
    let login = json!({"username": "admin", "password": PASSWORD}).to_string();
    assert_eq!(post_raw(&app, "/api/v1/auth/login", "text/json", &login).await.status(), 200);

    // An array is not an object, even when serde could read one by position.
    let viewer = app.user_with_role(&admin, "viewer", "viewer").await;
    let me: Value = app.get_as("/api/v1/auth/me", &viewer).await.json().await.expect("me");
    let path = format!("/api/v1/users/{}", me["id"].as_str().expect("id"));
    let res = app.send_as(Method::PATCH, &path, &admin, &json!(["operator", null])).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["path"], "body", "{problem}");
    let user: Value = app.get_as(&path, &admin).await.json().await.expect("user");
    assert_eq!(user["role"], "viewer", "the role did not change");
    for scalar in ["\"operator\"", "1", "true"] {
        let res = post_raw(&app, "/api/v1/auth/login", "application/json", scalar).await;
        assert_eq!(res.status(), 422, "{scalar}");
    }
}

each_backend!(every_json_media_type_is_checked_for_nul_and_must_be_an_object);

async fn a_token_issued_in_the_future_is_refused(backend: Backend) {
    let app = spawn_app(env(backend)).await;
    let admin = app.bootstrap_admin().await;
    let user: User = app.get_as("/api/v1/auth/me", &admin).await.json().await.expect("user");
    let issuer = TokenIssuer::new(TEST_JWT_SECRET.as_bytes(), "phoenix", 900);
    let later = chrono::Utc::now() + chrono::Duration::minutes(10);
    let (from_the_future, _) = issuer.issue(&user, "f", later).expect("issue");
    assert_eq!(app.get_as("/api/v1/auth/me", &from_the_future).await.status(), 401);
    let (now, _) = issuer.issue(&user, "f", chrono::Utc::now()).expect("issue");
    assert_eq!(app.get_as("/api/v1/auth/me", &now).await.status(), 200, "the same token issued now works");
}

each_backend!(a_token_issued_in_the_future_is_refused);

async fn method_answers_say_what_is_allowed_and_head_works_where_get_does(backend: Backend) {
    let app = spawn_app(env(backend)).await;
    let admin = app.bootstrap_admin().await;

    let res = app.send_as(Method::PUT, "/api/v1/agents", &admin, &json!({})).await;
    assert_eq!(res.status(), 405);
    let allow = res.headers().get("allow").expect("405 carries Allow").to_str().expect("text").to_string();
    let allowed: Vec<&str> = allow.split(", ").collect();
    assert_eq!(allowed, ["GET", "HEAD"], "{allow}");
    let res = app.send_as(Method::DELETE, "/api/v1/experiments", &admin, &json!({})).await;
    let allow = res.headers().get("allow").expect("Allow").to_str().expect("text").to_string();
    assert!(allow.contains("GET") && allow.contains("POST") && allow.contains("HEAD"), "{allow}");

    let head = app.client.head(app.url("/api/v1/agents")).bearer_auth(&admin).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    let length: usize = head.headers()["content-length"].to_str().expect("text").parse().expect("number");
    assert!(length > 0, "HEAD announces the length GET would send");
    assert!(head.bytes().await.expect("body").is_empty(), "HEAD sends no body");
    let anonymous = app.client.head(app.url("/api/v1/agents")).send().await.expect("HEAD");
    assert_eq!(anonymous.status(), 401, "HEAD is authorised as GET is");
    let healthz = app.client.head(app.url("/healthz")).send().await.expect("HEAD");
    assert_eq!(healthz.status(), 200);
}

each_backend!(method_answers_say_what_is_allowed_and_head_works_where_get_does);

async fn a_websocket_message_in_fragments_is_one_message(backend: Backend) {
    let app = spawn_app(env(backend)).await;
    let admin = app.bootstrap_admin().await;
    let mut live = LiveClient::connect(&app.url(""), &admin).await.expect("connect");
    live.send_fragmented(&json!({"type": "subscribe", "topic": "agents"}).to_string(), 3).await.expect("send");
    let answer = live.next_message(Duration::from_secs(5)).await.expect("read").expect("an answer");
    assert_eq!(answer["type"], "subscribed", "{answer}");
    assert_eq!(answer["topic"], "agents", "{answer}");
    live.send_fragmented(&json!({"type": "ping"}).to_string(), 2).await.expect("send");
    let answer = live.next_message(Duration::from_secs(5)).await.expect("read").expect("an answer");
    assert_eq!(answer["type"], "pong", "{answer}");
    // The limit holds for the message, not for each frame: 3 frames of 30 KiB are one 90 KiB message.
    let big = json!({"type": "ping", "pad": "x".repeat(90 * 1024)}).to_string();
    live.send_fragmented(&big, 3).await.expect("send");
    match live.next(Duration::from_secs(5)).await.expect("read") {
        Some(phoenix::live::Received::Closed(code, reason)) => assert_eq!(code, 1009, "{reason}"),
        other => panic!("expected a close for the size, got {other:?}"),
    }
}

each_backend!(a_websocket_message_in_fragments_is_one_message);

async fn query_parameters_that_contradict_each_other_are_refused(backend: Backend) {
    let app = spawn_app(env(backend)).await;
    let admin = app.bootstrap_admin().await;
    let res = app.get_as("/api/v1/experiments?phase=running&status=created", &admin).await;
    assert_eq!(res.status(), 400);
    let problem: Value = res.json().await.expect("problem");
    assert!(problem["detail"].as_str().expect("detail").contains("give one"), "{problem}");
    assert_eq!(app.get_as("/api/v1/experiments?phase=running&status=running", &admin).await.status(), 200);
    assert_eq!(app.get_as("/api/v1/agents?limit=1&limit=2", &admin).await.status(), 400, "a parameter given twice");
}

each_backend!(query_parameters_that_contradict_each_other_are_refused);
