//! Rollout benchmark: one version of a deployment rolled out `all_at_once` to many simulated agents over
//! NATS, against one release `phoenix server`. Each agent heartbeats once over NATS (so the server pushes
//! its tasks), then answers every `pipeline.apply` pushed to it with a `succeeded` report through
//! JetStream, as the real agent does. Measured in the same run:
//!
//! - a bare NATS request/reply round trip (the floor);
//! - per agent: deployment created -> its apply received, and -> its report sent;
//! - in total: deployment created -> the server's status says every agent applied it (`active`).
//!
//! Run: `cargo build --release && cargo run --release --example rollout_load -- --agents 1000` (then
//! `--agents 10000`; NATS at $PHOENIX_TEST_NATS_URL or nats://127.0.0.1:4222; SQLite by default,
//! `--database-url postgres://…` for PostgreSQL). `--replicas N` runs N server replicas on the same
//! PostgreSQL database (the agents' heartbeats are shared among them; one of them, the lease holder,
//! steps the rollout). Results: bench/RESULTS.md.

#[path = "support.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use phoenix_nats::wire::TaskAssignment;
use phoenix_nats::{Bus, Envelope, NatsBus};
use serde_json::json;
use support::{rss_mib, start_replica, start_server, Api, Latencies};
use tokio::sync::Semaphore;

struct Args {
    agents: usize,
    replicas: usize,
    connections: usize,
    database_url: Option<String>,
    nats_url: String,
}

fn parse_args() -> Args {
    let flags = support::Flags::parse(&["--agents", "--replicas", "--connections", "--database-url", "--nats-url"]);
    let args = Args {
        agents: flags.number("--agents", 1000),
        replicas: flags.number("--replicas", 1),
        connections: flags.number("--connections", 16),
        database_url: flags.text("--database-url"),
        nats_url: flags.nats_url(),
    };
    assert!(args.replicas >= 1, "--replicas must be at least 1");
    assert!(args.replicas == 1 || args.database_url.is_some(), "several replicas share a --database-url (PostgreSQL)");
    args
}

/// When each agent received its apply and sent its report, measured from `started`.
#[derive(Default)]
struct Timings {
    started: Option<Instant>,
    received: Latencies,
    reported: Latencies,
}

/// One simulated agent: it heartbeats once, then reports every task pushed to it as succeeded.
async fn run_agent(
    bus: NatsBus,
    (id, credential): (String, String),
    timings: Arc<Mutex<Timings>>,
    ready: Arc<Semaphore>,
    gate: Arc<Semaphore>,
) {
    let permit = gate.acquire().await.expect("semaphore");
    let subjects = bus.subjects().clone();
    let mut tasks = bus.subscribe(&subjects.agent_tasks(&id).expect("subject")).await.expect("subscribe");
    let heartbeat = Envelope::new("heartbeat", json!({"agent_version": "bench", "health": "healthy", "seq": 1}))
        .with_auth(credential.clone())
        .encode()
        .expect("encode");
    bus.request(&subjects.agent_heartbeat(&id).expect("subject"), heartbeat, Duration::from_secs(30))
        .await
        .expect("heartbeat answered");
    drop(permit);
    ready.add_permits(1);
    let status_subject = subjects.agent_task_status(&id).expect("subject");
    while let Some(message) = tasks.next().await {
        let Ok(envelope) = Envelope::<TaskAssignment>::decode(&message.payload) else { continue };
        let received = Instant::now();
        let report = json!({"task_id": envelope.body.task_id, "status": "succeeded", "attempt": envelope.body.attempt});
        let payload = Envelope::new("task_status", report).with_auth(credential.clone()).encode().expect("encode");
        bus.publish_durable(&status_subject, payload).await.expect("report");
        let mut timings = timings.lock().expect("lock");
        if let Some(started) = timings.started {
            timings.received.push(received.saturating_duration_since(started));
            timings.reported.push(started.elapsed());
        }
    }
}

