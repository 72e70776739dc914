//! Users, sessions and tokens, on both backends.

use std::time::{Duration, Instant};

use phoenix::auth::tokens::TokenIssuer;
use phoenix::config::RegistrationMode;
use phoenix::db::Backend;
use phoenix_actors::users::User;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_app, spawn_with, test_settings, Env, TestDb, PASSWORD, TEST_JWT_SECRET};

async fn body(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

async fn first_registered_user_becomes_admin_and_registration_then_closes(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let res = app.register("alice").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let alice = body(res).await;
    assert_eq!(alice["role"], "admin");
    assert!(alice.get("password_hash").is_none(), "hashes never leave the server: {alice}");

    let res = app.register("bob").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(body(res).await["code"], "registration_closed");
}
each_backend!(first_registered_user_becomes_admin_and_registration_then_closes);

async fn open_registration_makes_later_users_viewers(backend: Backend) {
    let db = TestDb::new(backend);
    let mut settings = test_settings(Env::local(backend), &db);
    settings.auth.registration = RegistrationMode::Open;
    let app = spawn_with(Env::local(backend), db, settings).await;
    assert_eq!(body(app.register("alice").await).await["role"], "admin");
    assert_eq!(body(app.register("bob").await).await["role"], "viewer");
    let res = app.register("bob").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "usernames are unique");
    assert_eq!(body(res).await["errors"][0]["path"], "username");
}
each_backend!(open_registration_makes_later_users_viewers);

async fn registration_reports_every_invalid_field(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let res = app.post_json("/api/v1/auth/register", &json!({"username": "no spaces", "password": "short"})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = body(res).await;
    let paths: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(paths, ["username", "password"]);
}
each_backend!(registration_reports_every_invalid_field);

async fn login_answers_bearer_tokens_and_me_names_the_user(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    app.register("alice").await;
    let session = app.login("alice").await;
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert!(session["refresh_token"].as_str().is_some_and(|t| t.starts_with("phx_rt_")));
    let access = session["access_token"].as_str().expect("access token");
    let me = body(app.get_as("/api/v1/auth/me", access).await).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "admin");
}
each_backend!(login_answers_bearer_tokens_and_me_names_the_user);

async fn refresh(app: &crate::helpers::TestApp, token: &Value) -> reqwest::Response {
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": token})).await
}

async fn refresh_rotates_and_a_reused_token_revokes_its_family(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    app.register("alice").await;
    let first = app.login("alice").await;
    let res = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = body(res).await;
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    assert_eq!(app.get_as("/api/v1/auth/me", second["access_token"].as_str().expect("token")).await.status(), 200);

    let replay = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(replay).await["code"], "invalid_refresh_token");
    assert_eq!(refresh(&app, &second["refresh_token"]).await.status(), 401, "the whole family is revoked");

    let other_login = app.login("alice").await;
    assert_eq!(refresh(&app, &other_login["refresh_token"]).await.status(), 200, "other sessions are untouched");
}
each_backend!(refresh_rotates_and_a_reused_token_revokes_its_family);

async fn logout_revokes_the_access_token_and_the_refresh_family(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    app.register("alice").await;
    let session = app.login("alice").await;
    let access = session["access_token"].as_str().expect("token");
    let res = app.send_as(Method::POST, "/api/v1/auth/logout", access, &json!({})).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get_as("/api/v1/auth/me", access).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert!(body(res).await["detail"].as_str().unwrap_or_default().contains("revoked"));
    assert_eq!(refresh(&app, &session["refresh_token"]).await.status(), 401);
}
each_backend!(logout_revokes_the_access_token_and_the_refresh_family);

