//! Agents over HTTP: heartbeats, liveness, long-poll, reports, metrics, the fleet API, and isolation.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_env;
use crate::helpers::{envelope, spawn_app, spawn_with, test_settings, Env, TestDb};

async fn body(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

async fn heartbeats_keep_an_agent_online_and_its_report_is_visible_in_the_fleet(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let res = agent.heartbeat("healthy").await;
    assert_eq!(res.status(), 200);
    let ack = body(res).await;
    assert_eq!(ack["kind"], "heartbeat_ack");
    assert_eq!(ack["body"]["interval_secs"], 10);
    assert_eq!(ack["body"]["pending_tasks"], 0);

    let listed = body(app.get_as("/api/v1/agents?state=online", &admin).await).await;
    assert_eq!(listed["items"][0]["id"], agent.id.as_str());
    assert_eq!(listed["items"][0]["agent_version"], "test");
    assert_eq!(agent.heartbeat("degraded").await.status(), 200);
    let one = body(app.get_as(&format!("/api/v1/agents/{}", agent.id), &admin).await).await;
    assert_eq!(one["state"], "degraded");
}
each_env!(heartbeats_keep_an_agent_online_and_its_report_is_visible_in_the_fleet);

async fn an_agent_that_stops_heartbeating_goes_offline_and_returns_with_the_next_heartbeat(env: Env) {
    let db = TestDb::new(env.backend());
    let mut settings = test_settings(env, &db);
    settings.agents.offline_after_secs = Some(1);
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    agent.heartbeat("healthy").await;
    let path = format!("/api/v1/agents/{}", agent.id);
    assert_eq!(body(app.get_as(&path, &admin).await).await["state"], "online");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(body(app.get_as(&path, &admin).await).await["state"], "offline");
    agent.heartbeat("healthy").await;
    assert_eq!(body(app.get_as(&path, &admin).await).await["state"], "online");
}
each_env!(an_agent_that_stops_heartbeating_goes_offline_and_returns_with_the_next_heartbeat);

async fn a_long_poll_answers_as_soon_as_a_task_is_enqueued_and_empty_when_the_wait_ends(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;

    let started = Instant::now();
    assert!(agent.poll(1).await.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");

    let (tasks, enqueued_at) = tokio::join!(agent.poll(20), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = Instant::now();
        app.enqueue(&admin, &agent.id, "diagnostics.collect", json!({})).await;
        at
    });
    let latency = enqueued_at.elapsed();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["kind"], "task");
    assert_eq!(tasks[0]["body"]["task_type"], "diagnostics.collect");
    assert_eq!(tasks[0]["body"]["attempt"], 1);
    assert!(latency < Duration::from_secs(1), "the poll answered {latency:?} after the enqueue");
}
each_env!(a_long_poll_answers_as_soon_as_a_task_is_enqueued_and_empty_when_the_wait_ends);

async fn fifty_concurrent_claimers_never_receive_the_same_task_twice(env: Env) {
    let db = TestDb::new(env.backend());
    let mut settings = test_settings(env, &db);
    // Every claimer is a long-poll of the same agent.
    settings.agents.max_long_polls = 50;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let mut enqueued = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let task = app.enqueue(&admin, &agent.id, "noop", json!({})).await;
        enqueued.insert(task["id"].as_str().expect("id").to_string());
    }
    let polls = (0..50).map(|_| agent.poll(0));
    let received: Vec<String> = futures_util::future::join_all(polls)
        .await
        .into_iter()
        .flatten()
        .map(|task| task["body"]["task_id"].as_str().expect("task_id").to_string())
        .collect();
    let unique: std::collections::BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "a task was handed out twice");
    assert_eq!(unique, enqueued, "every task was handed out");
}
each_env!(fifty_concurrent_claimers_never_receive_the_same_task_twice);

async fn repeated_and_out_of_order_reports_are_harmless(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let task = app.enqueue(&admin, &agent.id, "noop", json!({})).await;
    let id = task["id"].as_str().expect("id");
    agent.poll(0).await;

    let running = body(agent.report(id, json!({"status": "running", "attempt": 1})).await).await;
    assert_eq!((running["status"].as_str(), running["applied"].as_bool()), (Some("running"), Some(true)));
    let done = body(agent.report(id, json!({"status": "succeeded", "result": {"ok": true}})).await).await;
    assert_eq!(done["status"], "succeeded");
    for late in [json!({"status": "succeeded"}), json!({"status": "running"}), json!({"status": "failed"})] {
        let res = agent.report(id, late.clone()).await;
        assert_eq!(res.status(), 200);
        let answer = body(res).await;
        assert_eq!(
            (answer["status"].as_str(), answer["applied"].as_bool()),
            (Some("succeeded"), Some(false)),
            "{late}"
        );
    }
    let stored = body(app.get_as(&format!("/api/v1/tasks/{id}"), &admin).await).await;
    assert_eq!(stored["result"], json!({"ok": true}));
}
each_env!(repeated_and_out_of_order_reports_are_harmless);

