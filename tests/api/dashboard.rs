//! The dashboard: its files as the server serves them, and end-to-end in a real headless Chromium against
//! the real server with real agents on the synthetic source — log in, create an experiment through the
//! form, start it and watch it change phase without a reload, see its KPIs, promote it, open the
//! deployment and roll it back; a viewer sees no actions, and a refusal (409) shows as a message.
//! Screenshots of every page visited: `target/tmp/dashboard/<test>/`.

use std::time::Duration;

use phoenix::db::Backend;
use reqwest::Method;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::helpers::{
    fast_server, spawn_with, test_settings, AgentProcess, Env, ServerProcess, TestApp, TestDb, PASSWORD,
};

#[actix_web::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().expect("policy").to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.expect("page").contains("/ui/app.js"));

    let script = app.get("/ui/app.js").await;
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    let unchanged = reqwest::Client::new().get(app.url("/")).header("if-none-match", etag).send().await.expect("GET");
    assert_eq!(unchanged.status(), 304, "an unchanged file is not sent again");

    for missing in ["/ui/no-such-file.js", "/ui/..%2FCargo.toml", "/ui/.hidden"] {
        let res = app.get(missing).await;
        assert_eq!(res.status(), 404, "{missing}");
        assert_eq!(res.headers()["content-type"], "application/problem+json", "{missing}");
    }
}

#[actix_web::test]
async fn from_a_folder_only_files_inside_it_are_served() {
    let root = tempfile::tempdir().expect("temp dir");
    let ui = root.path().join("ui");
    std::fs::create_dir_all(&ui).expect("ui folder");
    std::fs::write(ui.join("index.html"), "<p>from the folder</p>").expect("write");
    std::fs::write(ui.join("app.js"), "export const fromTheFolder = true;").expect("write");
    std::fs::write(ui.join(".hidden"), "hidden").expect("write");
    std::fs::write(root.path().join("secret"), "outside the folder").expect("write");
    let env = Env::SqliteLocal;
    let db = TestDb::new(Backend::Sqlite);
    let mut settings = test_settings(env, &db);
    settings.server.dashboard_dir = Some(ui);
    let app = spawn_with(env, db, settings).await;

    assert_eq!(app.get("/").await.text().await.expect("page"), "<p>from the folder</p>");
    assert!(app.get("/ui/app.js").await.text().await.expect("script").contains("fromTheFolder"));
    for escape in
        ["/ui/..%2Fsecret", "/ui/%2e%2e/secret", "/ui/a%2F..%2F..%2Fsecret", "/ui/.hidden", "/ui/%2Fetc%2Fpasswd"]
    {
        let res = app.get(escape).await;
        assert_eq!(res.status(), 404, "{escape}");
        assert!(!res.text().await.expect("body").contains("outside the folder"), "{escape}");
    }
}

#[actix_web::test]
async fn the_overview_counts_agents_experiments_and_deployments() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    let empty: Value = app.get_as("/api/v1/overview", &admin).await.json().await.expect("JSON");
    assert_eq!(empty["agents"], json!({}));
    assert_eq!(empty["savings"]["promoted_experiments"], 0);
    assert_eq!(empty["savings"]["currency"], "USD");

    let agent = app.http_agent(&admin, "edge-1").await;
    app.http_agent(&admin, "edge-2").await;
    let experiment = json!({
        "name": "counted", "baseline": {"template": "baseline"}, "candidate": {"template": "topk"},
        "target": {"agents": [agent.id]}, "duration_secs": 600,
    });
    let res = app.send_as(Method::POST, "/api/v1/experiments", &admin, &experiment).await;
    assert_eq!(res.status(), 201);
    let deployment =
        json!({"name": "nowhere", "pipeline": {"template": "baseline"}, "target": {"selector": {"env": "none"}}});
    let res = app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &deployment).await;
    assert_eq!(res.status(), 201);

    let viewer = app.user_with_role(&admin, "watcher", "viewer").await;
    let overview: Value = app.get_as("/api/v1/overview", &viewer).await.json().await.expect("JSON");
    assert_eq!(overview["agents"], json!({"online": 2}), "enrolled agents start online: {overview}");
    assert_eq!(overview["experiments"], json!({"pending": 1}));
    assert_eq!(
        overview["deployments"]["active"].as_u64().unwrap_or(0)
            + overview["deployments"]["rolling_out"].as_u64().unwrap_or(0),
        1,
        "{overview}"
    );
    assert_eq!(app.get("/api/v1/overview").await.status(), 401);
}

