//! The route-table test: every route, every kind of caller, exactly the answer its declared access
//! demands. A route added to the table is checked here without any change to this file.

use phoenix::auth::tokens::TokenIssuer;
use phoenix::db::Backend;
use phoenix::http::access::Access;
use phoenix::http::routes::endpoints;
use phoenix_actors::users::{Role, User};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::each_backend;
use crate::helpers::{spawn_app, Env, TestApp, TEST_JWT_SECRET};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Garbage,
    Expired,
    Revoked,
    User(Role),
    Agent,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Garbage,
    Caller::Expired,
    Caller::Revoked,
    Caller::User(Role::Viewer),
    Caller::User(Role::Operator),
    Caller::User(Role::Admin),
    Caller::Agent,
];

/// The answer class a caller must get: 401, 403, or anything but those.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Unauthenticated,
    Forbidden,
    Admitted,
}

fn expected(access: Access, caller: Caller) -> Expect {
    match (access, caller) {
        (Access::Public, _) => Expect::Admitted,
        (Access::User(required) | Access::UserOrQueryToken(required), Caller::User(role)) if role.allows(required) => {
            Expect::Admitted
        }
        (Access::User(_) | Access::UserOrQueryToken(_), Caller::User(_)) => Expect::Forbidden,
        (Access::Agent, Caller::Agent) => Expect::Admitted,
        _ => Expect::Unauthenticated,
    }
}

fn classify(status: StatusCode) -> Expect {
    match status {
        StatusCode::UNAUTHORIZED => Expect::Unauthenticated,
        StatusCode::FORBIDDEN => Expect::Forbidden,
        _ => Expect::Admitted,
    }
}

struct Credentials {
    expired: String,
    revoked: String,
    agent: String,
}

async fn credentials(app: &TestApp) -> Credentials {
    let admin = app.bootstrap_admin().await;
    app.user_with_role(&admin, "viewer", "viewer").await;
    app.user_with_role(&admin, "operator", "operator").await;
    let agent = app.enroll_agent(&admin, "host-1").await["credential"].as_str().expect("credential").to_string();
    let user: User = app.get_as("/api/v1/auth/me", &admin).await.json().await.expect("user");
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let (expired, _) =
        TokenIssuer::new(TEST_JWT_SECRET.as_bytes(), "phoenix", 900).issue(&user, "f", past).expect("issue");
    let revoked = app.token("admin").await;
    let res = app.send_as(Method::POST, "/api/v1/auth/logout", &revoked, &json!({})).await;
    assert_eq!(res.status(), 204);
    Credentials { expired, revoked, agent }
}

/// A fresh token per request for user callers, so a route that logs out cannot spoil the next check.
async fn bearer(app: &TestApp, creds: &Credentials, caller: Caller) -> Option<String> {
    match caller {
        Caller::Anonymous => None,
        Caller::Garbage => Some("not-a-token".into()),
        Caller::Expired => Some(creds.expired.clone()),
        Caller::Revoked => Some(creds.revoked.clone()),
        Caller::User(role) => Some(app.token(role.as_str()).await),
        Caller::Agent => Some(creds.agent.clone()),
    }
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { segment.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_route_answers_each_caller_as_its_access_declares(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let creds = credentials(&app).await;
    let mut failures = Vec::new();
    for endpoint in endpoints() {
        for caller in CALLERS {
            let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).expect("HTTP method");
            let mut request = app.client.request(method.clone(), app.url(&concrete(endpoint.path)));
            if let Some(token) = bearer(&app, &creds, caller).await {
                request = request.bearer_auth(token);
            }
            if method != Method::GET {
                request = request.json(&json!({}));
            }
            let status = request.send().await.expect("request reaches the server").status();
            if status.is_server_error() {
                failures.push(format!("{} {} as {caller:?}: server error {status}", endpoint.method, endpoint.path));
            }
            let want = expected(endpoint.access, caller);
            if classify(status) != want {
                failures
                    .push(format!("{} {} as {caller:?}: got {status}, want {want:?}", endpoint.method, endpoint.path));
            }
        }
    }
    assert!(failures.is_empty(), "routes answering against their declared access:\n{}", failures.join("\n"));
}
each_backend!(every_route_answers_each_caller_as_its_access_declares);

async fn a_token_in_the_query_string_counts_only_where_the_route_declares_it(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let for_users =
        |e: &&phoenix::http::routes::Endpoint| matches!(e.access, Access::User(_) | Access::UserOrQueryToken(_));
    let mut failures = Vec::new();
    let mut admitted = 0;
    for endpoint in endpoints().iter().filter(for_users) {
        let method = Method::from_bytes(endpoint.method.as_str().as_bytes()).expect("HTTP method");
        let url = format!("{}?access_token={admin}", app.url(&concrete(endpoint.path)));
        let mut request = app.client.request(method.clone(), url);
        if method != Method::GET {
            request = request.json(&json!({}));
        }
        let status = request.send().await.expect("request reaches the server").status();
        let want = match endpoint.access {
            Access::UserOrQueryToken(_) => Expect::Admitted,
            _ => Expect::Unauthenticated,
        };
        admitted += usize::from(want == Expect::Admitted);
        if classify(status) != want {
            failures.push(format!("{} {}?access_token=…: got {status}, want {want:?}", endpoint.method, endpoint.path));
        }
    }
    assert!(failures.is_empty(), "query-string tokens taken or refused against the table:\n{}", failures.join("\n"));
    assert_eq!(admitted, 1, "only the WebSocket handshake takes its token from the query string");
}
each_backend!(a_token_in_the_query_string_counts_only_where_the_route_declares_it);

#[test]
fn every_non_public_route_is_under_the_api_and_only_ops_login_the_contract_and_the_dashboard_files_are_public() {
    let public: Vec<&str> = endpoints().iter().filter(|e| e.access == Access::Public).map(|e| e.path).collect();
    assert_eq!(
        public,
        [
            "/healthz",
            "/readyz",
            "/metrics",
            "/version",
            "/api/v1/openapi.json",
            "/",
            "/ui/{file:.+}",
            "/api/v1/auth/register",
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
            "/api/v1/agent/enroll"
        ]
    );
    for endpoint in endpoints() {
        let agent_side = endpoint.path.starts_with("/api/v1/agent/") && endpoint.path != "/api/v1/agent/enroll";
        assert_eq!(agent_side, endpoint.access == Access::Agent, "{} must take agent credentials", endpoint.path);
    }
}
