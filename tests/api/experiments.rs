//! Experiments end to end: real agents (the `phoenix agent` binary on the synthetic source) run both
//! variants, the server measures them, judges them and promotes the winner; illegal actions are refused;
//! a crash of the server in the middle of the measurement window changes nothing.

use std::time::Duration;

use diesel::prelude::*;
use phoenix::db::schema::{deployment_versions, experiments, pipeline_deployments, tasks};
use phoenix::db::{establish, Backend};
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{
    envelope, eventually, eventually_within, fast_server, AgentProcess, Env, HttpAgent, ServerProcess, TestApp, TestDb,
};

/// Processes each agent's synthetic source simulates; the steady profile gives 5 series per process.
const PROCESSES: u64 = 50;
const SERIES_PER_PROCESS: u64 = 5;

/// A built-in template on the synthetic source (same seed everywhere: both variants see the same load).
pub(crate) fn synthetic(template: &str, extra: Value) -> Value {
    let mut parameters = json!({"source": "synthetic", "profile": "steady", "processes": PROCESSES, "seed": 7});
    if let (Some(p), Some(extra)) = (parameters.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    json!({"template": template, "parameters": parameters})
}

pub(crate) fn experiment(name: &str, candidate: Value, target: Value, duration_secs: u64) -> Value {
    json!({
        "name": name,
        "description": "topk against the pass-through",
        "baseline": synthetic("baseline", json!({})),
        "candidate": candidate,
        "target": target,
        "warmup_secs": 1,
        "duration_secs": duration_secs,
        // The pass-through spends microseconds of CPU per interval (a debug build's topk a thousand times
        // more), so the CPU bound is out of the way here: cardinality and
        // accuracy are what these tests judge.
        "success_criteria": {"min_cardinality_reduction_pct": 50, "max_cpu_overhead_pct": 1_000_000, "min_accuracy_pct": 99},
    })
}

async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    let res = app.send_as(Method::POST, "/api/v1/experiments", token, body).await;
    assert_eq!(res.status(), 201, "create experiment");
    res.json().await.expect("experiment JSON")
}

pub(crate) async fn act(app: &TestApp, token: &str, id: &str, action: &str) -> reqwest::Response {
    app.send_as(Method::POST, &format!("/api/v1/experiments/{id}/{action}"), token, &json!({})).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    app.get_as(path, token).await.json().await.expect("JSON")
}

/// Waits until the experiment reaches `phase`, failing early when it ends somewhere else.
async fn wait_for_phase(app: &TestApp, token: &str, id: &str, phase: &str, secs: u64) -> Value {
    eventually_within(&format!("experiment {id} {phase}"), secs, async || {
        let experiment = get(app, token, &format!("/api/v1/experiments/{id}")).await;
        let now = experiment["phase"].as_str().unwrap_or_default().to_string();
        let is_final = ["completed", "promoted", "stopped", "rolled_back", "failed"].contains(&now.as_str());
        assert!(now == phase || !is_final, "expected {phase}, the experiment ended {now}: {experiment}");
        (now == phase).then_some(experiment)
    })
    .await
}

/// Two real agents, online.
async fn two_agents(app: &TestApp, admin: &str) -> (Vec<AgentProcess>, Vec<tempfile::TempDir>) {
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let token = app.enrollment_token(admin).await;
        let dir = tempfile::tempdir().expect("state dir");
        agents.push(AgentProcess::start(&app.url(""), dir.path(), Some(&token)));
        dirs.push(dir);
    }
    eventually("both agents online", async || {
        let list = get(app, admin, "/api/v1/agents?state=online").await;
        (list["items"].as_array()?.len() == 2).then_some(())
    })
    .await;
    (agents, dirs)
}

