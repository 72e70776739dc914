//! Soak: the server process under steady load for a bounded time — 1,000 simulated NATS agents
//! heartbeating, 10 experiments at a time, each on its own group of 10 of them that measure every
//! interval (created, started, measured, completed, deleted, then the next one), and WebSocket clients
//! that follow every list and reconnect all along. Its memory must stay flat after the warm-up, its open files must not grow, and
//! it must log no error.
//!
//! `PHOENIX_SOAK_SECS` sets the load's length: 120 s by default (`scripts/test`), 900 s with
//! `scripts/test --long`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phoenix::db::Backend;
use phoenix::live::LiveClient;
use reqwest::Method;
use serde_json::{json, Value};

use crate::fleet_sim::{self, Api, Behaviour};
use crate::helpers::{NatsServerEnv, ServerProcess, TestDb};

const AGENTS: usize = 1000;
/// Experiments run at once, one per group.
const GROUPS: usize = 10;
const AGENTS_PER_GROUP: usize = 10;
const WS_CLIENTS: usize = 10;
/// Agents heartbeat and measure this often (the server is told the same).
const INTERVAL_SECS: u64 = 10;
/// Four measured intervals: the KPIs need three.
const EXPERIMENT_SECS: u64 = 40;
/// Memory after the warm-up may exceed the warm-up's peak by this share plus this many MiB (allocator
/// slack, caches filling); a leak proportional to the load goes beyond it within minutes.
const MEMORY_SLACK: f64 = 0.25;
const MEMORY_SLACK_MIB: f64 = 24.0;
/// Open files may exceed the warm-up's peak by this many (connections of the clients reconnecting).
const FD_SLACK: usize = 16;

fn soak_duration() -> Duration {
    let secs = std::env::var("PHOENIX_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    Duration::from_secs(secs)
}

/// Resident memory (MiB) and open files of a process, from /proc.
fn footprint(pid: u32) -> (f64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count());
    (rss_kib / 1024.0, fds)
}

fn experiment(group: usize, round: usize) -> Value {
    let synthetic =
        |template: &str| json!({"template": template, "parameters": {"source": "synthetic", "processes": 50}});
    json!({
        "name": format!("soak-{group}-{round}"),
        "baseline": synthetic("baseline"),
        "candidate": synthetic("topk"),
        "target": {"selector": {"group": group.to_string()}},
        "duration_secs": EXPERIMENT_SECS,
        "success_criteria": {"max_cpu_overhead_pct": 1_000_000},
    })
}