async fn bare_nats_round_trip(bus: &NatsBus) -> Latencies {
    let subject = format!("{}.bench.echo", bus.subjects().prefix());
    let mut echo = bus.subscribe(&subject).await.expect("subscribe");
    let responder = bus.clone();
    tokio::spawn(async move {
        while let Some(message) = echo.next().await {
            if let Some(reply) = message.reply {
                let _ = responder.publish(&reply, message.payload).await;
            }
        }
    });
    let mut lat = Latencies::default();
    for _ in 0..200 {
        let started = Instant::now();
        bus.request(&subject, "ping".into(), Duration::from_secs(5)).await.expect("echo");
        lat.push(started.elapsed());
    }
    lat
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    phoenix_nats::install_tls_provider();
    // The simulated agents heartbeat once: they stay online for the whole run.
    let env = [
        ("PHOENIX_DEPLOYMENTS__RECONCILE_INTERVAL_MS", "1000"),
        ("PHOENIX_SERVER__WORKERS", "2"),
        ("PHOENIX_AGENTS__OFFLINE_AFTER_SECS", "3600"),
    ];
    let mut server = start_server(args.database_url.as_deref(), &args.nats_url, &env).await;
    let api = Arc::new(Api::new(&server.base).await);
    let mut replicas = Vec::new();
    for _ in 1..args.replicas {
        let database = args.database_url.as_deref().expect("checked in parse_args");
        replicas.push(start_replica(&server, database, &args.nats_url, &env).await);
    }
    println!(
        "# rollout — {} (2 cores), {}, {} NATS agents, all_at_once, {} replica(s)",
        chrono::Utc::now().format("%Y-%m-%d"),
        if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" },
        args.agents,
        args.replicas
    );
    let mut buses = Vec::new();
    for i in 0..args.connections {
        buses.push(server.bus(&args.nats_url, &format!("bench-rollout-{i}")).await);
    }
    let bare = bare_nats_round_trip(&buses[0]).await;
    println!("bare NATS request/reply round trip: {}", bare.summary());

    let enrolled = Instant::now();
    let agents = api.enroll(args.agents, "rollout").await;
    println!("enrolled {} agents in {:.1} s", agents.len(), enrolled.elapsed().as_secs_f64());
    let timings = Arc::new(Mutex::new(Timings::default()));
    let ready = Arc::new(Semaphore::new(0));
    let gate = Arc::new(Semaphore::new(256));
    for (i, agent) in agents.iter().enumerate() {
        let bus = buses[i % buses.len()].clone();
        tokio::spawn(run_agent(bus, agent.clone(), timings.clone(), ready.clone(), gate.clone()));
    }
    let connected = Instant::now();
    let _ = ready.acquire_many(u32::try_from(agents.len()).expect("agents")).await.expect("agents ready");
    println!(
        "every agent connected (one NATS heartbeat each, shared among the replicas) in {:.2} s",
        connected.elapsed().as_secs_f64()
    );

    let body = json!({
        "name": "bench-rollout",
        "pipeline": {"template": "topk", "parameters": {"source": "synthetic", "k": 10}},
        "target": {"selector": {"bench": "rollout"}},
        "rollout": {"strategy": "all_at_once"},
    });
    timings.lock().expect("lock").started = Some(Instant::now());
    let started = Instant::now();
    let created = api.post("/api/v1/pipelines/deployments", body).await;
    let id = created["id"].as_str().expect("deployment id").to_string();
    let deadline = started + Duration::from_secs(600);
    let total = loop {
        let status = api.get(&format!("/api/v1/pipelines/deployments/{id}")).await;
        if status["status"] == "active" {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let timings = std::mem::take(&mut *timings.lock().expect("lock"));
    println!("per agent, created -> apply received: {}", timings.received.summary());
    println!("per agent, created -> report sent: {}", timings.reported.summary());
    match total {
        Some(total) => println!(
            "total, created -> status active (every agent applied, as the server sees it): {:.2} s",
            total.as_secs_f64()
        ),
        None => println!("the rollout did not become active within 600 s"),
    }
    println!(
        "ratio: per-agent receipt p50 / bare NATS round trip p50 = {:.0}",
        timings.received.p50_ms() / bare.p50_ms().max(0.001)
    );
    let memory: Vec<String> = std::iter::once(&server)
        .chain(&replicas)
        .filter_map(|s| s.child.id())
        .map(|pid| format!("{:.0} MiB", rss_mib(pid)))
        .collect();
    println!("resident memory per replica after the rollout: {}", memory.join(", "));
    for mut replica in replicas {
        let _ = replica.child.kill().await;
    }
    let _ = server.child.kill().await;
}
