//! Agent load benchmark: simulates agents over NATS and over HTTP long-poll against one real
//! `phoenix server` (the release binary, started here), and measures, in the same run:
//!
//! - a bare NATS request/reply round trip (the floor any NATS heartbeat answer sits on);
//! - agents held: NATS agents with sessions, long-poll agents with a request held open;
//! - heartbeat processing rate (sustained at the agents' interval, and flat out);
//! - task dispatch latency, from the enqueue call to the agent having the task, on both transports.
//!
//! Run: `cargo build --release && cargo run --release --example agent_load -- --nats-agents 10000
//! --http-agents 5000` (NATS at $PHOENIX_TEST_NATS_URL or nats://127.0.0.1:4222; SQLite by default,
//! `--database-url postgres://…` for PostgreSQL). Results: bench/RESULTS.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use phoenix_nats::{Bus, Envelope, NatsBus};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[path = "support.rs"]
mod support;

use support::{start_server, Api, Latencies};

struct Args {
    nats_agents: usize,
    http_agents: usize,
    nats_connections: usize,
    samples: usize,
    sustain_secs: u64,
    database_url: Option<String>,
    nats_url: String,
}

fn parse_args() -> Args {
    let known = [
        "--nats-agents",
        "--http-agents",
        "--nats-connections",
        "--samples",
        "--sustain-secs",
        "--database-url",
        "--nats-url",
    ];
    let flags = support::Flags::parse(&known);
    Args {
        nats_agents: flags.number("--nats-agents", 10_000),
        http_agents: flags.number("--http-agents", 5_000),
        nats_connections: flags.number("--nats-connections", 16),
        samples: flags.number("--samples", 200),
        sustain_secs: flags.number("--sustain-secs", 20),
        database_url: flags.text("--database-url"),
        nats_url: flags.nats_url(),
    }
}

async fn bare_nats_round_trip(url: &str) -> Latencies {
    let client = async_nats::connect(url).await.expect("connect");
    let subject = format!("bench.{}.echo", uuid::Uuid::now_v7().simple());
    let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    let mut lat = Latencies::default();
    for _ in 0..2000 {
        let started = Instant::now();
        client.request(subject.clone(), "ping".into()).await.expect("reply");
        lat.push(started.elapsed());
    }
    lat
}

fn heartbeat_payload(credential: &str) -> phoenix_nats::Bytes {
    Envelope::new("heartbeat", json!({"agent_version": "bench", "health": "healthy", "seq": 1}))
        .with_auth(credential)
        .encode()
        .expect("encode")
}

struct NatsFleet {
    buses: Vec<NatsBus>,
    agents: Vec<(String, String)>,
}

impl NatsFleet {
    fn bus(&self, i: usize) -> &NatsBus {
        &self.buses[i % self.buses.len()]
    }

    /// Every agent heartbeats once, `concurrency` at a time; returns the latencies and the wall time.
    async fn heartbeat_all(self: &Arc<Self>, concurrency: usize) -> (Latencies, Duration) {
        let gate = Arc::new(Semaphore::new(concurrency));
        let lat = Arc::new(Mutex::new(Latencies::default()));
        let started = Instant::now();
        let mut joins = Vec::new();
        for i in 0..self.agents.len() {
            let (fleet, gate, lat) = (self.clone(), gate.clone(), lat.clone());
            joins.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                fleet.heartbeat(i, &lat).await;
            }));
        }
        for join in joins {
            join.await.expect("join");
        }
        let lat = lat.lock().expect("lock").clone();
        (lat, started.elapsed())
    }

    async fn heartbeat(&self, i: usize, lat: &Mutex<Latencies>) {
        let (id, credential) = &self.agents[i];
        let bus = self.bus(i);
        let subject = bus.subjects().agent_heartbeat(id).expect("subject");
        let started = Instant::now();
        if bus.request(&subject, heartbeat_payload(credential), Duration::from_secs(10)).await.is_ok() {
            lat.lock().expect("lock").push(started.elapsed());
        }
    }
}

/// Every agent heartbeats once per `interval`, spread evenly, for `secs`; returns (latencies, acks/s).
async fn sustained_heartbeats(fleet: &Arc<NatsFleet>, interval: Duration, secs: u64) -> (Latencies, f64) {
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let per_tick = Duration::from_nanos(interval.as_nanos() as u64 / fleet.agents.len() as u64);
    let started = Instant::now();
    let mut next = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut joins = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        ticker.tick().await;
        let due = (started.elapsed().as_nanos() / per_tick.as_nanos().max(1)) as usize;
        while next < due {
            let (fleet, lat, i) = (fleet.clone(), lat.clone(), next % fleet.agents.len());
            joins.push(tokio::spawn(async move { fleet.heartbeat(i, &lat).await }));
            next += 1;
        }
    }
    for join in joins {
        let _ = join.await;
    }
    let lat = lat.lock().expect("lock").clone();
    let rate = lat.0.len() as f64 / started.elapsed().as_secs_f64();
    (lat, rate)
}

