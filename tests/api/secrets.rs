//! Secrets stay secret: passwords are stored only as Argon2id hashes and never appear in the logs,
//! even at the most verbose level.

use diesel::prelude::*;
use phoenix::db::schema::users;
use phoenix::db::{establish, Backend};
use serde_json::json;

use crate::helpers::{ServerProcess, TestDb};

#[actix_web::test]
async fn passwords_tokens_and_credentials_are_never_stored_or_logged_in_clear() {
    let db = TestDb::new(Backend::Sqlite);
    let mut server = ServerProcess::start(&db, &[("RUST_LOG", "trace"), ("LOG_FORMAT", "json")]);
    let password = "Sup3r-Secret-Passw0rd";
    let client = crate::helpers::http_client();
    let credentials = json!({"username": "alice", "password": password});
    let res = client.post(server.url("/api/v1/auth/register")).json(&credentials).send().await.expect("register");
    assert_eq!(res.status(), 201);
    let res = client.post(server.url("/api/v1/auth/login")).json(&credentials).send().await.expect("login");
    assert_eq!(res.status(), 200);
    let session: serde_json::Value = res.json().await.expect("session");
    let access = session["access_token"].as_str().expect("access token").to_string();
    let refresh = session["refresh_token"].as_str().expect("refresh token").to_string();
    let token: serde_json::Value = client
        .post(server.url("/api/v1/agents/enrollment-tokens"))
        .bearer_auth(&access)
        .json(&json!({}))
        .send()
        .await
        .expect("enrolment token")
        .json()
        .await
        .expect("json");
    let enrollment_token = token["token"].as_str().expect("token").to_string();
    let enrolled: serde_json::Value = client
        .post(server.url("/api/v1/agent/enroll"))
        .json(&json!({"token": enrollment_token, "hostname": "h"}))
        .send()
        .await
        .expect("enrol")
        .json()
        .await
        .expect("json");
    let credential = enrolled["credential"].as_str().expect("credential").to_string();
    let me = client.get(server.url("/api/v1/agent/me")).bearer_auth(&credential).send().await.expect("me");
    assert_eq!(me.status(), 200);
    let refreshed = client
        .post(server.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);
    let wrong = json!({"username": "alice", "password": format!("{password}-wrong")});
    let res = client.post(server.url("/api/v1/auth/login")).json(&wrong).send().await.expect("login");
    assert_eq!(res.status(), 401);

    let stored: String = users::table
        .select(users::password_hash)
        .first(&mut establish(&db.url).expect("open the database"))
        .expect("alice is stored");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(password));

    assert!(server.terminate(std::time::Duration::from_secs(15)).success());
    let logs = server.logs();
    assert!(logs.len() > 5, "the server logged at trace level: {logs:?}");
    for (what, secret) in [
        ("password", "Sup3r-Secret"),
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("enrolment token", enrollment_token.as_str()),
        ("agent credential", credential.as_str()),
    ] {
        let leaks: Vec<&String> = logs.iter().filter(|line| line.contains(secret)).collect();
        assert!(leaks.is_empty(), "the {what} appears in the logs: {leaks:#?}");
    }
}
