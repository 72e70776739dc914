//! Layered settings: defaults in code, then `phoenix.toml` (`--config`), then `PHOENIX_*` environment
//! variables, then command-line flags. Every layer is merged into one TOML table first and parsed once,
//! so all problems (unknown keys, wrong types, invalid values) are reported together.

mod proxies;
mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use phoenix_actors::experiments::kpis::Currency;
use serde::{Deserialize, Serialize};

pub use proxies::TrustedProxy;
pub use secret::{Secret, SensitiveUrl};

/// The whole settings tree of `phoenix server`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub agents: AgentSettings,
    pub tasks: TaskSettings,
    pub metrics: MetricsSettings,
    pub audit: AuditSettings,
    pub experiments: ExperimentSettings,
    pub deployments: DeploymentSettings,
    pub cluster: ClusterSettings,
    pub log: LogSettings,
}

/// Several replicas on one database (docs/OPERATIONS.md): who owns which experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// This replica's name in the leases. By default `<host name>:<port>`: stable across restarts (a
    /// restarted replica takes its own work back at once) and distinct among replicas.
    pub replica_id: Option<String>,
    /// How long a replica owns an experiment without renewing; it renews every third of this, and
    /// another replica takes over this long after it died.
    pub lease_ttl_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { replica_id: None, lease_ttl_secs: 15 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: String,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Serve the dashboard from this folder instead of the copy built into the binary (for working on
    /// the dashboard without rebuilding; point it at `src/dashboard`).
    pub dashboard_dir: Option<PathBuf>,
    /// Load balancers (addresses or networks) whose `X-Forwarded-For` names the client: failed logins
    /// are then counted per real client rather than per proxy. Empty: the header is ignored, since any
    /// client could write it.
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            shutdown_timeout_secs: 30,
            workers: 0,
            dashboard_dir: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://FILE` (embedded default) or `postgres://…`.
    pub url: SensitiveUrl,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
    /// Apply pending migrations at start-up (`--no-migrate` turns this off).
    pub migrate: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SensitiveUrl::new("sqlite://phoenix.db"),
            pool_size: 10,
            connect_timeout_secs: 5,
            migrate: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BusSettings {
    /// NATS server URL; without one the in-process bus is used.
    pub nats_url: Option<SensitiveUrl>,
    /// First token(s) of every subject, so several installations can share one NATS.
    pub subject_prefix: String,
    pub connect_timeout_secs: u64,
    /// NATS URL handed to agents at enrolment, with the agents' own (restricted) credentials. Without
    /// it agents are told to use HTTP long-poll.
    pub agent_nats_url: Option<SensitiveUrl>,
    /// An agent report handed to a server that does not acknowledge it (e.g. it crashed) is handed
    /// out again after this long. Reports are idempotent, so a short wait only costs a duplicate.
    pub ack_wait_secs: u64,
    /// Copies JetStream keeps of the agent results stream: 1 on a single NATS server, 3 on a cluster of
    /// three or more (the stream survives the loss of a node).
    pub stream_replicas: usize,
    /// Per-agent NATS identities (NATS operator mode): the keys written by `phoenix nats init`. With it
    /// the server connects as a user it signs itself, and each agent gets a JWT that allows only its
    /// own subjects; `nats_url` and `agent_nats_url` then carry no credentials.
    pub nats_trust_file: Option<PathBuf>,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            nats_url: None,
            subject_prefix: "phoenix".into(),
            connect_timeout_secs: 5,
            agent_nats_url: None,
            ack_wait_secs: 10,
            stream_replicas: 1,
            nats_trust_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HMAC key for access tokens (at least 32 bytes). Without one, a random key is generated once and
    /// kept in the database, so restarts and other replicas accept the same tokens.
    pub jwt_secret: Option<Secret>,
    /// `iss` of issued tokens; tokens of another issuer are refused.
    pub issuer: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// `closed`: only the first user registers (and becomes admin); admins create the rest.
    /// `open`: anyone may register and gets the `viewer` role.
    pub registration: RegistrationMode,
    /// Failed logins allowed per username and per client address within the window.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Default lifetime of an agent enrolment token.
    pub enrollment_token_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            issuer: "phoenix".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            registration: RegistrationMode::Closed,
            login_max_failures: 10,
            login_window_secs: 60,
            enrollment_token_ttl_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    /// How often agents heartbeat (told to them in every heartbeat answer).
    pub heartbeat_interval_secs: u64,
    /// Without a heartbeat for this long an agent goes offline; default 3 x the interval.
    pub offline_after_secs: Option<u64>,
    /// Longest `wait` a long-poll may ask for.
    pub long_poll_max_wait_secs: u64,
    /// Samples one agent may send per minute (and at once); past it batches are refused (429) until
    /// the rate allows them. At least one full batch (10,000).
    pub max_samples_per_minute: u64,
    /// Long-polls one agent may hold at once; one more is refused (429).
    pub max_long_polls: usize,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval_secs: 10,
            offline_after_secs: None,
            long_poll_max_wait_secs: 60,
            max_samples_per_minute: 120_000,
            max_long_polls: 4,
        }
    }
}