async fn a_topk_candidate_passes_and_is_promoted(backend: Backend) {
    let (app, admin) = fast_server(backend, |settings| settings.experiments.removal_sweep_interval_secs = 1).await;
    let (_agents, _dirs) = two_agents(&app, &admin).await;

    let body =
        experiment("topk-vs-baseline", synthetic("topk", json!({"k": 5})), json!({"selector": {"env": "test"}}), 6);
    let created = create(&app, &admin, &body).await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["phase"], "pending");
    assert_eq!(created["status"], "pending", "the deprecated alias");
    for field in ["name", "description", "baseline", "candidate", "target", "warmup_secs", "duration_secs"] {
        assert_eq!(created[field], body[field], "{field} is returned as submitted");
    }
    for (criterion, value) in body["success_criteria"].as_object().expect("criteria") {
        assert_eq!(created["success_criteria"][criterion].as_f64(), value.as_f64(), "{criterion} as submitted");
    }
    assert!(created["candidate_config"].as_str().expect("rendered").contains("topk"));

    let started = act(&app, &admin, &id, "start").await;
    assert_eq!(started.status(), 200);
    let started: Value = started.json().await.expect("JSON");
    assert_eq!(started["phase"], "deploying");
    assert_eq!(started["target_agents"].as_array().map(Vec::len), Some(2));

    let running = wait_for_phase(&app, &admin, &id, "running", 30).await;
    let live = get(&app, &admin, &format!("/api/v1/experiments/{id}/kpis")).await;
    assert_eq!(live["final"], false, "KPIs are live while running: {live}");
    assert!(running["measuring_until"].is_string());

    let completed = wait_for_phase(&app, &admin, &id, "completed", 30).await;
    let kpis = get(&app, &admin, &format!("/api/v1/experiments/{id}/kpis")).await;
    assert_eq!(kpis["final"], true);
    // Two agents, each with 50 steady processes: 500 series through the pass-through; topk keeps 5
    // processes and folds the rest into one `other` series per metric: 2 × (5 + 1) × 5 = 60.
    let baseline_series = 2 * PROCESSES * SERIES_PER_PROCESS;
    let candidate_series = 2 * (5 + 1) * SERIES_PER_PROCESS;
    assert_eq!(kpis["baseline"]["series"]["mean"], json!(baseline_series as f64), "{kpis}");
    assert_eq!(kpis["candidate"]["series"]["mean"], json!(candidate_series as f64), "{kpis}");
    let reduction = kpis["cardinality_reduction_pct"].as_f64().expect("reduction");
    assert!((reduction - 88.0).abs() < 1e-9, "1 - 60/500 = 88%: {reduction}");
    assert!(kpis["window"]["intervals"].as_u64().expect("intervals") >= 3);
    assert_eq!(kpis["verdict"], "pass", "{kpis}");
    assert!(kpis["p_value"].as_f64().expect("p") < 0.05);
    assert!(kpis["cost"]["monthly_saving"].as_f64().expect("saving") > 0.0);
    assert_eq!(
        completed["results"],
        kpis.as_object()
            .map(|k| {
                let mut k = k.clone();
                k.remove("phase");
                Value::Object(k)
            })
            .expect("object"),
        "the stored results are the final KPIs"
    );

    let cost = get(&app, &admin, &format!("/api/v1/experiments/{id}/cost-analysis")).await;
    assert_eq!(cost["monthly_saving"], kpis["cost"]["monthly_saving"]);
    let timeline = get(&app, &admin, &format!("/api/v1/experiments/{id}/metrics")).await;
    assert!(timeline["intervals"].as_array().expect("intervals").len() >= 5, "{timeline}");

    let promoted = app
        .send_as(Method::POST, &format!("/api/v1/experiments/{id}/promote"), &admin, &json!({"name": "edge-topk"}))
        .await;
    assert_eq!(promoted.status(), 200);
    let promoted: Value = promoted.json().await.expect("JSON");
    assert_eq!(promoted["phase"], "promoted");
    let deployment_id = promoted["deployment_id"].as_str().expect("deployment").to_string();
    let mut conn = establish(&app.db.url).expect("db");
    let name: String = pipeline_deployments::table
        .find(&deployment_id)
        .select(pipeline_deployments::name)
        .first(&mut conn)
        .expect("deployment");
    assert_eq!(name, "edge-topk");
    let (version, config): (i32, String) = deployment_versions::table
        .filter(deployment_versions::deployment_id.eq(&deployment_id))
        .select((deployment_versions::version, deployment_versions::config))
        .first(&mut conn)
        .expect("version");
    assert_eq!(version, 1);
    assert_eq!(Some(config.as_str()), completed["candidate_config"].as_str(), "version 1 holds the candidate");

    // The deployment reaches both agents.
    eventually("the promoted pipeline applied on both agents", async || {
        let tasks = get(&app, &admin, "/api/v1/tasks?type=pipeline.apply&status=succeeded&limit=100").await;
        let applied =
            tasks["items"].as_array()?.iter().filter(|t| t["payload"]["deployment_id"] == json!(deployment_id)).count();
        (applied == 2).then_some(())
    })
    .await;

    // Each host is handed over: the experiment's pipelines are removed from an agent only after the
    // deployment's pipeline was applied there, so no host is left without one.
    let removals = eventually("the experiment's pipelines removed from both agents", async || {
        let tasks = get(&app, &admin, "/api/v1/tasks?type=pipeline.remove&status=succeeded&limit=100").await;
        let ours: Vec<Value> = tasks["items"]
            .as_array()?
            .iter()
            .filter(|t| t["payload"]["pipeline"].as_str().is_some_and(|p| p.starts_with(&format!("exp-{id}-"))))
            .cloned()
            .collect();
        (ours.len() == 4).then_some(ours)
    })
    .await;
    let applies = get(&app, &admin, "/api/v1/tasks?type=pipeline.apply&status=succeeded&limit=100").await;
    for removal in &removals {
        let agent = &removal["agent_id"];
        let applied_at = applies["items"]
            .as_array()
            .expect("applies")
            .iter()
            .filter(|t| t["agent_id"] == *agent && t["payload"]["deployment_id"] == json!(deployment_id))
            .filter_map(|t| t["finished_at"].as_str()?.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .min()
            .expect("the deployment was applied on the agent");
        let removal_created: chrono::DateTime<chrono::Utc> =
            removal["created_at"].as_str().expect("created_at").parse().expect("time");
        assert!(removal_created >= applied_at, "removal {removal} was sent before the deployment ran ({applied_at})");
    }

    let events = get(&app, &admin, &format!("/api/v1/experiments/{id}/events")).await;
    let path: Vec<&str> =
        events["items"].as_array().expect("events").iter().filter_map(|e| e["to_phase"].as_str()).collect();
    assert_eq!(path, ["pending", "deploying", "running", "analyzing", "completed", "promoted"]);
    assert!(events["items"][1]["actor"].is_string(), "who started it is recorded");

    let analytics = get(&app, &admin, "/api/v1/cost-analytics?period=1h").await;
    assert!(analytics["totals"]["promoted_monthly_saving"].as_f64().expect("saving") > 0.0, "{analytics}");
    let overview = get(&app, &admin, "/api/v1/overview").await;
    assert_eq!(overview["experiments"], json!({"promoted": 1}), "{overview}");
    let deployments = overview["deployments"].as_object().expect("deployments by status");
    assert!(deployments.keys().all(|s| s == "active" || s == "rolling_out"), "{overview}");
    assert_eq!(deployments.values().filter_map(Value::as_u64).sum::<u64>(), 1, "{overview}");
    assert_eq!(overview["agents"]["online"], 2, "{overview}");
    let savings = &overview["savings"];
    assert_eq!(savings["promoted_experiments"], 1);
    assert_eq!(savings["monthly_cost_before"], kpis["cost"]["baseline_monthly"], "{overview}");
    assert_eq!(savings["monthly_cost_after"], kpis["cost"]["candidate_monthly"], "{overview}");
    assert_eq!(savings["monthly_saving"], kpis["cost"]["monthly_saving"], "{overview}");
}
each_backend!(a_topk_candidate_passes_and_is_promoted);