async fn a_deactivated_user_is_refused_at_once(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "olga", "operator").await;
    let session = app.login("olga").await;
    let me = body(app.get_as("/api/v1/auth/me", &operator).await).await;

    let path = format!("/api/v1/users/{}", me["id"].as_str().expect("id"));
    let res = app.send_as(Method::PATCH, &path, &admin, &json!({"active": false})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await["active"], false);

    assert_eq!(app.get_as("/api/v1/auth/me", &operator).await.status(), 401, "existing access token");
    assert_eq!(refresh(&app, &session["refresh_token"]).await.status(), 401, "existing refresh token");
    let login = app.post_json("/api/v1/auth/login", &json!({"username": "olga", "password": PASSWORD})).await;
    assert_eq!(login.status(), 401, "new logins");
}
each_backend!(a_deactivated_user_is_refused_at_once);

async fn the_last_active_admin_cannot_be_demoted_or_deactivated(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let me = body(app.get_as("/api/v1/auth/me", &admin).await).await;
    let path = format!("/api/v1/users/{}", me["id"].as_str().expect("id"));
    for change in [json!({"role": "viewer"}), json!({"active": false})] {
        let res = app.send_as(Method::PATCH, &path, &admin, &change).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "{change}");
    }
    app.user_with_role(&admin, "second", "admin").await;
    let res = app.send_as(Method::PATCH, &path, &admin, &json!({"role": "viewer"})).await;
    assert_eq!(res.status(), StatusCode::OK, "fine once another admin exists");
}
each_backend!(the_last_active_admin_cannot_be_demoted_or_deactivated);