/// Runs experiments on one group, one after another, until `until`; returns how many completed.
async fn experiments_in_group(api: Arc<Api>, group: usize, until: Instant) -> usize {
    let mut completed = 0;
    for round in 0.. {
        if Instant::now() >= until {
            break;
        }
        let created = api.call(Method::POST, "/api/v1/experiments", Some(experiment(group, round))).await;
        let id = created.expect("experiment created")["id"].as_str().expect("id").to_string();
        let path = format!("/api/v1/experiments/{id}");
        api.call(Method::POST, &format!("{path}/start"), None).await.expect("started");
        let deadline = Instant::now() + Duration::from_secs(EXPERIMENT_SECS + 120);
        let phase = loop {
            let phase = api.get(&path).await.map(|e| e["phase"].as_str().unwrap_or_default().to_string());
            match phase.as_deref() {
                Some(done @ ("completed" | "failed")) => break done.to_string(),
                _ if Instant::now() > deadline => {
                    panic!("experiment of group {group} did not end: {}", api.get(&path).await.unwrap_or_default())
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let experiment = api.get(&path).await.expect("experiment");
        assert_eq!(phase, "completed", "experiment of group {group}: {experiment}");
        completed += 1;
        api.call(Method::DELETE, &path, None).await.expect("deleted");
    }
    completed
}

/// A dashboard-like client: follows the lists and reconnects every few seconds; counts what it got.
async fn watcher(base: String, token: String, until: Instant, received: Arc<AtomicU64>, connections: Arc<AtomicU64>) {
    while Instant::now() < until {
        let mut client = LiveClient::connect(&base, &token).await.expect("WebSocket connects");
        connections.fetch_add(1, Ordering::Relaxed);
        for topic in ["experiments", "deployments", "agents", "tasks"] {
            client.subscribe(topic).await.expect("subscribe");
        }
        let session_end = Instant::now() + Duration::from_secs(7);
        while Instant::now() < session_end.min(until) {
            if let Ok(Some(_)) = client.next_message(Duration::from_millis(500)).await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
        client.close().await;
    }
}

#[actix_web::test]
async fn the_server_stays_flat_under_a_steady_load() {
    let duration = soak_duration();
    let db = TestDb::new(Backend::Postgres);
    let server_env = NatsServerEnv::new()
        .with("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", INTERVAL_SECS)
        .with("PHOENIX_EXPERIMENTS__RECONCILE_INTERVAL_MS", 500)
        .with("PHOENIX_SERVER__WORKERS", 2);
    let mut server = ServerProcess::start(&db, &server_env.vars());
    let pid = server.pid();
    let token = server.bootstrap_admin().await;
    let api = Api::new(&server.url(""), &token);
    let group_of = |i: usize| if i < GROUPS * AGENTS_PER_GROUP { (i % GROUPS).to_string() } else { "idle".into() };
    let agents = fleet_sim::enroll(&api, AGENTS, "soak", |i| json!({"group": group_of(i)})).await;
    let every = Duration::from_secs(INTERVAL_SECS);
    let behaviour = Behaviour { heartbeat_every: every, connections: 8, measure_every: Some(every) };
    let record = fleet_sim::start(&server_env.prefix, &agents, behaviour).await;

    let started = Instant::now();
    let until = started + duration;
    let warm_up = duration / 3;
    let (received, connections) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watchers: Vec<_> = (0..WS_CLIENTS)
        .map(|_| {
            let (base, token) = (server.url(""), token.clone());
            actix_web::rt::spawn(watcher(base, token, until, received.clone(), connections.clone()))
        })
        .collect();
    let groups: Vec<_> =
        (0..GROUPS).map(|group| actix_web::rt::spawn(experiments_in_group(api.clone(), group, until))).collect();

    // Sample the server's footprint every 2 s while the load runs.
    let (mut warm, mut after) = (Vec::new(), Vec::new());
    while Instant::now() < until {
        let sample = footprint(pid);
        if started.elapsed() < warm_up {
            warm.push(sample)
        } else {
            after.push(sample)
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut experiments = 0;
    for group in groups {
        experiments += group.await.expect("experiment driver");
    }
    for watcher in watchers {
        watcher.await.expect("watcher");
    }
    after.push(footprint(pid));

    let peak = |samples: &[(f64, usize)]| samples.iter().fold((0.0_f64, 0_usize), |(m, f), s| (m.max(s.0), f.max(s.1)));
    let (warm_rss, warm_fds) = peak(&warm);
    let (after_rss, after_fds) = peak(&after);
    let (final_rss, final_fds) = *after.last().expect("a sample");
    let errors: Vec<String> = server.logs().into_iter().filter(|line| line.contains("ERROR")).collect();
    println!(
        "soak: {} s of load on {AGENTS} agents ({} measurement batches, {} reports), {experiments} experiments \
         completed in {GROUPS} groups, {} WebSocket sessions ({} messages); server RSS warm-up peak {warm_rss:.0} MiB, \
         after {after_rss:.0} MiB (final {final_rss:.0}); open files warm-up {warm_fds}, after {after_fds} (final \
         {final_fds}); error log lines: {}",
        duration.as_secs(),
        record.batches_sent.load(Ordering::Relaxed),
        record.reports_sent.load(Ordering::Relaxed),
        connections.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        errors.len()
    );
    assert!(experiments >= GROUPS, "every group completed an experiment");
    assert!(received.load(Ordering::Relaxed) > 0, "the WebSocket clients received events");
    let bound = warm_rss * (1.0 + MEMORY_SLACK) + MEMORY_SLACK_MIB;
    assert!(
        after_rss <= bound,
        "memory grew after the warm-up: {warm_rss:.0} -> {after_rss:.0} MiB (bound {bound:.0})"
    );
    assert!(after_fds <= warm_fds + FD_SLACK, "open files grew: {warm_fds} -> {after_fds}");
    assert!(errors.is_empty(), "the server logged errors:\n{}", errors.join("\n"));
}
