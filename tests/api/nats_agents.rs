//! Agents over NATS against a real nats-server: heartbeats as request/reply, tasks pushed at once,
//! reports and metrics through the durable stream, redelivery after a reconnect, and hostile input.

use std::time::Duration;

use phoenix::db::Backend;
use phoenix_nats::Bus;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{next_pushed_task, spawn_with, test_settings, Env, NatsAgent, TestApp, TestDb};

fn nats_env(backend: Backend) -> Env {
    match backend {
        Backend::Sqlite => Env::SqliteNats,
        Backend::Postgres => Env::PostgresNats,
    }
}

async fn nats_app(backend: Backend, offline_after_secs: u64) -> TestApp {
    let env = nats_env(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.agents.offline_after_secs = Some(offline_after_secs);
    spawn_with(env, db, settings).await
}

async fn nats_agent(app: &TestApp, admin: &str, hostname: &str) -> NatsAgent {
    let enrolled = app.enroll_agent(admin, hostname).await;
    NatsAgent::connect(
        &app.prefix,
        enrolled["agent_id"].as_str().expect("id"),
        enrolled["credential"].as_str().expect("credential"),
    )
    .await
}

/// Polls the API until `check` holds (reports travel through JetStream, so they land asynchronously).
async fn eventually(app: &TestApp, token: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let value: Value = app.get_as(path, token).await.json().await.expect("JSON");
        if check(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never reached the expected state");
}

async fn a_nats_agent_heartbeats_gets_tasks_pushed_and_reports_through_the_stream(backend: Backend) {
    let app = nats_app(backend, 30).await;
    let admin = app.bootstrap_admin().await;
    // Every replica (here: this test, listening like one) sees the domain events on the bus.
    let watcher = NatsAgent::connect(&app.prefix, "watcher", "none").await;
    let mut events = watcher.bus.subscribe(&watcher.bus.subjects().all_events()).await.expect("subscribe");
    let agent = nats_agent(&app, &admin, "edge-1").await;
    let mut tasks = agent.tasks().await;
    let ack = agent.heartbeat().await;
    assert_eq!(ack["kind"], "heartbeat_ack");
    assert_eq!(ack["body"]["interval_secs"], 10);

    let task = app.enqueue(&admin, &agent.id, "pipeline.apply", json!({"payload": {"pipeline": "candidate"}})).await;
    let pushed = next_pushed_task(&mut tasks, Duration::from_secs(2)).await.expect("pushed at once");
    assert_eq!(pushed["body"]["task_id"], task["id"]);
    let id = task["id"].as_str().expect("id");

    agent.report(id, "running").await;
    agent.report(id, "succeeded").await;
    let path = format!("/api/v1/tasks/{id}");
    eventually(&app, &admin, &path, |t| t["status"] == "succeeded").await;

    let mut seen = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), futures_util::StreamExt::next(&mut events)).await
    {
        let event: Value = serde_json::from_slice(&message.payload).expect("event envelope");
        seen.push(event["kind"].as_str().unwrap_or_default().to_string());
    }
    for expected in ["agent.enrolled", "task.created", "task.updated"] {
        assert!(seen.iter().any(|kind| kind == expected), "no {expected} event among {seen:?}");
    }

    let now = chrono::Utc::now().to_rfc3339();
    agent.send_metrics(json!({"pipeline": "candidate", "samples": [{"metric": "m", "value": 1.0, "labels": {"a": "1"}, "ts": now}]})).await;
    eventually(&app, &admin, "/api/v1/metrics/cardinality?pipeline=candidate", |r| r["samples"] == 1).await;
}
each_backend!(a_nats_agent_heartbeats_gets_tasks_pushed_and_reports_through_the_stream);