#[actix_web::test]
async fn a_candidate_that_drops_critical_processes_fails_on_accuracy() {
    let (app, admin) = fast_server(Backend::Sqlite, |_| {}).await;
    let (_agents, _dirs) = two_agents(&app, &admin).await;
    let mut body = experiment("topk-1", synthetic("topk", json!({"k": 1})), json!({"selector": {"env": "test"}}), 5);
    body["critical_processes"] = json!(["nginx", "postgres", "java", "python3", "node", "redis-server", "sshd"]);
    let id = create(&app, &admin, &body).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &id, "start").await.status(), 200);
    wait_for_phase(&app, &admin, &id, "completed", 40).await;
    let kpis = get(&app, &admin, &format!("/api/v1/experiments/{id}/kpis")).await;
    assert_eq!(kpis["verdict"], "fail", "{kpis}");
    let accuracy = kpis["accuracy_pct"].as_f64().expect("accuracy");
    assert!(accuracy < 99.0, "one process kept cannot keep every critical one: {accuracy}");
    assert!(kpis["recommendation"].as_str().expect("words").contains("critical"), "{kpis}");
}

#[actix_web::test]
async fn a_broken_candidate_fails_the_experiment_while_deploying_with_the_agents_reason() {
    let (app, admin) = fast_server(Backend::Sqlite, |_| {}).await;
    let (_agents, _dirs) = two_agents(&app, &admin).await;
    // Valid on paper, but the port is taken on the host: only the agent can find out.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = taken.local_addr().expect("addr").to_string();
    let candidate = synthetic("topk", json!({"exporter": "prometheus", "endpoint": endpoint}));
    let mut body = experiment("broken", candidate, json!({"selector": {"env": "test"}}), 5);
    // Live, not in shadow: a shadowed candidate would not open its exporter's port at all.
    body["shadow"] = json!(false);
    let id = create(&app, &admin, &body).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &id, "start").await.status(), 200);
    let failed = wait_for_phase(&app, &admin, &id, "failed", 40).await;
    let reason = failed["reason"].as_str().expect("reason");
    assert!(reason.contains("candidate") && reason.contains(&endpoint), "the agent's reason is kept: {reason}");
    // Both variants are removed from the agents again.
    eventually("the pipelines removed", async || {
        let tasks = get(&app, &admin, "/api/v1/tasks?type=pipeline.remove&limit=100").await;
        (tasks["items"].as_array()?.len() == 4).then_some(())
    })
    .await;
}

