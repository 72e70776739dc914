//! The test harness: fresh databases, unique bus prefixes, and `spawn_app`.

#![allow(dead_code)]

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use diesel::{Connection, RunQueryDsl};
use phoenix::config::{SensitiveUrl, Settings};
use phoenix::db::Backend;
use phoenix::http::Application;
use reqwest::Method;
use serde_json::{json, Value};

/// Which database and which bus a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    SqliteLocal,
    SqliteNats,
    PostgresLocal,
    PostgresNats,
}

impl Env {
    pub fn backend(self) -> Backend {
        match self {
            Env::SqliteLocal | Env::SqliteNats => Backend::Sqlite,
            Env::PostgresLocal | Env::PostgresNats => Backend::Postgres,
        }
    }

    /// The in-process-bus environment of a backend (for tests where the bus plays no part).
    pub fn local(backend: Backend) -> Env {
        match backend {
            Backend::Sqlite => Env::SqliteLocal,
            Backend::Postgres => Env::PostgresLocal,
        }
    }

    pub fn uses_nats(self) -> bool {
        matches!(self, Env::SqliteNats | Env::PostgresNats)
    }
}

/// Instantiates an async test `fn(Env)` once per database x bus combination, as a module of four
/// tests named after the combination.
#[macro_export]
macro_rules! each_env {
    ($test:ident) => {
        mod $test {
            use $crate::helpers::Env;
            #[actix_web::test]
            async fn sqlite_local() {
                super::$test(Env::SqliteLocal).await
            }
            #[actix_web::test]
            async fn sqlite_nats() {
                super::$test(Env::SqliteNats).await
            }
            #[actix_web::test]
            async fn postgres_local() {
                super::$test(Env::PostgresLocal).await
            }
            #[actix_web::test]
            async fn postgres_nats() {
                super::$test(Env::PostgresNats).await
            }
        }
    };
}

/// Instantiates a test `fn(Backend)` once per database backend.
#[macro_export]
macro_rules! each_backend {
    ($test:ident) => {
        mod $test {
            use phoenix::db::Backend;
            #[actix_web::test]
            async fn sqlite() {
                super::$test(Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$test(Backend::Postgres).await
            }
        }
    };
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./scripts/test, which starts NATS and PostgreSQL")
    })
}

pub fn nats_url() -> String {
    required_env("PHOENIX_TEST_NATS_URL")
}

/// A database of its own for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => TestDb::postgres(),
        }
    }

    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("phoenix.db").display());
        TestDb { url, backend: Backend::Sqlite, _dir: Some(dir), postgres: None }
    }

    fn postgres() -> TestDb {
        let admin_url = required_env("PHOENIX_TEST_DATABASE_URL");
        let name = format!("phoenix_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = diesel::PgConnection::establish(&admin_url).expect("connect to PHOENIX_TEST_DATABASE_URL");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create test database");
        let url = with_database(&admin_url, &name);
        TestDb { url, backend: Backend::Postgres, _dir: None, postgres: Some((admin_url, name)) }
    }

    /// A database someone else owns (and cleans up): the test only points the server at it.
    pub fn at(url: &str, backend: Backend) -> TestDb {
        TestDb { url: url.to_string(), backend, _dir: None, postgres: None }
    }

    /// Drops the PostgreSQL database now, even while the server under test still uses it.
    pub fn drop_now(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            if let Ok(mut admin) = diesel::PgConnection::establish(&admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin);
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// `postgres://u:p@h:5432/old?x` with the database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (without_query, query) = url.split_once('?').map_or((url, None), |(u, q)| (u, Some(q)));
    let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Settings for a server under test: port 0, few threads, its own database and subject prefix.
pub fn test_settings(env: Env, db: &TestDb) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 2;
    settings.server.shutdown_timeout_secs = 5;
    settings.database.url = SensitiveUrl::new(db.url.clone());
    settings.database.connect_timeout_secs = 2;
    settings.bus.subject_prefix = unique_prefix();
    settings.auth.jwt_secret = Some(phoenix::config::Secret::new(TEST_JWT_SECRET));
    settings.auth.login_max_failures = 5;
    if env.uses_nats() {
        settings.bus.nats_url = Some(SensitiveUrl::new(nats_url()));
    }
    settings
}

/// The JWT key test servers use, so tests can forge tokens (e.g. expired ones).
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub const PASSWORD: &str = "correct-horse-battery";

pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

/// The environment of `phoenix server` processes on NATS under one fresh subject prefix (processes
/// started with the same one are replicas of one deployment), with the guard that deletes the prefix's
/// results stream when the test ends. Test servers share [`TEST_JWT_SECRET`] and log warnings plus the
/// server's own lifecycle lines.
pub struct NatsServerEnv {
    pub prefix: String,
    vars: Vec<(&'static str, String)>,
    _stream: phoenix_nats::testing::StreamCleanup,
}

impl NatsServerEnv {
    /// On the NATS server the suite was given.
    pub fn new() -> NatsServerEnv {
        NatsServerEnv::on(&nats_url())
    }

    /// On the NATS servers at `urls` (comma-separated).
    pub fn on(urls: &str) -> NatsServerEnv {
        let prefix = unique_prefix();
        let stream = phoenix_nats::testing::StreamCleanup {
            url: urls.to_string(),
            stream: phoenix_nats::Subjects::new(&prefix).expect("prefix").agent_results_stream(),
        };
        let vars = vec![
            ("PHOENIX_NATS_URL", urls.to_string()),
            ("PHOENIX_BUS__SUBJECT_PREFIX", prefix.clone()),
            ("PHOENIX_AUTH__JWT_SECRET", TEST_JWT_SECRET.to_string()),
            ("RUST_LOG", "warn,phoenix::server=info".to_string()),
        ];
        NatsServerEnv { prefix, vars, _stream: stream }
    }

    /// Sets one more variable (or replaces one set before).
    pub fn with(mut self, name: &'static str, value: impl ToString) -> NatsServerEnv {
        self.vars.retain(|(set, _)| *set != name);
        self.vars.push((name, value.to_string()));
        self
    }

    /// The variables, as [`ServerProcess::start`] takes them.
    pub fn vars(&self) -> Vec<(&str, &str)> {
        self.vars.iter().map(|(name, value)| (*name, value.as_str())).collect()
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub handle: ServerHandle,
    pub db: TestDb,
    pub env: Env,
    /// The server's subject prefix (unique per test).
    pub prefix: String,
    _stream: Option<phoenix_nats::testing::StreamCleanup>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request reaches the server")
    }
}

impl TestApp {
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request reaches the server")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request reaches the server")
    }

    pub async fn send_as(&self, method: Method, path: &str, token: &str, body: &Value) -> reqwest::Response {
        let request = self.client.request(method, self.url(path)).bearer_auth(token).json(body);
        request.send().await.expect("request reaches the server")
    }

    pub async fn register(&self, username: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/register", &json!({"username": username, "password": PASSWORD})).await
    }

    /// Logs in and returns the whole session answer.
    pub async fn login(&self, username: &str) -> Value {
        let res = self.post_json("/api/v1/auth/login", &json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(res.status(), 200, "login as {username}");
        res.json().await.expect("session JSON")
    }

    pub async fn token(&self, username: &str) -> String {
        self.login(username).await["access_token"].as_str().expect("access_token").to_string()
    }

    /// Registers the first user (`admin`, who becomes admin) and returns an admin token.
    pub async fn bootstrap_admin(&self) -> String {
        assert_eq!(self.register("admin").await.status(), 201, "first registration");
        self.token("admin").await
    }

    /// Has the admin create `username` with `role`; returns that user's token.
    pub async fn user_with_role(&self, admin_token: &str, username: &str, role: &str) -> String {
        let body = json!({"username": username, "password": PASSWORD, "role": role});
        let res = self.send_as(Method::POST, "/api/v1/users", admin_token, &body).await;
        assert_eq!(res.status(), 201, "create {username}");
        self.token(username).await
    }

    /// A fresh single-use enrolment token, made by the admin.
    pub async fn enrollment_token(&self, admin_token: &str) -> String {
        let res = self.send_as(Method::POST, "/api/v1/agents/enrollment-tokens", admin_token, &json!({})).await;
        assert_eq!(res.status(), 201, "enrolment token");
        let token: Value = res.json().await.expect("token JSON");
        token["token"].as_str().expect("token").to_string()
    }

    /// Enrols an agent with a fresh single-use token; returns the enrolment answer.
    pub async fn enroll_agent(&self, admin_token: &str, hostname: &str) -> Value {
        let token = self.enrollment_token(admin_token).await;
        let res = self.post_json("/api/v1/agent/enroll", &json!({"token": token, "hostname": hostname})).await;
        assert_eq!(res.status(), 201, "enrol {hostname}");
        res.json().await.expect("enrolment JSON")
    }
}

