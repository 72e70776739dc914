//! The agent over NATS, through a NATS outage: it falls back to HTTP long-poll, keeps reporting, and
//! returns to NATS when NATS is back — and the server sees every measurement batch exactly once
//! (sequence numbers without gap or repeat).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use phoenix::config::SensitiveUrl;
use phoenix::db::schema::metric_samples;
use phoenix::db::{establish, Backend};
use serde_json::{json, Value};

use crate::helpers::{spawn_with, test_settings, Env, TestApp, TestDb};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A nats-server of this test's own, so it can be stopped and started again.
struct OwnNats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl OwnNats {
    fn start() -> OwnNats {
        let mut nats = OwnNats { child: None, port: free_port(), store: tempfile::tempdir().expect("store dir") };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Lines before this index matched an earlier wait and are not looked at again.
    cursor: usize,
}

impl Agent {
    fn start(app: &TestApp, state: &std::path::Path, token: &str) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args([
                "agent",
                "--server",
                &app.url(""),
                "--interval",
                "1",
                // No --subject-prefix: the agent learns it from its enrolment answer.
                "--enroll-token",
                token,
            ])
            .arg("--state-dir")
            .arg(state)
            .env_remove("PHOENIX_NATS_URL")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start phoenix agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { child, lines, seen: Vec::new(), cursor: 0 }
    }

    /// Waits until the agent logs a new line (after the last one waited for) containing all of
    /// `words`. Never blocks the test's runtime: the server's actors run on it.
    async fn wait_for_log(&mut self, words: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.seen.extend(self.lines.try_iter());
            if let Some(at) = self.seen[self.cursor..].iter().position(|l| words.iter().all(|w| l.contains(w))) {
                self.cursor += at + 1;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the agent never logged {words:?}; it said:\n{}", self.seen.join("\n"));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sequence numbers of the batches stored for `pipeline` (one row per batch: its input-series sample).
/// The sequence numbers of `pipeline`'s measurement batches stored so far, sorted.
pub(crate) fn stored_batches(db: &TestDb, pipeline: &str) -> Vec<i64> {
    let mut conn = establish(&db.url).expect("db");
    let mut seqs: Vec<i64> = metric_samples::table
        .filter(metric_samples::pipeline.eq(pipeline))
        .filter(metric_samples::metric.eq("pipeline.input.series"))
        .select(metric_samples::batch_seq)
        .load::<Option<i64>>(&mut conn)
        .expect("samples")
        .into_iter()
        .flatten()
        .collect();
    seqs.sort_unstable();
    seqs
}

async fn wait_for_batches(db: &TestDb, pipeline: &str, at_least: usize) {
    for _ in 0..300 {
        if stored_batches(db, pipeline).len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {at_least} batches arrived");
}

#[actix_web::test]
async fn the_agent_rides_out_a_nats_outage_without_losing_or_repeating_a_batch() {
    let mut nats = OwnNats::start();
    let env = Env::SqliteNats;
    let db = TestDb::new(Backend::Sqlite);
    let mut settings = test_settings(env, &db);
    settings.bus.nats_url = Some(SensitiveUrl::new(nats.url()));
    settings.bus.agent_nats_url = Some(SensitiveUrl::new(nats.url()));
    settings.bus.ack_wait_secs = 2;
    settings.agents.heartbeat_interval_secs = 1;
    settings.tasks.ack_window_secs = 2;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let token = app.enrollment_token(&admin).await;
    let state = tempfile::tempdir().expect("state");
    let mut agent = Agent::start(&app, state.path(), &token);
    agent.wait_for_log(&["transport switched", "to=\"nats\""], Duration::from_secs(15)).await;

    let agents: Value = app.get_as("/api/v1/agents", &admin).await.json().await.expect("agents");
    let agent_id = agents["items"][0]["id"].as_str().expect("agent id").to_string();
    let config = "receivers: {synthetic: {profile: steady, processes: 10}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [synthetic], exporters: [count]}}}\n";
    app.enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "p", "config": config}})).await;
    wait_for_batches(&app.db, "p", 3).await;

    nats.stop();
    agent.wait_for_log(&["transport switched", "to=\"http\""], Duration::from_secs(20)).await;
    let during = stored_batches(&app.db, "p").len();
    wait_for_batches(&app.db, "p", during + 3).await;

    nats.restart();
    agent.wait_for_log(&["from=\"http\"", "to=\"nats\""], Duration::from_secs(20)).await;
    let back = stored_batches(&app.db, "p").len();
    wait_for_batches(&app.db, "p", back + 3).await;

    // Let what is in flight land, then stop the agent and check the sequence.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(agent);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seqs = stored_batches(&app.db, "p");
    let max = *seqs.last().expect("batches");
    let expected: Vec<i64> = (1..=max).collect();
    assert_eq!(seqs, expected, "every batch exactly once, no gap and no repeat");
    println!(
        "NATS stopped and restarted under a reporting agent: fell back to HTTP and returned; {max} batches \
         stored (batch {during} at the stop, {back} at the return), lost 0, repeated 0"
    );
}

/// With per-agent NATS identities the real agent makes its own key, gets a JWT for it, and works over
/// NATS within its permissions (heartbeats answered, tasks received, metrics through JetStream); when
/// an admin revokes it, the NATS server closes its connection.
#[actix_web::test]
async fn the_agent_speaks_nats_as_itself_and_loses_nats_when_revoked() {
    let (app, _nats, _trust_dir) = crate::nats_identity::server_with_trust(Backend::Sqlite, |settings| {
        // The agent measures and heartbeats every second: a lost NATS shows within seconds.
        settings.agents.heartbeat_interval_secs = 1;
    })
    .await;
    let admin = app.bootstrap_admin().await;
    let token = app.enrollment_token(&admin).await;
    let state = tempfile::tempdir().expect("state");
    let mut agent = Agent::start(&app, state.path(), &token);
    agent.wait_for_log(&["transport switched", "to=\"nats\""], Duration::from_secs(15)).await;
    assert!(state.path().join("nats-user.nk").exists(), "the agent keeps its own NATS key");

    let agents: Value = app.get_as("/api/v1/agents", &admin).await.json().await.expect("agents");
    let agent_id = agents["items"][0]["id"].as_str().expect("agent id").to_string();
    let config = "receivers: {synthetic: {profile: steady, processes: 10}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [synthetic], exporters: [count]}}}\n";
    app.enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "p", "config": config}})).await;
    wait_for_batches(&app.db, "p", 2).await;

    let res = app
        .send_as(reqwest::Method::DELETE, &format!("/api/v1/agents/{agent_id}/credential"), &admin, &json!({}))
        .await;
    assert_eq!(res.status(), 204);
    agent.wait_for_log(&["transport switched", "to=\"http\""], Duration::from_secs(20)).await;
}
