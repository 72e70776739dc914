//! Both Prometheus endpoints Phoenix serves are valid exposition format by Prometheus's own linter,
//! `promtool check metrics` (Debian package `prometheus`, installed by scripts/test): the server's
//! `/metrics`, and a pipeline's `prometheus` exporter fed by the real `/proc` and host sources.

use std::io::Write;
use std::process::{Command, Stdio};

use phoenix_pipeline::{exporters, sources};

use crate::helpers::{http_client, spawn_app, Env};

/// Runs `promtool check metrics` on `text`; panics with its findings when it has any.
fn promtool_accepts(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test installs the Debian package prometheus)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("promtool ran");
    let findings = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && findings.trim().is_empty(), "promtool finds fault with {what}:\n{findings}");
}

#[actix_web::test]
async fn the_servers_metrics_pass_promtool() {
    let app = spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    // Some traffic, so the per-route families have samples.
    app.get_as("/api/v1/agents", &admin).await;
    app.get("/api/v1/nowhere").await;
    let text = app.get("/metrics").await.text().await.expect("metrics");
    assert!(text.contains("# HELP"), "{text}");
    promtool_accepts("the server's /metrics", &text);
}

#[actix_web::test]
async fn a_pipelines_prometheus_endpoint_passes_promtool_and_keeps_command_lines_out() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("endpoint: \"127.0.0.1:{port}\"")).expect("yaml");
    let dir = tempfile::tempdir().expect("dir");
    let mut exporter = exporters::build("prometheus", &config, "exporters.prometheus", dir.path()).expect("exporter");
    let empty = serde_yaml_ng::Value::Mapping(Default::default());
    let now = chrono::Utc::now().timestamp_millis();
    let mut batch = Vec::new();
    for kind in ["process", "host"] {
        let mut source = sources::build(kind, &empty, kind).expect("source");
        batch.extend(source.collect(now));
    }
    let synthetic: serde_yaml_ng::Value = serde_yaml_ng::from_str("{profile: realistic, processes: 20}").expect("yaml");
    batch.extend(sources::build("synthetic", &synthetic, "synthetic").expect("synthetic").collect(now));
    exporter.export(&batch).expect("export");

    let scrape = http_client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.expect("scrape");
    let text = scrape.text().await.expect("text");
    assert!(text.contains("process_cpu_time"), "the real /proc source is there: {}", &text[..text.len().min(500)]);
    promtool_accepts("a pipeline's prometheus exporter", &text);

    // Only when asked for does the real process source name command lines (the synthetic one makes
    // up its own).
    let without = sources::build("process", &empty, "process").expect("source").collect(now);
    assert!(!without.is_empty() && without.iter().all(|p| p.labels.iter().all(|(k, _)| &**k != "command")));
    let with_command: serde_yaml_ng::Value = serde_yaml_ng::from_str("include_command: true").expect("yaml");
    let points = sources::build("process", &with_command, "process").expect("source").collect(now);
    assert!(points.iter().any(|p| p.labels.iter().any(|(k, _)| &**k == "command")), "include_command: true");
}

#[test]
fn a_prometheus_exporter_listens_on_loopback_unless_told_otherwise() {
    assert_eq!(exporters::DEFAULT_PROMETHEUS_ENDPOINT, "127.0.0.1:9464");
    let empty = serde_yaml_ng::Value::Mapping(Default::default());
    assert!(exporters::check("prometheus", &empty, "exporters.prometheus").is_empty(), "endpoint may be left out");
}