async fn an_agent_can_neither_fetch_nor_report_on_another_agents_tasks(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let a = app.http_agent(&admin, "host-a").await;
    let b = app.http_agent(&admin, "host-b").await;
    let task = app.enqueue(&admin, &b.id, "noop", json!({})).await;
    let id = task["id"].as_str().expect("id");
    assert!(a.poll(0).await.is_empty(), "A's poll only ever returns A's tasks");
    let res = a.report(id, json!({"status": "succeeded"})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(body(res).await["code"], "not_your_task");
    assert_eq!(b.poll(0).await.len(), 1, "B still gets its task");
    let unknown = a.report("no-such-task", json!({"status": "running"})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
each_env!(an_agent_can_neither_fetch_nor_report_on_another_agents_tasks);

async fn bad_agent_input_over_http_gets_problem_documents(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let post = |path: &'static str, body: reqwest::Body| {
        app.client
            .post(app.url(path))
            .bearer_auth(&agent.credential)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = post("/api/v1/agent/heartbeat", "{\"v\": 1, \"kind\":".into()).await.expect("send");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let wrong_shape =
        post("/api/v1/agent/heartbeat", json!({"v": 1, "kind": "heartbeat"}).to_string().into()).await.expect("send");
    assert_eq!(wrong_shape.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let oversized = post("/api/v1/agent/metrics", huge.into()).await.expect("send");
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_batch = envelope(
        "metrics",
        json!({"pipeline": "", "samples": [{"metric": "", "value": 1.0, "ts": "2026-01-01T00:00:00Z"}]}),
    );
    let res = agent.send_metrics(&bad_batch).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<String> = body(res).await["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(paths, ["body.pipeline", "body.samples[0].metric", "body.samples[0].ts"], "a sample of long ago too");
    let wrong_kind = agent.send_metrics(&envelope("heartbeat", json!({"pipeline": "p", "samples": []}))).await;
    assert_eq!(wrong_kind.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut future = envelope("metrics", json!({"pipeline": "p", "samples": []}));
    future["v"] = json!(2);
    let res = agent.send_metrics(&future).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "another envelope version is refused, as over NATS");
    assert_eq!(body(res).await["errors"][0]["path"], "v");
}
each_env!(bad_agent_input_over_http_gets_problem_documents);

async fn metrics_are_stored_once_and_cardinality_is_computed_from_them(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let now = chrono::Utc::now().to_rfc3339();
    let samples: Vec<Value> = (0..30)
        .map(|i| json!({"metric": "process.cpu.time", "value": i, "labels": {"pid": (i % 10).to_string(), "host": "web-1"}, "ts": now}))
        .chain([json!({"metric": "host.load", "value": 0.5, "labels": {}, "ts": now})])
        .collect();
    agent.receive_pipeline(&admin, "baseline").await;
    let batch = envelope("metrics", json!({"pipeline": "baseline", "samples": samples}));
    let first = body(agent.send_metrics(&batch).await).await;
    assert_eq!((first["stored"].as_bool(), first["samples"].as_u64()), (Some(true), Some(31)));
    let again = body(agent.send_metrics(&batch).await).await;
    assert_eq!(again["stored"], false, "the same envelope is stored once");

    let report = body(app.get_as("/api/v1/metrics/cardinality?pipeline=baseline", &admin).await).await;
    assert_eq!(report["samples"], 31);
    assert_eq!(report["total_series"], 11);
    assert_eq!(report["metrics"][0]["metric"], "process.cpu.time");
    assert_eq!(report["metrics"][0]["series"], 10);
    assert_eq!(report["metrics"][0]["by_label"], json!({"host": 1, "pid": 10}));
    let other = body(app.get_as("/api/v1/metrics/cardinality?pipeline=candidate", &admin).await).await;
    assert_eq!(other["total_series"], 0);
}
each_env!(metrics_are_stored_once_and_cardinality_is_computed_from_them);

async fn operators_list_filter_relabel_and_decommission_agents(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let web = app.http_agent(&admin, "web-1").await;
    let db = app.http_agent(&admin, "db-1").await;
    let path = format!("/api/v1/agents/{}", web.id);
    let relabel = app.send_as(Method::PATCH, &path, &admin, &json!({"labels": {"env": "prod", "role": "web"}})).await;
    assert_eq!(relabel.status(), 200);
    let listed = body(app.get_as("/api/v1/agents?selector=env=prod,role=web", &admin).await).await;
    let ids: Vec<&str> = listed["items"].as_array().expect("items").iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, [web.id.as_str()]);
    let bad = app.send_as(Method::PATCH, &path, &admin, &json!({"labels": {"bad key": "x"}})).await;
    assert_eq!(bad.status(), 422);
    assert_eq!(app.get_as("/api/v1/agents?state=sleepy", &admin).await.status(), 400);

    app.enqueue(&admin, &db.id, "noop", json!({})).await;
    let gone = format!("/api/v1/agents/{}", db.id);
    assert_eq!(app.send_as(Method::DELETE, &gone, &admin, &json!({})).await.status(), 204);
    assert_eq!(app.get_as(&gone, &admin).await.status(), 404);
    assert_eq!(app.get_as("/api/v1/agent/me", &db.credential).await.status(), 401, "its credential is gone too");
    let tasks = body(app.get_as(&format!("/api/v1/tasks?agent_id={}", db.id), &admin).await).await;
    assert_eq!(tasks["items"].as_array().map(Vec::len), Some(0), "and its tasks");
}
each_env!(operators_list_filter_relabel_and_decommission_agents);

async fn the_queue_reports_counts_and_timings_and_tasks_can_be_cancelled(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "web-1").await;
    let first = app.enqueue(&admin, &agent.id, "noop", json!({"idempotency_key": "k1"})).await;
    let same = app.enqueue(&admin, &agent.id, "noop", json!({"idempotency_key": "k1"})).await;
    assert_eq!(first["id"], same["id"], "an idempotency key makes enqueue safe to retry");
    let second = app.enqueue(&admin, &agent.id, "noop", json!({})).await;
    let cancel = format!("/api/v1/tasks/{}/cancel", second["id"].as_str().expect("id"));
    assert_eq!(body(app.send_as(Method::POST, &cancel, &admin, &json!({})).await).await["status"], "cancelled");
    assert_eq!(app.send_as(Method::POST, &cancel, &admin, &json!({})).await.status(), 409, "already ended");

    let tasks = agent.poll(0).await;
    let id = tasks[0]["body"]["task_id"].as_str().expect("task id");
    agent.report(id, json!({"status": "running"})).await;
    agent.report(id, json!({"status": "succeeded"})).await;
    let stats = body(app.get_as("/api/v1/tasks/queue", &admin).await).await;
    assert_eq!(stats["by_status"]["succeeded"], 1);
    assert_eq!(stats["by_status"]["cancelled"], 1);
    assert_eq!(stats["by_status"]["pending"], 0);
    assert!(stats["mean_wait_secs"].as_f64().is_some() && stats["mean_run_secs"].as_f64().is_some(), "{stats}");
    let unknown_agent = app
        .send_as(Method::POST, "/api/v1/tasks", &admin, &json!({"agent_id": "nope", "task_type": "x", "payload": {}}))
        .await;
    assert_eq!(unknown_agent.status(), 404);
}
each_env!(the_queue_reports_counts_and_timings_and_tasks_can_be_cancelled);

async fn sessions_are_rebuilt_at_start_up_and_keep_judging_liveness(backend: phoenix::db::Backend) {
    let env = Env::local(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.agents.offline_after_secs = Some(2);
    let first = spawn_with(env, db, settings.clone()).await;
    let admin = first.bootstrap_admin().await;
    let agent_id = {
        let agent = first.http_agent(&admin, "web-1").await;
        agent.heartbeat("healthy").await;
        agent.id.clone()
    };
    first.handle.stop(true).await;

    let second = spawn_with(env, first.db, settings).await;
    let admin = second.token("admin").await;
    let path = format!("/api/v1/agents/{agent_id}");
    assert_eq!(body(second.get_as(&path, &admin).await).await["state"], "online", "as stored");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(body(second.get_as(&path, &admin).await).await["state"], "offline", "the rebuilt session timed out");
}
crate::each_backend!(sessions_are_rebuilt_at_start_up_and_keep_judging_liveness);

async fn agent_and_task_lists_page_with_limit_and_cursor(env: Env) {
    let app = spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    let mut agents = Vec::new();
    for i in 0..3 {
        agents.push(app.http_agent(&admin, &format!("host-{i}")).await.id.clone());
    }
    for _ in 0..3 {
        app.enqueue(&admin, &agents[0], "noop", json!({})).await;
    }
    for list in ["/api/v1/agents", "/api/v1/tasks"] {
        let first = body(app.get_as(&format!("{list}?limit=2"), &admin).await).await;
        assert_eq!(first["items"].as_array().map(Vec::len), Some(2), "{list}: {first}");
        let cursor = first["next_cursor"].as_str().unwrap_or_else(|| panic!("{list} has a second page"));
        let second = body(app.get_as(&format!("{list}?limit=2&cursor={cursor}"), &admin).await).await;
        assert_eq!(second["items"].as_array().map(Vec::len), Some(1), "{list}: {second}");
        assert!(second["next_cursor"].is_null());
    }
}
each_env!(agent_and_task_lists_page_with_limit_and_cursor);
