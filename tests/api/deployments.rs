//! Deployments end to end with real agents (the `phoenix agent` binary on the synthetic source): versions
//! roll out all at once and in waves, rollback restores a config as a new version, a failing version
//! pauses the rollout, agents joining or leaving the target are handled, and a server crash in the middle
//! of a rollout changes nothing.

use std::time::Duration;

use phoenix::db::Backend;
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{eventually_within, fast_server, AgentProcess, ServerProcess, TestApp, TestDb};

const BASE: &str = "/api/v1/pipelines/deployments";

/// Real agents labelled `env=test`, online.
async fn agents(app: &TestApp, admin: &str, n: usize) -> Vec<(AgentProcess, tempfile::TempDir)> {
    let expected = count_online(app, admin).await + n;
    let mut started = Vec::new();
    for _ in 0..n {
        started.push(one_agent(&app.url(""), app, admin).await);
    }
    eventually_within("the agents online", 20, async || (count_online(app, admin).await >= expected).then_some(()))
        .await;
    started
}

async fn one_agent(server: &str, app: &TestApp, admin: &str) -> (AgentProcess, tempfile::TempDir) {
    let token = app.enrollment_token(admin).await;
    let dir = tempfile::tempdir().expect("state dir");
    (AgentProcess::start(server, dir.path(), Some(&token)), dir)
}

async fn count_online(app: &TestApp, admin: &str) -> usize {
    let list = get(app, admin, "/api/v1/agents?state=online").await;
    list["items"].as_array().map_or(0, Vec::len)
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    app.get_as(path, token).await.json().await.expect("JSON")
}

fn topk(k: u64) -> Value {
    json!({"template": "topk", "parameters": {"source": "synthetic", "profile": "steady", "processes": 20, "k": k}})
}

/// Waits until the deployment is `status` with every target agent on `version`; returns the status view.
async fn converged(app: &TestApp, token: &str, id: &str, version: i64, status: &str, agents: usize) -> Value {
    eventually_within(&format!("{agents} agents on v{version}, {status}"), 30, async || {
        let view = get(app, token, &format!("{BASE}/{id}/status")).await;
        let listed = view["agents"].as_array()?;
        let on_version = listed.iter().filter(|a| a["applied_version"] == json!(version)).count();
        (view["status"] == status && view["current_version"] == json!(version) && on_version == agents).then_some(view)
    })
    .await
}

/// What the agents themselves report running (their heartbeats), for this deployment's pipeline.
async fn reported_versions(app: &TestApp, token: &str, id: &str) -> Vec<i64> {
    let list = get(app, token, "/api/v1/agents?limit=100").await;
    let pipeline = format!("deploy-{id}");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|agent| {
            agent["pipelines"].as_array()?.iter().find(|p| p["name"] == json!(pipeline))?["version"].as_i64()
        })
        .collect()
}