/// A server whose agents measure every second, with two real agents on the synthetic source.
async fn server_with_agents() -> (TestApp, String, Vec<AgentProcess>, Vec<tempfile::TempDir>) {
    let (app, admin) = fast_server(Backend::Sqlite, |settings| settings.agents.offline_after_secs = Some(600)).await;
    let (mut agents, mut dirs) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let token = app.enrollment_token(&admin).await;
        let dir = tempfile::tempdir().expect("state dir");
        agents.push(AgentProcess::start(&app.url(""), dir.path(), Some(&token)));
        dirs.push(dir);
    }
    (app, admin, agents, dirs)
}

/// Logs in through the login page and waits for the header to show who it is.
async fn log_in(browser: &mut Browser, app: &TestApp, username: &str) {
    log_in_at(browser, &app.url("/"), username).await;
}

async fn log_in_at(browser: &mut Browser, page: &str, username: &str) {
    browser.goto(page).await;
    browser.type_into("#login-username", username).await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.screenshot("login").await;
    browser.click("#login-submit").await;
    browser.wait_text("#user-name", &format!("name {username}"), |t| t == username).await;
}

#[actix_web::test]
async fn an_operator_runs_an_experiment_from_the_browser_and_rolls_its_deployment_back() {
    let (app, admin, _agents, _dirs) = server_with_agents().await;
    // A deployment of the baseline exists (on no agent here): promoting into it makes the candidate its
    // version 2, so there is a version to roll back to.
    let fleet = json!({"name": "edge", "pipeline": {"template": "baseline", "parameters": {"source": "synthetic"}}, "target": {"selector": {"env": "none"}}});
    let res = app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &fleet).await;
    assert_eq!(res.status(), 201);
    let mut browser = Browser::start("operator_flow", 1280, 900).await;

    log_in(&mut browser, &app, "admin").await;
    assert_eq!(browser.text("#user-role").await, "admin");
    browser.wait_text("[data-stat=\"agents.online\"]", "count 2 agents online", |t| t == "2").await;
    browser.screenshot("overview").await;

    browser.click("a[href=\"#/experiments\"]").await;
    browser.click("#new-experiment").await;
    browser.type_into("#exp-name", "topk-in-the-browser").await;
    browser.choose("#exp-baseline", "baseline").await;
    browser.choose("#exp-candidate", "topk").await;
    for variant in ["baseline", "candidate"] {
        browser.type_into(&format!("input[name=\"{variant}.source\"]"), "synthetic").await;
        browser.type_into(&format!("input[name=\"{variant}.processes\"]"), "200").await;
    }
    browser.type_into("input[name=\"candidate.k\"]", "5").await;
    browser.type_into("#exp-target", "env=test").await;
    browser.wait_text("#target-count", "count the 2 matching agents", |t| t.contains('2')).await;
    browser.type_into("#exp-duration", "1").await;
    browser.type_into("#exp-warmup", "0").await;
    browser.click("#exp-submit").await;
    browser
        .wait_text("[data-error-for=\"duration_secs\"]", "say the window is too short", |t| t.contains("at least 3"))
        .await;
    browser.screenshot("form-with-a-problem").await;
    browser.type_into("#exp-duration", "8").await;
    browser.click("#exp-submit").await;

    browser.wait_text("#exp-phase", "read pending", |t| t == "pending").await;
    // A mark on the page: it survives only if the page never reloads.
    browser.run("window.__stillTheSamePage = true;", json!([])).await;
    browser.screenshot("experiment-pending").await;
    browser.click("#action-start").await;
    browser.wait_text("#exp-phase", "become running", |t| t == "running").await;
    browser.wait_count("#chart-series svg path[data-variant=\"candidate\"]", 1).await;
    browser.screenshot("experiment-running").await;
    browser.wait_text("#exp-phase", "become completed", |t| t == "completed").await;
    let verdict = browser.wait_text("#verdict", "show a verdict", |t| !t.is_empty()).await;
    // The verdict rests on measured CPU too, which a loaded machine makes noisy: any verdict will do.
    assert!(["pass", "marginal", "fail"].iter().any(|v| verdict.to_lowercase().contains(v)), "{verdict}");
    browser.wait_count("#kpi-table tr", 3).await;
    // Metric by metric too: the synthetic processes' five metrics.
    browser.wait_count("#per-metric-table tbody tr", 5).await;
    browser.wait_count("#phase-timeline li", 4).await;
    assert_eq!(browser.run("return window.__stillTheSamePage === true;", json!([])).await, json!(true), "no reload");
    assert!(!browser.enabled("#action-start").await, "a completed experiment cannot start again");
    browser.screenshot("experiment-completed").await;

    let id = browser.run("return document.querySelector('#experiment-detail').dataset.id;", json!([])).await;
    let id = id.as_str().expect("experiment id").to_string();
    browser.click("#action-promote").await;
    browser.find("#promote-dialog").await;
    browser.choose("#promote-deployment", &deployment_id(&app, &admin, "edge").await).await;
    browser.screenshot("promote").await;
    browser.click("#promote-confirm").await;
    browser.wait_text("#exp-phase", "become promoted", |t| t == "promoted").await;

    browser.click("#deployment-link").await;
    browser.wait_text("#dep-version", "show version 2", |t| t.contains('2')).await;
    browser.wait_count("#versions-table tr[data-version]", 2).await;
    browser.screenshot("deployment").await;
    browser.click("#action-rollback").await;
    browser.click("#confirm-yes").await;
    browser.wait_text("#dep-version", "show version 3", |t| t.contains('3')).await;
    browser.wait_count("#versions-table tr[data-version]", 3).await;
    browser.screenshot("rolled-back").await;
    browser.choose("#diff-from", "1").await;
    browser.choose("#diff-to", "2").await;
    browser.wait_text("#diff-output", "show what v2 changed (the topk processor)", |t| t.contains("topk")).await;
    browser.click("#action-pause").await;
    browser.wait_text("#dep-status", "become paused", |t| t.contains("paused")).await;
    browser.click("#action-resume").await;
    browser.wait_text("#dep-status", "become active again", |t| t.contains("active")).await;
    browser.screenshot("diff-and-resumed").await;

    browser.click("a[href=\"#/fleet\"]").await;
    browser.wait_count("#agents-table tr[data-id]", 2).await;
    browser.type_into("#label-filter", "env=nowhere").await;
    browser.wait_text("#agents-table", "list no agent labelled env=nowhere", |t| !t.contains("online")).await;
    browser.type_into("#label-filter", "env=test").await;
    browser.wait_count("#agents-table tr[data-id] [data-field=\"state\"]", 2).await;
    browser.screenshot("fleet").await;

    let experiment: Value =
        app.get_as(&format!("/api/v1/experiments/{id}"), &admin).await.json().await.expect("experiment");
    assert_eq!(experiment["phase"], "promoted");
    let edge = deployment_id(&app, &admin, "edge").await;
    let versions: Value = app
        .get_as(&format!("/api/v1/pipelines/deployments/{edge}/versions"), &admin)
        .await
        .json()
        .await
        .expect("versions");
    assert_eq!(versions["items"][0]["config"], versions["items"][2]["config"], "version 3 is version 1 again");
    assert_eq!(versions["items"][1]["config"], experiment["candidate_config"], "version 2 was the candidate");
    assert_eq!(browser.console_errors().await, Vec::<String>::new(), "the page logged no errors");
    browser.quit().await;
}