/// A fake agent over HTTP: it heartbeats and answers each task it is handed with `outcome`.
pub(crate) async fn answer_tasks(agent: &HttpAgent<'_>, outcome: Value) -> usize {
    let tasks = agent.poll(1).await;
    for task in &tasks {
        let id = task["body"]["task_id"].as_str().expect("task id");
        assert_eq!(agent.report(id, outcome.clone()).await.status(), 200);
    }
    tasks.len()
}

/// Both variants' measurements for one interval, as an agent sends them.
pub(crate) fn measurement(experiment_id: &str, variant: &str, series: f64, seq: u64) -> Value {
    envelope("metrics", measurement_batch(experiment_id, variant, series, seq))
}

/// One interval's self-measurement of an experiment variant with `series` active series, as agents send it.
pub(crate) fn measurement_batch(experiment_id: &str, variant: &str, series: f64, seq: u64) -> Value {
    let ts = chrono::Utc::now().to_rfc3339();
    let samples: Vec<Value> = [
        ("pipeline.output.series", series),
        ("pipeline.output.points", series),
        ("pipeline.cpu.seconds", 0.001),
        ("pipeline.memory.bytes", series * 100.0),
    ]
    .into_iter()
    .map(|(metric, value)| json!({"metric": metric, "value": value, "labels": {}, "ts": ts}))
    .collect();
    let pipeline = format!("exp-{experiment_id}-{variant}");
    json!({"pipeline": pipeline, "experiment_id": experiment_id, "variant": variant, "seq": seq, "samples": samples})
}