impl AgentSettings {
    /// What one agent may use.
    pub fn quotas(&self) -> phoenix_actors::gateway::quota::QuotaSettings {
        phoenix_actors::gateway::quota::QuotaSettings {
            samples_per_minute: self.max_samples_per_minute,
            long_polls: self.max_long_polls,
        }
    }

    pub fn offline_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.offline_after_secs.unwrap_or(3 * self.heartbeat_interval_secs))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskSettings {
    /// An agent must report progress within this long or the task is handed out again.
    pub lease_secs: u64,
    /// Hand-outs before a task fails for good (unless the task says otherwise).
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt up to `backoff_max_secs`.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// How long a task may wait for its agent before it expires (unless the task says otherwise).
    pub ttl_secs: u64,
    /// How often leases, deadlines and due retries are checked.
    pub maintenance_interval_ms: u64,
    /// A task handed out but not acknowledged for this long is handed to its agent again.
    pub ack_window_secs: u64,
}

impl Default for TaskSettings {
    fn default() -> Self {
        TaskSettings {
            lease_secs: 60,
            max_attempts: 5,
            backoff_base_secs: 2,
            backoff_max_secs: 300,
            ttl_secs: 24 * 3600,
            maintenance_interval_ms: 1000,
            ack_window_secs: 20,
        }
    }
}

