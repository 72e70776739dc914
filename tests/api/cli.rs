//! The `phoenix` binary as an operator uses it, against the real server: log in, run an experiment to
//! its end while watching it, promote it; errors with their messages and exit codes; the session file.

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::Duration;

use phoenix::db::Backend;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::experiments::{answer_tasks, measurement};
use crate::helpers::{fast_server, TestApp, PASSWORD};

/// Runs the binary with its own config directory and `stdin` as input.
async fn phoenix(config: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    phoenix_with(config, args, stdin, &[]).await
}

/// [`phoenix`] with `PHOENIX_*` variables set (none are inherited from the test's environment).
async fn phoenix_with(config: &std::path::Path, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("NO_COLOR", "1")
        .env_remove("PHOENIX_SERVER")
        .env_remove("PHOENIX_TOKEN")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run phoenix");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("phoenix output")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits until `n` WebSocket sessions are open on the server (a `watch` has subscribed).
async fn wait_for_live_sessions(app: &TestApp, n: i64) {
    crate::helpers::eventually("the watch to connect", async || {
        let metrics = app.get("/metrics").await.text().await.ok()?;
        let open = metrics.lines().find_map(|l| l.strip_prefix("phoenix_ws_sessions "))?.trim().parse::<i64>().ok()?;
        (open >= n).then_some(())
    })
    .await;
}

async fn server(tune: impl FnOnce(&mut phoenix::config::Settings)) -> (TestApp, String) {
    fast_server(Backend::Sqlite, |settings| {
        settings.agents.offline_after_secs = Some(600);
        tune(settings);
    })
    .await
}

/// `phoenix login` as `username` (password on stdin) into the config directory `dir`.
async fn log_in(dir: &std::path::Path, url: &str, username: &str, extra: &[&str]) -> Output {
    let mut args = vec!["login", "--server", url, "--username", username, "--password-stdin"];
    args.extend_from_slice(extra);
    let login = phoenix(dir, &args, PASSWORD).await;
    assert!(login.status.success(), "{}", stderr(&login));
    login
}

#[actix_web::test]
async fn an_operator_runs_watches_and_promotes_an_experiment_from_the_terminal() {
    let (app, admin) = server(|_| {}).await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path();
    let url = app.url("");

    log_in(dir, &url, "admin", &[]).await;
    let file = dir.join("phoenix").join("credentials.json");
    assert_eq!(std::fs::metadata(&file).expect("credentials").permissions().mode() & 0o777, 0o600);
    let whoami = phoenix(dir, &["whoami", "-o", "json", "--verbose"], "").await;
    assert_eq!(json_of(&whoami)["username"], "admin");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    let token = saved["contexts"]["default"]["access_token"].as_str().expect("token");
    assert!(stderr(&whoami).contains("GET /api/v1/auth/me -> 200"), "{}", stderr(&whoami));
    assert!(!stderr(&whoami).contains(token), "the token never appears in verbose logs");

    let agent = app.http_agent(&admin, "edge").await;
    agent.heartbeat("healthy").await;
    let spec = dir.join("experiment.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: from-the-cli\nbaseline: {{template: baseline, parameters: {{source: synthetic}}}}\n\
             candidate: {{template: topk, parameters: {{source: synthetic, k: 3}}}}\n\
             target: {{agents: [{}]}}\nwarmup_secs: 0\nduration_secs: 3\n\
             success_criteria: {{max_cpu_overhead_pct: 1000000}}\n",
            agent.id
        ),
    )
    .expect("write spec");
    let created = phoenix(dir, &["experiment", "create", "-f", spec.to_str().expect("utf-8"), "-o", "json"], "").await;
    assert!(created.status.success(), "{}", stderr(&created));
    let created = json_of(&created);
    let id = created["id"].as_str().expect("id").to_string();
    let api_view: Value = app.get_as(&format!("/api/v1/experiments/{id}"), &admin).await.json().await.expect("JSON");
    let got = phoenix(dir, &["experiment", "get", &id, "-o", "json"], "").await;
    assert_eq!(json_of(&got), api_view, "-o json is exactly the API's object");

    let started = phoenix(dir, &["experiment", "start", &id, "-o", "json"], "").await;
    assert_eq!(json_of(&started)["phase"], "deploying");
    let again = phoenix(dir, &["experiment", "start", &id], "").await;
    assert_eq!(again.status.code(), Some(4), "a conflict: {}", stderr(&again));
    assert!(stderr(&again).contains("cannot start an experiment that is deploying"), "{}", stderr(&again));

    let watch = |format: &'static str| {
        let (dir, id) = (dir.to_path_buf(), id.clone());
        tokio::spawn(async move { phoenix(&dir, &["experiment", "watch", &id, "-o", format], "").await })
    };
    let (watcher, person) = (watch("json"), watch("table"));
    wait_for_live_sessions(&app, 2).await;
    answer_tasks(&agent, json!({"status": "succeeded"})).await;
    for seq in 0..10 {
        agent.send_metrics(&measurement(&id, "baseline", 100.0, seq)).await;
        agent.send_metrics(&measurement(&id, "candidate", 10.0 + seq as f64 % 2.0, seq)).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let watched = tokio::time::timeout(Duration::from_secs(20), watcher).await.expect("watch ends").expect("join");
    assert!(watched.status.success(), "{}", stderr(&watched));
    let final_state = json_of(&watched);
    assert_eq!(final_state["phase"], "completed", "{final_state}");
    assert_eq!(final_state["results"]["verdict"], "pass");
    let api_view: Value = app.get_as(&format!("/api/v1/experiments/{id}"), &admin).await.json().await.expect("JSON");
    assert_eq!(final_state, api_view, "what watch ends with is the API's object");
    let person = tokio::time::timeout(Duration::from_secs(20), person).await.expect("watch ends").expect("join");
    let progress = stderr(&person);
    for shown in
        ["running", "% of the measurement window", "series: baseline 100, candidate 1", "completed", "verdict: pass"]
    {
        assert!(progress.contains(shown), "watch shows '{shown}': {progress}");
    }
    let detail = String::from_utf8_lossy(&person.stdout);
    assert!(detail.lines().any(|l| l.starts_with("VERDICT") && l.ends_with("pass")), "{detail}");

    let kpis = phoenix(dir, &["experiment", "kpis", &id, "-o", "json"], "").await;
    assert_eq!(json_of(&kpis)["verdict"], "pass");
    // The fleet runs the baseline as a deployment; promoting the candidate makes it version 2, and
    // rolling back brings the baseline's config back as version 3.
    let fleet = [
        "deployment",
        "create",
        "--name",
        "edge",
        "--template",
        "baseline",
        "--param",
        "source=synthetic",
        "--target",
        "env=nowhere",
        "-o",
        "json",
    ];
    let deployment = json_of(&phoenix(dir, &fleet, "").await)["id"].as_str().expect("deployment id").to_string();
    let promote = ["experiment", "promote", &id, "--deployment", &deployment, "--notes", "topk k=3", "-o", "json"];
    let promoted = phoenix(dir, &promote, "").await;
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert_eq!(json_of(&promoted)["phase"], "promoted");
    assert_eq!(json_of(&promoted)["deployment_id"], deployment.as_str());
    let versions = json_of(&phoenix(dir, &["deployment", "versions", &deployment, "-o", "json"], "").await);
    let listed: Vec<(Value, Value)> = versions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| (v["version"].clone(), v["notes"].clone()))
        .collect();
    assert_eq!(listed[0], (json!(2), json!("topk k=3")), "{versions}");
    assert_eq!(versions["items"][0]["config"], json!(created["candidate_config"]), "version 2 is the candidate");
    let rolled = phoenix(dir, &["deployment", "rollback", &deployment, "--yes", "-o", "json"], "").await;
    assert_eq!(json_of(&rolled)["current_version"], 3, "{}", stderr(&rolled));
    let v3 = json_of(&phoenix(dir, &["deployment", "versions", &deployment, "-o", "json"], "").await);
    assert_eq!(v3["items"][0]["config"], versions["items"][1]["config"], "version 3 is the baseline again");
    let table = phoenix(dir, &["experiment", "list"], "").await;
    let listing = String::from_utf8_lossy(&table.stdout);
    assert!(listing.starts_with("ID") && listing.contains("promoted"), "{listing}");
    let refused = phoenix(dir, &["experiment", "delete", &id], "").await;
    assert_eq!(refused.status.code(), Some(2), "destructive without a terminal needs --yes: {}", stderr(&refused));
    let deleted = phoenix(dir, &["experiment", "delete", &id, "--yes"], "").await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));

    let logout = phoenix(dir, &["logout"], "").await;
    assert!(logout.status.success(), "{}", stderr(&logout));
    let res = app.get_as("/api/v1/auth/me", token).await;
    assert_eq!(res.status(), 401, "logout revoked the session on the server");
}