/// Starts the experiment on a fake agent that applies both variants, then sends measurements (a
/// candidate with a tenth of the baseline's series) until the window has surely ended.
async fn measure_until_the_window_ends(app: &TestApp, token: &str, agent: &HttpAgent<'_>, id: &str) {
    assert_eq!(act(app, token, id, "start").await.status(), 200);
    answer_tasks(agent, json!({"status": "succeeded"})).await;
    wait_for_phase(app, token, id, "running", 10).await;
    for seq in 0..10 {
        assert_eq!(agent.send_metrics(&measurement(id, "baseline", 100.0, seq)).await.status(), 202);
        let candidate = 10.0 + seq as f64 % 2.0;
        assert_eq!(agent.send_metrics(&measurement(id, "candidate", candidate, seq)).await.status(), 202);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// Every action that is not allowed in the experiment's phase answers 409 naming what is allowed.
async fn assert_refusals(app: &TestApp, token: &str, id: &str, phase: &str, allowed: &[&str]) {
    let experiment = get(app, token, &format!("/api/v1/experiments/{id}")).await;
    assert_eq!(experiment["phase"], phase);
    assert_eq!(experiment["allowed_actions"], json!(allowed), "{phase}");
    for action in ["start", "stop", "promote", "rollback", "delete"] {
        if allowed.contains(&action) {
            continue;
        }
        let res = if action == "delete" {
            app.send_as(Method::DELETE, &format!("/api/v1/experiments/{id}"), token, &json!({})).await
        } else {
            act(app, token, id, action).await
        };
        assert_eq!(res.status(), 409, "{action} while {phase}");
        let problem: Value = res.json().await.expect("problem");
        assert_eq!(problem["code"], "illegal_transition");
        assert_eq!(problem["phase"], phase);
        assert_eq!(problem["allowed_actions"], json!(allowed), "{action} while {phase}");
    }
}

/// Phases × actions over HTTP. `analyzing` lasts one database write, so the pure table test of the
/// phase machine covers it; every other phase is held here with fake agents.
async fn every_illegal_action_is_refused_with_409(backend: Backend) {
    let (app, admin) = fast_server(backend, |settings| {
        settings.experiments.stop_timeout_secs = 600;
        // The fake agents heartbeat once: they must not count as lost meanwhile.
        settings.agents.offline_after_secs = Some(600);
    })
    .await;
    let mut agents = Vec::new();
    for name in ["silent", "runs", "stops", "breaks", "measures"] {
        let agent = app.http_agent(&admin, name).await;
        assert_eq!(agent.heartbeat("healthy").await.status(), 200);
        agents.push(agent);
    }
    let [silent, runs, stops, breaks, measures] = &agents[..] else { unreachable!() };
    let on = |agent: &HttpAgent, duration: u64| {
        let mut body = experiment("phases", synthetic("topk", json!({})), json!({"agents": [agent.id]}), duration);
        body["warmup_secs"] = json!(0);
        body
    };

    let pending = create(&app, &admin, &on(silent, 600)).await["id"].as_str().expect("id").to_string();
    assert_refusals(&app, &admin, &pending, "pending", &["start", "delete"]).await;

    // An agent that never polls keeps its experiment deploying, and a stop then waits in `stopping`.
    let deploying = create(&app, &admin, &on(silent, 600)).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &deploying, "start").await.status(), 200);
    assert_refusals(&app, &admin, &deploying, "deploying", &["stop"]).await;
    assert_eq!(act(&app, &admin, &deploying, "stop").await.status(), 200);
    assert_refusals(&app, &admin, &deploying, "stopping", &[]).await;

    let running = create(&app, &admin, &on(runs, 600)).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &running, "start").await.status(), 200);
    eventually("both applies answered", async || {
        (answer_tasks(runs, json!({"status": "succeeded"})).await == 0).then_some(())
    })
    .await;
    wait_for_phase(&app, &admin, &running, "running", 10).await;
    assert_refusals(&app, &admin, &running, "running", &["stop", "rollback"]).await;
    assert_eq!(act(&app, &admin, &running, "rollback").await.status(), 200);
    assert_refusals(&app, &admin, &running, "rolled_back", &["delete"]).await;

    let stopped = create(&app, &admin, &on(stops, 600)).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &stopped, "start").await.status(), 200);
    answer_tasks(stops, json!({"status": "succeeded"})).await;
    wait_for_phase(&app, &admin, &stopped, "running", 10).await;
    assert_eq!(act(&app, &admin, &stopped, "stop").await.status(), 200);
    answer_tasks(stops, json!({"status": "succeeded"})).await;
    wait_for_phase(&app, &admin, &stopped, "stopped", 10).await;
    assert_refusals(&app, &admin, &stopped, "stopped", &["delete"]).await;

    let failed = create(&app, &admin, &on(breaks, 600)).await["id"].as_str().expect("id").to_string();
    assert_eq!(act(&app, &admin, &failed, "start").await.status(), 200);
    answer_tasks(breaks, json!({"status": "failed", "error": "config rejected", "retryable": false})).await;
    let ended = wait_for_phase(&app, &admin, &failed, "failed", 10).await;
    assert!(ended["reason"].as_str().expect("reason").contains("config rejected"), "{ended}");
    assert_refusals(&app, &admin, &failed, "failed", &["delete"]).await;

    let completed = create(&app, &admin, &on(measures, 3)).await["id"].as_str().expect("id").to_string();
    measure_until_the_window_ends(&app, &admin, measures, &completed).await;
    wait_for_phase(&app, &admin, &completed, "completed", 10).await;
    assert_refusals(&app, &admin, &completed, "completed", &["promote", "rollback", "delete"]).await;
    let into_nothing = json!({"deployment_id": "no-such-deployment"});
    let res =
        app.send_as(Method::POST, &format!("/api/v1/experiments/{completed}/promote"), &admin, &into_nothing).await;
    assert_eq!(res.status(), 404, "promoting into a deployment that does not exist");
    let problem: Value = res.json().await.expect("problem");
    assert!(problem["detail"].as_str().expect("detail").contains("deployment no-such-deployment"), "{problem}");
    let unnamed = json!({"name": "  "});
    let res = app.send_as(Method::POST, &format!("/api/v1/experiments/{completed}/promote"), &admin, &unnamed).await;
    assert_eq!(res.status(), 422, "a deployment needs a real name");
    assert_eq!(act(&app, &admin, &completed, "promote").await.status(), 200);
    assert_refusals(&app, &admin, &completed, "promoted", &["delete"]).await;

    // And the allowed delete works: 204, then 404.
    let res = app.send_as(Method::DELETE, &format!("/api/v1/experiments/{pending}"), &admin, &json!({})).await;
    assert_eq!(res.status(), 204);
    let res = app.get_as(&format!("/api/v1/experiments/{pending}"), &admin).await;
    assert_eq!(res.status(), 404);
}
each_backend!(every_illegal_action_is_refused_with_409);