async fn nats_dispatch(api: &Api, fleet: &NatsFleet, samples: usize) -> Latencies {
    let mut lat = Latencies::default();
    for i in 0..samples {
        let index = (i * 7919) % fleet.agents.len();
        let (id, _) = &fleet.agents[index];
        let bus = fleet.bus(index);
        let mut tasks = bus.subscribe(&bus.subjects().agent_tasks(id).expect("subject")).await.expect("subscribe");
        let started = Instant::now();
        api.post("/api/v1/tasks", json!({"agent_id": id, "task_type": "bench.noop", "payload": {}})).await;
        if tokio::time::timeout(Duration::from_secs(5), tasks.next()).await.ok().flatten().is_some() {
            lat.push(started.elapsed());
        }
    }
    lat
}

/// Long-poll agents: each holds `GET /agent/tasks?wait=30`, records when a task arrives, polls again.
fn http_fleet(api: &Arc<Api>, agents: &[(String, String)], arrivals: Arc<Mutex<HashMap<String, Instant>>>) {
    for (_, credential) in agents {
        let (api, credential, arrivals) = (api.clone(), credential.clone(), arrivals.clone());
        tokio::spawn(async move {
            loop {
                let res = api
                    .http
                    .get(format!("{}/api/v1/agent/tasks?wait=30", api.base))
                    .bearer_auth(&credential)
                    .send()
                    .await;
                let Ok(res) = res else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let body: Value = res.json().await.unwrap_or_default();
                let now = Instant::now();
                for item in body["items"].as_array().into_iter().flatten() {
                    if let Some(id) = item["body"]["task_id"].as_str() {
                        arrivals.lock().expect("lock").insert(id.to_string(), now);
                    }
                }
            }
        });
    }
}

async fn http_dispatch(
    api: &Api,
    agents: &[(String, String)],
    arrivals: &Mutex<HashMap<String, Instant>>,
    samples: usize,
) -> Latencies {
    let mut lat = Latencies::default();
    for i in 0..samples {
        let (id, _) = &agents[(i * 7919) % agents.len()];
        let started = Instant::now();
        let task = api.post("/api/v1/tasks", json!({"agent_id": id, "task_type": "bench.noop", "payload": {}})).await;
        let task_id = task["id"].as_str().expect("id").to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(at) = arrivals.lock().expect("lock").get(&task_id) {
                lat.push(*at - started);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    lat
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    phoenix_nats::install_tls_provider();
    let mut server = start_server(args.database_url.as_deref(), &args.nats_url, &[]).await;
    let api = Arc::new(Api::new(&server.base).await);
    println!(
        "# agent load — {} (2 cores), {}",
        chrono::Utc::now().format("%Y-%m-%d"),
        if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );

    let bare = bare_nats_round_trip(&args.nats_url).await;
    println!("bare NATS request/reply round trip: {}", bare.summary());

    if args.nats_agents > 0 {
        let started = Instant::now();
        let agents = api.enroll(args.nats_agents, "nats").await;
        println!("enrolled {} NATS agents in {:.1} s", agents.len(), started.elapsed().as_secs_f64());
        let mut buses = Vec::new();
        for i in 0..args.nats_connections {
            buses.push(server.bus(&args.nats_url, &format!("bench-{i}")).await);
        }
        let fleet = Arc::new(NatsFleet { buses, agents });
        let (first, wall) = fleet.heartbeat_all(256).await;
        println!(
            "first heartbeat of every NATS agent: {:.0}/s, {}",
            first.0.len() as f64 / wall.as_secs_f64(),
            first.summary()
        );
        println!("NATS agents held (server sessions): {}", api.metric("phoenix_agent_sessions").await);
        let (sustained, rate) = sustained_heartbeats(&fleet, Duration::from_secs(10), args.sustain_secs).await;
        println!(
            "sustained heartbeats (every agent every 10 s) for {} s: {rate:.0}/s answered, {}",
            args.sustain_secs,
            sustained.summary()
        );
        let (burst, wall) = fleet.heartbeat_all(1024).await;
        println!("flat-out heartbeats: {:.0}/s, {}", burst.0.len() as f64 / wall.as_secs_f64(), burst.summary());
        let dispatch = nats_dispatch(&api, &fleet, args.samples).await;
        println!("NATS task dispatch, enqueue -> agent receipt: {}", dispatch.summary());
        println!(
            "ratio: NATS dispatch p50 / bare NATS round trip p50 = {:.1}",
            dispatch.p50_ms() / bare.p50_ms().max(0.001)
        );
    }

    if args.http_agents > 0 {
        let agents = api.enroll(args.http_agents, "http").await;
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        http_fleet(&api, &agents, arrivals.clone());
        let started = Instant::now();
        let mut held = 0.0;
        while started.elapsed() < Duration::from_secs(60) {
            held = api.metric("phoenix_long_poll_waiters").await;
            if held >= agents.len() as f64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("long-poll agents held (requests waiting on the server): {held} of {}", agents.len());
        let dispatch = http_dispatch(&api, &agents, &arrivals, args.samples).await;
        println!("long-poll task dispatch, enqueue -> agent receipt: {}", dispatch.summary());
    }
    let _ = server.child.kill().await;
}