#[actix_web::test]
async fn errors_say_what_went_wrong_with_an_exit_code_for_each_kind() {
    let (app, _admin) = server(|settings| settings.auth.access_token_ttl_secs = 1).await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path();
    let url = app.url("");

    let wrong =
        phoenix(dir, &["login", "--server", &url, "--username", "admin", "--password-stdin"], "wrong-password").await;
    assert_eq!(wrong.status.code(), Some(5), "{}", stderr(&wrong));
    assert!(stderr(&wrong).starts_with("phoenix: "), "one sentence on stderr: {}", stderr(&wrong));
    assert!(wrong.stdout.is_empty());

    let nowhere = phoenix(dir, &["whoami", "--server", "http://127.0.0.1:9"], "").await;
    assert_eq!(nowhere.status.code(), Some(6), "{}", stderr(&nowhere));
    assert!(stderr(&nowhere).contains("cannot reach the server at http://127.0.0.1:9"), "{}", stderr(&nowhere));

    log_in(dir, &url, "admin", &[]).await;
    let missing = phoenix(dir, &["experiment", "get", "no-such-id"], "").await;
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("experiment no-such-id not found"), "{}", stderr(&missing));

    // The access token lives 1 s: the CLI refreshes the session by itself and saves the new tokens.
    let file = dir.join("phoenix").join("credentials.json");
    let before = std::fs::read_to_string(&file).expect("credentials");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = phoenix(dir, &["whoami", "-o", "json"], "").await;
    assert!(later.status.success(), "refreshed: {}", stderr(&later));
    assert_eq!(json_of(&later)["username"], "admin");
    assert_ne!(std::fs::read_to_string(&file).expect("credentials"), before, "the new tokens are saved");

    let invalid = phoenix(
        dir,
        &["experiment", "create", "--name", "x", "--baseline", "nope", "--candidate", "topk", "--agents", "a"],
        "",
    )
    .await;
    assert_eq!(invalid.status.code(), Some(1), "{}", stderr(&invalid));
    assert!(stderr(&invalid).contains("baseline.template"), "every problem with its path: {}", stderr(&invalid));
    let usage = phoenix(dir, &["experiment", "create", "--name", "x"], "").await;
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
}