#[actix_web::test]
async fn invalid_experiments_are_refused_listing_every_problem() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    let body = json!({
        "name": "",
        "baseline": {"template": "no-such-template"},
        "candidate": {"template": "topk", "parameters": {"k": "ten"}},
        "target": {"agents": []},
        "duration_secs": 0,
        "success_criteria": {"min_accuracy_pct": 120},
    });
    let res = app.send_as(Method::POST, "/api/v1/experiments", &admin, &body).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.expect("problem");
    let paths: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["path"].as_str()).collect();
    for expected in [
        "name",
        "duration_secs",
        "target.agents",
        "success_criteria.min_accuracy_pct",
        "baseline.template",
        "candidate.parameters.k",
    ] {
        assert!(paths.iter().any(|p| p.starts_with(expected)), "{expected} missing from {paths:?}");
    }
    // Agents measure every 10 s here: a 20 s window could never hold the 3 measurements the KPIs need.
    let short = experiment("short", synthetic("topk", json!({})), json!({"agents": ["a"]}), 20);
    let res = app.send_as(Method::POST, "/api/v1/experiments", &admin, &short).await;
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["path"], "duration_secs", "{problem}");
    assert!(problem["errors"][0]["message"].as_str().expect("message").contains("at least 30 s"), "{problem}");
    // Starting an experiment whose agents do not exist says so.
    let body = experiment("ghost", synthetic("topk", json!({})), json!({"agents": ["no-such-agent"]}), 30);
    let id = create(&app, &admin, &body).await["id"].as_str().expect("id").to_string();
    let res = act(&app, &admin, &id, "start").await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.expect("problem");
    assert!(problem["detail"].as_str().expect("detail").contains("no-such-agent does not exist"), "{problem}");
    // A viewer may read but not act.
    let viewer = app.user_with_role(&admin, "watcher", "viewer").await;
    assert_eq!(app.get_as("/api/v1/experiments", &viewer).await.status(), 200);
    assert_eq!(act(&app, &viewer, &id, "start").await.status(), 403);
    let listed = get(&app, &admin, "/api/v1/experiments?phase=pending&limit=1").await;
    assert_eq!(listed["items"][0]["id"], json!(id));
    let res = app.get_as("/api/v1/experiments?phase=sleeping", &admin).await;
    assert_eq!(res.status(), 400);
}