impl TaskSettings {
    pub fn policy(&self) -> phoenix_actors::tasks::TaskPolicy {
        use std::time::Duration;
        phoenix_actors::tasks::TaskPolicy {
            lease: Duration::from_secs(self.lease_secs),
            backoff_base: Duration::from_secs(self.backoff_base_secs),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            default_max_attempts: self.max_attempts,
            default_ttl: Duration::from_secs(self.ttl_secs),
            ack_window: Duration::from_secs(self.ack_window_secs),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// Agent measurements older than this are deleted.
    pub retention_hours: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings { retention_hours: 7 * 24 }
    }
}

/// The audit log (docs/SECURITY.md, "Audit log").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    /// Entries older than this many days are deleted.
    pub retention_days: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { retention_days: 90 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExperimentSettings {
    /// How often an active experiment checks its tasks and agents (task reports wake it at once too).
    pub reconcile_interval_ms: u64,
    /// Hand-outs of a variant's apply before the experiment fails.
    pub apply_attempts: i32,
    /// How long an apply may wait for an agent that does not pick it up before the experiment fails.
    pub deploy_timeout_secs: u64,
    /// How long `stopping` waits for agents to confirm the removal.
    pub stop_timeout_secs: u64,
    /// How often experiments that ended in the last day are checked for pipeline removals that failed
    /// to go out (an enqueue that failed on the way to the final phase).
    pub removal_sweep_interval_secs: u64,
    /// The experiment fails when more than this share of its agents is offline or gone, percent.
    pub max_lost_agents_pct: f64,
    /// Price per 1,000 active series per month.
    pub price_per_thousand_series_month: f64,
    /// Price per million points ingested.
    pub price_per_million_points: f64,
    /// The currency of the prices.
    pub currency: String,
}

impl Default for ExperimentSettings {
    fn default() -> Self {
        ExperimentSettings {
            reconcile_interval_ms: 5000,
            apply_attempts: 3,
            deploy_timeout_secs: 300,
            stop_timeout_secs: 120,
            removal_sweep_interval_secs: 60,
            max_lost_agents_pct: 50.0,
            // Round illustrative defaults, not any vendor's price list: set your own contract's.
            price_per_thousand_series_month: 8.0,
            price_per_million_points: 0.10,
            currency: "USD".into(),
        }
    }
}

impl ExperimentSettings {
    /// The domain's settings; measurements arrive every `measure_interval_secs` (the agents' interval).
    pub fn runtime(&self, measure_interval_secs: u64) -> phoenix_actors::experiments::runtime::ExperimentSettings {
        use std::time::Duration;
        phoenix_actors::experiments::runtime::ExperimentSettings {
            reconcile_interval: Duration::from_millis(self.reconcile_interval_ms),
            measure_interval_secs: measure_interval_secs as f64,
            prices: phoenix_actors::experiments::kpis::PriceModel {
                per_thousand_series_month: self.price_per_thousand_series_month,
                per_million_points: self.price_per_million_points,
                // Checked by `validate`; the fallback only keeps this function total.
                currency: Currency::new(&self.currency).unwrap_or(Currency::USD),
            },
            apply_attempts: self.apply_attempts,
            deploy_timeout: Duration::from_secs(self.deploy_timeout_secs),
            stop_timeout: Duration::from_secs(self.stop_timeout_secs),
            max_lost_agents_pct: self.max_lost_agents_pct,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploymentSettings {
    /// How often every deployment is compared with its agents (task reports and new versions act at once).
    pub reconcile_interval_ms: u64,
    /// Hand-outs of an apply to one agent before that agent counts as failed.
    pub apply_attempts: i32,
}

impl Default for DeploymentSettings {
    fn default() -> Self {
        DeploymentSettings { reconcile_interval_ms: 2000, apply_attempts: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Closed,
    Open,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `pretty` for people, `json` for log shippers.
    pub format: LogFormat,
    /// `RUST_LOG`-style directives, e.g. `info,phoenix=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: LogFormat::Pretty, filter: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Values given as command-line flags; `None` leaves the lower layers in charge.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub nats_url: Option<String>,
    pub no_migrate: bool,
}

/// Every problem found while loading settings.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Environment variables named by the command-line contract (DESIGN.md §1), and their keys.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("PHOENIX_LISTEN", "server.listen"),
    ("PHOENIX_DATABASE_URL", "database.url"),
    ("PHOENIX_NATS_URL", "bus.nats_url"),
    ("PHOENIX_NATS_TRUST_FILE", "bus.nats_trust_file"),
    ("LOG_FORMAT", "log.format"),
    ("RUST_LOG", "log.filter"),
];

/// Any key can also be set as `PHOENIX_<SECTION>__<KEY>`, e.g. `PHOENIX_SERVER__BODY_LIMIT_BYTES`.
const ENV_PREFIX: &str = "PHOENIX_";
const ENV_SEPARATOR: &str = "__";

impl Settings {
    /// Loads the settings from every layer. `env` is passed in (not read here) so tests stay hermetic.
    pub fn load(
        config_file: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &FlagOverrides,
    ) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut merged = toml::Table::new();
        if let Some(path) = config_file {
            match read_file_layer(path) {
                Ok(table) => merge(&mut merged, table),
                Err(problem) => problems.push(problem),
            }
        }
        merge(&mut merged, env_layer(env, &mut problems));
        merge(&mut merged, flag_layer(flags));
        let settings = parse(merged, &mut problems);
        settings.validate(&mut problems);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Settings from the process environment, the file named by `--config`/`PHOENIX_CONFIG`, and flags.
    pub fn from_process(config_file: Option<&Path>, flags: &FlagOverrides) -> Result<Settings, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Settings::load(config_file, &env, flags)
    }

    /// The effective settings as TOML with secrets masked (`phoenix server --print-config`).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }

    /// The parsed listen address (validated at load time).
    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.server.listen.parse()
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if self.listen_addr().is_err() {
            problems.push(format!("server.listen: '{}' is not an address like 127.0.0.1:8080", self.server.listen));
        }
        if let Some(dir) = self.server.dashboard_dir.as_ref().filter(|dir| !dir.is_dir()) {
            problems.push(format!("server.dashboard_dir: {} is not a folder", dir.display()));
        }
        if self.server.body_limit_bytes == 0 {
            problems.push("server.body_limit_bytes: must be at least 1".into());
        }
        if let Err(e) = crate::db::Backend::from_url(self.database.url.expose()) {
            problems.push(format!("database.url: {e}"));
        }
        if self.database.pool_size == 0 {
            problems.push("database.pool_size: must be at least 1".into());
        }
        for (key, url) in [("bus.nats_url", &self.bus.nats_url), ("bus.agent_nats_url", &self.bus.agent_nats_url)] {
            let Some(url) = url else { continue };
            let scheme_ok = ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| url.expose().starts_with(s));
            if !scheme_ok {
                problems.push(format!("{key}: must start with nats://, tls://, ws:// or wss://"));
            }
        }
        self.validate_nats_trust(problems);
        self.auth.validate(problems);
        let full_batch = phoenix_actors::gateway::MAX_SAMPLES_PER_BATCH as u64;
        if self.agents.max_samples_per_minute < full_batch {
            problems.push(format!("agents.max_samples_per_minute: must be at least {full_batch} (one full batch)"));
        }
        let positive = [
            ("bus.ack_wait_secs", self.bus.ack_wait_secs),
            ("bus.stream_replicas", self.bus.stream_replicas as u64),
            ("agents.heartbeat_interval_secs", self.agents.heartbeat_interval_secs),
            ("agents.long_poll_max_wait_secs", self.agents.long_poll_max_wait_secs),
            ("agents.max_long_polls", self.agents.max_long_polls as u64),
            ("tasks.lease_secs", self.tasks.lease_secs),
            ("tasks.ttl_secs", self.tasks.ttl_secs),
            ("tasks.maintenance_interval_ms", self.tasks.maintenance_interval_ms),
            ("metrics.retention_hours", self.metrics.retention_hours),
            ("audit.retention_days", self.audit.retention_days),
            ("experiments.reconcile_interval_ms", self.experiments.reconcile_interval_ms),
            ("experiments.deploy_timeout_secs", self.experiments.deploy_timeout_secs),
            ("experiments.removal_sweep_interval_secs", self.experiments.removal_sweep_interval_secs),
            ("deployments.reconcile_interval_ms", self.deployments.reconcile_interval_ms),
            ("cluster.lease_ttl_secs", self.cluster.lease_ttl_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        let year = 366 * 24 * 3600;
        let bounded = [
            ("auth.access_token_ttl_secs", self.auth.access_token_ttl_secs, year),
            ("auth.refresh_token_ttl_secs", self.auth.refresh_token_ttl_secs, 10 * year),
            ("auth.enrollment_token_ttl_secs", self.auth.enrollment_token_ttl_secs, year),
            ("tasks.ttl_secs", self.tasks.ttl_secs, year),
            ("tasks.lease_secs", self.tasks.lease_secs, 24 * 3600),
            ("tasks.backoff_max_secs", self.tasks.backoff_max_secs, 24 * 3600),
            ("metrics.retention_hours", self.metrics.retention_hours, 10 * 366 * 24),
            ("audit.retention_days", self.audit.retention_days, 100 * 366),
            ("experiments.removal_sweep_interval_secs", self.experiments.removal_sweep_interval_secs, 24 * 3600),
        ];
        for (key, value, max) in bounded {
            if value > max {
                problems.push(format!("{key}: must be at most {max}"));
            }
        }
        if self.agents.offline_after_secs == Some(0) {
            problems.push("agents.offline_after_secs: must be at least 1".into());
        }
        if self.deployments.apply_attempts < 1 {
            problems.push("deployments.apply_attempts: must be at least 1".into());
        }
        if self.experiments.apply_attempts < 1 {
            problems.push("experiments.apply_attempts: must be at least 1".into());
        }
        if Currency::new(&self.experiments.currency).is_none() {
            problems.push(format!(
                "experiments.currency: '{}' is not a three-letter currency code such as USD",
                self.experiments.currency
            ));
        }
        if !(0.0..=100.0).contains(&self.experiments.max_lost_agents_pct) {
            problems.push("experiments.max_lost_agents_pct: must be between 0 and 100".into());
        }
        let prices = [
            ("experiments.price_per_thousand_series_month", self.experiments.price_per_thousand_series_month),
            ("experiments.price_per_million_points", self.experiments.price_per_million_points),
        ];
        for (key, price) in prices {
            if !price.is_finite() || price < 0.0 {
                problems.push(format!("{key}: must be a number of at least 0"));
            }
        }
        if self.tasks.max_attempts < 1 {
            problems.push("tasks.max_attempts: must be at least 1".into());
        }
        if let Err(e) = phoenix_nats::Subjects::new(&self.bus.subject_prefix) {
            problems.push(format!("bus.subject_prefix: {e}"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(format!("log.filter: {e}"));
        }
    }

    /// With per-agent NATS identities the JWTs are the credentials: a password in a URL would be a
    /// second, shared way in.
    fn validate_nats_trust(&self, problems: &mut Vec<String>) {
        // The file itself is read at start-up, with the reason if it cannot be.
        if self.bus.nats_trust_file.is_none() {
            return;
        }
        if self.bus.nats_url.is_none() {
            problems.push("bus.nats_trust_file: needs bus.nats_url (the NATS servers that trust it)".into());
        }
        for (key, url) in [("bus.nats_url", &self.bus.nats_url), ("bus.agent_nats_url", &self.bus.agent_nats_url)] {
            if url.as_ref().is_some_and(|url| phoenix_nats::nats_bus::urls_carry_credentials(url.expose())) {
                problems.push(format!("{key}: must carry no credentials when bus.nats_trust_file is set"));
            }
        }
    }
}

impl AuthSettings {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            problems.push("auth.jwt_secret: must be at least 32 bytes long".into());
        }
        for (key, value) in [
            ("auth.access_token_ttl_secs", self.access_token_ttl_secs),
            ("auth.refresh_token_ttl_secs", self.refresh_token_ttl_secs),
            ("auth.login_window_secs", self.login_window_secs),
            ("auth.enrollment_token_ttl_secs", self.enrollment_token_ttl_secs),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be at least 1"));
            }
        }
        if self.login_max_failures == 0 {
            problems.push("auth.login_max_failures: must be at least 1".into());
        }
    }
}

fn read_file_layer(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    text.parse::<toml::Table>().map_err(|e| format!("{}: {}", path.display(), e.message()))
}

fn env_layer(env: &BTreeMap<String, String>, problems: &mut Vec<String>) -> toml::Table {
    let mut layer = toml::Table::new();
    for (alias, key) in ENV_ALIASES {
        if let Some(raw) = env.get(*alias).filter(|raw| !(raw.is_empty() && OPTIONAL_KEYS.contains(key))) {
            insert_path(&mut layer, key, env_value(key, raw));
        }
    }
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once(ENV_SEPARATOR) else {
            continue;
        };
        let path = format!("{}.{}", section.to_lowercase(), key.to_lowercase());
        // Compose files pass `${VAR:-}` as an empty string: for an optional setting that means unset.
        if raw.is_empty() && OPTIONAL_KEYS.contains(&path.as_str()) {
            continue;
        }
        if default_value_at(&path).is_none() && !OPTIONAL_KEYS.contains(&path.as_str()) {
            problems.push(format!("{name}: no setting '{path}'"));
            continue;
        }
        insert_path(&mut layer, &path, env_value(&path, raw));
    }
    layer
}

fn flag_layer(flags: &FlagOverrides) -> toml::Table {
    let mut layer = toml::Table::new();
    let strings =
        [("server.listen", &flags.listen), ("database.url", &flags.database_url), ("bus.nats_url", &flags.nats_url)];
    for (key, value) in strings {
        if let Some(value) = value {
            insert_path(&mut layer, key, toml::Value::String(value.clone()));
        }
    }
    if flags.no_migrate {
        insert_path(&mut layer, "database.migrate", toml::Value::Boolean(false));
    }
    layer
}

/// Optional settings that are numbers (the others are strings).
const NUMERIC_OPTIONAL_KEYS: &[&str] = &["agents.offline_after_secs"];

/// Optional settings have no value in the defaults, so their presence and type cannot be looked up
/// there: every `Option` field of the settings must be listed here to be settable.
const OPTIONAL_KEYS: &[&str] = &[
    "server.dashboard_dir",
    "bus.nats_url",
    "bus.agent_nats_url",
    "bus.nats_trust_file",
    "auth.jwt_secret",
    "agents.offline_after_secs",
    "cluster.replica_id",
];

/// Environment values are strings; give them the type the setting has (so `PHOENIX_SERVER__WORKERS=4`
/// is a number but `PHOENIX_LISTEN=8080` stays a string).
fn env_value(path: &str, raw: &str) -> toml::Value {
    let typed_default =
        default_value_at(path).or_else(|| NUMERIC_OPTIONAL_KEYS.contains(&path).then_some(toml::Value::Integer(0)));
    match typed_default {
        Some(toml::Value::String(_)) | None => toml::Value::String(raw.to_string()),
        // A list is written as TOML (`["a", "b"]`) or, as operators write them in env files, `a,b`.
        Some(toml::Value::Array(_)) => parse_toml_value(raw).unwrap_or_else(|| comma_separated(raw)),
        Some(_) => parse_toml_value(raw).unwrap_or_else(|| toml::Value::String(raw.to_string())),
    }
}

fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    format!("v = {raw}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"))
}

fn comma_separated(raw: &str) -> toml::Value {
    let items = raw.split(',').map(str::trim).filter(|item| !item.is_empty());
    toml::Value::Array(items.map(|item| toml::Value::String(item.to_string())).collect())
}

fn default_value_at(path: &str) -> Option<toml::Value> {
    let defaults = toml::Value::try_from(Settings::default()).ok()?;
    path.split('.').try_fold(defaults, |value, key| value.get(key).cloned())
}

fn insert_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let Some(last) = keys.pop() else { return };
    let mut current = table;
    for key in keys {
        let entry = current.entry(key.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.to_string(), value);
}

/// Deep merge: tables merge key by key, anything else in `upper` replaces `lower`.
fn merge(lower: &mut toml::Table, upper: toml::Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(lower_table)), toml::Value::Table(upper_table)) => merge(lower_table, upper_table),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

