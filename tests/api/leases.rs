//! Leases and retries with short timings: an expired lease redelivers, progress extends the lease,
//! failed attempts come back after a backoff.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_with, test_settings, Env, TestApp, TestDb};
use phoenix::db::Backend;

async fn quick_app(backend: Backend) -> TestApp {
    let env = Env::local(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.tasks.lease_secs = 1;
    settings.tasks.backoff_base_secs = 1;
    settings.tasks.maintenance_interval_ms = 100;
    spawn_with(env, db, settings).await
}

fn attempt(tasks: &[Value]) -> u64 {
    tasks[0]["body"]["attempt"].as_u64().expect("attempt")
}

async fn a_task_whose_lease_runs_out_is_handed_out_again(backend: Backend) {
    let app = quick_app(backend).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    app.enqueue(&admin, &agent.id, "noop", json!({})).await;
    assert_eq!(attempt(&agent.poll(0).await), 1);
    assert!(agent.poll(0).await.is_empty(), "leased, not handed out twice");
    let again = agent.poll(5).await;
    assert_eq!(attempt(&again), 2, "redelivered after the lease ran out");
}
each_backend!(a_task_whose_lease_runs_out_is_handed_out_again);

async fn progress_reports_extend_the_lease(backend: Backend) {
    let app = quick_app(backend).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let task = app.enqueue(&admin, &agent.id, "long.job", json!({})).await;
    let id = task["id"].as_str().expect("id");
    agent.poll(0).await;
    for step in 0..6 {
        let res = agent.report(id, json!({"status": "running", "progress": {"step": step}})).await;
        assert_eq!(res.status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(agent.poll(0).await.is_empty(), "a task making progress is not handed out again");
    let stored: Value = app.get_as(&format!("/api/v1/tasks/{id}"), &admin).await.json().await.expect("task");
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_u64()), (Some("running"), Some(1)));
    assert_eq!(stored["progress"], json!({"step": 5}));
}
each_backend!(progress_reports_extend_the_lease);

async fn a_failed_attempt_is_retried_after_a_backoff_until_attempts_run_out(backend: Backend) {
    let app = quick_app(backend).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let task = app.enqueue(&admin, &agent.id, "flaky", json!({"max_attempts": 2})).await;
    let id = task["id"].as_str().expect("id");
    agent.poll(0).await;
    let failed: Value =
        agent.report(id, json!({"status": "failed", "error": "disk full"})).await.json().await.expect("json");
    assert_eq!(failed["status"], "pending", "retryable: back in the queue");
    let repeated: Value =
        agent.report(id, json!({"status": "failed", "error": "disk full"})).await.json().await.expect("json");
    assert_eq!(
        (repeated["status"].as_str(), repeated["applied"].as_bool()),
        (Some("pending"), Some(false)),
        "a repeat changes nothing"
    );
    assert!(agent.poll(0).await.is_empty(), "not before the backoff");
    let started = Instant::now();
    let retry = agent.poll(5).await;
    assert_eq!(attempt(&retry), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "the waiting poll is woken when the backoff ends");
    let last: Value =
        agent.report(id, json!({"status": "failed", "error": "disk full"})).await.json().await.expect("json");
    assert_eq!(last["status"], "failed", "no attempts left");
}
each_backend!(a_failed_attempt_is_retried_after_a_backoff_until_attempts_run_out);
