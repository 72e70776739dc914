//! kill -9 the server in the middle of a rollout to 1,000 agents, then start it again on the same
//! database and address. The agents are simulated over NATS the way the real agent speaks (heartbeats
//! as requests, tasks pushed to its subject, reports through JetStream, a task run once however often
//! it is delivered). The rollout must complete; every agent must have exactly one apply task, run once;
//! the deployment must still have one version.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use phoenix::db::Backend;
use reqwest::Method;
use serde_json::{json, Value};

use crate::fleet_sim::{self, Api, Behaviour};
use crate::helpers::{free_local_addr, NatsServerEnv, ServerProcess, TestDb};

const AGENTS: usize = 1000;

/// How many agents report the current version applied.
fn applied(status: &Value) -> usize {
    let agents = status["agents"].as_array().map(Vec::as_slice).unwrap_or_default();
    agents.iter().filter(|a| a["applied_version"] == status["current_version"]).count()
}

#[actix_web::test]
async fn a_rollout_to_1000_agents_survives_a_kill_9_and_runs_every_task_once() {
    let db = TestDb::new(Backend::Postgres);
    let addr = free_local_addr();
    let server_env = NatsServerEnv::new()
        .with("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", 10)
        .with("PHOENIX_DEPLOYMENTS__RECONCILE_INTERVAL_MS", 500)
        .with("PHOENIX_SERVER__WORKERS", 2);
    let env = server_env.vars();
    let mut first = ServerProcess::start_on(&db, &addr, &env);
    let api = Api::new(&first.url(""), &first.bootstrap_admin().await);

    let started = Instant::now();
    let agents = fleet_sim::enroll(&api, AGENTS, "crash", |_| json!({})).await;
    let behaviour = Behaviour { heartbeat_every: Duration::from_secs(10), connections: 8, measure_every: None };
    let record = fleet_sim::start(&server_env.prefix, &agents, behaviour).await;
    println!("{AGENTS} agents enrolled and online over NATS in {:.1} s", started.elapsed().as_secs_f64());

    // Waves of 100, 200, 400, 300, two seconds apart: the kill falls inside the second wave (some of its
    // tasks sent, reported or in flight) or, at worst, between two later waves.
    let body = json!({
        "name": "fleet-wide",
        "pipeline": {"template": "topk", "parameters": {"source": "synthetic", "k": 10}},
        "target": {"selector": {"fleet": "crash"}},
        "rollout": {"strategy": "waves", "first_batch": 100, "growth": 2.0, "interval_secs": 2},
    });
    let created = api.call(Method::POST, "/api/v1/pipelines/deployments", Some(body)).await.expect("deployment");
    let id = created["id"].as_str().expect("id").to_string();
    let status_path = format!("/api/v1/pipelines/deployments/{id}/status");
    let applied_at_kill = loop {
        let done = api.get(&status_path).await.map_or(0, |status| applied(&status));
        if done >= 150 {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill();
    assert!(applied_at_kill < AGENTS, "the kill fell in the middle of the rollout ({applied_at_kill} applied)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _second = ServerProcess::start_on(&db, &addr, &env);

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let status = api.get(&status_path).await.unwrap_or_default();
        if status["status"] == "active" && applied(&status) == AGENTS {
            break;
        }
        assert!(Instant::now() < deadline, "the rollout did not complete after the restart: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let versions = api.get(&format!("/api/v1/pipelines/deployments/{id}/versions")).await.expect("versions");
    assert_eq!(versions["items"].as_array().expect("items").len(), 1, "no version duplicated: {versions}");
    let events = api.get(&format!("/api/v1/pipelines/deployments/{id}/events")).await.expect("events");
    let created_events = events["items"].as_array().expect("items").iter();
    assert_eq!(created_events.filter(|e| e["event_type"] == "version_created").count(), 1, "{events}");

    // The server's record: one apply task per agent, succeeded.
    let tasks = api.all("/api/v1/tasks?type=pipeline.apply").await;
    let mut per_agent: HashMap<&str, Vec<&Value>> = HashMap::new();
    for task in &tasks {
        per_agent.entry(task["agent_id"].as_str().expect("agent")).or_default().push(task);
    }
    assert_eq!(per_agent.len(), AGENTS, "every agent has its task");
    for (agent, tasks) in &per_agent {
        assert_eq!(tasks.len(), 1, "agent {agent} has one apply task: {tasks:?}");
        assert_eq!(tasks[0]["status"], "succeeded", "{:?}", tasks[0]);
    }
    // The agents' record: each got that one task (maybe more than once) and ran it once.
    let deliveries = record.deliveries.lock().expect("lock");
    let mut redelivered = 0;
    for (agent, _) in &agents {
        let received = deliveries.get(agent).map(Vec::as_slice).unwrap_or_default();
        let distinct: HashSet<&String> = received.iter().collect();
        assert_eq!(distinct.len(), 1, "agent {agent} was sent one task: {received:?}");
        assert_eq!(per_agent[agent.as_str()][0]["id"].as_str(), Some(received[0].as_str()), "the same task");
        redelivered += received.len() - 1;
    }
    println!(
        "rollout crash: 1 kill -9 at {applied_at_kill}/{AGENTS} applied; completed after the restart; \
         {AGENTS} tasks, one per agent, each run once ({redelivered} repeat deliveries ignored); \
         1 version; lost 0; total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
