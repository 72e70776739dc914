//! Kill -9 the server while an agent keeps reporting over NATS; start it again: every report sent in
//! the gap is processed exactly once and no task is lost.

use std::time::Duration;

use phoenix::db::Backend;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{NatsAgent, NatsServerEnv, ServerProcess, TestDb};

const SAMPLES_PER_BATCH: usize = 4;

fn batch(n: usize) -> Value {
    let ts = chrono::Utc::now().to_rfc3339();
    let samples: Vec<Value> = (0..SAMPLES_PER_BATCH)
        .map(|i| json!({"metric": "m", "value": n, "labels": {"batch": n.to_string(), "i": i.to_string()}, "ts": ts}))
        .collect();
    json!({"pipeline": "crash-test", "samples": samples})
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(server: &ServerProcess) -> Api {
        Api { client: crate::helpers::http_client(), base: server.url(""), token: server.login_admin().await }
    }

    async fn get(&self, path: &str) -> Value {
        let res = self.client.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.expect("get");
        res.json().await.expect("JSON")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        res.json().await.expect("JSON")
    }

    async fn samples(&self) -> u64 {
        self.get("/api/v1/metrics/cardinality?pipeline=crash-test&window_secs=3600").await["samples"]
            .as_u64()
            .unwrap_or(0)
    }
}

async fn reports_sent_while_the_server_was_down_are_processed_exactly_once(backend: Backend) {
    let db = TestDb::new(backend);
    let server_env = NatsServerEnv::new();
    let (prefix, env) = (&server_env.prefix, server_env.vars());

    let mut first = ServerProcess::start(&db, &env);
    first.bootstrap_admin().await;
    let client = crate::helpers::http_client();
    let api = Api::login(&first).await;
    let token = api.post("/api/v1/agents/enrollment-tokens", json!({})).await;
    let enrolled = client
        .post(first.url("/api/v1/agent/enroll"))
        .json(&json!({"token": token["token"], "hostname": "edge"}))
        .send()
        .await
        .expect("enroll");
    let enrolled: Value = enrolled.json().await.expect("enrolment");
    let agent = NatsAgent::connect(
        prefix,
        enrolled["agent_id"].as_str().expect("id"),
        enrolled["credential"].as_str().expect("credential"),
    )
    .await;
    agent.heartbeat().await;
    let task = api
        .post(
            "/api/v1/tasks",
            json!({"agent_id": agent.id, "task_type": "pipeline.apply", "payload": {"pipeline": "crash-test"}}),
        )
        .await;
    let task_id = task["id"].as_str().expect("task id").to_string();

    for n in 0..5 {
        agent.send_metrics(batch(n)).await;
    }
    first.kill();

    // The server is gone; the agent keeps reporting. JetStream keeps it all.
    agent.report(&task_id, "running").await;
    for n in 5..15 {
        agent.send_metrics(batch(n)).await;
    }
    agent.report(&task_id, "succeeded").await;

    let second = ServerProcess::start(&db, &env);
    let api = Api::login(&second).await;
    let expected = (15 * SAMPLES_PER_BATCH) as u64;
    let mut stored = 0;
    // Reports the dead server had taken but not acknowledged come back after bus.ack_wait_secs (10 s).
    for _ in 0..300 {
        stored = api.samples().await;
        if stored >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, expected, "every batch arrived");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.samples().await, expected, "and none twice");
    let task = api.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "succeeded", "the task and its reports survived the crash: {task}");
    println!(
        "server kill -9 under a NATS agent: 10 batches and 2 reports sent while it was down; {expected} samples \
         stored, lost 0, duplicated 0; the task succeeded"
    );
}
each_backend!(reports_sent_while_the_server_was_down_are_processed_exactly_once);
