//! Live updates over `/api/v1/ws` with the real server on both buses: snapshot then events in order,
//! topics that deliver nothing when not subscribed, bad frames, missing and expired tokens, two server
//! processes on one NATS, and a slow client closed while a normal one keeps receiving.

use std::time::{Duration, Instant};

use phoenix::db::Backend;
use phoenix::live::{LiveClient, Received};
use phoenix_nats::Bus;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, fast_server, nats_url, spawn_with, test_settings, Env, HttpAgent, NatsServerEnv, ServerProcess,
    TestApp, TestDb, PASSWORD,
};
use crate::{each_backend, each_env};

const WAIT: Duration = Duration::from_secs(10);

async fn live(app: &TestApp, token: &str) -> LiveClient {
    LiveClient::connect(&app.url(""), token).await.expect("connect")
}

async fn expect(client: &mut LiveClient, kind: &str) -> Value {
    let message = client.next_message(WAIT).await.expect("read").unwrap_or_else(|| panic!("no {kind} within {WAIT:?}"));
    assert_eq!(message["type"], kind, "{message}");
    message
}

/// The next `event`s, skipping nothing, until `n` arrived.
async fn events(client: &mut LiveClient, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        got.push(expect(client, "event").await);
    }
    got
}

/// Reports every task the agent gets within a second as succeeded; how many.
async fn answer_tasks(agent: &HttpAgent<'_>) -> usize {
    let tasks = agent.poll(1).await;
    for task in &tasks {
        let id = task["body"]["task_id"].as_str().expect("task id");
        assert_eq!(agent.report(id, json!({"status": "succeeded"})).await.status(), 200);
    }
    tasks.len()
}

fn experiment_on(agent: &str) -> Value {
    json!({
        "name": "live",
        "baseline": {"template": "baseline", "parameters": {"source": "synthetic"}},
        "candidate": {"template": "topk", "parameters": {"source": "synthetic"}},
        "target": {"agents": [agent]},
        "duration_secs": 600,
    })
}

async fn create_experiment(app: &TestApp, token: &str, agent: &str) -> String {
    let res = app.send_as(Method::POST, "/api/v1/experiments", token, &experiment_on(agent)).await;
    res.json::<Value>().await.expect("experiment")["id"].as_str().expect("id").to_string()
}

async fn a_subscriber_gets_the_snapshot_then_every_phase_change_in_order(env: Env) {
    let db = TestDb::new(env.backend());
    let mut settings = test_settings(env, &db);
    settings.experiments.reconcile_interval_ms = 200;
    settings.agents.offline_after_secs = Some(600);
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge").await;
    agent.heartbeat("healthy").await;
    let watched = create_experiment(&app, &admin, &agent.id).await;
    let other = create_experiment(&app, &admin, &agent.id).await;

    let mut client = live(&app, &admin).await;
    client.subscribe(&format!("experiment:{watched}")).await.expect("subscribe");
    assert_eq!(expect(&mut client, "subscribed").await["topic"], format!("experiment:{watched}"));
    let snapshot = expect(&mut client, "snapshot").await;
    assert_eq!(
        (snapshot["data"]["id"].as_str(), snapshot["data"]["phase"].as_str()),
        (Some(watched.as_str()), Some("pending"))
    );
    let mut bystander = live(&app, &admin).await;
    bystander.subscribe(&format!("experiment:{other}")).await.expect("subscribe");
    expect(&mut bystander, "subscribed").await;
    expect(&mut bystander, "snapshot").await;

    let path = format!("/api/v1/experiments/{watched}");
    assert_eq!(app.send_as(Method::POST, &format!("{path}/start"), &admin, &json!({})).await.status(), 200);
    answer_tasks(&agent).await;
    eventually("running", async || {
        (app.get_as(&path, &admin).await.json::<Value>().await.ok()?["phase"] == "running").then_some(())
    })
    .await;
    assert_eq!(app.send_as(Method::POST, &format!("{path}/stop"), &admin, &json!({})).await.status(), 200);
    answer_tasks(&agent).await;

    let changes = events(&mut client, 4).await;
    let phases: Vec<&str> = changes.iter().filter_map(|e| e["data"]["to"].as_str()).collect();
    assert_eq!(phases, ["deploying", "running", "stopping", "stopped"]);
    assert!(changes
        .iter()
        .all(|e| e["event"] == "experiment.phase_changed" && e["topic"] == format!("experiment:{watched}")));
    let seqs: Vec<u64> = changes.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "increasing seq: {seqs:?}");
    assert!(changes.iter().all(|e| e["ts"].as_str().is_some_and(|t| !t.starts_with("1970"))), "real timestamps");
    assert_eq!(client.gaps(), 0);
    assert_eq!(bystander.next(Duration::from_millis(500)).await.expect("read"), None, "nothing for another topic");

    client.send(&json!({"type": "unsubscribe", "topic": format!("experiment:{watched}")})).await.expect("send");
    expect(&mut client, "unsubscribed").await;
    app.send_as(Method::DELETE, &path, &admin, &json!({})).await;
    assert_eq!(client.next(Duration::from_millis(500)).await.expect("read"), None, "unsubscribed: nothing more");
}
each_env!(a_subscriber_gets_the_snapshot_then_every_phase_change_in_order);

