//! kill -9 the server in the middle of a rollout to 1,000 agents, then start it again on the same
//! database and address. The agents are simulated over NATS the way the real agent speaks (heartbeats
//! as requests, tasks pushed to its subject, reports through JetStream, a task run once however often
//! it is delivered). The rollout must complete; every agent must have exactly one apply task, run once;
//! the deployment must still have one version.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use phoenix::db::Backend;
use phoenix_nats::wire::TaskAssignment;
use phoenix_nats::{Bus, Envelope, NatsBus, NatsBusOptions, Subjects};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::helpers::{free_local_addr, http_client, nats_url, unique_prefix, ServerProcess, TestDb, TEST_JWT_SECRET};

const AGENTS: usize = 1000;
/// Simulated agents share this many NATS connections.
const CONNECTIONS: usize = 8;
const HEARTBEAT_SECS: u64 = 10;

/// Per agent, every apply task id delivered to it (repeats included).
type Deliveries = Arc<Mutex<HashMap<String, Vec<String>>>>;

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// The answer's JSON, or `None` while the server is down or answers an error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.timeout(Duration::from_secs(30)).send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        res.json().await.ok()
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Every item of a paged list.
    async fn all(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!("{path}&limit=500{cursor}")).await.expect("list");
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return items,
            }
        }
    }
}

/// Enrols `n` agents with one token, 64 at a time; (id, credential) pairs.
async fn enroll(api: &Arc<Api>, n: usize) -> Vec<(String, String)> {
    let token = api
        .call(Method::POST, "/api/v1/agents/enrollment-tokens", Some(json!({"uses": n, "labels": {"fleet": "crash"}})))
        .await
        .expect("enrolment token");
    let gate = Arc::new(Semaphore::new(64));
    let joins: Vec<_> = (0..n)
        .map(|i| {
            let (api, gate, token) = (api.clone(), gate.clone(), token["token"].clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
                let body = json!({"token": token, "hostname": format!("edge-{i}")});
                let res = api.client.post(format!("{}/api/v1/agent/enroll", api.base)).json(&body).send().await;
                let enrolled: Value = res.expect("enrol").json().await.expect("enrolment JSON");
                let id = enrolled["agent_id"].as_str().unwrap_or_else(|| panic!("enrolment refused: {enrolled}"));
                (id.to_string(), enrolled["credential"].as_str().expect("credential").to_string())
            })
        })
        .collect();
    let mut agents = Vec::with_capacity(n);
    for join in joins {
        agents.push(join.await.expect("enrol task"));
    }
    agents
}

/// One simulated agent: heartbeats every HEARTBEAT_SECS (ignoring a server that is down), and answers
/// every apply pushed to it with `succeeded`, running a task id only the first time it sees it.
async fn run_agent(bus: NatsBus, id: String, credential: String, deliveries: Deliveries, first_beat: Arc<Semaphore>) {
    let subjects = bus.subjects().clone();
    let mut tasks = bus.subscribe(&subjects.agent_tasks(&id).expect("subject")).await.expect("subscribe");
    let beat = {
        let (bus, id, credential) = (bus.clone(), id.clone(), credential.clone());
        async move {
            for seq in 1.. {
                let body = json!({"agent_version": "simulated", "health": "healthy", "seq": seq});
                let payload = Envelope::new("heartbeat", body).with_auth(credential.clone()).encode().expect("encode");
                let subject = subjects.agent_heartbeat(&id).expect("subject");
                let answered = bus.request(&subject, payload, Duration::from_secs(10)).await.is_ok();
                if seq == 1 {
                    assert!(answered, "the first heartbeat of {id} was answered");
                    first_beat.add_permits(1);
                }
                tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)).await;
            }
        }
    };
    tokio::spawn(beat);
    let status_subject = bus.subjects().agent_task_status(&id).expect("subject");
    let mut ran = HashSet::new();
    while let Some(message) = tasks.next().await {
        let Ok(task) = Envelope::<TaskAssignment>::decode(&message.payload) else { continue };
        let task_id = task.body.task_id.clone();
        deliveries.lock().expect("lock").entry(id.clone()).or_default().push(task_id.clone());
        ran.insert(task_id.clone());
        // A task seen before is not run again, only reported again (the server ignores a repeat).
        let report = json!({"task_id": task_id, "status": "succeeded", "attempt": task.body.attempt});
        let payload = Envelope::new("task_status", report).with_auth(credential.clone()).encode().expect("encode");
        while bus.publish_durable(&status_subject, payload.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn agent_bus(prefix: &str, i: usize) -> NatsBus {
    let options = NatsBusOptions {
        subjects: Subjects::new(prefix).expect("prefix"),
        name: format!("simulated-fleet-{i}"),
        manage_stream: false,
        ..Default::default()
    };
    NatsBus::connect(&nats_url(), options).await.expect("agents connect to NATS")
}

/// How many agents report the current version applied.
fn applied(status: &Value) -> usize {
    let agents = status["agents"].as_array().map(Vec::as_slice).unwrap_or_default();
    agents.iter().filter(|a| a["applied_version"] == status["current_version"]).count()
}

#[actix_web::test]
async fn a_rollout_to_1000_agents_survives_a_kill_9_and_runs_every_task_once() {
    let db = TestDb::new(Backend::Postgres);
    let (prefix, nats, addr) = (unique_prefix(), nats_url(), free_local_addr());
    let env = [
        ("PHOENIX_NATS_URL", nats.as_str()),
        ("PHOENIX_BUS__SUBJECT_PREFIX", prefix.as_str()),
        ("PHOENIX_AUTH__JWT_SECRET", TEST_JWT_SECRET),
        ("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", "10"),
        ("PHOENIX_DEPLOYMENTS__RECONCILE_INTERVAL_MS", "500"),
        ("PHOENIX_SERVER__WORKERS", "2"),
        ("RUST_LOG", "warn,phoenix::server=info"),
    ];
    let _stream = phoenix_nats::testing::StreamCleanup {
        url: nats.clone(),
        stream: Subjects::new(&prefix).expect("prefix").agent_results_stream(),
    };
    let mut first = ServerProcess::start_on(&db, &addr, &env);
    let api = Arc::new(Api { client: http_client(), base: first.url(""), token: first.bootstrap_admin().await });

    let started = Instant::now();
    let agents = enroll(&api, AGENTS).await;
    let deliveries: Deliveries = Default::default();
    let first_beat = Arc::new(Semaphore::new(0));
    let mut buses = Vec::new();
    for i in 0..CONNECTIONS {
        buses.push(agent_bus(&prefix, i).await);
    }
    for (i, (id, credential)) in agents.iter().enumerate() {
        let bus = buses[i % CONNECTIONS].clone();
        tokio::spawn(run_agent(bus, id.clone(), credential.clone(), deliveries.clone(), first_beat.clone()));
    }
    let _all = first_beat.acquire_many(AGENTS as u32).await.expect("every agent heartbeated");
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
    let deliveries = deliveries.lock().expect("lock");
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
