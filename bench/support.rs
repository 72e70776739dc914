//! What the benchmark programs share: the release server started on a fresh database, an admin's REST
//! client, and latency summaries. Included by each example with `#[path = "support.rs"] mod support;`.

#![allow(dead_code)] // each example uses part of it

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;

pub const PASSWORD: &str = "bench-password-123";

/// The command line as `--flag value` pairs; a flag not in `known`, or one without a value, stops the
/// program with a message.
pub struct Flags(std::collections::HashMap<String, String>);

impl Flags {
    pub fn parse(known: &[&str]) -> Flags {
        let mut values = std::collections::HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            assert!(known.contains(&flag.as_str()), "unknown flag {flag} (known: {})", known.join(" "));
            let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
            values.insert(flag, value);
        }
        Flags(values)
    }

    /// A number flag, or `default`.
    pub fn number<T: std::str::FromStr>(&self, flag: &str, default: T) -> T {
        self.0.get(flag).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{flag} must be a number")))
    }

    /// A text flag, if given.
    pub fn text(&self, flag: &str) -> Option<String> {
        self.0.get(flag).cloned()
    }

    /// `--nats-url`, else `$PHOENIX_TEST_NATS_URL`, else the local default.
    pub fn nats_url(&self) -> String {
        self.text("--nats-url")
            .or_else(|| std::env::var("PHOENIX_TEST_NATS_URL").ok())
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
    }
}

/// Latencies in microseconds, summarised.
#[derive(Default, Clone)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    pub fn summary(&self) -> String {
        let mut v = self.0.clone();
        if v.is_empty() {
            return "no samples".into();
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
        format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})", at(0.5), at(0.99), at(1.0), v.len())
    }

    pub fn p50_ms(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// The release `phoenix server`, started for a benchmark on a fresh database.
pub struct Server {
    pub child: tokio::process::Child,
    pub base: String,
    pub prefix: String,
    _dir: tempfile::TempDir,
}

/// Starts it against `database_url` (a SQLite file in a temporary directory when `None`) and NATS at
/// `nats_url`, with `env` added to its environment; returns once it listens.
pub async fn start_server(database_url: Option<&str>, nats_url: &str, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
    spawn_server(dir, &database, nats_url, &prefix, env).await
}

/// Another replica of `first`: the same database, NATS and subject prefix (its own port and replica id).
pub async fn start_replica(first: &Server, database_url: &str, nats_url: &str, env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_server(dir, database_url, nats_url, &first.prefix, env).await
}

async fn spawn_server(
    dir: tempfile::TempDir,
    database: &str,
    nats_url: &str,
    prefix: &str,
    env: &[(&str, &str)],
) -> Server {
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/phoenix");
    let mut child = tokio::process::Command::new(binary)
        .args(["server", "--listen", "127.0.0.1:0", "--database-url", database, "--nats-url", nats_url])
        .env("PHOENIX_BUS__SUBJECT_PREFIX", prefix)
        .env("PHOENIX_AUTH__LOGIN_MAX_FAILURES", "1000")
        .env("PHOENIX_DATABASE__POOL_SIZE", "16")
        .env("RUST_LOG", "warn,phoenix::server=info")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary} (run `cargo build --release` first): {e}"));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = loop {
        let line = lines.next_line().await.expect("read").expect("server exited before listening");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c)).collect();
            break format!("http://{addr}");
        }
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("server: {line}")
        }
    });
    Server { child, base, prefix: prefix.to_string(), _dir: dir }
}

/// An admin's REST client.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn new(base: &str) -> Api {
        let http = reqwest::Client::builder().pool_max_idle_per_host(20_000).build().expect("client");
        let creds = json!({"username": "admin", "password": PASSWORD});
        http.post(format!("{base}/api/v1/auth/register")).json(&creds).send().await.expect("register");
        let session: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&creds)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        Api { http, base: base.to_string(), token: session["access_token"].as_str().expect("token").into() }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.expect("json")
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text =
            self.http.get(format!("{}/metrics", self.base)).send().await.expect("metrics").text().await.expect("text");
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }

    /// Enrols `n` agents with one multi-use token; returns (id, credential) pairs.
    pub async fn enroll(self: &Arc<Self>, n: usize, label: &str) -> Vec<(String, String)> {
        let token = self.post("/api/v1/agents/enrollment-tokens", json!({"uses": n, "labels": {"bench": label}})).await;
        let token = token["token"].as_str().expect("token").to_string();
        let gate = Arc::new(Semaphore::new(64));
        let mut joins = Vec::with_capacity(n);
        for i in 0..n {
            let (api, token, gate, label) = (self.clone(), token.clone(), gate.clone(), label.to_string());
            joins.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("semaphore");
                let body = json!({"token": token, "hostname": format!("{label}-{i}")});
                let res: Value = api
                    .http
                    .post(format!("{}/api/v1/agent/enroll", api.base))
                    .json(&body)
                    .send()
                    .await
                    .expect("enroll")
                    .json()
                    .await
                    .expect("json");
                let id = res["agent_id"].as_str().unwrap_or_else(|| panic!("enrolment refused: {res}"));
                (id.to_string(), res["credential"].as_str().expect("credential").to_string())
            }));
        }
        let mut agents = Vec::with_capacity(n);
        for join in joins {
            agents.push(join.await.expect("join"));
        }
        agents
    }
}

impl Api {
    pub async fn get(&self, path: &str) -> Value {
        let res = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.expect("get");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.expect("json")
    }
}

/// Resident memory of a process, from /proc, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Server {
    /// A NATS connection on the server's subject prefix, as a simulated agent or observer (it leaves
    /// the JetStream stream to the server).
    pub async fn bus(&self, nats_url: &str, name: &str) -> phoenix_nats::NatsBus {
        let options = phoenix_nats::NatsBusOptions {
            subjects: phoenix_nats::Subjects::new(&self.prefix).expect("prefix"),
            name: name.to_string(),
            manage_stream: false,
            ..Default::default()
        };
        phoenix_nats::NatsBus::connect(nats_url, options).await.expect("connect to NATS")
    }
}