/// kill -9 the server while the experiment is measuring; start it again on the same address. The
/// experiment's actor is rebuilt from the database and completes on time with the right KPIs.
async fn the_experiment_survives_a_server_crash_while_running(backend: Backend) {
    let db = TestDb::new(backend);
    let addr = crate::helpers::free_local_addr();
    let env = [
        ("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", "1"),
        ("PHOENIX_AGENTS__OFFLINE_AFTER_SECS", "15"),
        ("PHOENIX_EXPERIMENTS__RECONCILE_INTERVAL_MS", "200"),
        ("PHOENIX_AUTH__JWT_SECRET", crate::helpers::TEST_JWT_SECRET),
        ("RUST_LOG", "warn,phoenix::server=info"),
    ];
    let mut first = ServerProcess::start_on(&db, &addr, &env);
    let admin = first.bootstrap_admin().await;
    let client = crate::helpers::http_client();
    let base = first.url("");
    let call = |method: Method, path: &str, token: Option<&str>, body: Value| {
        let mut request = client.request(method, format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let get_json = async |path: &str| -> Value {
        let res = call(Method::GET, path, Some(&admin), json!({})).await;
        match res {
            Ok(res) => res.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    let token: Value = call(Method::POST, "/api/v1/agents/enrollment-tokens", Some(&admin), json!({}))
        .await
        .expect("token")
        .json()
        .await
        .expect("token JSON");
    let dir = tempfile::tempdir().expect("state dir");
    let _agent = AgentProcess::start(&base, dir.path(), token["token"].as_str());
    eventually("the agent online", async || {
        (get_json("/api/v1/agents?state=online").await["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    let body = experiment("crash", synthetic("topk", json!({"k": 5})), json!({"selector": {"env": "test"}}), 8);
    let created: Value = call(Method::POST, "/api/v1/experiments", Some(&admin), body)
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/experiments/{id}");
    assert_eq!(
        call(Method::POST, &format!("{path}/start"), Some(&admin), json!({})).await.expect("start").status(),
        200
    );
    let running = eventually("running", async || {
        let experiment = get_json(&path).await;
        (experiment["phase"] == "running").then_some(experiment)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _second = ServerProcess::start_on(&db, &addr, &env);

    let completed = eventually_within("completed after the restart", 30, async || {
        let experiment = get_json(&path).await;
        assert_ne!(experiment["phase"], "failed", "{experiment}");
        (experiment["phase"] == "completed").then_some(experiment)
    })
    .await;
    let until: chrono::DateTime<chrono::Utc> =
        running["measuring_until"].as_str().expect("until").parse().expect("time");
    let done: chrono::DateTime<chrono::Utc> = completed["completed_at"].as_str().expect("done").parse().expect("time");
    assert!(done >= until && done - until < chrono::Duration::seconds(3), "completed on time: {until} -> {done}");
    let kpis = &completed["results"];
    assert_eq!(kpis["baseline"]["series"]["mean"], json!((PROCESSES * SERIES_PER_PROCESS) as f64), "{kpis}");
    assert_eq!(kpis["candidate"]["series"]["mean"], json!(((5 + 1) * SERIES_PER_PROCESS) as f64), "{kpis}");
    assert_eq!(kpis["verdict"], "pass", "{kpis}");
    println!("experiment crash: kill -9 while running; completed {} s after its window ended, KPIs as measured, verdict pass",
        (done - until).num_milliseconds() as f64 / 1000.0);
}
each_backend!(the_experiment_survives_a_server_crash_while_running);

/// `auto_promote` promotes a `pass` at once, as the system; a `completed` experiment rolled back keeps
/// its baseline and removes only the candidate, until it is deleted.
#[actix_web::test]
async fn auto_promote_promotes_a_pass_and_rollback_removes_only_the_candidate() {
    let (app, admin) = fast_server(Backend::Sqlite, |settings| {
        settings.agents.offline_after_secs = Some(600);
        settings.experiments.removal_sweep_interval_secs = 1;
    })
    .await;
    let agent = app.http_agent(&admin, "measures").await;
    assert_eq!(agent.heartbeat("healthy").await.status(), 200);
    let on_agent = |auto_promote: bool| {
        let mut body = experiment("auto", synthetic("topk", json!({})), json!({"agents": [agent.id]}), 3);
        body["warmup_secs"] = json!(0);
        body["auto_promote"] = json!(auto_promote);
        body
    };

    let auto = create(&app, &admin, &on_agent(true)).await["id"].as_str().expect("id").to_string();
    measure_until_the_window_ends(&app, &admin, &agent, &auto).await;
    let promoted = wait_for_phase(&app, &admin, &auto, "promoted", 10).await;
    assert_eq!(promoted["results"]["verdict"], "pass", "{promoted}");
    assert!(promoted["deployment_id"].is_string());
    let events = get(&app, &admin, &format!("/api/v1/experiments/{auto}/events")).await;
    let last = events["items"].as_array().and_then(|e| e.last()).cloned().expect("events");
    assert_eq!((last["to_phase"].as_str(), last["actor"].is_null()), (Some("promoted"), true), "by the system");
    // The deployment's apply goes to the agent first; the experiment's pipelines are removed only once
    // it ran there (the host is never without a pipeline).
    let deployment = promoted["deployment_id"].as_str().expect("deployment");
    let kinds = |handed: &[Value]| -> Vec<(String, String)> {
        handed
            .iter()
            .map(|t| {
                let body = &t["body"];
                (
                    body["task_type"].as_str().unwrap_or("").into(),
                    body["payload"]["pipeline"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    };
    let handed = agent.poll(1).await;
    assert_eq!(kinds(&handed), [("pipeline.apply".to_string(), format!("deploy-{deployment}"))]);
    agent.report(handed[0]["body"]["task_id"].as_str().expect("id"), json!({"status": "succeeded"})).await;
    let mut removals = Vec::new();
    eventually("the experiment's pipelines removed after the handover", async || {
        removals.extend(agent.poll(1).await);
        (removals.len() >= 2).then_some(())
    })
    .await;
    let mut removed = kinds(&removals);
    removed.sort();
    let expected: Vec<(String, String)> =
        ["baseline", "candidate"].iter().map(|v| ("pipeline.remove".to_string(), format!("exp-{auto}-{v}"))).collect();
    assert_eq!(removed, expected);
    for task in &removals {
        agent.report(task["body"]["task_id"].as_str().expect("id"), json!({"status": "succeeded"})).await;
    }

    let manual = create(&app, &admin, &on_agent(false)).await["id"].as_str().expect("id").to_string();
    measure_until_the_window_ends(&app, &admin, &agent, &manual).await;
    wait_for_phase(&app, &admin, &manual, "completed", 10).await;
    assert_eq!(act(&app, &admin, &manual, "rollback").await.status(), 200);
    let handed = agent.poll(1).await;
    let removed: Vec<&str> = handed.iter().filter_map(|t| t["body"]["payload"]["pipeline"].as_str()).collect();
    assert_eq!(removed, [format!("exp-{manual}-candidate")], "only the candidate is removed");
    for task in &handed {
        agent.report(task["body"]["task_id"].as_str().expect("id"), json!({"status": "succeeded"})).await;
    }
    // Deleting it removes the baseline it kept.
    let res = app.send_as(Method::DELETE, &format!("/api/v1/experiments/{manual}"), &admin, &json!({})).await;
    assert_eq!(res.status(), 204);
    let handed = agent.poll(1).await;
    let removed: Vec<&str> = handed.iter().filter_map(|t| t["body"]["payload"]["pipeline"].as_str()).collect();
    assert!(removed.contains(&format!("exp-{manual}-baseline").as_str()), "{removed:?}");
}

/// A 3 s experiment (topk against the pass-through) run to `completed` on one fake agent; its id and
/// final state.
pub(crate) async fn completed_on(app: &TestApp, admin: &str, agent: &HttpAgent<'_>, name: &str) -> (String, Value) {
    assert_eq!(agent.heartbeat("healthy").await.status(), 200);
    let mut body = experiment(name, synthetic("topk", json!({})), json!({"agents": [agent.id]}), 3);
    body["warmup_secs"] = json!(0);
    let id = create(app, admin, &body).await["id"].as_str().expect("id").to_string();
    measure_until_the_window_ends(app, admin, agent, &id).await;
    let completed = wait_for_phase(app, admin, &id, "completed", 10).await;
    (id, completed)
}

/// The server stops right after an `auto_promote` experiment is stored `completed` with a pass, before
/// it is promoted: the next server to start finishes the promotion.
#[actix_web::test]
async fn an_automatic_promotion_cut_off_by_a_stop_is_finished_at_start_up() {
    let (app, admin) = fast_server(Backend::Sqlite, |settings| {
        settings.agents.offline_after_secs = Some(600);
        settings.experiments.removal_sweep_interval_secs = 1;
    })
    .await;
    let agent = app.http_agent(&admin, "measures").await;
    let (id, completed) = completed_on(&app, &admin, &agent, "cut-off").await;
    assert_eq!(completed["results"]["verdict"], "pass", "{completed}");

    // What the database holds when the stop came between the two steps: `completed`, auto_promote, no
    // deployment. (Created without auto_promote so that this server does not promote it first.)
    let mut conn = establish(&app.db.url).expect("db");
    let spec: String = experiments::table.find(&id).select(experiments::spec).first(&mut conn).expect("spec");
    let mut spec: Value = serde_json::from_str(&spec).expect("spec JSON");
    spec["auto_promote"] = json!(true);
    diesel::update(experiments::table.find(&id))
        .set(experiments::spec.eq(spec.to_string()))
        .execute(&mut conn)
        .expect("update");

    let _next = ServerProcess::start_on(
        &app.db,
        &crate::helpers::free_local_addr(),
        &[("RUST_LOG", "warn,phoenix::server=info")],
    );
    let promoted = eventually_within("promoted by the next server", 30, async || {
        let experiment = get(&app, &admin, &format!("/api/v1/experiments/{id}")).await;
        (experiment["phase"] == "promoted").then_some(experiment)
    })
    .await;
    assert!(promoted["deployment_id"].is_string(), "{promoted}");
    let events = get(&app, &admin, &format!("/api/v1/experiments/{id}/events")).await;
    let promotions = events["items"].as_array().expect("events").iter().filter(|e| e["to_phase"] == "promoted").count();
    assert_eq!(promotions, 1, "promoted once: {events}");
}

/// A removal that could not be enqueued on the way to a final phase (here: deleted, as if it had never
/// been written) is sent by the removal sweep.
async fn a_removal_lost_on_the_way_to_a_final_phase_is_sent_by_the_sweep(backend: Backend) {
    let (app, admin) = fast_server(backend, |settings| {
        settings.agents.offline_after_secs = Some(600);
        settings.experiments.removal_sweep_interval_secs = 1;
    })
    .await;
    let agent = app.http_agent(&admin, "measures").await;
    let (id, _) = completed_on(&app, &admin, &agent, "swept").await;
    assert_eq!(act(&app, &admin, &id, "rollback").await.status(), 200);

    let key = format!("exp:{id}:{}:candidate:remove", agent.id);
    let mut conn = establish(&app.db.url).expect("db");
    let lost = diesel::delete(tasks::table.filter(tasks::idempotency_key.eq(&key))).execute(&mut conn).expect("delete");
    assert_eq!(lost, 1, "the rollback had sent the candidate's removal");
    let resent: String = eventually("the sweep to send the removal again", async || {
        tasks::table.filter(tasks::idempotency_key.eq(&key)).select(tasks::id).first(&mut conn).ok()
    })
    .await;
    let handed = agent.poll(1).await;
    let ids: Vec<&str> = handed.iter().filter_map(|t| t["body"]["task_id"].as_str()).collect();
    assert_eq!(ids, [resent.as_str()], "the agent gets the removal, once");
    let mut conn = establish(&app.db.url).expect("db");
    let baseline = format!("exp:{id}:{}:baseline:remove", agent.id);
    let kept = tasks::table.filter(tasks::idempotency_key.eq(&baseline)).count().get_result::<i64>(&mut conn);
    assert_eq!(kept.expect("count"), 0, "a rolled-back experiment keeps its baseline running");
}
each_backend!(a_removal_lost_on_the_way_to_a_final_phase_is_sent_by_the_sweep);