async fn a_rollout_announces_its_progress_when_it_changes_and_only_then(backend: Backend) {
    let (app, admin) = fast_server(backend, |_| {}).await;
    let mut agents = Vec::new();
    for i in 0..3 {
        let agent = app.http_agent(&admin, &format!("edge-{i}")).await;
        agent.heartbeat("healthy").await;
        agents.push(agent);
    }
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    let body = json!({
        "name": "live-rollout",
        "pipeline": {"template": "topk", "parameters": {"source": "synthetic", "k": 10}},
        "target": {"agents": ids},
    });
    let res = app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &body).await;
    let id = res.json::<Value>().await.expect("deployment")["id"].as_str().expect("id").to_string();
    let mut client = live(&app, &admin).await;
    client.subscribe(&format!("deployment:{id}")).await.expect("subscribe");
    expect(&mut client, "subscribed").await;
    expect(&mut client, "snapshot").await;

    // One agent at a time: each apply is announced before the next agent answers.
    let (mut announced, mut applied) = (Vec::new(), Vec::new());
    for (done, agent) in (1..).zip(&agents) {
        eventually("a task for the agent", async || (answer_tasks(agent).await > 0).then_some(())).await;
        while applied.last() != Some(&done) {
            let event = expect(&mut client, "event").await;
            if event["event"] != "deployment.progress" {
                continue;
            }
            let data = &event["data"];
            assert_eq!(
                (data["id"].as_str(), data["version"].as_i64(), data["agents"].as_u64()),
                (Some(id.as_str()), Some(1), Some(3))
            );
            let by_state: u64 = ["applied", "in_progress", "failed", "waiting", "removing"]
                .iter()
                .map(|state| data[state].as_u64().expect("a count"))
                .sum();
            assert_eq!(by_state, 3, "every agent counted once: {data}");
            applied.push(data["applied"].as_u64().expect("applied"));
            announced.push(data.clone());
        }
    }
    assert!(announced.len() >= 3, "one announcement per apply at least: {announced:?}");
    assert!(announced.windows(2).all(|w| w[0] != w[1]), "each announcement says something new: {announced:?}");
    assert!(applied.windows(2).all(|w| w[0] <= w[1]), "agents applied are never taken back: {applied:?}");
    // The supervisor reconciles every 200 ms: with nothing changing, nothing more is announced.
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while let Some(message) =
        client.next_message(quiet_until.saturating_duration_since(Instant::now())).await.expect("read")
    {
        assert_ne!(message["event"], "deployment.progress", "announced again without a change: {message}");
    }
}
each_backend!(a_rollout_announces_its_progress_when_it_changes_and_only_then);

