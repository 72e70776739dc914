//! The real `phoenix agent` binary against the real server over HTTP: it enrols, heartbeats with its
//! real resource usage, applies pipelines, reports what they measure, survives a broken config and
//! keeps its identity across restarts.

use std::process::Command;
use std::time::Duration;

use diesel::prelude::*;
use phoenix::db::schema::metric_samples;
use phoenix::db::{establish, Backend};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_with, test_settings, AgentProcess, Env, TestApp, TestDb};

fn latest_sample(db: &TestDb, pipeline: &str, metric: &str) -> Option<f64> {
    metric_samples::table
        .filter(metric_samples::pipeline.eq(pipeline))
        .filter(metric_samples::metric.eq(metric))
        .order(metric_samples::sampled_at.desc())
        .select(metric_samples::value)
        .first(&mut establish(&db.url).ok()?)
        .ok()
}

/// A server (SQLite, heartbeats every second) with an admin, and an enrolment token for one agent.
async fn agent_server() -> (TestApp, String, Value) {
    let env = Env::local(Backend::Sqlite);
    let db = TestDb::new(Backend::Sqlite);
    let mut settings = test_settings(env, &db);
    settings.agents.heartbeat_interval_secs = 1;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &json!({})).await;
    let token = res.json().await.expect("token");
    (app, admin, token)
}

async fn task_status(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_as(&format!("/api/v1/tasks/{id}"), token).await.json().await.expect("task")
}

#[actix_web::test]
async fn the_agent_enrols_heartbeats_applies_pipelines_and_keeps_its_identity() {
    let (app, admin, token) = agent_server().await;
    let state = tempfile::tempdir().expect("state dir");
    let agent = AgentProcess::start(&app.url(""), state.path(), token["token"].as_str());

    let online = eventually("the agent online with its resource usage", async || {
        let list: Value = app.get_as("/api/v1/agents?state=online", &admin).await.json().await.ok()?;
        let agent = list["items"].as_array()?.first()?.clone();
        (agent["resources"]["agent_rss_bytes"].as_u64()? > 0).then_some(agent)
    })
    .await;
    assert_eq!(online["labels"]["env"], "test");
    let agent_id = online["id"].as_str().expect("id").to_string();

    let config: Value = app
        .send_as(
            Method::POST,
            "/api/v1/pipelines/render",
            &admin,
            &json!({"template": "topk", "parameters": {"source": "synthetic", "processes": 100, "k": 5}}),
        )
        .await
        .json()
        .await
        .expect("render");
    let apply = json!({"pipeline": "edge", "config": config["config"], "config_hash": config["config_hash"], "critical": ["nginx"]});
    let task = app.enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": apply})).await;
    let id = task["id"].as_str().expect("task id");
    eventually("the apply to succeed", async || {
        (task_status(&app, &admin, id).await["status"] == "succeeded").then_some(())
    })
    .await;
    let series =
        eventually("measurements to arrive", async || latest_sample(&app.db, "edge", "pipeline.output.series")).await;
    assert_eq!(series, 30.0, "top 5 processes + other, for 5 metrics");
    assert_eq!(latest_sample(&app.db, "edge", "pipeline.input.series"), Some(500.0));

    let broken = config["config"].as_str().expect("config").replace("k: 5", "k: 0");
    let task = app
        .enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "edge", "config": broken}}))
        .await;
    let id = task["id"].as_str().expect("task id");
    let failed = eventually("the broken apply to fail", async || {
        let task = task_status(&app, &admin, id).await;
        (task["status"] == "failed").then_some(task)
    })
    .await;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("processors.topk.k")), "{failed}");
    eventually("the agent to report itself degraded", async || {
        let agent: Value = app.get_as(&format!("/api/v1/agents/{agent_id}"), &admin).await.json().await.ok()?;
        (agent["state"] == "degraded").then_some(())
    })
    .await;
    let edge_samples = async || {
        let report = app.get_as("/api/v1/metrics/cardinality?pipeline=edge&window_secs=60", &admin).await;
        report.json::<Value>().await.expect("json")["samples"].as_u64()
    };
    let before = edge_samples().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = edge_samples().await;
    assert!(after > before, "the previous pipeline keeps running and reporting: {before:?} -> {after:?}");
    assert_eq!(latest_sample(&app.db, "edge", "pipeline.output.series"), Some(30.0));

    drop(agent);
    let _restarted = AgentProcess::start(&app.url(""), state.path(), None);
    let heartbeats_before =
        app.get_as(&format!("/api/v1/agents/{agent_id}"), &admin).await.json::<Value>().await.expect("agent")
            ["last_heartbeat_at"]
            .clone();
    eventually("the restarted agent to heartbeat under the same identity, its pipeline restored", async || {
        let agent: Value = app.get_as(&format!("/api/v1/agents/{agent_id}"), &admin).await.json().await.ok()?;
        let restored = agent["pipelines"]
            .as_array()?
            .iter()
            .any(|p| p["name"] == "edge" && p["config_hash"] == config["config_hash"]);
        (restored && agent["last_heartbeat_at"] != heartbeats_before).then_some(())
    })
    .await;
    let all: Value = app.get_as("/api/v1/agents", &admin).await.json().await.expect("agents");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "no second enrolment");
}

