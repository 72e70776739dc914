//! Agent footprint: the release `phoenix agent` running a `process` + `hybrid` pipeline on this host and
//! a `hybrid` pipeline over 1,000 synthetic processes, at a 10 s interval, against a release server.
//! Samples the agent's resident memory and CPU time from /proc for `--secs` seconds.
//!
//! Run: `cargo build --release --bin phoenix && cargo run --release --example agent_footprint [-- --secs 120]`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const PASSWORD: &str = "bench-password-123";

fn binary() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/phoenix")
}

/// (CPU seconds, resident bytes) of a process.
fn usage(pid: u32) -> (f64, u64) {
    phoenix_pipeline::procfs::stat(std::path::Path::new(&format!("/proc/{pid}")))
        .map_or((0.0, 0), |s| (s.cpu_seconds, s.rss_bytes as u64))
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = http.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").json().await.expect("json")
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args().skip_while(|a| a != "--secs").nth(1).and_then(|v| v.parse().ok()).unwrap_or(120);
    phoenix_nats::install_tls_provider();
    let dir = tempfile::tempdir().expect("dir");
    let database = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut server = tokio::process::Command::new(binary())
        .args(["server", "--listen", "127.0.0.1:0", "--database-url", &database])
        .env("RUST_LOG", "warn,phoenix::server=info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the release server (cargo build --release --bin phoenix)");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines.next_line().await.expect("read").expect("server output");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break format!(
                "http://{}",
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || ".:".contains(*c)).collect::<String>()
            );
        }
    };
    let http = reqwest::Client::new();
    let creds = json!({"username": "admin", "password": PASSWORD});
    post(&http, format!("{base}/api/v1/auth/register"), None, creds.clone()).await;
    let session = post(&http, format!("{base}/api/v1/auth/login"), None, creds).await;
    let admin = session["access_token"].as_str().expect("token").to_string();
    let token = post(&http, format!("{base}/api/v1/agents/enrollment-tokens"), Some(&admin), json!({})).await;
    let state = dir.path().join("agent");
    let mut agent = tokio::process::Command::new(binary())
        .args(["agent", "--server", &base, "--interval", "10"])
        .arg("--state-dir")
        .arg(&state)
        .args(["--enroll-token", token["token"].as_str().expect("token")])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent");
    let agent_pid = agent.id().expect("pid");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agents: Value = http
        .get(format!("{base}/api/v1/agents"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("agents")
        .json()
        .await
        .expect("json");
    let agent_id = agents["items"][0]["id"].as_str().expect("agent id").to_string();
    let pipelines = [
        ("host-processes", json!({"source": "process", "target_series": 50})),
        ("synthetic-1000", json!({"source": "synthetic", "processes": 1000, "target_series": 50})),
    ];
    for (name, parameters) in pipelines {
        let rendered = post(
            &http,
            format!("{base}/api/v1/pipelines/render"),
            Some(&admin),
            json!({"template": "hybrid", "parameters": parameters}),
        )
        .await;
        let payload = json!({"pipeline": name, "config": rendered["config"], "config_hash": rendered["config_hash"]});
        post(
            &http,
            format!("{base}/api/v1/tasks"),
            Some(&admin),
            json!({"agent_id": agent_id, "task_type": "pipeline.apply", "payload": payload}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let running: Value = http
        .get(format!("{base}/api/v1/agents/{agent_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("agent")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> =
        running["pipelines"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["host-processes", "synthetic-1000"], "both pipelines run before measuring: {running}");
    let (cpu_start, _) = usage(agent_pid);
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(usage(agent_pid).1);
    }
    let (cpu_end, _) = usage(agent_pid);
    rss.sort_unstable();
    let cpu_pct = (cpu_end - cpu_start) / started.elapsed().as_secs_f64() * 100.0;
    println!("# agent footprint — {} (2 cores), {secs} s, interval 10 s", chrono::Utc::now().format("%Y-%m-%d"));
    println!("pipelines: hybrid over this host's /proc, and hybrid over 1,000 synthetic processes");
    println!(
        "agent RSS: median {:.1} MB, max {:.1} MB",
        rss[rss.len() / 2] as f64 / 1e6,
        rss[rss.len() - 1] as f64 / 1e6
    );
    println!("agent CPU: {cpu_pct:.2} % of one core");
    let _ = agent.kill().await;
    let _ = server.kill().await;
}
