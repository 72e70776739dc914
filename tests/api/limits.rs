//! Every input limit (docs/OPERATIONS.md, "Limits") holds at its edge: one past it is refused with a
//! problem naming the field, the limit itself is accepted, and nothing crashes.

use phoenix::db::Backend;
use phoenix_actors::limits;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{envelope, Env, TestApp};

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    res.json().await.expect("a problem document")
}

/// The first error's path of a 422.
async fn refused_at(res: reqwest::Response) -> String {
    let problem = problem(res, 422).await;
    problem["errors"][0]["path"].as_str().unwrap_or_else(|| panic!("no error path: {problem}")).to_string()
}

fn experiment(name: &str, description: &str, agents: Vec<String>, critical: Vec<String>) -> Value {
    json!({
        "name": name, "description": description, "baseline": {"template": "baseline"},
        "candidate": {"template": "topk"}, "target": {"agents": agents}, "duration_secs": 600,
        "critical_processes": critical,
    })
}

/// A JSON array nested `depth` levels deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

async fn post_raw(app: &TestApp, path: &str, token: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST")
}

#[actix_web::test]
async fn bodies_and_json_nesting_are_bounded() {
    let app = crate::helpers::spawn_app(Env::local(Backend::Sqlite)).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge-1").await;

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let res = post_raw(&app, "/api/v1/experiments", &admin, huge).await;
    assert_eq!(problem(res, 413).await["code"], "payload_too_large");

    let task = |payload: String| {
        format!("{{\"agent_id\": \"{}\", \"task_type\": \"noop\", \"payload\": {payload}}}", agent.id)
    };
    let res = post_raw(&app, "/api/v1/tasks", &admin, task(nested(limits::JSON_DEPTH + 10))).await;
    let refused = problem(res, 400).await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("recursion")), "{refused}");
    let res = post_raw(&app, "/api/v1/tasks", &admin, task(nested(limits::JSON_DEPTH - 10))).await;
    assert_eq!(res.status(), 201, "nesting within the limit is accepted");
    assert_eq!(app.get("/healthz").await.status(), 200, "and the server is fine");
}

#[actix_web::test]
async fn names_texts_and_lists_are_bounded() {
    let app = crate::helpers::spawn_app(Env::local(Backend::Sqlite)).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge-1").await;
    let one = vec![agent.id.clone()];
    let post = |path: &'static str, body: Value| {
        let (app, admin) = (&app, &admin);
        async move { app.send_as(Method::POST, path, admin, &body).await }
    };
    let at_limit = "n".repeat(limits::NAME_CHARS);
    let past = "n".repeat(limits::NAME_CHARS + 1);
    let long_text = "t".repeat(limits::TEXT_CHARS + 1);

    let res = post("/api/v1/experiments", experiment(&past, "", one.clone(), vec![])).await;
    assert_eq!(refused_at(res).await, "name");
    let res = post("/api/v1/experiments", experiment("x", &long_text, one.clone(), vec![])).await;
    assert_eq!(refused_at(res).await, "description");
    let many_agents: Vec<String> = (0..10_001).map(|i| format!("agent-{i}")).collect();
    let res = post("/api/v1/experiments", experiment("x", "", many_agents, vec![])).await;
    assert_eq!(refused_at(res).await, "target.agents");
    let many_critical: Vec<String> = (0..1_001).map(|i| format!("proc-{i}")).collect();
    let res = post("/api/v1/experiments", experiment("x", "", one.clone(), many_critical)).await;
    assert_eq!(refused_at(res).await, "critical_processes");
    let text_at_limit = "t".repeat(limits::TEXT_CHARS);
    let res = post("/api/v1/experiments", experiment(&at_limit, &text_at_limit, one.clone(), vec![])).await;
    assert_eq!(res.status(), 201, "a name and a description at their limits are accepted");

    let deployment = |name: &str| json!({"name": name, "pipeline": {"template": "baseline"}, "target": {"selector": {"env": "none"}}});
    assert_eq!(refused_at(post("/api/v1/pipelines/deployments", deployment(&past)).await).await, "name");
    let created = post("/api/v1/pipelines/deployments", deployment(&at_limit)).await;
    let id = problem(created, 201).await["id"].as_str().expect("id").to_string();
    let patch = json!({"pipeline": {"template": "topk"}, "notes": long_text});
    let path = format!("/api/v1/pipelines/deployments/{id}");
    assert_eq!(refused_at(app.send_as(Method::PATCH, &path, &admin, &patch).await).await, "notes");
    let rollback = json!({"notes": long_text});
    let res = app.send_as(Method::POST, &format!("{path}/rollback"), &admin, &rollback).await;
    assert_eq!(refused_at(res).await, "notes");

    let task = json!({"agent_id": agent.id, "task_type": "t".repeat(limits::TASK_TYPE_CHARS + 1), "payload": {}});
    assert_eq!(refused_at(post("/api/v1/tasks", task).await).await, "task_type");
    let res = app.get_as("/api/v1/experiments?limit=501", &admin).await;
    assert!(problem(res, 400).await["detail"].as_str().is_some_and(|d| d.contains("500")));
}

