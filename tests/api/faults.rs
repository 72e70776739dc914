//! Faults injected into the services Phoenix depends on, bounded in time and on loopback: PostgreSQL
//! stopped for 30 s under a running server (every request answered quickly with a 503 naming the
//! database, `/healthz` up, recovery by itself), and an agent killed in the middle of a task (the task
//! comes back to it when it returns, and runs once). NATS restarting under reporting agents is in
//! `agent_nats.rs`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use phoenix::db::Backend;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    eventually_within, fast_server, free_local_addr, spawn_with, test_settings, AgentProcess, Env, TestDb,
};

/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(30);

/// A PostgreSQL server of the test's own (initdb in a temporary folder, its own port), so it can be
/// stopped without touching the one the other tests share.
struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries under /usr/lib/postgresql (./scripts/test installs them)")
            .flatten()
            .map(|version| version.path().join("bin"))
            .find(|bin| bin.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().expect("data folder");
        if nix::unistd::geteuid().is_root() {
            // PostgreSQL refuses to run as root: the folder and the server belong to `postgres`.
            let postgres = nix::unistd::User::from_name("postgres").ok().flatten().expect("a postgres user");
            nix::unistd::chown(dir.path(), Some(postgres.uid), Some(postgres.gid)).expect("chown");
        }
        let port: u16 = free_local_addr().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("port");
        let own = OwnPostgres { dir, bin, port };
        own.run("initdb", &["-D", &own.data(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        own.start_again();
        own
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root).
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command.args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(out.status.success(), "{program} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn start_again(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let log = self.dir.path().join("log");
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log.display().to_string(), "-w", "start"])
        }));
        if let Err(panic) = started {
            // What PostgreSQL said, so a failure here can be understood from the test's output alone.
            eprintln!("PostgreSQL's log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            std::panic::resume_unwind(panic);
        }
    }

    /// Stops at once, as a crash would: connections are refused until it is back. (A network cut that
    /// leaves connections hanging is another case, not tested here.)
    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl")).args(["-D", &self.data(), "-m", "immediate", "stop"]).output();
        if nix::unistd::geteuid().is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

#[actix_web::test]
async fn a_database_outage_is_503_quickly_and_heals_by_itself() {
    let postgres = OwnPostgres::start();
    let env = Env::local(Backend::Postgres);
    let db = TestDb::at(&postgres.url(), Backend::Postgres);
    let mut settings = test_settings(env, &db);
    settings.database.connect_timeout_secs = 2;
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    let before =
        json!({"name": "before", "pipeline": {"template": "baseline"}, "target": {"selector": {"env": "none"}}});
    assert_eq!(app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &before).await.status(), 201);

    postgres.stop();
    let down_since = Instant::now();
    let (mut requests, mut slowest) = (0, Duration::ZERO);
    while down_since.elapsed() < OUTAGE {
        for (method, path) in [(Method::GET, "/api/v1/pipelines/deployments"), (Method::GET, "/api/v1/experiments")] {
            let asked = Instant::now();
            let res = app.send_as(method, path, &admin, &json!({})).await;
            slowest = slowest.max(asked.elapsed());
            requests += 1;
            assert_eq!(res.status(), 503, "{path} while the database is down");
            assert_eq!(res.headers()["content-type"], "application/problem+json");
        }
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 503);
        let checks: Value = ready.json().await.expect("readiness");
        assert_eq!(checks["checks"]["database"]["ok"], false, "{checks}");
        assert_eq!(app.get("/healthz").await.status(), 200, "the process itself is fine");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(slowest < Duration::from_secs(5), "every request failed fast; the slowest took {slowest:?}");
    println!("database down {:?}: {requests} requests, all 503, slowest {slowest:?}", OUTAGE);

    postgres.start_again();
    eventually_within("ready again", 30, async || (app.get("/readyz").await.status() == 200).then_some(())).await;
    let listed: Value = app.get_as("/api/v1/pipelines/deployments", &admin).await.json().await.expect("list");
    assert_eq!(listed["items"][0]["name"], "before", "nothing stored before the outage was lost");
    let after = json!({"name": "after", "pipeline": {"template": "baseline"}, "target": {"selector": {"env": "none"}}});
    assert_eq!(app.send_as(Method::POST, "/api/v1/pipelines/deployments", &admin, &after).await.status(), 201);
}

/// The agent has taken a task (the long-poll answer is in its socket) but is frozen, then killed: it
/// never acts on it. The lease runs out; when the agent comes back (same identity) it gets the task
/// again and runs it once: the pipeline's batches are numbered from 1 with no gap and no repeat.
#[actix_web::test]
async fn a_task_taken_by_an_agent_killed_mid_task_is_redelivered_when_it_returns_and_runs_once() {
    use nix::sys::signal::{kill, Signal};
    let (app, admin) = fast_server(Backend::Sqlite, |settings| {
        settings.agents.offline_after_secs = Some(600);
        settings.tasks.lease_secs = 2;
        settings.tasks.ack_window_secs = 2;
    })
    .await;
    let token = app.enrollment_token(&admin).await;
    let state = tempfile::tempdir().expect("state dir");
    let mut agent = AgentProcess::start(&app.url(""), state.path(), Some(&token));
    let agent_id = eventually_within("the agent enrolled", 20, async || {
        let agents: Value = app.get_as("/api/v1/agents", &admin).await.json().await.ok()?;
        agents["items"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    // Let it settle into its long-poll, then freeze it: it can no longer act on what it receives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.0.id()).expect("pid"));
    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    let config = "receivers: {synthetic: {profile: steady, processes: 10}}\nexporters: {count: {}}\n\
                  service: {pipelines: {m: {receivers: [synthetic], exporters: [count]}}}\n";
    let task =
        app.enqueue(&admin, &agent_id, "pipeline.apply", json!({"payload": {"pipeline": "p", "config": config}})).await;
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("task id"));
    eventually_within("the frozen agent's long-poll to take the task", 20, async || {
        let task: Value = app.get_as(&task_path, &admin).await.json().await.ok()?;
        (task["status"] != "pending").then_some(())
    })
    .await;
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    let _ = agent.0.wait();
    drop(agent);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let _back = AgentProcess::start(&app.url(""), state.path(), None);
    let done: Value = eventually_within("the task to succeed on the returned agent", 30, async || {
        let task: Value = app.get_as(&task_path, &admin).await.json().await.ok()?;
        (task["status"] == "succeeded").then_some(task)
    })
    .await;
    assert!(done["attempts"].as_u64().is_some_and(|a| a <= 2), "{done}");
    eventually_within("the pipeline to report", 20, async || {
        (crate::agent_nats::stored_batches(&app.db, "p").len() >= 3).then_some(())
    })
    .await;
    let seqs = crate::agent_nats::stored_batches(&app.db, "p");
    let expected: Vec<i64> = (1..=*seqs.last().expect("batches")).collect();
    assert_eq!(seqs, expected, "the pipeline started once: batches from 1, no gap, no repeat");
    println!("agent killed holding a task: redelivered, succeeded after {} attempt(s)", done["attempts"]);
}