#[actix_web::test]
async fn bad_frames_and_unknown_topics_get_errors_and_oversized_frames_close_the_connection() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    assert!(LiveClient::connect(&app.url(""), "not-a-token").await.is_err(), "the handshake needs a valid token");
    let res = app.get("/api/v1/ws").await;
    assert_eq!(res.status(), 401);

    let mut client = live(&app, &admin).await;
    for (frame, code) in [
        ("{not json", "bad_message"),
        (r#"{"type": "dance"}"#, "bad_message"),
        (r#"{"type": "subscribe", "topic": "users"}"#, "unknown_topic"),
        (r#"{"type": "subscribe", "topic": "experiment:"}"#, "unknown_topic"),
    ] {
        client.send_text(frame.to_string()).await.expect("send");
        let error = expect(&mut client, "error").await;
        assert_eq!(error["data"]["code"], code, "{frame}: {error}");
    }
    for n in 0..100 {
        client.subscribe(&format!("agent:a{n}")).await.expect("subscribe");
        expect(&mut client, "subscribed").await;
    }
    client.subscribe("agent:one-too-many").await.expect("subscribe");
    assert_eq!(expect(&mut client, "error").await["data"]["code"], "too_many_topics");
    client.send(&json!({"type": "ping"})).await.expect("send");
    expect(&mut client, "pong").await;

    client.send_text("x".repeat(70 * 1024)).await.expect("send");
    match client.next(WAIT).await.expect("read") {
        Some(Received::Closed(code, _)) => assert_eq!(code, 1009),
        other => panic!("expected a close with 1009, got {other:?}"),
    }
}

async fn an_expired_token_gets_an_error_and_a_close(backend: Backend) {
    let env = Env::local(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.auth.access_token_ttl_secs = 2;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let mut client = live(&app, &admin).await;
    client.subscribe("experiments").await.expect("subscribe");
    expect(&mut client, "subscribed").await;
    let error = expect(&mut client, "error").await;
    assert_eq!(error["data"]["code"], "token_expired");
    match client.next(WAIT).await.expect("read") {
        Some(Received::Closed(code, _)) => assert_eq!(code, 4001),
        other => panic!("expected a close with 4001, got {other:?}"),
    }
}
each_backend!(an_expired_token_gets_an_error_and_a_close);

/// An experiment created through server A reaches a client of server B: both follow the NATS events.
#[actix_web::test]
async fn an_event_caused_on_one_server_reaches_a_client_of_another() {
    let db = TestDb::new(Backend::Postgres);
    let server_env = NatsServerEnv::new();
    let a = ServerProcess::start(&db, &server_env.vars());
    let b = ServerProcess::start(&db, &server_env.vars());
    let token = &a.bootstrap_admin().await;
    let client = crate::helpers::http_client();

    let mut on_b = LiveClient::connect(&b.url(""), token).await.expect("connect to B");
    on_b.subscribe("experiments").await.expect("subscribe");
    expect(&mut on_b, "subscribed").await;
    let created: Value = client
        .post(a.url("/api/v1/experiments"))
        .bearer_auth(token)
        .json(&experiment_on("some-agent"))
        .send()
        .await
        .expect("create on A")
        .json()
        .await
        .expect("JSON");
    let event = expect(&mut on_b, "event").await;
    assert_eq!(
        (event["event"].as_str(), event["data"]["id"].as_str()),
        (Some("experiment.created"), created["id"].as_str())
    );
}

/// A client that stops reading is closed with 1013 once its queue is full; a normal client on the same
/// server keeps receiving every event without delay, and the close is counted in /metrics.
#[actix_web::test]
async fn a_slow_client_is_closed_with_1013_while_a_normal_one_keeps_up() {
    let env = Env::SqliteNats;
    let db = TestDb::new(env.backend());
    let settings = test_settings(env, &db);
    let prefix = settings.bus.subject_prefix.clone();
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let mut slow = live(&app, &admin).await;
    let mut normal = live(&app, &admin).await;
    for client in [&mut slow, &mut normal] {
        client.subscribe("tasks").await.expect("subscribe");
        expect(client, "subscribed").await;
    }
    // Events straight onto the bus, as any server would publish them: large enough that the slow client's
    // socket buffers fill and its queue overflows.
    let bus = phoenix_nats::NatsBus::connect(
        &nats_url(),
        phoenix_nats::NatsBusOptions {
            subjects: phoenix_nats::Subjects::new(&prefix).expect("prefix"),
            manage_stream: false,
            ..Default::default()
        },
    )
    .await
    .expect("NATS");
    let padding = "x".repeat(32 * 1024);
    let total = 1200;
    let mut delays = Vec::new();
    for n in 0..total {
        let subject = bus.subjects().event("task", &format!("t{n}")).expect("subject");
        let payload =
            phoenix_nats::Envelope::new("task.updated", json!({"n": n, "padding": padding})).encode().expect("encode");
        let sent = Instant::now();
        bus.publish(&subject, payload).await.expect("publish");
        let event = expect(&mut normal, "event").await;
        delays.push(sent.elapsed());
        assert_eq!(event["data"]["n"], n, "the normal client gets every event, in order");
    }
    delays.sort();
    assert!(delays[delays.len() / 2] < Duration::from_millis(100), "median delay {:?}", delays[delays.len() / 2]);
    let closed = loop {
        match slow.next(WAIT).await.expect("read") {
            Some(Received::Message(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(closed, Some(Received::Closed(1013, _))), "{closed:?}");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(metrics.contains("phoenix_ws_slow_consumers_closed_total 1"), "{metrics}");
}

/// `metrics:<experiment id>` carries every stored batch of the experiment; a client can present a fresh
/// token on the open connection (and a bad one is refused without closing it).
#[actix_web::test]
async fn experiment_measurements_stream_and_a_session_can_reauthenticate() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    let agent = app.http_agent(&admin, "edge").await;
    agent.heartbeat("healthy").await;
    let experiment = create_experiment(&app, &admin, &agent.id).await;
    let started =
        app.send_as(Method::POST, &format!("/api/v1/experiments/{experiment}/start"), &admin, &json!({})).await;
    assert_eq!(started.status(), 200);
    assert_eq!(answer_tasks(&agent).await, 2, "the agent takes both variants: it may measure them");
    let mut client = live(&app, &admin).await;
    client.subscribe(&format!("metrics:{experiment}")).await.expect("subscribe");
    expect(&mut client, "subscribed").await;
    let batch = crate::helpers::envelope(
        "metrics",
        json!({"pipeline": format!("exp-{experiment}-candidate"), "experiment_id": experiment, "variant": "candidate", "seq": 1,
               "samples": [{"metric": "pipeline.output.series", "value": 42.0, "labels": {}, "ts": chrono::Utc::now()}]}),
    );
    assert_eq!(agent.send_metrics(&batch).await.status(), 202);
    let event = expect(&mut client, "event").await;
    assert_eq!(event["event"], "metrics.sample");
    assert_eq!(event["data"]["variant"], "candidate");
    assert_eq!(event["data"]["samples"]["pipeline.output.series"], 42.0);

    client.send(&json!({"type": "auth", "data": {"token": "forged"}})).await.expect("send");
    assert_eq!(expect(&mut client, "error").await["data"]["code"], "unauthenticated");
    let fresh = app.login("admin").await["access_token"].as_str().expect("token").to_string();
    client.send(&json!({"type": "auth", "data": {"token": fresh}})).await.expect("send");
    assert!(expect(&mut client, "authenticated").await["data"]["expires_at"].is_string());
}

/// The dashboard's JavaScript client (src/dashboard/live.js), run by Node against the real server:
/// it subscribes, gets the snapshot, and after its connection drops reconnects and subscribes again.
#[actix_web::test]
async fn the_javascript_client_reconnects_and_subscribes_again() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    let experiment = create_experiment(&app, &admin, "some-agent").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/live_client.mjs");
    let output = tokio::process::Command::new("node")
        .args(["--experimental-websocket", "--no-warnings", script, &app.url(""), &admin])
        .arg(format!("experiment:{experiment}"))
        .output()
        .await
        .expect("node runs (Node.js 20.10 or newer is needed for the dashboard's client tests)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let snapshots = stdout.lines().filter(|l| l.contains(r#""type":"snapshot""#)).count();
    assert_eq!(snapshots, 2, "a snapshot before and after the reconnect:\n{stdout}");
    assert!(stdout.contains(r#""step":"resubscribed""#), "{stdout}");
}

/// Reads until the server closes the connection (answering nothing else); the close code.
async fn closed_with(client: &mut LiveClient) -> u16 {
    loop {
        match client.next(WAIT).await.expect("read") {
            Some(Received::Message(message)) if message["type"] == "error" => {
                assert_eq!(message["data"]["code"], "session_ended", "{message}");
            }
            Some(Received::Message(_)) => continue,
            Some(Received::Closed(code, _)) => return code,
            None => panic!("the connection stayed open for {WAIT:?}"),
        }
    }
}

/// Live sessions end with the user's right to them: a logout closes the connections of that login
/// session within a second (not the user's other sessions), a role change and a deactivation close
/// all of them — on whichever replica they are, since the end is an event on the bus.
async fn a_logout_a_role_change_and_a_deactivation_close_the_users_live_sessions(env: Env) {
    let app = crate::helpers::spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    app.user_with_role(&admin, "ops", "operator").await;
    let (first, second) = (app.token("ops").await, app.token("ops").await);
    let me: Value = app.get_as("/api/v1/auth/me", &first).await.json().await.expect("me");
    let user = format!("/api/v1/users/{}", me["id"].as_str().expect("id"));
    let mut clients = Vec::new();
    for token in [&first, &second, &second] {
        let mut client = live(&app, token).await;
        client.subscribe("experiments").await.expect("subscribe");
        expect(&mut client, "subscribed").await;
        clients.push(client);
    }
    let [on_first, on_second, on_second_too] = &mut clients[..] else { unreachable!() };

    assert_eq!(app.send_as(Method::POST, "/api/v1/auth/logout", &first, &json!({})).await.status(), 204);
    let logged_out = Instant::now();
    assert_eq!(closed_with(on_first).await, 4003);
    assert!(logged_out.elapsed() < Duration::from_secs(1), "closed after {:?}", logged_out.elapsed());
    on_second.send(&json!({"type": "ping"})).await.expect("send");
    expect(on_second, "pong").await;

    let demoted = app.send_as(Method::PATCH, &user, &admin, &json!({"role": "viewer"})).await;
    assert_eq!(demoted.status(), 200);
    assert_eq!(closed_with(on_second).await, 4003, "a new role: reconnect to be checked against it");
    assert_eq!(closed_with(on_second_too).await, 4003);

    let third = app.token("ops").await;
    let mut on_third = live(&app, &third).await;
    let unchanged = app.send_as(Method::PATCH, &user, &admin, &json!({"role": "viewer"})).await;
    assert_eq!(unchanged.status(), 200);
    on_third.send(&json!({"type": "ping"})).await.expect("send");
    expect(&mut on_third, "pong").await;
    let deactivated = app.send_as(Method::PATCH, &user, &admin, &json!({"active": false})).await;
    assert_eq!(deactivated.status(), 200);
    assert_eq!(closed_with(&mut on_third).await, 4003, "the role unchanged kept it open; a deactivation does not");
}
each_env!(a_logout_a_role_change_and_a_deactivation_close_the_users_live_sessions);

/// A password change ends every session of the user: live connections close at once (4003), earlier
/// access and refresh tokens are refused, and the caller carries on with the new session it is given.
async fn a_password_change_ends_every_session_of_the_user(env: Env) {
    let app = crate::helpers::spawn_app(env).await;
    let admin = app.bootstrap_admin().await;
    app.user_with_role(&admin, "ops", "operator").await;
    let elsewhere = app.login("ops").await;
    let elsewhere_token = elsewhere["access_token"].as_str().expect("token").to_string();
    let here = app.token("ops").await;
    let mut watching = live(&app, &elsewhere_token).await;
    watching.subscribe("experiments").await.expect("subscribe");
    expect(&mut watching, "subscribed").await;

    let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let wrong =
        app.send_as(Method::POST, "/api/v1/auth/password", &here, &change("wrong-password", "n3w-long-password")).await;
    assert_eq!(wrong.status(), 422);
    let res = app.send_as(Method::POST, "/api/v1/auth/password", &here, &change(PASSWORD, "n3w-long-password")).await;
    assert_eq!(res.status(), 200);
    let changed_at = Instant::now();
    let session: Value = res.json().await.expect("session");
    assert_eq!(closed_with(&mut watching).await, 4003);
    assert!(changed_at.elapsed() < Duration::from_secs(1), "closed after {:?}", changed_at.elapsed());

    for (what, token) in [("another login's token", &elsewhere_token), ("the caller's old token", &here)] {
        assert_eq!(app.get_as("/api/v1/auth/me", token).await.status(), 401, "{what}");
    }
    let refresh = json!({"refresh_token": elsewhere["refresh_token"]});
    assert_eq!(app.post_json("/api/v1/auth/refresh", &refresh).await.status(), 401, "old refresh tokens are revoked");
    let fresh = session["access_token"].as_str().expect("new token");
    assert_eq!(app.get_as("/api/v1/auth/me", fresh).await.status(), 200, "the new session works");
    let old = json!({"username": "ops", "password": PASSWORD});
    assert_eq!(app.post_json("/api/v1/auth/login", &old).await.status(), 401);
    let new = json!({"username": "ops", "password": "n3w-long-password"});
    assert_eq!(app.post_json("/api/v1/auth/login", &new).await.status(), 200);

    // Guessing the current password with a stolen token is limited like logging in.
    let guesses = (0..6).map(|i| change(&format!("guess-number-{i}"), "an0ther-long-password"));
    let mut answers = Vec::new();
    for guess in guesses {
        answers.push(app.send_as(Method::POST, "/api/v1/auth/password", fresh, &guess).await.status().as_u16());
    }
    assert_eq!(answers.last(), Some(&429), "{answers:?}");
}
each_env!(a_password_change_ends_every_session_of_the_user);