#[actix_web::test]
async fn labels_per_agent_and_samples_per_batch_are_bounded() {
    let app = crate::helpers::spawn_app(Env::local(Backend::Sqlite)).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge-1").await;
    let labels = |n: usize| -> Value { (0..n).map(|i| (format!("k{i}"), json!("v"))).collect() };

    let path = format!("/api/v1/agents/{}", agent.id);
    let res = app.send_as(Method::PATCH, &path, &admin, &json!({"labels": labels(limits::LABELS + 1)})).await;
    assert_eq!(refused_at(res).await, "labels");
    let res = app.send_as(Method::PATCH, &path, &admin, &json!({"labels": labels(limits::LABELS)})).await;
    assert_eq!(res.status(), 200, "{} labels are accepted", limits::LABELS);
    let token = json!({"labels": labels(limits::LABELS + 1)});
    let res = app.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", &admin, &token).await;
    assert_eq!(refused_at(res).await, "labels");
    let selector = json!({
        "name": "wide", "pipeline": {"template": "baseline"}, "target": {"selector": labels(limits::LABELS + 1)},
    });
    let res = app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &selector).await;
    assert_eq!(refused_at(res).await, "target.selector");
    let query: Vec<String> = (0..=limits::LABELS).map(|i| format!("k{i}=v")).collect();
    let res = app.get_as(&format!("/api/v1/agents?selector={}", query.join(",")), &admin).await;
    assert!(problem(res, 400).await["detail"].as_str().is_some_and(|d| d.contains("at most")));

    let sample = json!({"metric": "pipeline.output.series", "value": 1.0, "labels": {}, "ts": chrono::Utc::now()});
    agent.receive_pipeline(&admin, "p").await;
    let batch = |n: usize| envelope("metrics", json!({"pipeline": "p", "seq": 1, "samples": vec![sample.clone(); n]}));
    let res = agent.send_metrics(&batch(phoenix_actors::gateway::MAX_SAMPLES_PER_BATCH + 1)).await;
    assert_eq!(refused_at(res).await, "body.samples");
    assert_eq!(agent.send_metrics(&batch(phoenix_actors::gateway::MAX_SAMPLES_PER_BATCH)).await.status(), 202);
}

/// An agent's strings are bounded like a person's: over HTTP a message past a limit is refused with a
/// problem naming the field (over NATS it is dropped as malformed, counted). A heartbeat speaks only
/// about the pipelines the agent was given: a status about another one is left out and counted.
#[actix_web::test]
async fn agent_messages_are_bounded_and_speak_only_about_pipelines_given() {
    use phoenix_actors::gateway::input::{AGENT_VERSION_CHARS, ERROR_CHARS, LABEL_VALUE_CHARS, SAMPLE_LEAD_SECS};
    let app = crate::helpers::spawn_app(Env::local(Backend::Sqlite)).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge-1").await;
    let heartbeat = |version: String, pipelines: Value| {
        let body = json!({"agent_version": version, "health": "healthy", "seq": 1, "pipelines": pipelines});
        let envelope = envelope("heartbeat", body);
        let (app, credential) = (&app, agent.credential.clone());
        async move { app.send_as(Method::POST, "/api/v1/agent/heartbeat", &credential, &envelope).await }
    };
    let status = |name: &str, error: Option<String>| json!({"name": name, "config_hash": "h", "state": if error.is_some() { "failed" } else { "running" }, "error": error});

    let res = heartbeat("v".repeat(AGENT_VERSION_CHARS + 1), json!([])).await;
    assert_eq!(refused_at(res).await, "body.agent_version");
    assert_eq!(heartbeat("v".repeat(AGENT_VERSION_CHARS), json!([])).await.status(), 200);
    agent.receive_pipeline(&admin, "given").await;
    let res = heartbeat("1".into(), json!([status("given", Some("e".repeat(ERROR_CHARS + 1)))])).await;
    assert_eq!(refused_at(res).await, "body.pipelines[0].error");
    let res = heartbeat("1".into(), json!([status("given", Some("e".repeat(ERROR_CHARS))), status("invented", None)]));
    assert_eq!(res.await.status(), 200);
    let listed: Value = app.get_as(&format!("/api/v1/agents/{}", agent.id), &admin).await.json().await.expect("agent");
    let names: Vec<&str> =
        listed["pipelines"].as_array().expect("pipelines").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["given"], "the invented pipeline is left out: {listed}");

    let task = app.enqueue(&admin, &agent.id, "noop", json!({})).await;
    let task_id = task["id"].as_str().expect("id");
    agent.poll(0).await;
    let res = agent.report(task_id, json!({"status": "failed", "error": "e".repeat(ERROR_CHARS + 1)})).await;
    assert_eq!(refused_at(res).await, "body.error");

    let now = chrono::Utc::now();
    let sample = |labels: Value, ts: chrono::DateTime<chrono::Utc>| json!({"metric": "m", "value": 1.0, "labels": labels, "ts": ts});
    let long_label = sample(json!({"pid": "p".repeat(LABEL_VALUE_CHARS + 1)}), now);
    let res = agent.send_metrics(&envelope("metrics", json!({"pipeline": "given", "samples": [long_label]}))).await;
    assert_eq!(refused_at(res).await, "body.samples[0].labels.pid");
    let ahead = sample(json!({}), now + chrono::Duration::seconds(SAMPLE_LEAD_SECS + 60));
    let res = agent.send_metrics(&envelope("metrics", json!({"pipeline": "given", "samples": [ahead]}))).await;
    let refused = problem(res, 422).await;
    assert_eq!(refused["errors"][0]["path"], "body.samples[0].ts");
    assert!(refused["errors"][0]["message"].as_str().is_some_and(|m| m.contains("clock")), "{refused}");

    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"phoenix_agent_messages_dropped_total{reason="malformed"} 5"#,
        r#"phoenix_agent_messages_dropped_total{reason="not_your_pipeline"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
}

