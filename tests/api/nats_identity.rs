//! Per-agent NATS identities (`bus.nats_trust_file`), on a real nats-server in operator mode: an agent
//! gets a JWT for its own key, may use only its own subjects (the NATS server refuses the rest and
//! says so), a new key retires the old one, and revoking the agent cuts its connection.

use std::sync::Arc;
use std::time::Duration;

use phoenix::config::{SensitiveUrl, Settings};
use phoenix::db::Backend;
use phoenix_nats::testing::{ObservedClient, OperatorNats};
use phoenix_nats::trust::{NatsTrust, UserCredential};
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_app, spawn_with, test_settings, Env, TestApp, TestDb};

const WITHIN: Duration = Duration::from_secs(10);

/// An enrolled agent and the NATS credential it got for its own key.
struct Agent {
    id: String,
    credential: String,
}

impl Agent {
    async fn enroll(app: &TestApp, admin: &str, hostname: &str) -> Agent {
        let enrolled = app.enroll_agent(admin, hostname).await;
        assert_eq!(enrolled["nats_auth"], "agent_jwt", "{enrolled}");
        assert_eq!(enrolled["nats_subject_prefix"], app.prefix.as_str(), "{enrolled}");
        let text = |field: &str| enrolled[field].as_str().expect(field).to_string();
        Agent { id: text("agent_id"), credential: text("credential") }
    }

    async fn ask(&self, app: &TestApp, public_key: &str) -> reqwest::Response {
        let body = json!({"public_key": public_key});
        app.send_as(Method::POST, "/api/v1/agent/nats-credentials", &self.credential, &body).await
    }

    /// Makes a key, gets it a JWT, and connects to NATS with it.
    async fn connect(&self, app: &TestApp, nats: &OperatorNats) -> ObservedClient {
        let key = Arc::new(nkeys::KeyPair::new_user());
        let res = self.ask(app, &key.public_key()).await;
        assert_eq!(res.status(), 200, "credential for {}", self.id);
        let issued: Value = res.json().await.expect("credential JSON");
        assert_eq!(issued["subject_prefix"], app.prefix.as_str());
        let credential = UserCredential { jwt: issued["jwt"].as_str().expect("jwt").to_string(), key };
        let inbox = issued["inbox_prefix"].as_str().expect("inbox prefix");
        ObservedClient::connect(&nats.url, &credential, inbox)
            .await
            .unwrap_or_else(|e| panic!("{} connects with its JWT: {e}\n{}", self.id, nats.log()))
    }

    /// A heartbeat over NATS, answered by Phoenix.
    async fn heartbeat(&self, app: &TestApp, connection: &ObservedClient) -> Value {
        let subjects = phoenix_nats::Subjects::new(&app.prefix).expect("prefix");
        let body = json!({"agent_version": "test", "health": "healthy", "seq": 1});
        let payload = phoenix_nats::Envelope::new("heartbeat", body).with_auth(self.credential.clone());
        let sent = connection
            .client
            .request(subjects.agent_heartbeat(&self.id).expect("subject"), payload.encode().expect("encode"));
        let answer = tokio::time::timeout(WITHIN, sent).await.expect("answered in time").expect("answered");
        serde_json::from_slice(&answer.payload).expect("ack JSON")
    }
}

/// A server on NATS in operator mode, trusting a new operator written to a trust file.
pub(crate) async fn server_with_trust(
    backend: Backend,
    tune: impl FnOnce(&mut Settings),
) -> (TestApp, OperatorNats, tempfile::TempDir) {
    let trust = NatsTrust::generate();
    let nats = OperatorNats::start(&trust);
    let dir = tempfile::tempdir().expect("dir");
    let trust_file = dir.path().join("nats-trust.json");
    std::fs::write(&trust_file, serde_json::to_string(&trust.seeds()).expect("seeds")).expect("trust file");
    let env = if backend == Backend::Sqlite { Env::SqliteNats } else { Env::PostgresNats };
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.bus.nats_url = Some(SensitiveUrl::new(nats.url.clone()));
    settings.bus.agent_nats_url = Some(SensitiveUrl::new(nats.url.clone()));
    settings.bus.nats_trust_file = Some(trust_file);
    tune(&mut settings);
    (spawn_with(env, db, settings).await, nats, dir)
}

