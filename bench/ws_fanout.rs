//! WebSocket fan-out benchmark: many live sessions on one release `phoenix server`, all subscribed to
//! `experiments`; events published on the bus (as any server publishes them) reach every session.
//! Measured in the same run:
//!
//! - a bare NATS publish -> subscriber delivery (the floor an event rides on);
//! - publish -> receipt by each session (p50/p99 over every session and event);
//! - the server's resident memory per open session.
//!
//! Run: `cargo build --release && cargo run --release --example ws_fanout -- --sessions 10000`
//! (NATS at $PHOENIX_TEST_NATS_URL or nats://127.0.0.1:4222). Results: bench/RESULTS.md.

#[path = "support.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use phoenix_nats::{Bus, Envelope, NatsBus};
use serde_json::{json, Value};
use support::{rss_mib, start_server, Api, Latencies};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    sessions: usize,
    events: usize,
    nats_url: String,
}

fn parse_args() -> Args {
    let flags = support::Flags::parse(&["--sessions", "--events", "--nats-url"]);
    Args {
        sessions: flags.number("--sessions", 10_000),
        events: flags.number("--events", 20),
        nats_url: flags.nats_url(),
    }
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// One session: connect, subscribe, then record how long each event took from its publish.
async fn session(url: String, latencies: Arc<Mutex<Latencies>>, ready: Arc<Semaphore>, gate: Arc<Semaphore>) {
    let permit = gate.acquire().await.expect("semaphore");
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
    socket.send(Message::text(json!({"type": "subscribe", "topic": "experiments"}).to_string())).await.expect("send");
    while let Some(Ok(frame)) = socket.next().await {
        if frame.to_text().is_ok_and(|t| t.contains("\"subscribed\"")) {
            break;
        }
    }
    drop(permit);
    ready.add_permits(1);
    while let Some(Ok(frame)) = socket.next().await {
        let Ok(text) = frame.to_text() else { continue };
        let Ok(message) = serde_json::from_str::<Value>(text) else { continue };
        if let Some(sent) = message["data"]["sent_us"].as_u64() {
            latencies.lock().expect("lock").push(Duration::from_micros(now_micros().saturating_sub(sent)));
        }
    }
}

async fn bare_nats_delivery(bus: &NatsBus) -> Latencies {
    let subject = format!("{}.bench.fanout", bus.subjects().prefix());
    let mut sub = bus.subscribe(&subject).await.expect("subscribe");
    let mut lat = Latencies::default();
    for _ in 0..200 {
        let started = Instant::now();
        bus.publish(&subject, "x".into()).await.expect("publish");
        sub.next().await.expect("delivered");
        lat.push(started.elapsed());
    }
    lat
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    phoenix_nats::install_tls_provider();
    let env = [("PHOENIX_SERVER__WORKERS", "2"), ("PHOENIX_AUTH__ACCESS_TOKEN_TTL_SECS", "3600")];
    let mut server = start_server(None, &args.nats_url, &env).await;
    let pid = server.child.id().expect("server pid");
    let api = Api::new(&server.base).await;
    println!(
        "# WebSocket fan-out — {} (2 cores), {} sessions, {} events",
        chrono::Utc::now().format("%Y-%m-%d"),
        args.sessions,
        args.events
    );
    let bus = server.bus(&args.nats_url, "bench-ws").await;
    println!("bare NATS publish -> delivery: {}", bare_nats_delivery(&bus).await.summary());

    let idle = rss_mib(pid);
    let url = format!("{}/api/v1/ws?access_token={}", server.base.replacen("http://", "ws://", 1), api.token);
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let ready = Arc::new(Semaphore::new(0));
    let gate = Arc::new(Semaphore::new(200));
    let opening = Instant::now();
    for _ in 0..args.sessions {
        tokio::spawn(session(url.clone(), latencies.clone(), ready.clone(), gate.clone()));
    }
    let _ = ready.acquire_many(u32::try_from(args.sessions).expect("sessions")).await.expect("ready");
    println!("{} sessions open and subscribed in {:.1} s", args.sessions, opening.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = rss_mib(pid);
    println!(
        "server RSS: {idle:.1} MiB idle, {held:.1} MiB with every session: {:.1} KiB per session",
        (held - idle).max(0.0) * 1024.0 / args.sessions as f64
    );

    for n in 0..args.events {
        let subject = bus.subjects().event("experiment", &format!("bench{n}")).expect("subject");
        let payload = Envelope::new("experiment.phase_changed", json!({"n": n, "sent_us": now_micros()}))
            .encode()
            .expect("encode");
        bus.publish(&subject, payload).await.expect("publish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected = args.sessions * args.events;
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.lock().expect("lock").0.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latencies = std::mem::take(&mut *latencies.lock().expect("lock"));
    println!("publish -> receipt, every session and event: {} (of {expected})", latencies.summary());
    let _ = server.child.kill().await;
}
