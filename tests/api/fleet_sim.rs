//! A fleet of simulated agents for the load-shaped tests (a rollout crash, the soak): enrolled over HTTP,
//! then speaking NATS as the real agent does — heartbeats as requests, tasks pushed to its subject,
//! reports and measurements through JetStream, a task run once however often it is delivered. Many
//! agents share a few NATS connections.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use phoenix_nats::wire::TaskAssignment;
use phoenix_nats::{Bus, Envelope, NatsBus, NatsBusOptions, Subjects};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::helpers::{http_client, nats_url};

/// The REST API as an admin, tolerant of a server that is down (`None`).
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Arc<Api> {
        Arc::new(Api { client: http_client(), base: base.trim_end_matches('/').to_string(), token: token.to_string() })
    }

    /// The answer's JSON, or `None` while the server is down or answers an error.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.timeout(Duration::from_secs(30)).send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        // 204 has no body: answer an empty object.
        Some(res.json().await.unwrap_or_else(|_| json!({})))
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Every item of a paged list (`path` already has a query string).
    pub async fn all(&self, path: &str) -> Vec<Value> {
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

/// Enrols `n` agents (64 at a time) with one token carrying `fleet=<fleet>`; agent `i` also gets the
/// labels `labels(i)`. Returns (id, credential) pairs in order.
pub async fn enroll(api: &Arc<Api>, n: usize, fleet: &str, labels: impl Fn(usize) -> Value) -> Vec<(String, String)> {
    let body = json!({"uses": n, "labels": {"fleet": fleet}});
    let token = api.call(Method::POST, "/api/v1/agents/enrollment-tokens", Some(body)).await.expect("enrolment token");
    let gate = Arc::new(Semaphore::new(64));
    let joins: Vec<_> = (0..n)
        .map(|i| {
            let (api, gate) = (api.clone(), gate.clone());
            let body = json!({"token": token["token"], "hostname": format!("{fleet}-{i}"), "labels": labels(i)});
            tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
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

/// Hands every agent a plain pipeline named `pipeline` (an operator's `pipeline.apply`, which each
/// agent takes with a long-poll), so that they may report on it.
pub async fn give_pipeline(api: &Arc<Api>, agents: &[(String, String)], pipeline: &str) {
    for (id, credential) in agents {
        let task = json!({"agent_id": id, "task_type": "pipeline.apply", "payload": {"pipeline": pipeline}});
        api.call(Method::POST, "/api/v1/tasks", Some(task)).await.expect("apply enqueued");
        let polled = api.client.get(format!("{}/api/v1/agent/tasks?wait=0", api.base)).bearer_auth(credential).send();
        let polled: Value = polled.await.expect("poll").json().await.expect("tasks JSON");
        assert_eq!(polled["items"].as_array().map(Vec::len), Some(1), "{id} takes its apply: {polled}");
    }
}

/// How the simulated agents behave.
pub struct Behaviour {
    pub heartbeat_every: Duration,
    /// Agents share this many NATS connections.
    pub connections: usize,
    /// Send each running experiment variant's measurements this often (`None`: never).
    pub measure_every: Option<Duration>,
}

/// What the fleet saw and did, shared with the test.
#[derive(Default)]
pub struct Record {
    /// Per agent, every task id delivered to it, repeats included.
    pub deliveries: Mutex<HashMap<String, Vec<String>>>,
    pub batches_sent: AtomicU64,
    pub reports_sent: AtomicU64,
}

/// Starts every agent and waits until each one's first heartbeat was answered.
pub async fn start(prefix: &str, agents: &[(String, String)], behaviour: Behaviour) -> Arc<Record> {
    let record = Arc::new(Record::default());
    let first_beat = Arc::new(Semaphore::new(0));
    let mut buses = Vec::new();
    for i in 0..behaviour.connections {
        let options = NatsBusOptions {
            subjects: Subjects::new(prefix).expect("prefix"),
            name: format!("simulated-fleet-{i}"),
            manage_stream: false,
            ..Default::default()
        };
        buses.push(NatsBus::connect(&nats_url(), options).await.expect("agents connect to NATS"));
    }
    for (i, (id, credential)) in agents.iter().enumerate() {
        let agent = Agent {
            bus: buses[i % buses.len()].clone(),
            id: id.clone(),
            credential: credential.clone(),
            record: record.clone(),
        };
        tokio::spawn(agent.clone().heartbeat(behaviour.heartbeat_every, first_beat.clone()));
        tokio::spawn(agent.serve(behaviour.measure_every));
    }
    let _all = first_beat.acquire_many(agents.len() as u32).await.expect("every agent heartbeated");
    record
}

#[derive(Clone)]
struct Agent {
    bus: NatsBus,
    id: String,
    credential: String,
    record: Arc<Record>,
}

impl Agent {
    fn envelope(&self, kind: &str, body: Value) -> phoenix_nats::Bytes {
        Envelope::new(kind, body).with_auth(self.credential.clone()).encode().expect("encode")
    }

    /// Heartbeats forever; a server that is down is not an error (the next beat will do).
    async fn heartbeat(self, every: Duration, first_beat: Arc<Semaphore>) {
        let subject = self.bus.subjects().agent_heartbeat(&self.id).expect("subject");
        for seq in 1.. {
            let body = json!({"agent_version": "simulated", "health": "healthy", "seq": seq});
            let answered = self.bus.request(&subject, self.envelope("heartbeat", body), Duration::from_secs(10)).await;
            if seq == 1 {
                assert!(answered.is_ok(), "the first heartbeat of {} was answered", self.id);
                first_beat.add_permits(1);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Answers every task pushed (`succeeded`, running a task id only once) and, when asked to, sends
    /// the measurements of the experiment variants it runs.
    async fn serve(self, measure_every: Option<Duration>) {
        let subjects = self.bus.subjects().clone();
        let mut tasks = self.bus.subscribe(&subjects.agent_tasks(&self.id).expect("subject")).await.expect("subscribe");
        let mut measure = tokio::time::interval(measure_every.unwrap_or(Duration::from_secs(3600)));
        let mut ran = HashSet::new();
        // Running experiment pipelines: (experiment id, variant).
        let mut running: HashSet<(String, String)> = HashSet::new();
        let mut seq = 0;
        loop {
            tokio::select! {
                message = tasks.next() => {
                    let Some(message) = message else { return };
                    let Ok(task) = Envelope::<TaskAssignment>::decode(&message.payload) else { continue };
                    let task = task.body;
                    self.record.deliveries.lock().expect("lock").entry(self.id.clone()).or_default().push(task.task_id.clone());
                    if ran.insert(task.task_id.clone()) {
                        track(&task, &mut running);
                    }
                    self.report(&subjects, &task).await;
                }
                _ = measure.tick(), if measure_every.is_some() => {
                    seq += 1;
                    for (experiment, variant) in &running {
                        self.measure(&subjects, experiment, variant, seq).await;
                    }
                }
            }
        }
    }

    /// Reports `succeeded` (again, for a repeat: the server ignores it), retrying while JetStream is away.
    async fn report(&self, subjects: &Subjects, task: &TaskAssignment) {
        let subject = subjects.agent_task_status(&self.id).expect("subject");
        let report = json!({"task_id": task.task_id, "status": "succeeded", "attempt": task.attempt});
        let payload = self.envelope("task_status", report);
        while self.bus.publish_durable(&subject, payload.clone()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.record.reports_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// One interval's self-measurement of a variant: the candidate keeps a tenth of the series.
    async fn measure(&self, subjects: &Subjects, experiment: &str, variant: &str, seq: u64) {
        let series = if variant == "baseline" { 500.0 } else { 50.0 };
        let batch = crate::experiments::measurement_batch(experiment, variant, series, seq);
        let subject = subjects.agent_metrics(&self.id).expect("subject");
        if self.bus.publish_durable(&subject, self.envelope("metrics", batch)).await.is_ok() {
            self.record.batches_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An apply of an experiment variant starts its measurements; a removal of `exp-<id>-<variant>` ends them.
fn track(task: &TaskAssignment, running: &mut HashSet<(String, String)>) {
    let payload = &task.payload;
    let text = |field: &str| payload[field].as_str().unwrap_or_default().to_string();
    match task.task_type.as_str() {
        "pipeline.apply" if payload["experiment_id"].is_string() => {
            running.insert((text("experiment_id"), text("variant")));
        }
        "pipeline.remove" => {
            if let Some((experiment, variant)) = text("pipeline").strip_prefix("exp-").and_then(|r| r.rsplit_once('-'))
            {
                running.remove(&(experiment.to_string(), variant.to_string()));
            }
        }
        _ => {}
    }
}
