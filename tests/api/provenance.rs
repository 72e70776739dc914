//! An agent speaks only for its own work. Measurements count for an experiment only from the agents it
//! sent that variant to: an enrolled agent outside the experiment (over HTTP and over NATS), and one
//! inside it claiming the other variant, are refused and counted; nothing they send is stored or
//! published, and the KPIs and the verdict are those of the experiment's own agent.

use std::time::Duration;

use diesel::prelude::*;
use phoenix::db::schema::metric_samples;
use phoenix::db::{establish, Backend};
use phoenix::live::LiveClient;
use reqwest::Method;
use serde_json::{json, Value};

use crate::each_backend;
use crate::experiments::{answer_tasks, measurement, measurement_batch};
use crate::helpers::{eventually, spawn_with, test_settings, Env, NatsAgent, TestDb};

/// What a forger claims its "candidate" keeps: enough to swing any verdict.
const FORGED_SERIES: f64 = 1_000_000.0;

/// Intervals the honest agent measures (and the forgers forge).
const INTERVALS: u64 = 10;

async fn forged_measurements_are_refused_counted_and_change_nothing(backend: Backend) {
    let env = if backend == Backend::Sqlite { Env::SqliteNats } else { Env::PostgresNats };
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.agents.heartbeat_interval_secs = 1;
    settings.agents.offline_after_secs = Some(600);
    settings.experiments.reconcile_interval_ms = 200;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;

    let honest = app.http_agent(&admin, "honest").await;
    let intruder = app.http_agent(&admin, "intruder-http").await;
    let enrolled = app.enroll_agent(&admin, "intruder-nats").await;
    let id_of = |field: &str| enrolled[field].as_str().expect(field).to_string();
    let nats_intruder = NatsAgent::connect(&app.prefix, &id_of("agent_id"), &id_of("credential")).await;
    for agent in [&honest, &intruder] {
        assert_eq!(agent.heartbeat("healthy").await.status(), 200);
    }
    nats_intruder.heartbeat().await;

    let body = json!({
        "name": "guarded",
        "baseline": {"template": "baseline", "parameters": {"source": "synthetic"}},
        "candidate": {"template": "topk", "parameters": {"source": "synthetic"}},
        "target": {"agents": [honest.id]},
        "warmup_secs": 0,
        "duration_secs": 4,
        "success_criteria": {"min_cardinality_reduction_pct": 50, "max_cpu_overhead_pct": 1_000_000},
    });
    let created = app.send_as(Method::POST, "/api/v1/experiments", &admin, &body).await;
    let id = created.json::<Value>().await.expect("experiment")["id"].as_str().expect("id").to_string();
    let started = app.send_as(Method::POST, &format!("/api/v1/experiments/{id}/start"), &admin, &json!({})).await;
    assert_eq!(started.status(), 200);
    assert_eq!(answer_tasks(&honest, json!({"status": "succeeded"})).await, 2, "both variants applied");
    let mut live = LiveClient::connect(&app.url(""), &admin).await.expect("connect");
    live.subscribe(&format!("metrics:{id}")).await.expect("subscribe");

    for seq in 0..INTERVALS {
        assert_eq!(honest.send_metrics(&measurement(&id, "baseline", 100.0, seq)).await.status(), 202);
        let candidate = 10.0 + seq as f64 % 2.0;
        assert_eq!(honest.send_metrics(&measurement(&id, "candidate", candidate, seq)).await.status(), 202);

        let res = intruder.send_metrics(&measurement(&id, "candidate", FORGED_SERIES, seq)).await;
        assert_refused(res).await;
        nats_intruder.send_metrics(measurement_batch(&id, "candidate", FORGED_SERIES, seq)).await;
        // The experiment's own agent, passing baseline numbers off as the candidate's pipeline's.
        let mut swapped = measurement(&id, "candidate", FORGED_SERIES, seq);
        swapped["body"]["pipeline"] = json!(format!("exp-{id}-baseline"));
        assert_refused(honest.send_metrics(&swapped).await).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    let completed = eventually("the experiment completes", async || {
        let experiment: Value = app.get_as(&format!("/api/v1/experiments/{id}"), &admin).await.json().await.ok()?;
        (experiment["phase"] == "completed").then_some(experiment)
    })
    .await;
    let kpis = &completed["results"];
    assert_eq!(kpis["window"]["agents"], 1, "only the honest agent is counted: {kpis}");
    assert_eq!(kpis["baseline"]["series"]["mean"], 100.0, "{kpis}");
    let candidate_max = kpis["candidate"]["series"]["p99"].as_f64().expect("p99");
    assert!(candidate_max <= 11.0, "no forged candidate value in the window: {kpis}");
    assert_eq!(kpis["verdict"], "pass", "{kpis}");

    // The NATS forgeries are dropped as they are consumed, behind the honest batches of the same time.
    let intruders = [intruder.id.clone(), nats_intruder.id.clone()];
    let expected_refusals = 3 * INTERVALS;
    let line = format!("phoenix_agent_messages_dropped_total{{reason=\"not_your_experiment\"}} {expected_refusals}");
    eventually("every forgery counted", async || {
        let metrics = app.get("/metrics").await.text().await.ok()?;
        metrics.contains(&line).then_some(())
    })
    .await;
    let mut conn = establish(&app.db.url).expect("db");
    let stored: i64 = metric_samples::table
        .filter(metric_samples::agent_id.eq_any(intruders.to_vec()).or(metric_samples::value.eq(FORGED_SERIES)))
        .count()
        .get_result(&mut conn)
        .expect("count");
    assert_eq!(stored, 0, "nothing forged is stored");

    let mut announced = Vec::new();
    while let Some(message) = live.next_message(Duration::from_millis(300)).await.expect("read") {
        if message["type"] == "event" {
            announced.push(message["data"].clone());
        }
    }
    assert_eq!(announced.len() as u64, 2 * INTERVALS, "one live sample per honest batch: {announced:?}");
    assert!(announced.iter().all(|data| data["agent_id"] == json!(honest.id)), "{announced:?}");
}
each_backend!(forged_measurements_are_refused_counted_and_change_nothing);

async fn assert_refused(res: reqwest::Response) {
    assert_eq!(res.status(), 403);
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["code"], "not_your_experiment", "{problem}");
}