async fn versions_rolled_out_all_at_once_in_waves_and_rolled_back(backend: Backend) {
    let (app, admin) = fast_server(backend, |_| {}).await;
    let _agents = agents(&app, &admin, 3).await;
    let body = json!({"name": "edge-topk", "pipeline": topk(10), "target": {"selector": {"env": "test"}}});
    let res = app.send_as(Method::POST, BASE, &admin, &body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("deployment");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!((created["current_version"].as_i64(), created["status"].as_str()), (Some(1), Some("rolling_out")));
    converged(&app, &admin, &id, 1, "active", 3).await;
    eventually_within("the agents report v1", 15, async || {
        (reported_versions(&app, &admin, &id).await == [1, 1, 1]).then_some(())
    })
    .await;

    // Same config: no new version. A new config, in waves of 1 then 2.
    let same = app.send_as(Method::PATCH, &format!("{BASE}/{id}"), &admin, &json!({"pipeline": topk(10)})).await;
    assert_eq!(same.json::<Value>().await.expect("JSON")["new_version"], Value::Null);
    let waves = json!({"strategy": "waves", "first_batch": 1, "growth": 2, "interval_secs": 0, "max_failures": 0});
    let patch = json!({"pipeline": topk(5), "rollout": waves, "notes": "fewer processes"});
    let res = app.send_as(Method::PATCH, &format!("{BASE}/{id}"), &admin, &patch).await;
    assert_eq!(res.json::<Value>().await.expect("JSON")["new_version"], 2);
    converged(&app, &admin, &id, 2, "active", 3).await;
    let events = get(&app, &admin, &format!("{BASE}/{id}/events")).await;
    let waves: Vec<usize> = events["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event_type"] == "wave_started" && e["version"] == 2)
        .map(|e| e["data"]["agents"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(waves, [1, 2], "a wave of 1, then one of 2");

    let diff = get(&app, &admin, &format!("{BASE}/{id}/versions/2/diff?against=1")).await;
    assert_eq!(diff["changed"], true);
    assert!(diff["unified"].as_str().expect("text").contains("-    k: 10\n+    k: 5"), "{diff}");

    let res = app.send_as(Method::POST, &format!("{BASE}/{id}/rollback"), &admin, &json!({"version": 1})).await;
    assert_eq!(res.status(), 200);
    let rolled: Value = res.json().await.expect("JSON");
    assert_eq!(
        (rolled["version"]["version"].as_i64(), rolled["version"]["rollback_from_version"].as_i64()),
        (Some(3), Some(1))
    );
    converged(&app, &admin, &id, 3, "active", 3).await;
    let history = get(&app, &admin, &format!("{BASE}/{id}/versions")).await;
    let statuses: Vec<(i64, &str)> = history["items"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["version"].as_i64().unwrap_or(0), v["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(statuses, [(3, "active"), (2, "rolled_back"), (1, "superseded")]);
    let v1 = get(&app, &admin, &format!("{BASE}/{id}/versions/1")).await;
    let v3 = get(&app, &admin, &format!("{BASE}/{id}/versions/3")).await;
    assert_eq!(v3["config"], v1["config"], "v3 restores v1's config");
    // Rolling back the rollback restores v2's.
    app.send_as(Method::POST, &format!("{BASE}/{id}/rollback"), &admin, &json!({})).await;
    let v4 = get(&app, &admin, &format!("{BASE}/{id}/versions/4")).await;
    let v2 = get(&app, &admin, &format!("{BASE}/{id}/versions/2")).await;
    assert_eq!((v4["config"].clone(), v4["rollback_from_version"].as_i64()), (v2["config"].clone(), Some(2)));

    let res = app.send_as(Method::DELETE, &format!("{BASE}/{id}"), &admin, &json!({})).await;
    assert_eq!(res.status(), 204);
    eventually_within("the pipeline removed from the agents", 20, async || {
        reported_versions(&app, &admin, &id).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(get(&app, &admin, &format!("{BASE}/{id}")).await["status"], "deleted");
    let listed = get(&app, &admin, BASE).await;
    assert!(listed["items"].as_array().expect("items").is_empty(), "deleted deployments leave listings");
    assert_eq!(get(&app, &admin, &format!("{BASE}/{id}/versions/1")).await["version"], 1, "versions stay readable");
}
each_backend!(versions_rolled_out_all_at_once_in_waves_and_rolled_back);

async fn a_failing_version_pauses_the_waves_and_resume_after_a_fix_continues(backend: Backend) {
    let (app, admin) = fast_server(backend, |_| {}).await;
    let _agents = agents(&app, &admin, 3).await;
    let waves = json!({"strategy": "waves", "first_batch": 1, "growth": 2, "interval_secs": 0, "max_failures": 0});
    let body =
        json!({"name": "waves", "pipeline": topk(10), "target": {"selector": {"env": "test"}}, "rollout": waves});
    let created: Value = app.send_as(Method::POST, BASE, &admin, &body).await.json().await.expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    converged(&app, &admin, &id, 1, "active", 3).await;

    // Valid on paper, but its port is taken on the host: the first wave's agent fails it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = taken.local_addr().expect("addr").to_string();
    let broken = json!({"template": "topk", "parameters": {"source": "synthetic", "exporter": "prometheus", "endpoint": endpoint}});
    app.send_as(Method::PATCH, &format!("{BASE}/{id}"), &admin, &json!({"pipeline": broken})).await;
    let paused = eventually_within("the rollout paused", 30, async || {
        let view = get(&app, &admin, &format!("{BASE}/{id}/status")).await;
        (view["status"] == "paused").then_some(view)
    })
    .await;
    let failed = paused["status_detail"]["failed_agents"].as_array().expect("failed agents");
    assert_eq!(failed.len(), 1, "one failure is over a budget of 0: {paused}");
    assert!(failed[0]["error"].as_str().expect("error").contains(&endpoint), "{paused}");
    let on_v1 = paused["agents"].as_array().expect("agents").iter().filter(|a| a["applied_version"] == 1).count();
    assert_eq!(on_v1, 3, "the failed agent kept v1 running and nobody else got v2");

    // The fix is a new version; it waits for the resume.
    app.send_as(Method::PATCH, &format!("{BASE}/{id}"), &admin, &json!({"pipeline": topk(3)})).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(get(&app, &admin, &format!("{BASE}/{id}")).await["status"], "paused");
    let res = app.send_as(Method::POST, &format!("{BASE}/{id}/resume"), &admin, &json!({})).await;
    assert_eq!(res.status(), 200);
    converged(&app, &admin, &id, 3, "active", 3).await;
    let again = app.send_as(Method::POST, &format!("{BASE}/{id}/resume"), &admin, &json!({})).await;
    assert_eq!(again.status(), 409, "only a paused rollout resumes");
}
each_backend!(a_failing_version_pauses_the_waves_and_resume_after_a_fix_continues);

async fn agents_joining_and_leaving_the_target_get_and_lose_the_pipeline(backend: Backend) {
    let (app, admin) = fast_server(backend, |_| {}).await;
    let _first = agents(&app, &admin, 1).await;
    let body = json!({"name": "follow", "pipeline": topk(10), "target": {"selector": {"env": "test"}}});
    let created: Value = app.send_as(Method::POST, BASE, &admin, &body).await.json().await.expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    converged(&app, &admin, &id, 1, "active", 1).await;

    let _second = agents(&app, &admin, 2).await;
    converged(&app, &admin, &id, 1, "active", 3).await;

    let list = get(&app, &admin, "/api/v1/agents").await;
    let leaving = list["items"][0]["id"].as_str().expect("agent").to_string();
    let relabel = json!({"labels": {"env": "elsewhere"}});
    let res = app.send_as(Method::PATCH, &format!("/api/v1/agents/{leaving}"), &admin, &relabel).await;
    assert_eq!(res.status(), 200);
    eventually_within("the pipeline removed from the relabelled agent", 20, async || {
        let agent = get(&app, &admin, &format!("/api/v1/agents/{leaving}")).await;
        let pipelines = agent["pipelines"].as_array()?;
        (!pipelines.iter().any(|p| p["name"] == json!(format!("deploy-{id}")))).then_some(())
    })
    .await;
    converged(&app, &admin, &id, 1, "active", 2).await;
}
each_backend!(agents_joining_and_leaving_the_target_get_and_lose_the_pipeline);

async fn concurrent_updates_get_contiguous_unique_versions(backend: Backend) {
    let (app, admin) = fast_server(backend, |_| {}).await;
    let body = json!({"name": "busy", "pipeline": topk(1), "target": {"agents": ["nobody-yet"]}});
    let created: Value = app.send_as(Method::POST, BASE, &admin, &body).await.json().await.expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("{BASE}/{id}");
    let patches = (2..22).map(|k| {
        let (app, admin, path) = (&app, &admin, &path);
        async move { app.send_as(Method::PATCH, path, admin, &json!({"pipeline": topk(k)})).await.status() }
    });
    let statuses = futures_util::future::join_all(patches).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let versions = get(&app, &admin, &format!("{path}/versions?limit=100")).await;
    let numbers: Vec<i64> =
        versions["items"].as_array().expect("items").iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(numbers, (1..=21).rev().collect::<Vec<i64>>(), "contiguous and unique");
    let active = versions["items"].as_array().expect("items").iter().filter(|v| v["status"] == "active").count();
    assert_eq!(active, 1);
}
each_backend!(concurrent_updates_get_contiguous_unique_versions);

#[actix_web::test]
async fn missing_ids_are_404_and_impossible_rollbacks_409() {
    let (app, admin) = fast_server(Backend::Sqlite, |_| {}).await;
    for (method, path) in [
        (Method::GET, format!("{BASE}/nope")),
        (Method::PATCH, format!("{BASE}/nope")),
        (Method::DELETE, format!("{BASE}/nope")),
        (Method::GET, format!("{BASE}/nope/versions")),
        (Method::GET, format!("{BASE}/nope/versions/1")),
        (Method::GET, format!("{BASE}/nope/versions/1/diff?against=1")),
        (Method::POST, format!("{BASE}/nope/rollback")),
        (Method::GET, format!("{BASE}/nope/status")),
        (Method::POST, format!("{BASE}/nope/pause")),
        (Method::POST, format!("{BASE}/nope/resume")),
        (Method::GET, format!("{BASE}/nope/events")),
    ] {
        let res = app.send_as(method.clone(), &path, &admin, &json!({})).await;
        assert_eq!(res.status(), 404, "{method} {path}");
    }
    let body = json!({"name": "one", "pipeline": topk(1), "target": {"agents": ["a"]}});
    let created: Value = app.send_as(Method::POST, BASE, &admin, &body).await.json().await.expect("JSON");
    let id = created["id"].as_str().expect("id");
    assert_eq!(app.get_as(&format!("{BASE}/{id}/versions/7"), &admin).await.status(), 404);
    let res = app.send_as(Method::POST, &format!("{BASE}/{id}/rollback"), &admin, &json!({"version": 7})).await;
    assert_eq!(res.status(), 409);
    let res = app.send_as(Method::POST, &format!("{BASE}/{id}/rollback"), &admin, &json!({})).await;
    assert_eq!(res.status(), 409, "version 1 has no previous version");
    let duplicate = app.send_as(Method::POST, BASE, &admin, &body).await;
    assert_eq!(duplicate.status(), 409, "names are unique");
    let invalid = json!({"name": "", "pipeline": {"template": "topk", "parameters": {"k": "x"}}, "target": {"agents": []},
                         "rollout": {"strategy": "waves", "first_batch": 0}});
    let res = app.send_as(Method::POST, BASE, &admin, &invalid).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.expect("problem");
    let paths: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["path"].as_str()).collect();
    for expected in ["name", "target.agents", "rollout.first_batch", "pipeline.parameters.k"] {
        assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
    }
}

/// kill -9 the server between two waves; start it again on the same address: the rollout finishes, and
/// versions are neither duplicated nor skipped.
async fn a_rollout_survives_a_server_crash(backend: Backend) {
    let db = TestDb::new(backend);
    let addr = crate::helpers::free_local_addr();
    let env = [
        ("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", "1"),
        ("PHOENIX_AGENTS__OFFLINE_AFTER_SECS", "15"),
        ("PHOENIX_DEPLOYMENTS__RECONCILE_INTERVAL_MS", "200"),
        ("PHOENIX_AUTH__JWT_SECRET", crate::helpers::TEST_JWT_SECRET),
        ("RUST_LOG", "warn,phoenix::server=info"),
    ];
    let mut first = ServerProcess::start_on(&db, &addr, &env);
    let base = first.url("");
    let admin = first.bootstrap_admin().await;
    let client = crate::helpers::http_client();
    let call = |method: Method, path: String, body: Value| {
        client.request(method, format!("{base}{path}")).bearer_auth(&admin).json(&body).send()
    };
    let mut agents = Vec::new();
    for _ in 0..3 {
        let token: Value = call(Method::POST, "/api/v1/agents/enrollment-tokens".into(), json!({}))
            .await
            .expect("token")
            .json()
            .await
            .expect("JSON");
        let dir = tempfile::tempdir().expect("dir");
        agents.push((AgentProcess::start(&base, dir.path(), token["token"].as_str()), dir));
    }
    let status_of = async |path: String| -> Value {
        match call(Method::GET, path, json!({})).await {
            Ok(res) => res.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    };
    eventually_within("3 agents online", 20, async || {
        (status_of("/api/v1/agents?state=online".into()).await["items"].as_array()?.len() == 3).then_some(())
    })
    .await;
    // Waves of one agent, 3 s apart: the crash falls between waves.
    let waves = json!({"strategy": "waves", "first_batch": 1, "growth": 1, "interval_secs": 3, "max_failures": 0});
    let body =
        json!({"name": "crash", "pipeline": topk(10), "target": {"selector": {"env": "test"}}, "rollout": waves});
    let created: Value = call(Method::POST, BASE.into(), body).await.expect("create").json().await.expect("JSON");
    let id = created["id"].as_str().expect("id").to_string();
    eventually_within("the first wave applied", 20, async || {
        let view = status_of(format!("{BASE}/{id}/status")).await;
        let applied = view["agents"].as_array()?.iter().filter(|a| a["applied_version"] == 1).count();
        (applied >= 1).then_some(())
    })
    .await;
    first.kill();
    let _second = ServerProcess::start_on(&db, &addr, &env);
    let view = eventually_within("the rollout finished after the restart", 40, async || {
        let view = status_of(format!("{BASE}/{id}/status")).await;
        let applied = view["agents"].as_array()?.iter().filter(|a| a["applied_version"] == 1).count();
        (view["status"] == "active" && applied == 3).then_some(view)
    })
    .await;
    assert_eq!(view["current_version"], 1);
    let versions = status_of(format!("{BASE}/{id}/versions")).await;
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1), "no version duplicated: {versions}");
    let tasks = status_of("/api/v1/tasks?type=pipeline.apply&limit=100".into()).await;
    let applies =
        tasks["items"].as_array().expect("tasks").iter().filter(|t| t["payload"]["deployment_id"] == json!(id)).count();
    assert_eq!(applies, 3, "one apply per agent, none sent twice");
    println!("rollout crash (3 agents): kill -9 between waves; completed after the restart; 1 version, 3 applies");
}
each_backend!(a_rollout_survives_a_server_crash);