async fn tasks_queued_while_an_agent_was_offline_are_pushed_when_it_returns(backend: Backend) {
    let app = nats_app(backend, 1).await;
    let admin = app.bootstrap_admin().await;
    let agent = nats_agent(&app, &admin, "edge-1").await;
    agent.heartbeat().await;

    // Pushed while the agent is not listening: handed out, never acknowledged.
    let lost = app.enqueue(&admin, &agent.id, "first", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let agent_path = format!("/api/v1/agents/{}", agent.id);
    eventually(&app, &admin, &agent_path, |a| a["state"] == "offline").await;
    let queued = app.enqueue(&admin, &agent.id, "second", json!({})).await;

    let mut tasks = agent.tasks().await;
    let ack = agent.heartbeat().await;
    assert_eq!(ack["body"]["pending_tasks"], 0, "the pending task was pushed with this heartbeat");
    let mut received = Vec::new();
    while let Some(task) = next_pushed_task(&mut tasks, Duration::from_secs(2)).await {
        received.push(task["body"]["task_id"].as_str().expect("id").to_string());
    }
    received.sort();
    let mut expected =
        vec![lost["id"].as_str().expect("id").to_string(), queued["id"].as_str().expect("id").to_string()];
    expected.sort();
    assert_eq!(received, expected, "the unacknowledged task is pushed again, the queued one for the first time");
}
each_backend!(tasks_queued_while_an_agent_was_offline_are_pushed_when_it_returns);

async fn hostile_nats_messages_are_dropped_counted_and_do_not_stop_the_consumer(backend: Backend) {
    let app = nats_app(backend, 30).await;
    let admin = app.bootstrap_admin().await;
    let a = nats_agent(&app, &admin, "host-a").await;
    let b = nats_agent(&app, &admin, "host-b").await;
    let subjects = a.bus.subjects().clone();
    let metrics_a = subjects.agent_metrics(&a.id).expect("subject");
    a.bus.publish_durable(&metrics_a, "not json at all".into()).await.expect("publish");
    let unsigned =
        phoenix_nats::Envelope::new("metrics", json!({"pipeline": "p", "samples": []})).encode().expect("encode");
    a.bus.publish_durable(&metrics_a, unsigned).await.expect("publish");
    // A's credential on B's subject: the subject alone proves nothing.
    let metrics_b = subjects.agent_metrics(&b.id).expect("subject");
    a.bus
        .publish_durable(&metrics_b, a.envelope("metrics", json!({"pipeline": "p", "samples": []})))
        .await
        .expect("publish");
    a.bus.publish(&subjects.agent_heartbeat(&a.id).expect("subject"), "{\"v\": 9}".into()).await.expect("publish");
    // The right credential, but a heartbeat on the metrics subject, and a batch that breaks the rules.
    a.bus
        .publish_durable(&metrics_a, a.envelope("heartbeat", json!({"agent_version": "x", "health": "healthy"})))
        .await
        .expect("publish");
    a.bus
        .publish_durable(&metrics_a, a.envelope("metrics", json!({"pipeline": "", "samples": []})))
        .await
        .expect("publish");

    // Well-formed and signed, but about work A was never given: a pipeline, an experiment's variant.
    let now = chrono::Utc::now().to_rfc3339();
    let sample = json!([{"metric": "pipeline.output.series", "value": 1.0, "ts": now}]);
    a.send_metrics(json!({"pipeline": "never-given", "samples": sample})).await;
    let forged =
        json!({"pipeline": "exp-e1-candidate", "experiment_id": "e1", "variant": "candidate", "samples": sample});
    a.send_metrics(forged).await;

    // Once an operator hands A the pipeline `after`, its batches about it are stored.
    app.enqueue(&admin, &a.id, "pipeline.apply", json!({"payload": {"pipeline": "after"}})).await;
    a.heartbeat().await;
    a.send_metrics(json!({"pipeline": "after", "samples": [{"metric": "m", "value": 1.0, "ts": now}]})).await;
    eventually(&app, &admin, "/api/v1/metrics/cardinality?pipeline=after", |r| r["samples"] == 1).await;
    let never_given = app.get_as("/api/v1/metrics/cardinality?pipeline=never-given", &admin).await;
    assert_eq!(never_given.json::<Value>().await.expect("JSON")["samples"], 0);
    let forged = app.get_as("/api/v1/metrics/cardinality?experiment_id=e1", &admin).await;
    assert_eq!(forged.json::<Value>().await.expect("JSON")["samples"], 0);

    let metrics = app.get("/metrics").await.text().await.expect("metrics text");
    let dropped = [
        ("malformed", 4),
        ("unauthenticated", 1),
        ("wrong_agent", 1),
        ("not_your_pipeline", 1),
        ("not_your_experiment", 1),
    ];
    for (reason, count) in dropped {
        let line = format!("phoenix_agent_messages_dropped_total{{reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "missing {line} in:\n{metrics}");
    }
}
each_backend!(hostile_nats_messages_are_dropped_counted_and_do_not_stop_the_consumer);
