//! Several server replicas on one PostgreSQL and one NATS: an experiment, or a deployment's rollout, is
//! run by exactly one of them (the one holding its lease); when that replica is killed, another takes
//! the lease over once it expires and finishes the work — on time, with the right results, and without
//! sending any task or recording any step twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use phoenix::db::Backend;
use reqwest::Method;
use serde_json::json;

use crate::fleet_sim::{self, Api, Behaviour};
use crate::helpers::{eventually, NatsServerEnv, ServerProcess, TestDb};

const AGENTS: usize = 4;
const LEASE_TTL_SECS: u64 = 3;

/// Three replicas on one PostgreSQL and NATS, with `AGENTS` simulated NATS agents labelled `group=ha` that
/// heartbeat and measure every second (they belong to no replica in particular).
struct Cluster {
    db: TestDb,
    replicas: Vec<ServerProcess>,
    apis: Vec<std::sync::Arc<Api>>,
    _env: NatsServerEnv,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with more settings for every replica.
    async fn start_with(extra: &[(&'static str, &str)]) -> Cluster {
        let db = TestDb::new(Backend::Postgres);
        let mut server_env = NatsServerEnv::new()
            .with("PHOENIX_AGENTS__HEARTBEAT_INTERVAL_SECS", 1)
            .with("PHOENIX_EXPERIMENTS__RECONCILE_INTERVAL_MS", 200)
            .with("PHOENIX_DEPLOYMENTS__RECONCILE_INTERVAL_MS", 200)
            .with("PHOENIX_CLUSTER__LEASE_TTL_SECS", LEASE_TTL_SECS);
        for (name, value) in extra {
            server_env = server_env.with(name, value);
        }
        let env = server_env.vars();
        let replicas = (0..3).map(|_| ServerProcess::start(&db, &env)).collect::<Vec<_>>();
        let token = replicas[0].bootstrap_admin().await;
        let apis: Vec<_> = replicas.iter().map(|r| Api::new(&r.url(""), &token)).collect();
        let agents = fleet_sim::enroll(&apis[0], AGENTS, "ha", |_| json!({"group": "ha"})).await;
        let every = Duration::from_secs(1);
        let behaviour = Behaviour { heartbeat_every: every, connections: 1, measure_every: Some(every) };
        fleet_sim::start(&server_env.prefix, &agents, behaviour).await;
        Cluster { db, replicas, apis, _env: server_env }
    }

    /// Kills the replica holding the lease `name`; returns its index.
    fn kill_the_holder_of(&mut self, name: &str) -> usize {
        let holder = lease_holder(&self.db, name).expect("a replica holds the lease");
        let owner = self.index_of(&holder);
        self.replicas[owner].kill();
        owner
    }

    fn index_of(&self, holder: &str) -> usize {
        let suffix = |r: &ServerProcess| format!(":{}", r.port());
        self.replicas.iter().position(|r| holder.ends_with(&suffix(r))).expect("the holder is a replica")
    }
}

/// Who holds the lease `name`, read from the database.
fn lease_holder(db: &TestDb, name: &str) -> Option<String> {
    use phoenix::db::schema::leases;
    let mut conn = phoenix::db::establish(&db.url).expect("connect");
    leases::table.find(name).select(leases::holder).first(&mut conn).optional().expect("read the lease")
}

#[actix_web::test]
async fn a_replica_takes_over_the_experiments_of_one_that_died() {
    let mut cluster = Cluster::start().await;
    let apis = cluster.apis.clone();
    let synthetic = |template: &str| json!({"template": template, "parameters": {"source": "synthetic"}});
    let body = json!({
        "name": "failover", "baseline": synthetic("baseline"), "candidate": synthetic("topk"),
        "target": {"selector": {"group": "ha"}}, "duration_secs": 12,
        "success_criteria": {"max_cpu_overhead_pct": 1_000_000},
    });
    // Created through one replica, started through another.
    let created = apis[1].call(Method::POST, "/api/v1/experiments", Some(body)).await.expect("created");
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/experiments/{id}");
    apis[0].call(Method::POST, &format!("{path}/start"), None).await.expect("started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while apis[0].get(&path).await.expect("experiment")["phase"] != "running" {
        assert!(Instant::now() < deadline, "the experiment did not start running");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let lease = format!("experiment:{id}");
    let killed = cluster.kill_the_holder_of(&lease);
    let killed_at = Instant::now();
    let api = &apis[(killed + 1) % apis.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    let completed = loop {
        let experiment = api.get(&path).await.expect("a live replica answers");
        assert_ne!(experiment["phase"], "failed", "{experiment}");
        if experiment["phase"] == "completed" {
            break experiment;
        }
        assert!(Instant::now() < deadline, "no replica finished the experiment: {experiment}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let until: chrono::DateTime<chrono::Utc> =
        completed["measuring_until"].as_str().expect("until").parse().expect("time");
    let done: chrono::DateTime<chrono::Utc> = completed["completed_at"].as_str().expect("done").parse().expect("time");
    let late = (done - until).num_milliseconds() as f64 / 1000.0;
    assert!(late <= (LEASE_TTL_SECS + 3) as f64, "finished within the lease's lifetime of the window's end: {late} s");
    let kpis = &completed["results"];
    assert_eq!(kpis["baseline"]["series"]["mean"], json!(500.0 * AGENTS as f64), "{kpis}");
    assert_eq!(kpis["candidate"]["series"]["mean"], json!(50.0 * AGENTS as f64), "{kpis}");
    assert_eq!(kpis["verdict"], "pass", "{kpis}");
    let new_holder = lease_holder(&cluster.db, &lease).expect("lease");
    assert_ne!(cluster.index_of(&new_holder), killed, "another replica took the lease");

    // Nothing twice: one apply per agent and variant, each phase change recorded once.
    let tasks = api.all("/api/v1/tasks?type=pipeline.apply").await;
    let mut applies: HashMap<(String, String), usize> = HashMap::new();
    for task in tasks.iter().filter(|t| t["payload"]["experiment_id"] == json!(id)) {
        let key = (task["agent_id"].to_string(), task["payload"]["variant"].to_string());
        *applies.entry(key).or_default() += 1;
    }
    assert_eq!(applies.len(), AGENTS * 2, "{applies:?}");
    assert!(applies.values().all(|n| *n == 1), "an apply sent twice: {applies:?}");
    let events = api.get(&format!("{path}/events")).await.expect("events");
    let mut changes: HashMap<String, usize> = HashMap::new();
    for event in events["items"].as_array().expect("items").iter().filter(|e| e["to_phase"].is_string()) {
        let from = event["from_phase"].as_str().unwrap_or("-");
        *changes.entry(format!("{from}->{}", event["to_phase"].as_str().unwrap_or_default())).or_default() += 1;
    }
    assert!(changes.values().all(|n| *n == 1), "a phase change recorded twice: {changes:?}");
    println!(
        "replica failover (experiment): the owner killed while running; another replica took the lease and \
         completed it {late:.1} s after its window ({:.1} s after the kill); {} applies and {} phase changes, \
         each once",
        killed_at.elapsed().as_secs_f64(),
        applies.len(),
        changes.len()
    );
}

#[actix_web::test]
async fn a_replica_takes_over_the_rollouts_of_one_that_died() {
    let mut cluster = Cluster::start().await;
    let apis = cluster.apis.clone();
    // Waves of one agent, two seconds apart: the kill falls in the middle of the rollout.
    let body = json!({
        "name": "failover",
        "pipeline": {"template": "topk", "parameters": {"source": "synthetic", "k": 10}},
        "target": {"selector": {"group": "ha"}},
        "rollout": {"strategy": "waves", "first_batch": 1, "growth": 1.0, "interval_secs": 2},
    });
    let created = apis[1].call(Method::POST, "/api/v1/pipelines/deployments", Some(body)).await.expect("created");
    let id = created["id"].as_str().expect("id").to_string();
    let status_path = format!("/api/v1/pipelines/deployments/{id}/status");
    let applied = |status: &serde_json::Value| {
        status["agents"].as_array().map_or(0, |agents| agents.iter().filter(|a| a["applied_version"] == 1).count())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied(&apis[0].get(&status_path).await.unwrap_or_default()) == 0 {
        assert!(Instant::now() < deadline, "the first wave was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lease = format!("deployment:{id}");
    let killed = cluster.kill_the_holder_of(&lease);
    let api = &apis[(killed + 1) % apis.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = api.get(&status_path).await.expect("a live replica answers");
        if status["status"] == "active" && applied(&status) == AGENTS {
            break;
        }
        assert!(Instant::now() < deadline, "no replica finished the rollout: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_holder = lease_holder(&cluster.db, &lease).expect("lease");
    assert_ne!(cluster.index_of(&new_holder), killed, "another replica took the lease");

    let versions = api.get(&format!("/api/v1/pipelines/deployments/{id}/versions")).await.expect("versions");
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1), "no version duplicated");
    let tasks = api.all("/api/v1/tasks?type=pipeline.apply").await;
    let mut applies: HashMap<String, usize> = HashMap::new();
    for task in tasks.iter().filter(|t| t["payload"]["deployment_id"] == json!(id)) {
        *applies.entry(task["agent_id"].to_string()).or_default() += 1;
    }
    assert_eq!(applies.len(), AGENTS);
    assert!(applies.values().all(|n| *n == 1), "an apply sent twice: {applies:?}");
    let events = api.get(&format!("/api/v1/pipelines/deployments/{id}/events")).await.expect("events");
    let waves: Vec<&serde_json::Value> =
        events["items"].as_array().expect("items").iter().filter(|e| e["event_type"] == "wave_started").collect();
    let mut numbers: Vec<u64> = waves.iter().filter_map(|e| e["data"]["wave"].as_u64()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=AGENTS as u64).collect::<Vec<_>>(), "each wave started once: {waves:?}");
    println!(
        "replica failover (rollout): the owner killed after the first wave; another replica took the lease and \
         finished it: {AGENTS} waves and {} applies, each once; 1 version",
        applies.len()
    );
}

#[actix_web::test]
async fn a_long_poll_on_one_replica_is_answered_by_work_enqueued_on_another() {
    // The queue's maintenance pass (which also wakes agents) out of the way: only the announcement can.
    let cluster = Cluster::start_with(&[("PHOENIX_TASKS__MAINTENANCE_INTERVAL_MS", "60000")]).await;
    let apis = cluster.apis.clone();
    let token = apis[0].call(Method::POST, "/api/v1/agents/enrollment-tokens", Some(json!({}))).await.expect("token");
    let enrol = json!({"token": token["token"], "hostname": "poller"});
    let res = apis[0].client.post(format!("{}/api/v1/agent/enroll", apis[0].base)).json(&enrol).send().await;
    let agent: serde_json::Value = res.expect("enrol").json().await.expect("enrolment");
    let (agent_id, credential) =
        (agent["agent_id"].as_str().expect("id").to_string(), agent["credential"].as_str().expect("cred").to_string());

    // The agent long-polls replica 1 for up to 20 s…
    let poll_url = format!("{}/api/v1/agent/tasks?wait=20", apis[1].base);
    let client = apis[1].client.clone();
    let started = Instant::now();
    let poll = actix_web::rt::spawn(async move {
        let res = client.get(poll_url).bearer_auth(credential).send().await.expect("poll");
        (started.elapsed(), res.json::<serde_json::Value>().await.expect("tasks"))
    });
    // …and is held there (replica 1 counts it)…
    eventually("the long poll held by replica 1", async || {
        let metrics = apis[1].client.get(format!("{}/metrics", apis[1].base)).send().await.ok()?.text().await.ok()?;
        let held = metrics.lines().find_map(|line| line.strip_prefix("phoenix_long_poll_waiters "))?;
        (held.trim().parse::<f64>().ok()? >= 1.0).then_some(())
    })
    .await;
    // …while its work is enqueued through replica 0.
    let enqueued_at = started.elapsed();
    let task = json!({"agent_id": agent_id, "task_type": "diagnostics.collect", "payload": {}});
    let created = apis[0].call(Method::POST, "/api/v1/tasks", Some(task)).await.expect("task");
    let (waited, answer) = poll.await.expect("poll task");
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{answer}");
    assert_eq!(items[0]["body"]["task_id"], created["id"]);
    let after_enqueue = waited.saturating_sub(enqueued_at);
    assert!(
        after_enqueue < Duration::from_secs(3),
        "woken by the other replica's enqueue, not the wait's end: answered {after_enqueue:?} after it"
    );
    println!(
        "cross-replica long poll: held on replica 1, answered {:.2} s after its task was enqueued on replica 0",
        after_enqueue.as_secs_f64()
    );
}

#[actix_web::test]
async fn agents_whose_heartbeats_are_shared_among_replicas_stay_online() {
    // Each replica hears about a third of the heartbeats (one queue group): liveness is the database's.
    let cluster = Cluster::start().await;
    let watch = Duration::from_secs(12);
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < watch {
        for api in &cluster.apis {
            let online = api.get("/api/v1/agents?state=online").await.expect("agents");
            let count = online["items"].as_array().map_or(0, Vec::len);
            assert_eq!(count, AGENTS, "an agent was taken for offline after {:?}: {online}", started.elapsed());
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "shared heartbeats: {AGENTS} agents heartbeating every second to 3 replicas stayed online for {} s \
         ({checks} checks, offline timeout 3 s)",
        watch.as_secs()
    );
}