/// A server on a fresh SQLite or PostgreSQL database whose agents measure every second, reconciling
/// experiments and deployments every 200 ms and retrying tasks after 1 s, tuned further by `tune`;
/// with its admin's token.
pub async fn fast_server(backend: Backend, tune: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    let env = Env::local(backend);
    let db = TestDb::new(backend);
    let mut settings = test_settings(env, &db);
    settings.agents.heartbeat_interval_secs = 1;
    settings.experiments.reconcile_interval_ms = 200;
    settings.deployments.reconcile_interval_ms = 200;
    settings.tasks.backoff_base_secs = 1;
    tune(&mut settings);
    let app = spawn_with(env, db, settings).await;
    let admin = app.bootstrap_admin().await;
    (app, admin)
}

/// Starts the real server for `env` with a fresh database.
pub async fn spawn_app(env: Env) -> TestApp {
    let db = TestDb::new(env.backend());
    let settings = test_settings(env, &db);
    spawn_with(env, db, settings).await
}

pub async fn spawn_with(env: Env, db: TestDb, settings: Settings) -> TestApp {
    init_test_logging();
    let stream = settings.bus.nats_url.as_ref().map(|url| phoenix_nats::testing::StreamCleanup {
        url: url.expose().to_string(),
        stream: phoenix_nats::Subjects::new(&settings.bus.subject_prefix).expect("prefix").agent_results_stream(),
    });
    let prefix = settings.bus.subject_prefix.clone();
    let app = Application::build(settings).await.expect("server builds");
    let addr = app.local_addr();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { addr, client: http_client(), handle, db, env, prefix, _stream: stream }
}

/// Logs only with TEST_LOG=1, so test output stays readable.
fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        phoenix::telemetry::init(&phoenix::config::LogSettings { filter: "debug".into(), ..Default::default() });
    }
}

#[test]
fn with_database_replaces_only_the_database_name() {
    assert_eq!(with_database("postgres://u:p@h:5432/postgres", "x"), "postgres://u:p@h:5432/x");
    assert_eq!(with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
}

/// A loopback address free now, for a server that must come back on the same address after a crash.
pub fn free_local_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr").to_string()
}

/// `phoenix server` as a child process on port 0 (for what only a real process shows: signals, logs).
pub struct ServerProcess {
    child: std::process::Child,
    pub addr: String,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    signalled: bool,
}

impl ServerProcess {
    /// Starts the binary against `db` with the in-process bus and waits for its "listening" line.
    pub fn start(db: &TestDb, env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_on(db, "127.0.0.1:0", env)
    }