async fn deployment_id(app: &TestApp, token: &str, name: &str) -> String {
    let list: Value = app.get_as("/api/v1/pipelines/deployments", token).await.json().await.expect("deployments");
    let found = list["items"].as_array().expect("items").iter().find(|d| d["name"] == name);
    found.and_then(|d| d["id"].as_str()).unwrap_or_else(|| panic!("no deployment {name}: {list}")).to_string()
}

#[actix_web::test]
async fn a_viewer_sees_no_actions_and_a_refusal_reads_as_a_message() {
    let app = crate::helpers::spawn_app(Env::SqliteLocal).await;
    let admin = app.bootstrap_admin().await;
    app.user_with_role(&admin, "watcher", "viewer").await;
    let agent = app.http_agent(&admin, "edge-1").await;
    let experiment = json!({
        "name": "looked-at", "baseline": {"template": "baseline"}, "candidate": {"template": "topk"},
        "target": {"agents": [agent.id]}, "duration_secs": 600,
    });
    let created: Value =
        app.send_as(Method::POST, "/api/v1/experiments", &admin, &experiment).await.json().await.expect("created");
    let id = created["id"].as_str().expect("id");
    let single =
        json!({"name": "only-v1", "pipeline": {"template": "baseline"}, "target": {"selector": {"env": "none"}}});
    let deployment: Value = app
        .send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &single)
        .await
        .json()
        .await
        .expect("created");
    let deployment = deployment["id"].as_str().expect("id");

    let mut browser = Browser::start("viewer_and_refusal", 1280, 900).await;
    log_in(&mut browser, &app, "watcher").await;
    assert_eq!(browser.text("#user-role").await, "viewer");
    // The overview is live: an experiment created elsewhere appears among the recent events.
    let before = browser.wait_count("#recent-events li", 1).await;
    let another = json!({
        "name": "created-elsewhere", "baseline": {"template": "baseline"}, "candidate": {"template": "topk"},
        "target": {"agents": [agent.id]}, "duration_secs": 600,
    });
    assert_eq!(app.send_as(Method::POST, "/api/v1/experiments", &admin, &another).await.status(), 201);
    browser.wait_text("#recent-events", "mention the new experiment", |t| t.contains("created-elsewhere")).await;
    assert!(browser.wait_count("#recent-events li", before + 1).await > before);
    // A reload keeps the session (the refresh token is in the tab's storage).
    browser.goto(&app.url("/#/experiments")).await;
    browser.run("window.__beforeTheReload = true; location.reload();", json!([])).await;
    let reloaded = "return window.__beforeTheReload === undefined && document.readyState === 'complete';";
    crate::helpers::eventually("the page to reload", async || {
        (browser.run(reloaded, json!([])).await == json!(true)).then_some(())
    })
    .await;
    browser.wait_text("#user-name", "still name the viewer after a reload", |t| t == "watcher").await;
    browser.find("#experiments-table").await;
    assert!(!browser.visible("#new-experiment").await, "a viewer cannot create experiments");
    browser.goto(&app.url(&format!("/#/experiments/{id}"))).await;
    browser.wait_text("#exp-phase", "read pending", |t| t == "pending").await;
    for action in ["#action-start", "#action-stop", "#action-promote", "#action-rollback"] {
        assert!(!browser.visible(action).await, "a viewer sees no {action}");
    }
    browser.screenshot("viewer-experiment").await;
    browser.goto(&app.url(&format!("/#/deployments/{deployment}"))).await;
    browser.wait_text("#dep-status", "show its status", |t| !t.is_empty()).await;
    for action in ["#action-rollback", "#action-pause", "#action-resume"] {
        assert!(!browser.visible(action).await, "a viewer sees no {action}");
    }
    browser.click("#logout").await;
    browser.find("#login-username").await;

    // An admin's rollback of a deployment that has nothing to roll back to: the API's 409, in words.
    log_in(&mut browser, &app, "admin").await;
    browser.goto(&app.url(&format!("/#/deployments/{deployment}"))).await;
    browser.click("#action-rollback").await;
    browser.click("#confirm-yes").await;
    let message = browser.wait_text("#message", "explain the refusal", |t| !t.is_empty()).await;
    assert!(!message.contains('{'), "a sentence, not JSON: {message}");
    let kind = browser.run("return document.querySelector('#message').dataset.kind;", json!([])).await;
    assert_eq!(kind, json!("error"), "{message}");
    browser.screenshot("refusal").await;

    browser.quit().await;

    // On a narrow screen the pages fit its width (wide tables scroll inside themselves).
    let mut narrow = Browser::start("viewer_and_refusal_narrow", 400, 800).await;
    // With the keyboard only: Enter in the password field submits the form.
    narrow.goto(&app.url("/")).await;
    narrow.type_into("#login-username", "admin").await;
    narrow.type_into("#login-password", &format!("{PASSWORD}\u{E007}")).await;
    narrow.wait_text("#user-name", "name the admin after Enter", |t| t == "admin").await;
    // Each page with the element that proves it is the one shown (a hash change keeps the old page
    // until the new one renders).
    let pages = [
        ("overview", "#/".to_string(), "#overview"),
        ("experiments", "#/experiments".into(), "#experiments-table"),
        ("experiment", format!("#/experiments/{id}"), "#experiment-detail"),
        ("deployment", format!("#/deployments/{deployment}"), "#deployment-detail"),
    ];
    for (name, page, shown) in pages {
        narrow.goto(&app.url(&format!("/{page}"))).await;
        narrow.find(shown).await;
        let width = narrow.run("return window.innerWidth;", json!([])).await;
        assert_eq!(width, json!(400), "the screen is a phone's");
        let overflow = narrow.run("return document.documentElement.scrollWidth - window.innerWidth;", json!([])).await;
        assert!(overflow.as_i64().unwrap_or(1) <= 0, "{page} is wider than the screen by {overflow} px");
        narrow.screenshot(&format!("narrow-{name}")).await;
    }
    narrow.quit().await;
}

