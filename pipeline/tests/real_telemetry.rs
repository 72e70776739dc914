//! Phoenix's pipeline between software nobody here wrote: the OpenTelemetry Python SDK sends over
//! OTLP/HTTP into the `otlp` receiver, the output goes by remote write into a real Prometheus server, and
//! Prometheus's own HTTP API says what arrived.
//!
//! Needs `PHOENIX_TEST_OTEL_PYTHON` (a Python with the SDK; scripts/test installs it) and `prometheus`
//! on the PATH (the Debian package; scripts/test installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use phoenix_pipeline::config::parse;
use phoenix_pipeline::engine::Pipeline;

const USERS: u64 = 100;
const ROUTES: u64 = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A Prometheus server on a free port with its own data directory, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start() -> Prometheus {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global: {}\n").expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
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

    fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// The value of an instant query that yields one number, if it yields one.
    async fn number(&self, query: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let answer: serde_json::Value =
            reqwest::Client::new().get(url).query(&[("query", query)]).send().await.ok()?.json().await.ok()?;
        answer["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn python() -> PathBuf {
    PathBuf::from(
        std::env::var("PHOENIX_TEST_OTEL_PYTHON")
            .expect("PHOENIX_TEST_OTEL_PYTHON names a Python with the OpenTelemetry SDK (scripts/test installs it)"),
    )
}

/// Runs the SDK sender to completion.
async fn send_with_the_sdk(endpoint: &str, service: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel_sender.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args([endpoint, service, &USERS.to_string(), &ROUTES.to_string()])
        .output()
        .await
        .expect("python runs");
    assert!(output.status.success(), "the SDK sender failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A pipeline from the otlp receiver through `processors` to Prometheus.
fn pipeline(otlp_port: u16, prometheus: &Prometheus, processors: &str, chain: &str) -> Pipeline {
    let text = format!(
        "receivers: {{otlp: {{protocols: {{http: {{endpoint: \"127.0.0.1:{otlp_port}\"}}}}}}}}\n\
         processors: {processors}\n\
         exporters: {{prometheusremotewrite: {{endpoint: \"{}\"}}}}\n\
         service: {{pipelines: {{metrics: {{receivers: [otlp], processors: [{chain}], exporters: [prometheusremotewrite]}}}}}}\n",
        prometheus.write_url()
    );
    let config = parse(&text).expect("config");
    let dir = std::env::temp_dir();
    Pipeline::build(&config, None, Vec::new(), &dir).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Sends with the SDK as `service`, runs the pipeline until it had input, and returns its stats.
async fn run(processors: &str, chain: &str, service: &str, prometheus: &Prometheus) {
    let port = free_port();
    let mut pipeline = pipeline(port, prometheus, processors, chain);
    send_with_the_sdk(&format!("http://127.0.0.1:{port}"), service).await;
    // The sender has exited, so everything it sent is in the receiver's buffer: one flush takes it.
    let (stats, errors) = pipeline.run_interval(chrono_now_ms());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        stats.input_series as u64,
        2 * USERS * ROUTES,
        "one counter and one histogram series per user and route"
    );
    // Delivery is in the background: keep the pipeline (and its sender) alive until it arrives.
    let count = format!("count(shop_requests_total{{job=\"{service}\"}})");
    wait_for("the series to reach Prometheus", || async { prometheus.number(&count).await }).await;
    drop(pipeline);
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// What the sender's counters add up to, computed here on our own.
fn expected_requests_total() -> f64 {
    ((0..USERS).map(|u| u % 7 + 1).sum::<u64>() * ROUTES) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_metrics_reach_prometheus_unchanged_through_a_pass_through_and_cut_through_aggregate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let prometheus = Prometheus::start().await;

    run("{}", "", "baseline", &prometheus).await;
    let total = |job: &str, metric: &str| format!("sum({metric}{{job=\"{job}\"}})");
    let series = |job: &str, metric: &str| format!("count({metric}{{job=\"{job}\"}})");
    assert_eq!(prometheus.number(&series("baseline", "shop_requests_total")).await, Some((USERS * ROUTES) as f64));
    assert_eq!(prometheus.number(&total("baseline", "shop_requests_total")).await, Some(expected_requests_total()));
    assert_eq!(prometheus.number(&series("baseline", "shop_latency_count")).await, Some((USERS * ROUTES) as f64));
    assert_eq!(prometheus.number(&total("baseline", "shop_latency_count")).await, Some((USERS * ROUTES) as f64));

    run("{aggregate: {labels: [user_id]}}", "aggregate", "aggregate", &prometheus).await;
    assert_eq!(prometheus.number(&series("aggregate", "shop_requests_total")).await, Some(ROUTES as f64));
    assert_eq!(prometheus.number(&total("aggregate", "shop_requests_total")).await, Some(expected_requests_total()));
    assert_eq!(prometheus.number(&series("aggregate", "shop_latency_count")).await, Some(ROUTES as f64));
    assert_eq!(
        prometheus.number(&total("aggregate", "shop_latency_count")).await,
        Some((USERS * ROUTES) as f64),
        "every recorded value is still counted"
    );
    // The buckets merged bucket by bucket: values of 0.0 (u % 5 == 0) fall in the first bucket (le=0).
    let zeros = prometheus.number("sum(shop_latency_bucket{job=\"aggregate\", le=\"0\"})").await;
    assert_eq!(zeros, Some((USERS.div_ceil(5) * ROUTES) as f64));
}
