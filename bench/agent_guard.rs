//! What the checks on agent messages cost (issue 19): every heartbeat's pipeline statuses and every
//! measurement batch are checked against the pipelines the agent was given (`gateway/grants.rs`), once
//! per (agent, pipeline) from the database, then from memory. Measured in one run against the release
//! `phoenix server`, each as one request after another over HTTP (so latencies are not queueing):
//!
//! - `GET /healthz`: the floor any request sits on;
//! - a heartbeat without pipeline statuses (no grant check: the cost before issue 19);
//! - the first heartbeat of each agent naming its 2 given pipelines (grants read from the database);
//! - the same again (grants kept in memory): against the heartbeat without statuses, what the check
//!   costs in steady state;
//! - a measurement batch of 100 samples, first of each agent and again (the same, for batches).
//!
//! Run: `cargo build --release && cargo run --release --example agent_guard -- --agents 500`
//! (NATS at $PHOENIX_TEST_NATS_URL or nats://127.0.0.1:4222; SQLite by default, `--database-url
//! postgres://…` for PostgreSQL). Results: bench/RESULTS.md.

#[path = "support.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use phoenix_nats::Envelope;
use serde_json::{json, Value};
use support::{start_server, Api, Latencies};

/// Pipelines each agent is given (and names in its heartbeats).
const PIPELINES: [&str; 2] = ["edge-a", "edge-b"];

/// Samples per measurement batch.
const SAMPLES: usize = 100;

struct Agent {
    id: String,
    credential: String,
}

#[tokio::main]
async fn main() {
    phoenix_nats::install_tls_provider();
    let flags = support::Flags::parse(&["--agents", "--database-url", "--nats-url"]);
    let agents: usize = flags.number("--agents", 500);
    let nats_url = flags.nats_url();
    let server = start_server(flags.text("--database-url").as_deref(), &nats_url, &[]).await;
    let api = Arc::new(Api::new(&server.base).await);
    let agents: Vec<Agent> =
        api.enroll(agents, "guard").await.into_iter().map(|(id, credential)| Agent { id, credential }).collect();
    for agent in &agents {
        give_pipelines(&api, agent).await;
    }
    println!("{} agents enrolled, each given {} pipelines", agents.len(), PIPELINES.len());

    let floor = measure(&agents, |_| api.http.get(format!("{}/healthz", api.base))).await;
    let bare = measure(&agents, |agent| heartbeat(&api, agent, json!([]))).await;
    let statuses: Value =
        PIPELINES.iter().map(|p| json!({"name": p, "config_hash": "h", "state": "running"})).collect();
    let cold = measure(&agents, |agent| heartbeat(&api, agent, statuses.clone())).await;
    let warm = measure(&agents, |agent| heartbeat(&api, agent, statuses.clone())).await;
    let first_batch = measure(&agents, |agent| batch(&api, agent)).await;
    let next_batch = measure(&agents, |agent| batch(&api, agent)).await;

    println!("GET /healthz (floor):                         {}", floor.summary());
    println!("heartbeat, no statuses (no check):            {}", bare.summary());
    println!("heartbeat, 2 statuses, grants from database:  {}", cold.summary());
    println!("heartbeat, 2 statuses, grants kept:           {}", warm.summary());
    println!("batch of {SAMPLES} samples, first (grant read):   {}", first_batch.summary());
    println!("batch of {SAMPLES} samples, again (grant kept):   {}", next_batch.summary());
    let ratio = |a: &Latencies, b: &Latencies| a.p50_ms() / b.p50_ms();
    println!(
        "p50 ratios: bare heartbeat / floor {:.2}, kept-grant heartbeat / bare heartbeat {:.2}, \
              database-grant heartbeat / bare heartbeat {:.2}, first batch / next batch {:.2}",
        ratio(&bare, &floor),
        ratio(&warm, &bare),
        ratio(&cold, &bare),
        ratio(&first_batch, &next_batch)
    );
}

/// An operator's `pipeline.apply` of each pipeline, taken by the agent's long-poll (so it is received).
async fn give_pipelines(api: &Api, agent: &Agent) {
    for pipeline in PIPELINES {
        let task = json!({"agent_id": agent.id, "task_type": "pipeline.apply", "payload": {"pipeline": pipeline}});
        api.post("/api/v1/tasks", task).await;
    }
    let polled = api.http.get(format!("{}/api/v1/agent/tasks?wait=0", api.base)).bearer_auth(&agent.credential);
    let polled: Value = polled.send().await.expect("poll").json().await.expect("tasks");
    assert_eq!(polled["items"].as_array().map(Vec::len), Some(PIPELINES.len()), "{polled}");
}

fn heartbeat(api: &Api, agent: &Agent, pipelines: Value) -> reqwest::RequestBuilder {
    let body = json!({"agent_version": "bench", "health": "healthy", "seq": 1, "pipelines": pipelines});
    let url = format!("{}/api/v1/agent/heartbeat", api.base);
    api.http.post(url).bearer_auth(&agent.credential).json(&Envelope::new("heartbeat", body))
}

fn batch(api: &Api, agent: &Agent) -> reqwest::RequestBuilder {
    let ts = chrono::Utc::now();
    let samples: Vec<Value> =
        (0..SAMPLES).map(|i| json!({"metric": "m", "value": i, "labels": {"pid": i.to_string()}, "ts": ts})).collect();
    let body = json!({"pipeline": PIPELINES[0], "samples": samples});
    let url = format!("{}/api/v1/agent/metrics", api.base);
    api.http.post(url).bearer_auth(&agent.credential).json(&Envelope::new("metrics", body))
}

/// One request per agent, one after another; each must succeed.
async fn measure(agents: &[Agent], request: impl Fn(&Agent) -> reqwest::RequestBuilder) -> Latencies {
    let mut latencies = Latencies::default();
    for agent in agents {
        let started = Instant::now();
        let res = request(agent).send().await.expect("request");
        latencies.push(started.elapsed());
        assert!(res.status().is_success(), "{}", res.status());
    }
    latencies
}
