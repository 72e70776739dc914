//! Concurrent experiments benchmark: one release `phoenix server` runs many small experiments at once
//! (the seed's goal was 1,000), each on one simulated agent that speaks the real HTTP agent protocol:
//! it long-polls its tasks, reports applies, heartbeats and sends both variants' measurements every
//! interval. Measured in the same run:
//!
//! - a bare HTTP round trip to the same server (`/healthz`), the floor any request sits on;
//! - `start` request latency (pending -> deploying persisted, apply tasks queued);
//! - last apply reported -> `running` announced on the bus;
//! - end of the measurement window -> `completed` (KPIs and verdict computed and stored) announced;
//! - the server's resident memory idle, at its peak while every experiment runs, and after.
//!
//! Run: `cargo build --release && cargo run --release --example experiment_load -- --experiments 1000
//! --agents 100` (NATS at $PHOENIX_TEST_NATS_URL or nats://127.0.0.1:4222; SQLite by default,
//! `--database-url postgres://…` for PostgreSQL). Results: bench/RESULTS.md.

#[path = "support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use phoenix_nats::{Bus, Envelope, NatsBus};
use serde_json::{json, Value};
use support::{rss_mib, start_server, Api, Latencies};
use tokio::sync::Semaphore;

struct Args {
    experiments: usize,
    agents: usize,
    duration_secs: u64,
    interval_secs: u64,
    database_url: Option<String>,
    nats_url: String,
}

fn parse_args() -> Args {
    let known = ["--experiments", "--agents", "--duration-secs", "--interval-secs", "--database-url", "--nats-url"];
    let flags = support::Flags::parse(&known);
    Args {
        experiments: flags.number("--experiments", 1000),
        agents: flags.number("--agents", 100),
        duration_secs: flags.number("--duration-secs", 30),
        interval_secs: flags.number("--interval-secs", 5),
        database_url: flags.text("--database-url"),
        nats_url: flags.nats_url(),
    }
}

/// What the bench saw happen, by experiment id.
#[derive(Default)]
struct Observed {
    /// When the agent reported the experiment's last apply.
    applied: HashMap<String, Instant>,
    /// When each phase was announced, and the experiment as announced.
    phases: HashMap<(String, String), (Instant, DateTime<Utc>, Value)>,
}

/// One simulated agent: tasks, heartbeats and measurements over HTTP.
struct SimAgent {
    api: Arc<Api>,
    credential: String,
    interval: Duration,
    observed: Arc<Mutex<Observed>>,
}

impl SimAgent {
    async fn send(&self, path: &str, kind: &str, body: Value) -> Option<Value> {
        let envelope = Envelope::new(kind, body);
        let res = self
            .api
            .http
            .post(format!("{}{path}", self.api.base))
            .bearer_auth(&self.credential)
            .json(&envelope)
            .send()
            .await
            .ok()?;
        res.json().await.ok()
    }