/// The server dies under an open page: a banner says the connection is lost; when the server is back
/// the page reconnects by itself, says so, and live updates flow again without a reload.
#[actix_web::test]
async fn a_lost_connection_shows_a_banner_and_live_updates_resume_when_the_server_is_back() {
    let db = TestDb::new(Backend::Sqlite);
    let addr = crate::helpers::free_local_addr();
    let env =
        [("PHOENIX_AUTH__JWT_SECRET", crate::helpers::TEST_JWT_SECRET), ("RUST_LOG", "warn,phoenix::server=info")];
    let mut first = ServerProcess::start_on(&db, &addr, &env);
    let admin = first.bootstrap_admin().await;
    create_experiment_at(&first.url(""), &admin, "before").await;

    let mut browser = Browser::start("connection_lost", 1280, 900).await;
    log_in_at(&mut browser, &first.url("/"), "admin").await;
    browser.goto(&first.url("/#/experiments")).await;
    browser.wait_count("#experiments-table tr[data-id]", 1).await;
    browser.run("window.__stillTheSamePage = true;", json!([])).await;

    first.kill();
    browser.wait_text("#connection-banner", "say the connection is lost", |t| t.contains("lost")).await;
    browser.screenshot("connection-lost").await;
    let second = ServerProcess::start_on(&db, &addr, &env);
    let back = Duration::from_secs(45);
    browser.wait_text_for(back, "#connection-banner", "say it is connected again", |t| t.contains("again")).await;
    browser.screenshot("connected-again").await;

    create_experiment_at(&second.url(""), &admin, "after").await;
    browser
        .wait_text("#experiments-table", "list the experiment created after the restart", |t| t.contains("after"))
        .await;
    assert_eq!(browser.run("return window.__stillTheSamePage === true;", json!([])).await, json!(true), "no reload");
    browser.quit().await;
}

/// Creates a pending experiment through the server at `base` (a separate process here).
async fn create_experiment_at(base: &str, token: &str, name: &str) {
    let body = json!({
        "name": name, "baseline": {"template": "baseline"}, "candidate": {"template": "topk"},
        "target": {"agents": ["edge-1"]}, "duration_secs": 600,
    });
    let client = crate::helpers::http_client();
    let res = client.post(format!("{base}/api/v1/experiments")).bearer_auth(token).json(&body).send().await;
    assert_eq!(res.expect("create").status(), 201, "create {name}");
}