#[actix_web::test]
async fn deployments_and_pipelines_from_the_terminal() {
    let (app, _admin) = server(|_| {}).await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path();
    log_in(dir, &app.url(""), "admin", &[]).await;

    let created = phoenix(
        dir,
        &[
            "deployment",
            "create",
            "--name",
            "edge",
            "--template",
            "topk",
            "--param",
            "k=3",
            "--target",
            "env=none",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let id = json_of(&created)["id"].as_str().expect("id").to_string();
    let updated =
        phoenix(dir, &["deployment", "update", &id, "--template", "topk", "--param", "k=4", "-o", "json"], "").await;
    assert_eq!(json_of(&updated)["new_version"], 2, "{}", stderr(&updated));
    let diff = phoenix(dir, &["deployment", "diff", &id, "2", "--against", "1"], "").await;
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+    k: 4"), "{}", String::from_utf8_lossy(&diff.stdout));
    let rolled = phoenix(dir, &["deployment", "rollback", &id, "--yes", "-o", "json"], "").await;
    assert_eq!(json_of(&rolled)["current_version"], 3, "{}", stderr(&rolled));
    let versions = phoenix(dir, &["deployment", "versions", &id, "-o", "json"], "").await;
    let statuses: Vec<String> = json_of(&versions)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| format!("{}:{}", v["version"], v["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(statuses, ["3:active", "2:rolled_back", "1:superseded"]);
    let watched = phoenix(dir, &["deployment", "watch", &id, "-o", "json"], "").await;
    assert_eq!(json_of(&watched)["status"], "active", "no agent matches: nothing to wait for; {}", stderr(&watched));
    let bad_rollback = phoenix(dir, &["deployment", "rollback", &id, "--to", "9", "--yes"], "").await;
    assert_eq!(bad_rollback.status.code(), Some(4), "{}", stderr(&bad_rollback));

    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "receivers: {synthetic: {processes: 0}}\nprocessors: {topk: {k: -1}}\nexporters: {}\nservice: {pipelines: {}}\n")
        .expect("write");
    let invalid = phoenix(dir, &["pipeline", "validate", broken.to_str().expect("utf-8")], "").await;
    assert_eq!(invalid.status.code(), Some(1), "{}", stderr(&invalid));
    let problems = stderr(&invalid);
    assert!(problems.matches("\n  ").count() >= 2, "every problem, each with its path: {problems}");
    let templates = phoenix(dir, &["pipeline", "templates", "-o", "json"], "").await;
    assert!(json_of(&templates)["items"].as_array().expect("items").iter().any(|t| t["name"] == "topk"));
    let preview = phoenix(
        dir,
        &["pipeline", "preview", "--baseline", "baseline", "--candidate", "topk", "--param", "k=10", "-o", "json"],
        "",
    )
    .await;
    let preview = json_of(&preview);
    assert_eq!(
        (preview["baseline"]["series"].as_f64(), preview["candidate"]["series"].as_f64()),
        (Some(5000.0), Some(55.0)),
        "1,000 processes x 5 metrics against top 10 + other for each"
    );
    let table = phoenix(dir, &["pipeline", "preview", "--baseline", "baseline", "--candidate", "topk"], "").await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("REDUCTION %") && table.contains("5000"), "{table}");
    let completion = phoenix(dir, &["completion", "bash"], "").await;
    assert!(String::from_utf8_lossy(&completion.stdout).contains("phoenix"), "a completion script");
}

#[actix_web::test]
async fn fleet_users_contexts_and_the_flag_form_of_create() {
    let (app, admin) = server(|_| {}).await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path();
    log_in(dir, &app.url(""), "admin", &["--context", "lab"]).await;
    let contexts = phoenix(dir, &["context", "list", "-o", "json"], "").await;
    assert_eq!(json_of(&contexts)["items"][0]["name"], "lab");
    let unknown = phoenix(dir, &["context", "use", "prod"], "").await;
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));

    let token =
        phoenix(dir, &["fleet", "token", "create", "--uses", "2", "--labels", "env=lab", "-o", "json"], "").await;
    assert!(json_of(&token)["token"].is_string(), "{}", stderr(&token));
    let agent = app.http_agent(&admin, "edge-1").await;
    let listed = phoenix(dir, &["fleet", "list", "-o", "json"], "").await;
    assert_eq!(json_of(&listed)["items"][0]["id"], json!(agent.id));
    let labelled = phoenix(dir, &["fleet", "label", &agent.id, "env=lab,rack=7", "-o", "json"], "").await;
    assert_eq!(json_of(&labelled)["labels"], json!({"env": "lab", "rack": "7"}));

    let bob = phoenix(dir, &["user", "create", "bob", "--role", "operator", "-o", "json"], "bobs-long-password").await;
    let bob = json_of(&bob);
    assert_eq!(bob["role"], "operator");
    let promoted =
        phoenix(dir, &["user", "set-role", bob["id"].as_str().expect("id"), "admin", "-o", "json"], "").await;
    assert_eq!(json_of(&promoted)["role"], "admin");

    // The audit log from the terminal: the role change just made, by its action, with an age filter.
    let audited = phoenix(dir, &["audit", "--action", "PATCH /api/v1/users", "--since", "10m", "-o", "json"], "").await;
    assert!(audited.status.success(), "{}", stderr(&audited));
    let entries = json_of(&audited)["items"].as_array().cloned().expect("items");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!((entries[0]["actor_name"].as_str(), entries[0]["target"].as_str()), (Some("admin"), bob["id"].as_str()));
    let table = phoenix(dir, &["audit", "--outcome", "succeeded"], "").await;
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("AT"), "{}", stderr(&table));

    let created = phoenix(
        dir,
        &[
            "experiment",
            "create",
            "--name",
            "flags",
            "--baseline",
            "baseline",
            "--candidate",
            "topk",
            "--param",
            "k=7",
            "--target",
            "env=lab",
            "--duration",
            "2m",
            "--warmup",
            "30s",
            "--critical",
            "nginx,postgres",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    let created = json_of(&created);
    assert_eq!(
        (
            created["duration_secs"].as_u64(),
            created["warmup_secs"].as_u64(),
            created["candidate"]["parameters"]["k"].as_i64()
        ),
        (Some(120), Some(30), Some(7))
    );
    assert_eq!(created["target"], json!({"selector": {"env": "lab"}}));
    assert_eq!(created["critical_processes"], json!(["nginx", "postgres"]));

    let rendered = phoenix(dir, &["pipeline", "render", "topk", "--param", "k=2"], "").await;
    assert!(
        String::from_utf8_lossy(&rendered.stdout).contains("k: 2"),
        "{}",
        String::from_utf8_lossy(&rendered.stdout)
    );
    let template = phoenix(dir, &["pipeline", "template", "topk", "-o", "json"], "").await;
    assert_eq!(json_of(&template)["name"], "topk");

    let bob_id = bob["id"].as_str().expect("id");
    let bob_dir = tempfile::tempdir().expect("bob's config dir");
    let bob_login = ["login", "--server", &app.url(""), "--username", "bob", "--password-stdin"];
    let bob_in = phoenix(bob_dir.path(), &bob_login, "bobs-long-password").await;
    assert!(bob_in.status.success(), "{}", stderr(&bob_in));
    let unconfirmed = phoenix(dir, &["user", "deactivate", bob_id], "").await;
    assert_eq!(unconfirmed.status.code(), Some(2), "no terminal, no --yes: {}", stderr(&unconfirmed));
    let deactivated = phoenix(dir, &["user", "deactivate", bob_id, "--yes", "-o", "json"], "").await;
    assert_eq!(json_of(&deactivated)["active"], false, "{}", stderr(&deactivated));
    let bobs_session = phoenix(bob_dir.path(), &["whoami"], "").await;
    assert_eq!(bobs_session.status.code(), Some(5), "his session ended at once: {}", stderr(&bobs_session));
    let bob_again = phoenix(bob_dir.path(), &bob_login, "bobs-long-password").await;
    assert_eq!(bob_again.status.code(), Some(5), "nor can he log in again: {}", stderr(&bob_again));

    let decommissioned = phoenix(dir, &["fleet", "decommission", &agent.id, "--yes"], "").await;
    assert!(decommissioned.status.success(), "{}", stderr(&decommissioned));
    let gone = phoenix(dir, &["fleet", "show", &agent.id], "").await;
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    assert!(stderr(&gone).contains(&agent.id), "the message names the agent: {}", stderr(&gone));
}

#[actix_web::test]
async fn deployment_watch_follows_a_rollout_in_waves_until_it_settles() {
    let (app, admin) = server(|settings| {
        settings.deployments.reconcile_interval_ms = 200;
        // Sessions last a second: the watch outlives its access token and must renew it by itself.
        settings.auth.access_token_ttl_secs = 1;
    })
    .await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path().to_path_buf();
    log_in(&dir, &app.url(""), "admin", &[]).await;
    let agents = [app.http_agent(&admin, "edge-1").await, app.http_agent(&admin, "edge-2").await];
    for agent in &agents {
        agent.heartbeat("healthy").await;
        let labelled = phoenix(&dir, &["fleet", "label", &agent.id, "env=lab"], "").await;
        assert!(labelled.status.success(), "{}", stderr(&labelled));
    }

    let create = [
        "deployment",
        "create",
        "--name",
        "waves",
        "--template",
        "topk",
        "--param",
        "k=3",
        "--target",
        "env=lab",
        "--waves",
        "1,2,1,0",
        "-o",
        "json",
    ];
    let created = phoenix(&dir, &create, "").await;
    let created = json_of(&created);
    assert_eq!(created["status"], "rolling_out");
    let id = created["id"].as_str().expect("id").to_string();
    let watcher = {
        let (dir, id) = (dir.clone(), id.clone());
        tokio::spawn(async move { phoenix(&dir, &["deployment", "watch", &id, "--verbose"], "").await })
    };
    wait_for_live_sessions(&app, 1).await;
    // Let its access token (1 s) expire under it before the rollout goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut applied = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !watcher.is_finished() && tokio::time::Instant::now() < deadline {
        for agent in &agents {
            applied += answer_tasks(agent, json!({"status": "succeeded"})).await;
        }
    }
    let watched = tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("watch ends").expect("join");
    assert!(watched.status.success(), "{}", stderr(&watched));
    assert_eq!(applied, 2, "one apply per agent, in two waves");
    let progress = stderr(&watched);
    assert!(progress.contains("live connection renewed"), "the watch renewed its expired session: {progress}");
    assert!(progress.contains("v1 rolling_out"), "it followed the rollout while under way: {progress}");
    // Waves come from the stored history: wave 1 is shown even if it started before the watch
    // subscribed, wave 2 even if it was announced while the watch renewed its connection.
    assert!(progress.contains("wave 1: 1 agent(s)") && progress.contains("wave 2: 1 agent(s)"), "{progress}");
    let detail = String::from_utf8_lossy(&watched.stdout);
    let field = |name: &str| detail.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_string());
    assert_eq!((field("NAME"), field("STATUS")), (Some("waves".into()), Some("active".into())), "{detail}");
}