async fn admins_list_users_page_by_page(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    for name in ["u1", "u2", "u3"] {
        let body = json!({"username": name, "password": PASSWORD, "role": "viewer"});
        assert_eq!(app.send_as(Method::POST, "/api/v1/users", &admin, &body).await.status(), 201);
    }
    let first = body(app.get_as("/api/v1/users?limit=3", &admin).await).await;
    let names: Vec<&str> =
        first["items"].as_array().expect("items").iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["admin", "u1", "u2"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = body(app.get_as(&format!("/api/v1/users?limit=3&cursor={cursor}"), &admin).await).await;
    assert_eq!(second["items"][0]["username"], "u3");
    assert!(second["next_cursor"].is_null());
    assert_eq!(app.get_as("/api/v1/users?limit=0", &admin).await.status(), 400);
}
each_backend!(admins_list_users_page_by_page);

async fn failed_logins_are_rate_limited_with_retry_after(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    app.register("alice").await;
    let wrong = json!({"username": "alice", "password": "wrong-password"});
    for _ in 0..5 {
        assert_eq!(app.post_json("/api/v1/auth/login", &wrong).await.status(), 401);
    }
    let res = app.post_json("/api/v1/auth/login", &json!({"username": "alice", "password": PASSWORD})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let retry_after: u64 = res.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The same client address trying other names is limited too.
    let res = app.post_json("/api/v1/auth/login", &json!({"username": "mallory", "password": "x-password"})).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}
each_backend!(failed_logins_are_rate_limited_with_retry_after);

/// Logs in as `username` with `password`, the request carrying `X-Forwarded-For: forwarded_for`.
async fn login_forwarded(
    app: &crate::helpers::TestApp,
    forwarded_for: &str,
    username: &str,
    password: &str,
) -> StatusCode {
    let credentials = json!({"username": username, "password": password});
    let request = app.client.post(app.url("/api/v1/auth/login")).header("x-forwarded-for", forwarded_for);
    request.json(&credentials).send().await.expect("request reaches the server").status()
}

async fn behind_a_trusted_proxy_failed_logins_count_per_forwarded_client(backend: Backend) {
    let env = Env::local(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    // The test client connects from 127.0.0.1: it plays the load balancer.
    settings.server.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
    let app = spawn_with(env, db, settings).await;
    app.register("alice").await;
    let attacker = "203.0.113.7";
    for name in ["bob", "carol", "dave", "erin", "frank"] {
        assert_eq!(login_forwarded(&app, attacker, name, "wrong-password").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_forwarded(&app, attacker, "gina", "wrong-password").await, StatusCode::TOO_MANY_REQUESTS);
    // Writing an address in front of the one the proxy appends does not make the attacker someone else.
    let forged = format!("198.51.100.2, {attacker}");
    assert_eq!(login_forwarded(&app, &forged, "gina", "wrong-password").await, StatusCode::TOO_MANY_REQUESTS);
    // Alice, behind the same proxy, is not locked out by the attacker's failures.
    assert_eq!(login_forwarded(&app, "198.51.100.2", "alice", PASSWORD).await, StatusCode::OK);
}
each_backend!(behind_a_trusted_proxy_failed_logins_count_per_forwarded_client);

async fn an_untrusted_client_cannot_escape_the_limit_by_writing_x_forwarded_for(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    for (i, name) in ["bob", "carol", "dave", "erin", "frank"].into_iter().enumerate() {
        let forged = format!("203.0.113.{i}");
        assert_eq!(login_forwarded(&app, &forged, name, "wrong-password").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_forwarded(&app, "203.0.113.99", "gina", "wrong-password").await, StatusCode::TOO_MANY_REQUESTS);
}
each_backend!(an_untrusted_client_cannot_escape_the_limit_by_writing_x_forwarded_for);

async fn timed_login(app: &crate::helpers::TestApp, username: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let res = app.post_json("/api/v1/auth/login", &json!({"username": username, "password": "wrong-password"})).await;
    let elapsed = started.elapsed();
    let status = res.status();
    let mut problem = body(res).await;
    problem.as_object_mut().expect("object").remove("request_id");
    (status, problem, elapsed)
}

async fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    app.register("alice").await;
    let (known_status, known_body, known_time) = timed_login(&app, "alice").await;
    let (unknown_status, unknown_body, unknown_time) = timed_login(&app, "nobody").await;
    assert_eq!(known_status, StatusCode::UNAUTHORIZED);
    assert_eq!((known_status, &known_body), (unknown_status, &unknown_body));
    // Both pay for one Argon2 verification; without the dummy hash the unknown user would answer in
    // a fraction of the time.
    assert!(unknown_time * 3 > known_time, "unknown {unknown_time:?} vs known {known_time:?}");
}
each_backend!(wrong_password_and_unknown_user_look_the_same);

async fn an_expired_or_forged_token_is_refused(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let user: User = app.get_as("/api/v1/auth/me", &admin).await.json().await.expect("user");
    let past = chrono::Utc::now() - chrono::Duration::hours(2);
    let (expired, _) =
        TokenIssuer::new(TEST_JWT_SECRET.as_bytes(), "phoenix", 900).issue(&user, "f", past).expect("issue");
    let res = app.get_as("/api/v1/auth/me", &expired).await;
    assert_eq!(res.status(), 401);
    assert!(body(res).await["detail"].as_str().unwrap_or_default().contains("expired"));
    let forged_key = "another-secret-another-secret-another-1234";
    let (forged, _) =
        TokenIssuer::new(forged_key.as_bytes(), "phoenix", 900).issue(&user, "f", chrono::Utc::now()).expect("issue");
    assert_eq!(app.get_as("/api/v1/auth/me", &forged).await.status(), 401);
}
each_backend!(an_expired_or_forged_token_is_refused);

async fn a_generated_jwt_secret_survives_a_restart(backend: Backend) {
    let db = TestDb::new(backend);
    let mut settings = test_settings(Env::local(backend), &db);
    settings.auth.jwt_secret = None;
    let first = spawn_with(Env::local(backend), db, settings.clone()).await;
    first.register("alice").await;
    let token = first.token("alice").await;
    first.handle.stop(true).await;

    let db = first.db;
    let second = spawn_with(Env::local(backend), db, settings).await;
    assert_eq!(second.get_as("/api/v1/auth/me", &token).await.status(), 200, "same key after restart");
}
each_backend!(a_generated_jwt_secret_survives_a_restart);