#[actix_web::test]
async fn sigterm_stops_the_agent_cleanly() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let (app, admin, token) = agent_server().await;
    let state = tempfile::tempdir().expect("state dir");
    let mut agent = AgentProcess::start(&app.url(""), state.path(), token["token"].as_str());
    let agent_id = eventually("the agent online", async || {
        let list: Value = app.get_as("/api/v1/agents?state=online", &admin).await.json().await.ok()?;
        list["items"].as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let pid = i32::try_from(agent.0.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
    let status = eventually("the agent to exit", async || agent.0.try_wait().ok().flatten()).await;
    assert!(status.success(), "{status:?}");
    let gone: Value = app.get_as(&format!("/api/v1/agents/{agent_id}"), &admin).await.json().await.expect("agent");
    assert_eq!(gone["state"], "offline", "it said goodbye: offline at once, not after the 30 s timeout");
}

#[test]
fn without_an_identity_or_a_token_the_agent_says_what_is_missing() {
    let state = tempfile::tempdir().expect("state dir");
    let output = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["agent", "--server", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("PHOENIX_ENROLL_TOKEN")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--enroll-token"), "{stderr}");
}

/// Pids of processes whose command line mentions `needle`.
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[actix_web::test]
async fn in_collector_mode_the_agent_supervises_the_collector_and_reverts_a_config_that_does_not_start() {
    let (app, admin, token) = agent_server().await;
    let state = tempfile::tempdir().expect("state dir");
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fake-collector.sh");
    let agent =
        AgentProcess::start_with(&app.url(""), state.path(), token["token"].as_str(), &["--collector-bin", fake]);
    let agent_id = eventually("the agent online", async || {
        let list: Value = app.get_as("/api/v1/agents?state=online", &admin).await.json().await.ok()?;
        list["items"].as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    let good = "receivers: {host: {}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [host], exporters: [count]}}}\n";
    let task = app
        .enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "edge", "config": good}}))
        .await;
    let id = task["id"].as_str().expect("id").to_string();
    eventually("the collector to start", async || {
        (task_status(&app, &admin, &id).await["status"] == "succeeded").then_some(())
    })
    .await;
    let config_file = std::fs::read_dir(state.path().join("collector"))
        .expect("collector dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("edge-") && n.ends_with(".yaml"))
        })
        .expect("the config file of pipeline edge");
    assert_eq!(std::fs::read_to_string(&config_file).expect("config written"), good);
    let running = pids_with(config_file.to_str().expect("utf-8"));
    assert_eq!(running.len(), 1, "one collector runs with the config");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", running[0])).expect("collector's cwd");
    let exports = state.path().join("exports").canonicalize().expect("exports dir");
    assert_eq!(cwd, exports, "it runs in the export directory, where a file exporter's file belongs");

    let crashing = format!("# fake-collector: crash\n{good}");
    let task = app
        .enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "edge", "config": crashing}}))
        .await;
    let id = task["id"].as_str().expect("id").to_string();
    let failed = eventually("the bad config to fail", async || {
        let task = task_status(&app, &admin, &id).await;
        (task["status"] == "failed").then_some(task)
    })
    .await;
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("health check") && e.contains("reverted")), "{failed}");
    assert_eq!(std::fs::read_to_string(&config_file).expect("config"), good, "the last known good config is back");
    eventually("the previous config's collector to run again", async || {
        (pids_with(config_file.to_str()?).len() == 1).then_some(())
    })
    .await;

    let victim = pids_with(config_file.to_str().expect("utf-8"))[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::Signal::SIGKILL).expect("kill");
    eventually("the supervisor to restart the collector", async || {
        let now = pids_with(config_file.to_str()?);
        (now.len() == 1 && now[0] != victim).then_some(())
    })
    .await;

    drop(agent);
    assert!(pids_with(config_file.to_str().expect("utf-8")).is_empty(), "a stopping agent stops its collectors");
}