/// Parses each section on its own so one bad section does not hide the problems of the others.
fn parse(merged: toml::Table, problems: &mut Vec<String>) -> Settings {
    let mut settings = Settings::default();
    for (name, value) in merged {
        match name.as_str() {
            "server" => settings.server = parse_section(&name, value, problems),
            "database" => settings.database = parse_section(&name, value, problems),
            "bus" => settings.bus = parse_section(&name, value, problems),
            "auth" => settings.auth = parse_section(&name, value, problems),
            "agents" => settings.agents = parse_section(&name, value, problems),
            "tasks" => settings.tasks = parse_section(&name, value, problems),
            "metrics" => settings.metrics = parse_section(&name, value, problems),
            "experiments" => settings.experiments = parse_section(&name, value, problems),
            "deployments" => settings.deployments = parse_section(&name, value, problems),
            "cluster" => settings.cluster = parse_section(&name, value, problems),
            "log" => settings.log = parse_section(&name, value, problems),
            other => problems.push(format!("{other}: unknown section")),
        }
    }
    settings
}

/// Checks every key of a section separately (unknown key? right type?) so that all problems are
/// found, then parses the keys that passed. Sections are flat, which keeps this simple.
fn parse_section<T>(section: &str, value: toml::Value, problems: &mut Vec<String>) -> T
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    let toml::Value::Table(table) = value else {
        problems.push(format!("{section}: must be a table"));
        return T::default();
    };
    let known = toml::Value::try_from(T::default()).ok().and_then(|v| v.as_table().cloned()).unwrap_or_default();
    let mut accepted = toml::Table::new();
    for (key, value) in table {
        let path = format!("{section}.{key}");
        if !known.contains_key(&key) && !OPTIONAL_KEYS.contains(&path.as_str()) {
            problems.push(format!("{path}: unknown key"));
            continue;
        }
        let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
        match T::deserialize(toml::Value::Table(alone)) {
            Ok(_) => {
                accepted.insert(key, value);
            }
            Err(e) => problems.push(format!("{path}: {}", e.to_string().trim())),
        }
    }
    T::deserialize(toml::Value::Table(accepted)).unwrap_or_default()
}

/// Where `--config` points when given, else `PHOENIX_CONFIG`, else `./phoenix.toml` if it exists.
pub fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("PHOENIX_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("phoenix.toml")).filter(|p| p.exists()))
}

#[cfg(test)]
mod tests;