    async fn run(self) {
        // experiment id -> variants running
        let mut running: HashMap<String, Vec<String>> = HashMap::new();
        let mut applies: HashMap<String, usize> = HashMap::new();
        let mut next_report = Instant::now();
        let mut seq = 0u64;
        loop {
            if Instant::now() >= next_report {
                next_report += self.interval;
                self.send(
                    "/api/v1/agent/heartbeat",
                    "heartbeat",
                    json!({"agent_version": "bench", "health": "healthy", "seq": seq}),
                )
                .await;
                for (experiment, variants) in &running {
                    for variant in variants {
                        seq += 1;
                        self.send("/api/v1/agent/metrics", "metrics", measurement(experiment, variant, seq)).await;
                    }
                }
            }
            let polled = self
                .api
                .http
                .get(format!("{}/api/v1/agent/tasks?wait=1", self.api.base))
                .bearer_auth(&self.credential)
                .send()
                .await;
            let Ok(polled) = polled else { continue };
            let Ok(body) = polled.json::<Value>().await else { continue };
            for task in body["items"].as_array().cloned().unwrap_or_default() {
                let task = &task["body"];
                let id = task["task_id"].as_str().unwrap_or_default();
                let payload = &task["payload"];
                let pipeline = payload["pipeline"].as_str().unwrap_or_default();
                let experiment = payload["experiment_id"].as_str().map(str::to_string);
                self.send(
                    &format!("/api/v1/agent/tasks/{id}/status"),
                    "task_status",
                    json!({"task_id": id, "status": "succeeded"}),
                )
                .await;
                match (task["task_type"].as_str(), experiment) {
                    (Some("pipeline.apply"), Some(experiment)) => {
                        let variant = payload["variant"].as_str().unwrap_or_default().to_string();
                        running.entry(experiment.clone()).or_default().push(variant);
                        let count = applies.entry(experiment.clone()).or_default();
                        *count += 1;
                        if *count == 2 {
                            self.observed.lock().expect("lock").applied.insert(experiment, Instant::now());
                        }
                    }
                    (Some("pipeline.remove"), _) => {
                        // exp-<id>-<variant>
                        if let Some(rest) = pipeline.strip_prefix("exp-") {
                            if let Some((experiment, _)) = rest.rsplit_once('-') {
                                running.remove(experiment);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One interval's self-measurement of a variant: the candidate keeps a tenth of the series.
fn measurement(experiment: &str, variant: &str, seq: u64) -> Value {
    let series = if variant == "baseline" { 1000.0 } else { 100.0 + (seq % 3) as f64 };
    let ts = Utc::now();
    let samples: Vec<Value> = [
        ("pipeline.output.series", series),
        ("pipeline.output.points", series),
        ("pipeline.cpu.seconds", 0.001),
        ("pipeline.memory.bytes", series * 200.0),
    ]
    .into_iter()
    .map(|(metric, value)| json!({"metric": metric, "value": value, "labels": {}, "ts": ts}))
    .collect();
    json!({"pipeline": format!("exp-{experiment}-{variant}"), "experiment_id": experiment, "variant": variant, "seq": seq, "samples": samples})
}

/// Records every phase change the server announces on the bus.
async fn follow_phases(bus: NatsBus, prefix: String, observed: Arc<Mutex<Observed>>) {
    let mut events = bus.subscribe(&format!("{prefix}.events.experiment.*")).await.expect("subscribe");
    while let Some(message) = events.next().await {
        let Ok(envelope) = Envelope::<Value>::decode(&message.payload) else { continue };
        if envelope.kind != "experiment.phase_changed" {
            continue;
        }
        let id = envelope.body["id"].as_str().unwrap_or_default().to_string();
        let to = envelope.body["to"].as_str().unwrap_or_default().to_string();
        observed.lock().expect("lock").phases.insert((id, to), (Instant::now(), Utc::now(), envelope.body));
    }
}

async fn bare_http_round_trip(api: &Api, samples: usize) -> Latencies {
    let mut lat = Latencies::default();
    for _ in 0..samples {
        let started = Instant::now();
        api.http.get(format!("{}/healthz", api.base)).send().await.expect("healthz");
        lat.push(started.elapsed());
    }
    lat
}

async fn create_and_start(api: &Arc<Api>, agents: &[(String, String)], args: &Args) -> (Vec<String>, Latencies) {
    let gate = Arc::new(Semaphore::new(32));
    let mut joins = Vec::new();
    for i in 0..args.experiments {
        let (api, gate) = (api.clone(), gate.clone());
        let agent = agents[i % agents.len()].0.clone();
        let duration = args.duration_secs;
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            let body = json!({
                "name": format!("bench-{i}"),
                "baseline": {"template": "baseline", "parameters": {"source": "synthetic"}},
                "candidate": {"template": "topk", "parameters": {"source": "synthetic", "k": 10}},
                "target": {"agents": [agent]},
                "warmup_secs": 0,
                "duration_secs": duration,
                "success_criteria": {"max_cpu_overhead_pct": 1000},
            });
            let created = api.post("/api/v1/experiments", body).await;
            let id = created["id"].as_str().expect("id").to_string();
            let started = Instant::now();
            api.post(&format!("/api/v1/experiments/{id}/start"), json!({})).await;
            (id, started.elapsed())
        }));
    }
    let mut ids = Vec::new();
    let mut lat = Latencies::default();
    for join in joins {
        let (id, took) = join.await.expect("join");
        ids.push(id);
        lat.push(took);
    }
    (ids, lat)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    phoenix_nats::install_tls_provider();
    let interval = args.interval_secs.to_string();
    let env = [("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", interval.as_str()), ("PHOENIX_SERVER__WORKERS", "2")];
    let mut server = start_server(args.database_url.as_deref(), &args.nats_url, &env).await;
    let pid = server.child.id().expect("server pid");
    let api = Arc::new(Api::new(&server.base).await);
    println!(
        "# concurrent experiments — {} (2 cores), {}, {} experiments on {} simulated agents, {} s windows, {} s intervals",
        Utc::now().format("%Y-%m-%d"),
        if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" },
        args.experiments,
        args.agents,
        args.duration_secs,
        args.interval_secs
    );
    let bus = server.bus(&args.nats_url, "bench-events").await;
    let observed = Arc::new(Mutex::new(Observed::default()));
    tokio::spawn(follow_phases(bus, server.prefix.clone(), observed.clone()));

    let agents = api.enroll(args.agents, "exp").await;
    for (_, credential) in &agents {
        let agent = SimAgent {
            api: api.clone(),
            credential: credential.clone(),
            interval: Duration::from_secs(args.interval_secs),
            observed: observed.clone(),
        };
        tokio::spawn(agent.run());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bare = bare_http_round_trip(&api, 200).await;
    println!("bare HTTP round trip (GET /healthz): {}", bare.summary());
    let idle_rss = rss_mib(pid);
    println!("server RSS with {} agents, no experiments: {idle_rss:.1} MiB", agents.len());

    let began = Instant::now();
    let (ids, start_latency) = create_and_start(&api, &agents, &args).await;
    println!("created and started {} experiments in {:.1} s", ids.len(), began.elapsed().as_secs_f64());
    println!("start request (pending -> deploying persisted, applies queued): {}", start_latency.summary());
    println!("ratio: start p50 / bare HTTP p50 = {:.1}", start_latency.p50_ms() / bare.p50_ms().max(0.001));

    let deadline = Instant::now() + Duration::from_secs(args.duration_secs + 300);
    let mut peak_rss = 0.0f64;
    let finished = |o: &Observed| {
        ids.iter()
            .filter(|id| ["completed", "failed"].iter().any(|p| o.phases.contains_key(&((*id).clone(), p.to_string()))))
            .count()
    };
    while Instant::now() < deadline {
        peak_rss = peak_rss.max(rss_mib(pid));
        if finished(&observed.lock().expect("lock")) == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let observed = std::mem::take(&mut *observed.lock().expect("lock"));
    let mut to_running = Latencies::default();
    let mut to_completed = Latencies::default();
    let mut verdicts: HashMap<String, usize> = HashMap::new();
    let mut failed = 0;
    for id in &ids {
        if let (Some(applied), Some((at, _, _))) =
            (observed.applied.get(id), observed.phases.get(&(id.clone(), "running".into())))
        {
            to_running.push(at.saturating_duration_since(*applied));
        }
        if let Some((_, at, body)) = observed.phases.get(&(id.clone(), "completed".into())) {
            let from: Option<DateTime<Utc>> =
                body["experiment"]["measuring_from"].as_str().and_then(|t| t.parse().ok());
            if let Some(from) = from {
                let until = from + chrono::Duration::seconds(args.duration_secs as i64);
                to_completed.push((*at - until).to_std().unwrap_or_default());
            }
            let verdict = body["experiment"]["results"]["verdict"].as_str().unwrap_or("none").to_string();
            *verdicts.entry(verdict).or_default() += 1;
        }
        if observed.phases.contains_key(&(id.clone(), "failed".into())) {
            failed += 1;
        }
    }
    println!("finished: {} of {} ({} failed); verdicts {verdicts:?}", finished(&observed), ids.len(), failed);
    println!("last apply reported -> running announced: {}", to_running.summary());
    println!("window end -> completed (KPIs stored) announced: {}", to_completed.summary());
    println!("server RSS peak while running: {peak_rss:.1} MiB; after: {:.1} MiB", rss_mib(pid));
    println!(
        "memory per concurrent experiment: {:.1} KiB",
        (peak_rss - idle_rss).max(0.0) * 1024.0 / ids.len().max(1) as f64
    );
    let _ = server.child.kill().await;
}