    /// Like [`start`](Self::start), listening on `listen` (to come back on the same port after a crash).
    pub fn start_on(db: &TestDb, listen: &str, env: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"));
        command
            .args(["server", "--listen", listen, "--database-url", &db.url])
            .env("PHOENIX_BUS__SUBJECT_PREFIX", unique_prefix())
            .env("PHOENIX_SERVER__SHUTDOWN_TIMEOUT_SECS", "10")
            .env("PHOENIX_SERVER__WORKERS", "1")
            .env_remove("PHOENIX_NATS_URL")
            .stderr(std::process::Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn phoenix server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess { child, addr: String::new(), lines, seen: Vec::new(), signalled: false };
        server.addr = server.wait_for_address();
        server
    }

    fn wait_for_address(&mut self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(1)) else { continue };
            // Works for both log formats: the address ends at the first character an address cannot hold.
            let addr = line.split("listening on http://").nth(1).map(|rest| {
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c)).collect::<String>()
            });
            self.seen.push(line);
            if let Some(addr) = addr {
                return addr;
            }
        }
        panic!("server did not print its address within 30 s; it said:\n{}", self.seen.join("\n"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Registers the first user (the admin) and logs in; returns the access token.
    pub async fn bootstrap_admin(&self) -> String {
        let creds = json!({"username": "admin", "password": PASSWORD});
        let res = http_client().post(self.url("/api/v1/auth/register")).json(&creds).send().await.expect("register");
        assert_eq!(res.status(), 201, "first registration");
        self.login_admin().await
    }

    /// Logs the admin in (on this process, e.g. after a restart); returns the access token.
    pub async fn login_admin(&self) -> String {
        let creds = json!({"username": "admin", "password": PASSWORD});
        let res = http_client().post(self.url("/api/v1/auth/login")).json(&creds).send().await.expect("login");
        let session: Value = res.json().await.expect("JSON");
        session["access_token"].as_str().expect("access token").to_string()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// The server's process id (to read its footprint from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has logged so far.
    pub fn logs(&mut self) -> Vec<String> {
        self.seen.extend(self.lines.try_iter());
        self.seen.clone()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn signal_terminate(&mut self) {
        self.signalled = true;
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        if !self.signalled {
            self.signal_terminate();
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread drain what was written before the exit.
                std::thread::sleep(std::time::Duration::from_millis(100));
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit within {within:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent speaking HTTP to a [`TestApp`], as a real agent would.
pub struct HttpAgent<'a> {
    app: &'a TestApp,
    pub id: String,
    pub credential: String,
}

impl TestApp {
    /// Enrols an agent (admin token needed) and returns it ready to talk HTTP.
    pub async fn http_agent(&self, admin_token: &str, hostname: &str) -> HttpAgent<'_> {
        let enrolled = self.enroll_agent(admin_token, hostname).await;
        HttpAgent {
            app: self,
            id: enrolled["agent_id"].as_str().expect("agent_id").to_string(),
            credential: enrolled["credential"].as_str().expect("credential").to_string(),
        }
    }

    /// Enqueues a task through the API; returns the task.
    pub async fn enqueue(&self, token: &str, agent_id: &str, task_type: &str, extra: Value) -> Value {
        let mut body = json!({"agent_id": agent_id, "task_type": task_type, "payload": {"n": 1}});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let res = self.send_as(Method::POST, "/api/v1/tasks", token, &body).await;
        assert_eq!(res.status(), 201, "enqueue {task_type}");
        res.json().await.expect("task JSON")
    }
}

pub fn envelope(kind: &str, body: Value) -> Value {
    serde_json::to_value(phoenix_nats::Envelope::new(kind, body)).expect("envelope")
}

impl HttpAgent<'_> {
    pub async fn heartbeat(&self, health: &str) -> reqwest::Response {
        let body = envelope("heartbeat", json!({"agent_version": "test", "health": health, "seq": 1}));
        self.app.send_as(Method::POST, "/api/v1/agent/heartbeat", &self.credential, &body).await
    }

    /// Long-polls for tasks; returns the task envelopes.
    pub async fn poll(&self, wait_secs: u64) -> Vec<Value> {
        let res = self.app.get_as(&format!("/api/v1/agent/tasks?wait={wait_secs}"), &self.credential).await;
        assert_eq!(res.status(), 200, "poll");
        let body: Value = res.json().await.expect("poll JSON");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn report(&self, task_id: &str, report: Value) -> reqwest::Response {
        let mut body = json!({"task_id": task_id});
        if let (Some(body), Some(report)) = (body.as_object_mut(), report.as_object()) {
            body.extend(report.clone());
        }
        let path = format!("/api/v1/agent/tasks/{task_id}/status");
        self.app.send_as(Method::POST, &path, &self.credential, &envelope("task_status", body)).await
    }

    pub async fn send_metrics(&self, envelope: &Value) -> reqwest::Response {
        self.app.send_as(Method::POST, "/api/v1/agent/metrics", &self.credential, envelope).await
    }

    /// Has an operator hand this agent a plain pipeline named `pipeline` (a `pipeline.apply` task it
    /// receives), so it may report on it: agents speak only about pipelines they were given.
    pub async fn receive_pipeline(&self, admin_token: &str, pipeline: &str) {
        let payload = json!({"payload": {"pipeline": pipeline}});
        let task = self.app.enqueue(admin_token, &self.id, "pipeline.apply", payload).await;
        let received = self.poll(0).await;
        assert!(received.iter().any(|t| t["body"]["task_id"] == task["id"]), "{pipeline} handed out: {received:?}");
    }
}

/// An agent speaking NATS to a server, as a real agent would: heartbeats as requests, reports and
/// metrics through JetStream, tasks pushed to its subject. Enrolled over HTTP first.
pub struct NatsAgent {
    pub id: String,
    pub credential: String,
    pub bus: phoenix_nats::NatsBus,
}

impl NatsAgent {
    pub async fn connect(prefix: &str, id: &str, credential: &str) -> NatsAgent {
        let options = phoenix_nats::NatsBusOptions {
            subjects: phoenix_nats::Subjects::new(prefix).expect("prefix"),
            name: format!("test-agent-{id}"),
            manage_stream: false,
            ..Default::default()
        };
        let bus = phoenix_nats::NatsBus::connect(&nats_url(), options).await.expect("agent connects to NATS");
        NatsAgent { id: id.to_string(), credential: credential.to_string(), bus }
    }

    fn subjects(&self) -> &phoenix_nats::Subjects {
        use phoenix_nats::Bus;
        self.bus.subjects()
    }

    pub fn envelope(&self, kind: &str, body: Value) -> phoenix_nats::Bytes {
        phoenix_nats::Envelope::new(kind, body).with_auth(self.credential.clone()).encode().expect("encode")
    }

    /// Sends a heartbeat and returns the server's answer (a heartbeat_ack envelope).
    pub async fn heartbeat(&self) -> Value {
        use phoenix_nats::Bus;
        let subject = self.subjects().agent_heartbeat(&self.id).expect("subject");
        let payload = self.envelope("heartbeat", json!({"agent_version": "test", "health": "healthy", "seq": 1}));
        let answer =
            self.bus.request(&subject, payload, std::time::Duration::from_secs(5)).await.expect("heartbeat answered");
        serde_json::from_slice(&answer).expect("ack JSON")
    }

    /// Subscribes to the tasks pushed to this agent.
    pub async fn tasks(&self) -> phoenix_nats::Subscription {
        use phoenix_nats::Bus;
        self.bus.subscribe(&self.subjects().agent_tasks(&self.id).expect("subject")).await.expect("subscribe")
    }

    pub async fn report(&self, task_id: &str, status: &str) {
        use phoenix_nats::Bus;
        let subject = self.subjects().agent_task_status(&self.id).expect("subject");
        let payload = self.envelope("task_status", json!({"task_id": task_id, "status": status}));
        self.bus.publish_durable(&subject, payload).await.expect("report published");
    }

    pub async fn send_metrics(&self, batch: Value) {
        use phoenix_nats::Bus;
        let subject = self.subjects().agent_metrics(&self.id).expect("subject");
        self.bus.publish_durable(&subject, self.envelope("metrics", batch)).await.expect("metrics published");
    }
}

/// The next task pushed on `tasks`, within `within`.
pub async fn next_pushed_task(tasks: &mut phoenix_nats::Subscription, within: std::time::Duration) -> Option<Value> {
    use futures_util::StreamExt;
    let message = tokio::time::timeout(within, tasks.next()).await.ok()??;
    Some(serde_json::from_slice(&message.payload).expect("task envelope"))
}

/// An HTTP client for tests (TLS needs the process-wide crypto provider installed first).
pub fn http_client() -> reqwest::Client {
    phoenix_nats::install_tls_provider();
    reqwest::Client::new()
}

/// The real `phoenix agent` binary, labelled `env=test`, measuring every second over HTTP.
pub struct AgentProcess(pub std::process::Child);

impl AgentProcess {
    pub fn start(server: &str, state_dir: &std::path::Path, token: Option<&str>) -> AgentProcess {
        AgentProcess::start_with(server, state_dir, token, &[])
    }

    /// The agent binary against the server at `server` with `extra` arguments.
    pub fn start_with(server: &str, state_dir: &std::path::Path, token: Option<&str>, extra: &[&str]) -> AgentProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"));
        command
            .args(["agent", "--server", server, "--interval", "1", "--labels", "env=test"])
            .args(extra)
            .arg("--state-dir")
            .arg(state_dir)
            .env_remove("PHOENIX_NATS_URL")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(token) = token {
            command.args(["--enroll-token", token]);
        }
        AgentProcess(command.spawn().expect("start phoenix agent"))
    }
}

impl Drop for AgentProcess {
    /// SIGTERM first, so the agent stops its collectors (they would outlive a SIGKILL); then, after
    /// 15 s (a loaded machine can be slow to stop), SIGKILL.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        for _ in 0..150 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 100 ms until it gives a value; panics naming `what` after `secs` seconds.
pub async fn eventually_within<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(found) = check().await {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {secs} s");
}

/// [`eventually_within`] 15 seconds.
pub async fn eventually<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    eventually_within(what, 15, check).await
}
