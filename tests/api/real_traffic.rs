//! The real `phoenix agent` on the real data path: the OpenTelemetry Python SDK sends over OTLP/gRPC
//! into a pipeline the server applied to the agent, the agent cuts `user_id` away and remote-writes
//! into a real Prometheus. Prometheus holds exactly the series and totals the cut should leave, the
//! series Phoenix measured are the series Prometheus holds, and the agent's own metrics endpoint says
//! what it took in and sent.

use diesel::dsl::max;
use diesel::prelude::*;
use phoenix::db::schema::metric_samples;
use phoenix::db::{establish, Backend};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    eventually, eventually_within, http_client, spawn_with, test_settings, AgentProcess, Env, TestApp, TestDb,
};
use crate::telemetry_support::{free_port, send_with_the_sdk, send_with_the_sdk_for, Prometheus, ROUTES, USERS};

/// The most a pipeline's measurement said of `metric` so far.
fn highest_sample(db: &TestDb, pipeline: &str, metric: &str) -> Option<f64> {
    metric_samples::table
        .filter(metric_samples::pipeline.eq(pipeline))
        .filter(metric_samples::metric.eq(metric))
        .select(max(metric_samples::value))
        .first::<Option<f64>>(&mut establish(&db.url).ok()?)
        .ok()
        .flatten()
}

/// A sample's value in a Prometheus text exposition (a time may follow it).
fn exposed(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.split_whitespace().next()?.parse().ok())
}

/// The real agent binary, enrolled and online, serving its own metrics on `metrics_listen`; with its
/// id (and its state directory, kept as long as it runs).
async fn online_agent(app: &TestApp, admin: &str, metrics_listen: &str) -> (AgentProcess, tempfile::TempDir, String) {
    let token = app.enrollment_token(admin).await;
    let state = tempfile::tempdir().expect("state dir");
    let agent =
        AgentProcess::start_with(&app.url(""), state.path(), Some(&token), &["--metrics-listen", metrics_listen]);
    let agent_id = eventually("the agent online", async || {
        let list: Value = app.get_as("/api/v1/agents?state=online", admin).await.json().await.ok()?;
        list["items"].as_array()?.first()?["id"].as_str().map(str::to_string)
    })
    .await;
    (agent, state, agent_id)
}