async fn each_agent_is_confined_to_its_own_subjects_and_cut_off_when_revoked(backend: Backend) {
    let (app, nats, _dir) = server_with_trust(backend, |_| {}).await;
    let admin = app.bootstrap_admin().await;
    let a = Agent::enroll(&app, &admin, "a").await;
    let b = Agent::enroll(&app, &admin, "b").await;
    let subjects = phoenix_nats::Subjects::new(&app.prefix).expect("prefix");

    // Only a user key gets a JWT, and a key is one agent's.
    assert_eq!(a.ask(&app, "not-a-key").await.status(), 422);
    assert_eq!(a.ask(&app, &nkeys::KeyPair::new_account().public_key()).await.status(), 422);
    let shared = nkeys::KeyPair::new_user().public_key();
    assert_eq!(a.ask(&app, &shared).await.status(), 200);
    assert_eq!(b.ask(&app, &shared).await.status(), 409, "a's key is not b's to use");
    let anonymous = app.post_json("/api/v1/agent/nats-credentials", &json!({"public_key": shared})).await;
    assert_eq!(anonymous.status(), 401);

    // Its own subjects work end to end through Phoenix: heartbeats answered, tasks pushed.
    let mut on_a = a.connect(&app, &nats).await;
    let on_b = b.connect(&app, &nats).await;
    let ack = a.heartbeat(&app, &on_a).await;
    assert_eq!(ack["kind"], "heartbeat_ack", "{ack}");
    let mut tasks = on_a.client.subscribe(subjects.agent_tasks(&a.id).expect("subject")).await.expect("subscribe");
    on_a.client.flush().await.expect("flush");
    let task = app.enqueue(&admin, &a.id, "pipeline.remove", json!({"payload": {"pipeline": "p"}})).await;
    let pushed = tokio::time::timeout(WITHIN, futures_util::StreamExt::next(&mut tasks)).await.expect("pushed in time");
    let pushed: Value = serde_json::from_slice(&pushed.expect("task").payload).expect("task JSON");
    assert_eq!(pushed["body"]["task_id"], task["id"], "{pushed}");

    // Another agent's subjects: the NATS server refuses, and says so.
    let _spy = on_a.client.subscribe(subjects.agent_tasks(&b.id).expect("subject")).await.expect("sent");
    on_a.client.flush().await.expect("flush");
    let refused = on_a.expect_event("permissions violation", WITHIN).await;
    assert!(refused.contains(&format!("agent.{}.tasks", b.id)), "{refused}");
    on_a.client.publish(subjects.agent_heartbeat(&b.id).expect("subject"), "forged".into()).await.expect("sent");
    on_a.client.flush().await.expect("flush");
    let refused = on_a.expect_event("permissions violation", WITHIN).await;
    assert!(refused.contains(&format!("agent.{}.heartbeat", b.id)), "{refused}");

    // A new key retires the old one: the old connection is closed by the NATS server.
    let mut rotated = a.connect(&app, &nats).await;
    on_a.expect_event("disconnected", WITHIN).await;
    assert_eq!(a.heartbeat(&app, &rotated).await["kind"], "heartbeat_ack");

    // Revoking the agent revokes its NATS identity: cut off at once, and refused when it retries.
    let res = app.send_as(Method::DELETE, &format!("/api/v1/agents/{}/credential", a.id), &admin, &json!({})).await;
    assert_eq!(res.status(), 204);
    rotated.expect_event("disconnected", WITHIN).await;
    rotated.expect_event("authorization", WITHIN).await;
    assert_eq!(a.ask(&app, &nkeys::KeyPair::new_user().public_key()).await.status(), 401);
    assert_eq!(b.heartbeat(&app, &on_b).await["kind"], "heartbeat_ack", "b is not affected");

    // Every revoked key stays in the NATS account: an agent may not make new ones without end.
    let mut issued = 1; // b's key above
    let refused = loop {
        let res = b.ask(&app, &nkeys::KeyPair::new_user().public_key()).await;
        if res.status() != 200 {
            break res;
        }
        issued += 1;
        assert!(issued <= phoenix_actors::store::MAX_NATS_KEYS_PER_DAY, "more keys than a day allows");
    };
    assert_eq!(issued, phoenix_actors::store::MAX_NATS_KEYS_PER_DAY);
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.expect("problem");
    assert_eq!(problem["code"], "too_many_nats_keys", "{problem}");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains("reason=\"too_many_nats_keys\"} 1"), "counted");
}

each_backend!(each_agent_is_confined_to_its_own_subjects_and_cut_off_when_revoked);

#[actix_web::test]
async fn without_a_trust_file_agents_are_told_to_use_the_nats_url_as_it_is() {
    let app = spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    let enrolled = app.enroll_agent(&admin, "h").await;
    assert_eq!(enrolled["nats_auth"], "url", "{enrolled}");
    let credential = enrolled["credential"].as_str().expect("credential");
    let body = json!({"public_key": nkeys::KeyPair::new_user().public_key()});
    let res = app.send_as(Method::POST, "/api/v1/agent/nats-credentials", credential, &body).await;
    assert_eq!(res.status(), 404);
}
