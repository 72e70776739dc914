//! The pipelines API: templates, rendering, validation, user templates and a measured preview.

use phoenix::db::Backend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::{spawn_app, Env, TestApp};

async fn body(res: reqwest::Response) -> Value {
    res.json().await.expect("JSON body")
}

async fn post(app: &TestApp, token: &str, path: &str, payload: Value) -> reqwest::Response {
    app.send_as(Method::POST, path, token, &payload).await
}

fn paths(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn the_builtin_templates_are_listed_with_their_parameters_and_render(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let list = body(app.get_as("/api/v1/pipelines/templates", &admin).await).await;
    let names: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        ["baseline", "topk", "drop_attributes", "aggregate", "cardinality_limit", "adaptive_filter", "hybrid"]
    );
    let topk = body(app.get_as("/api/v1/pipelines/templates/topk", &admin).await).await;
    let k = topk["parameters"].as_array().expect("parameters").iter().find(|p| p["name"] == "k").expect("k").clone();
    assert_eq!((k["type"].as_str(), k["default"].as_i64()), (Some("integer"), Some(10)));
    assert!(topk["body"].as_str().is_some_and(|b| b.contains("{{ k }}")));
    assert_eq!(app.get_as("/api/v1/pipelines/templates/nope", &admin).await.status(), 404);

    let rendered =
        body(post(&app, &admin, "/api/v1/pipelines/render", json!({"template": "topk", "parameters": {"k": 5}})).await)
            .await;
    assert!(rendered["config"].as_str().is_some_and(|c| c.contains("k: 5")), "{rendered}");
    assert!(rendered["config_hash"].as_str().is_some_and(|h| h.starts_with("sha256:")));
    let again =
        body(post(&app, &admin, "/api/v1/pipelines/render", json!({"template": "topk", "parameters": {"k": 5}})).await)
            .await;
    assert_eq!(again["config_hash"], rendered["config_hash"], "rendering is deterministic");

    let bad = post(
        &app,
        &admin,
        "/api/v1/pipelines/render",
        json!({"template": "topk", "parameters": {"k": "ten", "kk": 1}}),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(paths(&body(bad).await), ["parameters.kk", "parameters.k"]);
    let zero =
        body(post(&app, &admin, "/api/v1/pipelines/render", json!({"template": "topk", "parameters": {"k": 0}})).await)
            .await;
    assert_eq!(paths(&zero), ["processors.topk.k"]);
}
each_backend!(the_builtin_templates_are_listed_with_their_parameters_and_render);

async fn validation_reports_every_problem_with_its_path_and_warnings(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let broken = "receivers: {synthetic: {profile: steady, processes: 0}}\nprocessors: {topk: {k: 0}, drop_labels/spare: {labels: [pid]}}\nexporters: {count: {}}\nservice: {pipelines: {metrics: {receivers: [synthetic], processors: [topk, foo], exporters: [count]}}}\n";
    let res = post(&app, &admin, "/api/v1/pipelines/validate", json!({"config": broken})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem = body(res).await;
    assert_eq!(
        paths(&problem),
        ["receivers.synthetic.processes", "processors.topk.k", "service.pipelines.metrics.processors[1]"]
    );
    assert_eq!(problem["warnings"][0]["path"], "processors.drop_labels/spare");

    let valid = "receivers: {process: {}}\nexporters: {count: {}}\nservice: {pipelines: {metrics: {receivers: [process], exporters: [count]}}}\n";
    let ok = body(post(&app, &admin, "/api/v1/pipelines/validate", json!({"config": valid})).await).await;
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["warnings"][0]["message"], "no processors: every series passes through");
    let from_template =
        body(post(&app, &admin, "/api/v1/pipelines/validate", json!({"template": "hybrid", "parameters": {}})).await)
            .await;
    assert_eq!(from_template["valid"], true);
}
each_backend!(validation_reports_every_problem_with_its_path_and_warnings);

async fn user_templates_are_validated_saved_and_rendered(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let viewer = app.user_with_role(&admin, "vera", "viewer").await;
    let body_text = "receivers: {synthetic: {profile: steady, processes: {{ n }}}}\nprocessors: {cardinality_limit: {max_series: {{ cap }}}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [synthetic], processors: [cardinality_limit], exporters: [count]}}}\n";
    let template = json!({"name": "capped", "description": "capped synthetic", "body": body_text,
        "parameters": [{"name": "n", "type": "integer", "default": 100}, {"name": "cap", "type": "integer"}]});
    assert_eq!(
        post(&app, &viewer, "/api/v1/pipelines/templates", template.clone()).await.status(),
        403,
        "viewers read only"
    );
    assert_eq!(post(&app, &admin, "/api/v1/pipelines/templates", template.clone()).await.status(), 201);
    assert_eq!(
        post(&app, &admin, "/api/v1/pipelines/templates", template.clone()).await.status(),
        409,
        "names are unique"
    );
    let mut shadow = template.clone();
    shadow["name"] = json!("topk");
    assert_eq!(
        post(&app, &admin, "/api/v1/pipelines/templates", shadow).await.status(),
        409,
        "built-in names are taken"
    );
    let mut undefined = template.clone();
    undefined["name"] = json!("broken");
    undefined["body"] = json!(body_text.replace("{{ cap }}", "{{ nobody_declared_this }}"));
    let res = post(&app, &admin, "/api/v1/pipelines/templates", undefined).await;
    assert_eq!(res.status(), 422, "a template using an undeclared variable is refused");
    assert_eq!(paths(&body(res).await), ["template"]);

    let listed = body(app.get_as("/api/v1/pipelines/templates", &viewer).await).await;
    assert!(listed["items"].as_array().expect("items").iter().any(|t| t["name"] == "capped" && t["builtin"] == false));
    let missing = post(&app, &admin, "/api/v1/pipelines/render", json!({"template": "capped"})).await;
    assert_eq!(paths(&body(missing).await), ["parameters.cap"], "a parameter without default is required");
    let rendered = body(
        post(&app, &admin, "/api/v1/pipelines/render", json!({"template": "capped", "parameters": {"cap": 7}})).await,
    )
    .await;
    assert!(
        rendered["config"].as_str().is_some_and(|c| c.contains("max_series: 7") && c.contains("processes: 100")),
        "{rendered}"
    );
}
each_backend!(user_templates_are_validated_saved_and_rendered);

async fn preview_measures_what_topk_and_adaptive_filter_cut(backend: Backend) {
    let app = spawn_app(Env::local(backend)).await;
    let admin = app.bootstrap_admin().await;
    let source = json!({"synthetic": {"profile": "high_cardinality", "processes": 1000}});
    let request = json!({"baseline": {"template": "baseline"}, "candidate": {"template": "topk", "parameters": {"k": 10}}, "source": source, "intervals": 3});
    let res = post(&app, &admin, "/api/v1/pipelines/preview", request).await;
    assert_eq!(res.status(), 200);
    let preview = body(res).await;
    assert_eq!(preview["baseline"]["series"], 5000.0, "1,000 processes x 5 metrics");
    assert_eq!(preview["candidate"]["series"], 55.0, "top 10 + other, for each of 5 metrics");
    let reduction = preview["cardinality_reduction_pct"].as_f64().expect("reduction");
    assert!((reduction - 98.9).abs() < 1e-9, "{reduction}");
    assert_eq!(preview["baseline"]["points_per_sec"], 500.0, "5,000 points per 10 s interval");
    assert!(preview["candidate"]["cpu_seconds"].as_f64().is_some_and(|s| s > 0.0), "CPU is measured, not assumed");
    assert_eq!(preview["candidate"]["intervals"].as_array().map(Vec::len), Some(3));

    let adaptive = json!({"baseline": {"template": "baseline"}, "candidate": {"template": "adaptive_filter", "parameters": {"target_series": 50}},
        "source": {"synthetic": {"profile": "steady", "processes": 1000}}, "intervals": 5});
    let preview = body(post(&app, &admin, "/api/v1/pipelines/preview", adaptive).await).await;
    // CPU time only grows, so the ideal threshold drifts up every interval and the smoothed threshold
    // trails it a little: the first interval keeps exactly 50 processes, later ones a few more.
    let first = preview["candidate"]["intervals"][0]["output_series"].as_f64().expect("series");
    assert_eq!(first, 250.0, "50 processes x 5 metrics in the first interval");
    let series = preview["candidate"]["series"].as_f64().expect("series");
    assert!((250.0..=375.0).contains(&series), "tracks the target of 50 processes: {series}");

    let samples: Vec<Value> = (0..20)
        .map(|pid| json!({"metric": "process.cpu.time", "value": pid, "labels": {"pid": pid.to_string(), "executable": "app"}}))
        .collect();
    let uploaded = json!({"baseline": {"template": "baseline"}, "candidate": {"template": "topk", "parameters": {"k": 3}},
        "source": {"samples": samples}, "intervals": 2});
    let preview = body(post(&app, &admin, "/api/v1/pipelines/preview", uploaded).await).await;
    assert_eq!(
        (preview["baseline"]["series"].as_f64(), preview["candidate"]["series"].as_f64()),
        (Some(20.0), Some(4.0)),
        "{preview}"
    );

    let invalid = json!({"baseline": {"template": "nope"}, "candidate": {"config": "service: {pipelines: {}}"}, "source": source, "intervals": 99});
    let res = post(&app, &admin, "/api/v1/pipelines/preview", invalid).await;
    assert_eq!(res.status(), 422);
    assert_eq!(paths(&body(res).await), ["baseline.template"]);
}
each_backend!(preview_measures_what_topk_and_adaptive_filter_cut);