#[actix_web::test]
async fn sdk_traffic_through_a_real_agent_reaches_prometheus_cut_as_measured() {
    let env = Env::local(Backend::Sqlite);
    let db = TestDb::new(Backend::Sqlite);
    let mut settings = test_settings(env, &db);
    settings.agents.heartbeat_interval_secs = 1;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let (_agent, _state, agent_id) = online_agent(&app, &admin, &metrics_listen).await;

    let backend = Prometheus::backend().await;
    let (otlp_port, otlp_http_port) = (free_port(), free_port());
    let config = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: '127.0.0.1:{otlp_port}'}}, http: {{endpoint: '127.0.0.1:{otlp_http_port}'}}}}}}}}\n\
         processors: {{aggregate: {{labels: [user_id]}}}}\n\
         exporters: {{prometheusremotewrite: {{endpoint: '{}'}}}}\n\
         service: {{pipelines: {{metrics: {{receivers: [otlp], processors: [aggregate], exporters: [prometheusremotewrite]}}}}}}\n",
        backend.write_url()
    );
    let task = app
        .enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "shop", "config": config}}))
        .await;
    let task_id = task["id"].as_str().expect("task id").to_string();
    eventually("the apply to succeed", async || {
        let task: Value = app.get_as(&format!("/api/v1/tasks/{task_id}"), &admin).await.json().await.ok()?;
        (task["status"] == "succeeded").then_some(())
    })
    .await;

    send_with_the_sdk("grpc", &format!("http://127.0.0.1:{otlp_port}"), "shop").await;
    let requests = eventually_within("the cut series in Prometheus", 60, async || {
        let count = backend.number("count(shop_requests_total{job=\"shop\"})").await?;
        (count == ROUTES as f64).then_some(count)
    })
    .await;
    let expected_total = ((0..USERS).map(|u| u % 7 + 1).sum::<u64>() * ROUTES) as f64;
    assert_eq!(backend.number("sum(shop_requests_total{job=\"shop\"})").await, Some(expected_total));
    let held = backend
        .number("count({job=\"shop\", __name__=~\"shop_requests_total|shop_latency_count|shop_queue_depth\"})")
        .await;
    assert_eq!(held, Some(3.0 * requests), "a counter, a histogram and a gauge per route");

    // Phoenix's own measurement of the interval that carried the traffic: the series Prometheus holds.
    let measured = eventually("the interval's measurement", async || {
        highest_sample(&app.db, "shop", "pipeline.output.series").filter(|&n| n > 0.0)
    })
    .await;
    assert_eq!(Some(measured), held);
    assert_eq!(highest_sample(&app.db, "shop", "pipeline.input.series"), Some((3 * USERS * ROUTES) as f64));

    // The agent's own endpoint: every point the SDK sent taken, the cut delivered, nothing queued.
    let client = http_client();
    let mut last = String::new();
    let sent = r#"phoenix_agent_exporter_sent_points_total{exporter="prometheusremotewrite",pipeline="shop"}"#;
    for _ in 0..150 {
        let answer = client.get(format!("http://{metrics_listen}/metrics")).send().await;
        last = match answer {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(e) => format!("no answer: {e}"),
        };
        if exposed(&last, sent).is_some_and(|n| n > 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(exposed(&last, sent).is_some_and(|n| n > 0.0), "the agent's metrics show the delivery:\n{last}");
    let text = last;
    let accepted = r#"phoenix_agent_receiver_accepted_points_total{pipeline="shop",receiver="otlp"}"#;
    // The SDK exports at its flush and again at shutdown (cumulative: the same values twice).
    let sent_by_the_sdk = (3 * USERS * ROUTES) as f64;
    let taken = exposed(&text, accepted).unwrap_or_default();
    assert!(taken >= sent_by_the_sdk && taken % sent_by_the_sdk == 0.0, "{taken} points taken:\n{text}");
    let depth = r#"phoenix_agent_exporter_queue_depth{exporter="prometheusremotewrite",pipeline="shop"}"#;
    assert_eq!(exposed(&text, depth), Some(0.0), "{text}");
    let dropped = r#"phoenix_agent_exporter_dropped_points_total{exporter="prometheusremotewrite",pipeline="shop"}"#;
    assert_eq!(exposed(&text, dropped), Some(0.0), "{text}");

    // The same agent over OTLP/HTTP: cut alike.
    send_with_the_sdk("http", &format!("http://127.0.0.1:{otlp_http_port}"), "shop-http").await;
    eventually_within("the cut series sent over HTTP in Prometheus", 60, async || {
        let count = backend.number("count(shop_requests_total{job=\"shop-http\"})").await?;
        (count == ROUTES as f64).then_some(())
    })
    .await;
    assert_eq!(backend.number("sum(shop_requests_total{job=\"shop-http\"})").await, Some(expected_total));
}

/// An agent's pipelines by name, as its heartbeat says.
async fn pipelines_on(app: &TestApp, admin: &str, agent_id: &str) -> Vec<String> {
    let agent: Value = app.get_as(&format!("/api/v1/agents/{agent_id}"), admin).await.json().await.unwrap_or_default();
    let names = agent["pipelines"].as_array().cloned().unwrap_or_default();
    names.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect()
}

#[actix_web::test]
async fn an_experiment_on_sdk_traffic_shadows_the_candidate_until_it_is_promoted() {
    let (app, admin) =
        crate::helpers::fast_server(Backend::Sqlite, |s| s.experiments.removal_sweep_interval_secs = 1).await;
    let (_agent, _state, agent_id) = online_agent(&app, &admin, "off").await;
    let backend = Prometheus::backend().await;
    let otlp_port = free_port();
    let otlp = format!("http://127.0.0.1:{otlp_port}");
    // One receiver in both configs, alike: the agent runs it once and feeds both variants.
    let config = |processors: &str, chain: &str| {
        format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: '127.0.0.1:{otlp_port}'}}}}}}}}\n\
             processors: {processors}\n\
             exporters: {{prometheusremotewrite: {{endpoint: '{}'}}}}\n\
             service: {{pipelines: {{metrics: {{receivers: [otlp], processors: [{chain}], exporters: [prometheusremotewrite]}}}}}}\n",
            backend.write_url()
        )
    };
    let body = json!({
        "name": "cut user_id",
        "baseline": {"config": config("{}", "")},
        "candidate": {"config": config("{aggregate: {labels: [user_id]}}", "aggregate")},
        "target": {"selector": {"env": "test"}},
        "warmup_secs": 1,
        "duration_secs": 6,
        // One series that must come through exactly: the candidate merges it away (user_id goes).
        "critical_processes": ["shop.requests{route=\"/r1\", user_id=\"u1\"}"],
        "success_criteria": {"min_cardinality_reduction_pct": 50, "max_cpu_overhead_pct": 1_000_000, "min_accuracy_pct": 0},
    });
    let mut unparsable = body.clone();
    unparsable["critical_processes"] = json!(["shop.requests{route=/r1}"]);
    let refused = app.send_as(Method::POST, "/api/v1/experiments", &admin, &unparsable).await;
    assert_eq!(refused.status(), 422, "a selector that does not parse");
    let created = app.send_as(Method::POST, "/api/v1/experiments", &admin, &body).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("experiment");
    assert_eq!(created["shadow"], true, "the candidate runs in shadow by default");
    let id = created["id"].as_str().expect("id").to_string();
    let experiment = format!("/api/v1/experiments/{id}");
    assert_eq!(app.send_as(Method::POST, &format!("{experiment}/start"), &admin, &json!({})).await.status(), 200);
    let phase = async |wanted: &str| {
        let experiment: Value = app.get_as(&experiment, &admin).await.json().await.ok()?;
        (experiment["phase"] == wanted).then_some(experiment)
    };
    eventually_within("the experiment running", 30, async || phase("running").await).await;

    // A service sending the whole time the experiment measures.
    let sender = tokio::spawn({
        let otlp = otlp.clone();
        async move { send_with_the_sdk_for("grpc", &otlp, "shop", 12).await }
    });
    eventually_within("the baseline's series in Prometheus", 30, async || {
        let count = backend.number("count(shop_requests_total{job=\"shop\"})").await?;
        (count == (USERS * ROUTES) as f64).then_some(())
    })
    .await;
    let completed = eventually_within("the experiment completed", 40, async || phase("completed").await).await;
    let results = &completed["results"];
    let (baseline, candidate) =
        (results["baseline"]["series"]["mean"].as_f64(), results["candidate"]["series"]["mean"].as_f64());
    assert!(
        baseline.zip(candidate).is_some_and(|(b, c)| c > 0.0 && c * 10.0 < b),
        "both variants measured, the candidate cut: {results}"
    );
    assert_eq!(
        backend.number("count(shop_requests_total{job=\"shop\", user_id=\"\"})").await,
        None,
        "nothing of the shadowed candidate reached the backend"
    );
    // Metric by metric: the counter and the histogram cut from 1,000 series to 10 with every count kept;
    // the gauge cut too, with no total to keep.
    let row = |metric: &str| {
        results["per_metric"].as_array().and_then(|rows| rows.iter().find(|r| r["metric"] == metric).cloned())
    };
    for metric in ["shop.requests", "shop.latency"] {
        let row = row(metric).unwrap_or_else(|| panic!("{metric} compared: {results}"));
        assert_eq!(row["baseline_series"], json!((USERS * ROUTES) as f64), "{row}");
        assert_eq!(row["candidate_series"], json!(ROUTES as f64), "{row}");
        let preserved = row["preserved_pct"].as_f64().expect("a total");
        assert!((preserved - 100.0).abs() < 1e-9, "every count kept: {row}");
    }
    assert_eq!(results["accuracy_pct"], json!(0.0), "the critical series is not kept exactly: {results}");
    let depth = row("shop.queue.depth").expect("the gauge compared");
    assert_eq!(depth["preserved_pct"], Value::Null, "{depth}");
    sender.await.expect("the sender ran");

    let promoted =
        app.send_as(Method::POST, &format!("{experiment}/promote"), &admin, &json!({"name": "shop-cut"})).await;
    assert_eq!(promoted.status(), 200);
    eventually_within("the deployment to take over from the experiment's pipelines", 40, async || {
        let names = pipelines_on(&app, &admin, &agent_id).await;
        (!names.is_empty() && names.iter().all(|n| !n.starts_with("exp-"))).then_some(())
    })
    .await;
    send_with_the_sdk("grpc", &otlp, "shop-after").await;
    eventually_within("the candidate's series, now live, in Prometheus", 30, async || {
        let count = backend.number("count(shop_requests_total{job=\"shop-after\"})").await?;
        (count == ROUTES as f64).then_some(())
    })
    .await;
    assert_eq!(
        backend.number("count(shop_requests_total{job=\"shop-after\", user_id!=\"\"})").await,
        None,
        "only the candidate's output after the promotion"
    );
}
