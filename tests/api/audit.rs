//! The audit log records a whole experiment lifecycle and the security events around it — a failed
//! login, a reused refresh token, an agent's forged measurement — with who, what, when, from where and
//! how it ended; only admins read it; and nothing in it is a secret (the whole table is searched for
//! every password, token and credential the test used).

use diesel::prelude::*;
use phoenix::db::models::AuditRow;
use phoenix::db::schema::audit_log;
use phoenix::db::{establish, Backend};
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::experiments::{act, completed_on, measurement};
use crate::helpers::{eventually, fast_server, TestApp, PASSWORD};

async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let res = app.get_as(&format!("/api/v1/audit?limit=500&{query}"), token).await;
    assert_eq!(res.status(), 200, "audit {query}");
    let page: Value = res.json().await.expect("page");
    page["items"].as_array().expect("items").clone()
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["action"].as_str().expect("action").to_string()).collect()
}

async fn an_experiment_lifecycle_and_security_events_are_audited_without_secrets(backend: Backend) {
    let (app, admin) = fast_server(backend, |settings| settings.agents.offline_after_secs = Some(600)).await;
    let admin_id = app.get_as("/api/v1/auth/me", &admin).await.json::<Value>().await.expect("me")["id"].clone();

    // A failed login, and a refresh token used twice (it leaked).
    let wrong = json!({"username": "admin", "password": "not-the-password"});
    assert_eq!(app.post_json("/api/v1/auth/login", &wrong).await.status(), 401);
    let session = app.login("admin").await;
    let refresh = session["refresh_token"].as_str().expect("refresh").to_string();
    let body = json!({"refresh_token": refresh});
    assert_eq!(app.post_json("/api/v1/auth/refresh", &body).await.status(), 200);
    assert_eq!(app.post_json("/api/v1/auth/refresh", &body).await.status(), 401);

    // A whole experiment: created, started, measured, completed, promoted, deleted.
    let agent = app.http_agent(&admin, "measures").await;
    let (id, _) = completed_on(&app, &admin, &agent, "audited").await;
    assert_eq!(act(&app, &admin, &id, "promote").await.status(), 200);
    let res = app.send_as(Method::DELETE, &format!("/api/v1/experiments/{id}"), &admin, &json!({})).await;
    assert_eq!(res.status(), 204);

    // An enrolled agent outside the experiment forges its measurements.
    let intruder = app.http_agent(&admin, "intruder").await;
    assert_eq!(intruder.send_metrics(&measurement(&id, "candidate", 1.0e6, 1)).await.status(), 403);

    let lifecycle: Vec<String> =
        ["/api/v1/experiments", "/api/v1/experiments/{id}/start", "/api/v1/experiments/{id}/promote"]
            .iter()
            .map(|route| format!("POST {route}"))
            .chain(["DELETE /api/v1/experiments/{id}".to_string()])
            .collect();
    let entries = eventually("the lifecycle and the forgery audited", async || {
        let entries = audit(&app, &admin, "").await;
        let seen = actions(&entries);
        let complete =
            lifecycle.iter().all(|a| seen.contains(a)) && seen.iter().any(|a| a == "agent.refused.not_your_experiment");
        complete.then_some(entries)
    })
    .await;
    for action in &lifecycle {
        let entry = entries.iter().find(|e| e["action"] == action.as_str()).expect("entry");
        assert_eq!(entry["actor_name"], "admin", "{entry}");
        assert_eq!(entry["actor_id"], admin_id, "{entry}");
        assert_eq!(entry["outcome"], "succeeded", "{entry}");
        assert_eq!(entry["client"], "127.0.0.1", "{entry}");
        assert!(entry["request_id"].is_string() && entry["at"].is_string(), "{entry}");
        if action.contains("{id}") {
            assert_eq!(entry["target"], id.as_str(), "{entry}");
        }
    }
    let forged = entries.iter().find(|e| e["action"] == "agent.refused.not_your_experiment").expect("forgery");
    assert_eq!(
        (forged["actor_kind"].as_str(), forged["actor_id"].as_str()),
        (Some("agent"), Some(intruder.id.as_str()))
    );
    assert_eq!(forged["outcome"], "refused");
    let failed = entries.iter().find(|e| e["action"] == "auth.login_failed").expect("failed login");
    assert_eq!(failed["actor_name"], "admin", "the name tried: {failed}");
    assert!(actions(&entries).contains(&"auth.refresh_token_reused".to_string()));

    // Filters and paging.
    let refused = audit(&app, &admin, "outcome=refused").await;
    assert!(!refused.is_empty() && refused.iter().all(|e| e["outcome"] == "refused"));
    let starts = audit(&app, &admin, "action=POST%20/api/v1/experiments/%7Bid%7D/start").await;
    assert_eq!(actions(&starts), ["POST /api/v1/experiments/{id}/start"]);
    let by_intruder = audit(&app, &admin, &format!("actor={}", intruder.id)).await;
    assert!(!by_intruder.is_empty() && by_intruder.iter().all(|e| e["actor_id"] == intruder.id.as_str()));
    let first: Value = app.get_as("/api/v1/audit?limit=2", &admin).await.json().await.expect("page");
    let cursor = first["next_cursor"].as_str().expect("more than two entries");
    let second: Value =
        app.get_as(&format!("/api/v1/audit?limit=2&cursor={cursor}"), &admin).await.json().await.expect("page");
    assert!(second["items"][0]["id"].as_str() < first["items"][1]["id"].as_str(), "newest first, no overlap");
    assert_eq!(app.get_as("/api/v1/audit?outcome=maybe", &admin).await.status(), 400);

    // Only admins read it; nobody changes it through the API.
    let operator = app.user_with_role(&admin, "auditee", "operator").await;
    assert_eq!(app.get_as("/api/v1/audit", &operator).await.status(), 403);
    assert_eq!(app.send_as(Method::DELETE, "/api/v1/audit", &admin, &json!({})).await.status(), 405);

    // No secret anywhere in the table.
    let secrets = [PASSWORD, "not-the-password", &admin, &operator, &refresh, &agent.credential, &intruder.credential];
    let mut conn = establish(&app.db.url).expect("db");
    let rows: Vec<AuditRow> = audit_log::table.select(AuditRow::as_select()).load(&mut conn).expect("rows");
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for row in &rows {
        let text = format!("{row:?}");
        for secret in secrets {
            assert!(!text.contains(secret), "the audit log holds a secret: {text}");
        }
    }
}

each_backend!(an_experiment_lifecycle_and_security_events_are_audited_without_secrets);