/// One agent cannot flood the server: a minute's worth of samples is accepted at once, then 429 with
/// `Retry-After` until the rate allows more; more long-polls at once than allowed, 429. Both counted,
/// and another agent is not held back.
#[actix_web::test]
async fn an_agent_past_its_quotas_gets_429_and_is_counted() {
    use crate::helpers::{spawn_with, test_settings, TestDb};
    use phoenix_actors::gateway::MAX_SAMPLES_PER_BATCH;
    let env = Env::local(Backend::Sqlite);
    let db = TestDb::new(Backend::Sqlite);
    let mut settings = test_settings(env, &db);
    settings.agents.max_samples_per_minute = MAX_SAMPLES_PER_BATCH as u64;
    settings.agents.max_long_polls = 2;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let (flooder, other) = (app.http_agent(&admin, "flooder").await, app.http_agent(&admin, "other").await);
    for agent in [&flooder, &other] {
        agent.receive_pipeline(&admin, "p").await;
    }
    let sample = json!({"metric": "m", "value": 1.0, "labels": {}, "ts": chrono::Utc::now()});
    let batch = |n: usize| envelope("metrics", json!({"pipeline": "p", "samples": vec![sample.clone(); n]}));

    assert_eq!(flooder.send_metrics(&batch(MAX_SAMPLES_PER_BATCH)).await.status(), 202);
    let res = flooder.send_metrics(&batch(MAX_SAMPLES_PER_BATCH)).await;
    assert_eq!(res.status(), 429, "a second minute's worth at once");
    let retry_after: u64 = res.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(problem(res, 429).await["code"], "sample_quota_exceeded");
    assert_eq!(other.send_metrics(&batch(MAX_SAMPLES_PER_BATCH)).await.status(), 202, "its own quota");

    // Held for 10 s unless work arrives: long enough to see the third refused on a busy machine.
    let held: Vec<_> = (0..2).map(|_| flooder.poll(10)).collect();
    let held = futures_util::future::join_all(held);
    let refused_poll = async {
        crate::helpers::eventually("two long-polls held", async || {
            let metrics = app.get("/metrics").await.text().await.ok()?;
            metrics.contains("phoenix_long_poll_waiters 2").then_some(())
        })
        .await;
        let res = app.get_as("/api/v1/agent/tasks?wait=30", &flooder.credential).await;
        assert_eq!(problem(res, 429).await["code"], "too_many_long_polls");
        app.enqueue(&admin, &flooder.id, "noop", json!({})).await;
    };
    let (answered, ()) = tokio::join!(held, refused_poll);
    assert_eq!(answered.iter().map(Vec::len).sum::<usize>(), 1, "the held polls answer the task");
    assert_eq!(flooder.poll(0).await.len(), 0, "a poll is taken again once the others ended");

    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"phoenix_agent_messages_dropped_total{reason="sample_quota_exceeded"} 1"#,
        r#"phoenix_agent_messages_dropped_total{reason="too_many_long_polls"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }
}
