//! Helpers for the tests that run software nobody here wrote: a real Prometheus server, the
//! OpenTelemetry Python SDK as a sender, a Python prometheus-client scrape target. Included by the
//! pipeline's `real_telemetry` test and by the API tests (`#[path]`), so both drive the same peers.
#![allow(dead_code)] // each including crate uses a part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The SDK sender's users and routes: `user_id` x `route` series per metric.
pub const USERS: u64 = 100;
pub const ROUTES: u64 = 10;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One series as Prometheus's query API shows it.
pub type Series = (BTreeMap<String, String>, f64);

/// A Prometheus server on a free port with its own data directory, stopped when dropped.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one whose config is `config(its own port)`.
    pub async fn start(config: impl FnOnce(u16) -> String) -> Prometheus {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config(port)).expect("config");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/test installs the Debian package prometheus)");
        let prometheus = Prometheus { child, port, _dir: dir };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_for("Prometheus to be ready", || async {
            reqwest::get(&ready).await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        prometheus
    }

    /// A backend that only receives.
    pub async fn backend() -> Prometheus {
        Prometheus::start(|_| "global: {}\n".into()).await
    }

    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// The series an instant query yields, with their values.
    pub async fn series(&self, query: &str) -> Vec<Series> {
        let base = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let url = reqwest::Url::parse_with_params(&base, &[("query", query)]).expect("a query URL");
        let answer: serde_json::Value =
            reqwest::get(url).await.expect("Prometheus answers").json().await.expect("JSON");
        let results = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        results
            .iter()
            .map(|result| {
                let labels = serde_json::from_value(result["metric"].clone()).expect("labels");
                let value = result["value"][1].as_str().and_then(|v| v.parse().ok()).expect("a number");
                (labels, value)
            })
            .collect()
    }

    /// The value of an instant query that yields one number, if it yields one.
    pub async fn number(&self, query: &str) -> Option<f64> {
        self.series(query).await.first().map(|(_, value)| *value)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn python() -> PathBuf {
    PathBuf::from(
        std::env::var("PHOENIX_TEST_OTEL_PYTHON")
            .expect("PHOENIX_TEST_OTEL_PYTHON names a Python with the OpenTelemetry SDK (scripts/test installs it)"),
    )
}

/// A script beside this file (found from either crate that includes it).
pub fn script(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = Path::new(file!()).parent().expect("a directory");
    [manifest.join(here), manifest.parent().map(|p| p.join(here)).unwrap_or_default()]
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} not found beside {}", file!()))
}

/// Runs the SDK sender to completion: one export at its end.
pub async fn send_with_the_sdk(protocol: &str, endpoint: &str, service: &str) {
    send_with_the_sdk_for(protocol, endpoint, service, 0).await;
}

/// Runs the SDK sender exporting every half second for `seconds` (once at its end when 0).
pub async fn send_with_the_sdk_for(protocol: &str, endpoint: &str, service: &str, seconds: u64) {
    let output = tokio::process::Command::new(python())
        .arg(script("otel_sender.py"))
        .args([protocol, endpoint, service, &USERS.to_string(), &ROUTES.to_string(), &seconds.to_string()])
        .output()
        .await
        .expect("python runs");
    assert!(output.status.success(), "the SDK sender failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The Python prometheus-client exporter on a free port, killed when dropped.
pub struct ClientExporter {
    child: Child,
    port: u16,
}

impl ClientExporter {
    pub async fn start() -> ClientExporter {
        let port = free_port();
        let child = Command::new(python())
            .arg(script("prom_exporter.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("python runs");
        let exporter = ClientExporter { child, port };
        let url = format!("http://127.0.0.1:{port}/metrics");
        wait_for("the client exporter to answer", || async {
            reqwest::get(&url).await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        exporter
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ClientExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
