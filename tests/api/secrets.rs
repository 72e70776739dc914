//! Secrets stay secret: passwords are stored only as Argon2id hashes and never appear in the logs,
//! even at the most verbose level.

use diesel::prelude::*;
use phoenix::db::schema::users;
use phoenix::db::{establish, Backend};
use serde_json::json;

use crate::helpers::{ServerProcess, TestDb};

#[actix_web::test]
async fn passwords_are_never_stored_or_logged_in_clear() {
    let db = TestDb::new(Backend::Sqlite);
    let mut server = ServerProcess::start(&db, &[("RUST_LOG", "trace"), ("LOG_FORMAT", "json")]);
    let password = "Sup3r-Secret-Passw0rd";
    let client = reqwest::Client::new();
    let credentials = json!({"username": "alice", "password": password});
    let res = client.post(server.url("/api/v1/auth/register")).json(&credentials).send().await.expect("register");
    assert_eq!(res.status(), 201);
    let res = client.post(server.url("/api/v1/auth/login")).json(&credentials).send().await.expect("login");
    assert_eq!(res.status(), 200);
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
    let leaks: Vec<&String> = logs.iter().filter(|line| line.contains("Sup3r-Secret")).collect();
    assert!(leaks.is_empty(), "the password appears in the logs: {leaks:#?}");
}