#[actix_web::test]
async fn the_server_flag_beats_phoenix_server_which_beats_the_saved_context() {
    let (app, admin) = server(|_| {}).await;
    let config = tempfile::tempdir().expect("config dir");
    let dir = config.path();
    let url = app.url("");
    let whoami = ["whoami", "-o", "json"];

    let scripted = phoenix_with(dir, &whoami, "", &[("PHOENIX_SERVER", &url), ("PHOENIX_TOKEN", &admin)]).await;
    assert_eq!(json_of(&scripted)["username"], "admin", "no file needed: {}", stderr(&scripted));
    assert!(!dir.join("phoenix").join("credentials.json").exists(), "and none is written");

    log_in(dir, &url, "admin", &[]).await;
    let elsewhere = phoenix_with(dir, &whoami, "", &[("PHOENIX_SERVER", "http://127.0.0.1:9")]).await;
    assert_eq!(elsewhere.status.code(), Some(6), "PHOENIX_SERVER beats the context: {}", stderr(&elsewhere));
    let flag = ["whoami", "-o", "json", "--server", &url];
    let flagged = phoenix_with(dir, &flag, "", &[("PHOENIX_SERVER", "http://127.0.0.1:9")]).await;
    assert_eq!(json_of(&flagged)["username"], "admin", "--server beats PHOENIX_SERVER: {}", stderr(&flagged));
    let forged = phoenix_with(dir, &whoami, "", &[("PHOENIX_TOKEN", "not-a-token")]).await;
    assert_eq!(forged.status.code(), Some(5), "PHOENIX_TOKEN beats the saved session: {}", stderr(&forged));
}
