//! `phoenix agent`: enrols once, then heartbeats, receives tasks (pushed over NATS, or long-polled
//! over HTTP when NATS is not there), runs pipelines and reports what each one measures. NATS is
//! preferred; when it fails the agent falls back to HTTP and tries NATS again with exponential backoff
//! and jitter.
//! Reports and measurements wait in a bounded outbox while the server cannot be reached.

pub mod collector;
pub mod identity;
pub mod link;
mod nats_auth;
pub mod resources;
pub mod runner;

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use phoenix_nats::wire::{
    kinds, Heartbeat, MetricsBatch, ReportedHealth, ReportedTaskStatus, TaskAssignment, TaskStatusReport,
};
use phoenix_nats::Envelope;
use tokio::sync::mpsc;

use self::collector::Collectors;
use self::identity::Identity;
use self::link::{HttpLink, Link, NatsCredentialAnswer, NatsLink, TaskFeed};
use self::nats_auth::NatsUserAuth;
use self::resources::ResourceMeter;
use self::runner::Runner;
use crate::args::AgentArgs;

/// Reports and measurements kept while the server is unreachable; the oldest go first when full.
const OUTBOX_LIMIT: usize = 1000;

enum Outbound {
    Report(Envelope<TaskStatusReport>),
    Metrics(Envelope<MetricsBatch>),
}

struct Agent {
    args: AgentArgs,
    identity: Identity,
    http: reqwest::Client,
    link: Link,
    feed: TaskFeed,
    tasks_tx: mpsc::Sender<TaskAssignment>,
    runner: Runner,
    /// Set with `--collector-bin`: pipelines run as supervised external collectors.
    collectors: Option<Collectors>,
    meter: ResourceMeter,
    outbox: VecDeque<Outbound>,
    dropped: u64,
    interval: Duration,
    seq: u64,
    /// The agent's own metrics endpoint (`--metrics-listen`), when serving.
    self_metrics: Option<phoenix_pipeline::exporters::PrometheusExporter>,
    /// When to try NATS again while on HTTP (exponential backoff with jitter).
    nats_retry: link::Backoff,
    next_nats_try: tokio::time::Instant,
}

/// Runs the agent until SIGTERM/SIGINT; the exit code says how it ended.
pub async fn run(args: AgentArgs) -> ExitCode {
    crate::telemetry::init(&crate::config::LogSettings {
        format: if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
            crate::config::LogFormat::Json
        } else {
            crate::config::LogFormat::Pretty
        },
        filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    });
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "phoenix agent stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: AgentArgs) -> anyhow::Result<()> {
    phoenix_nats::install_tls_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("Failed to build the HTTP client")?;
    let identity = load_or_enroll(&args, &http).await?;
    tracing::info!(agent.id = %identity.agent_id, server = %identity.server, "phoenix agent starting");
    let (tasks_tx, tasks_rx) = mpsc::channel(256);
    let link = Link::Http(HttpLink::new(http.clone(), &identity));
    let feed = link.feed_tasks(tasks_tx.clone()).await?;
    let interval = Duration::from_secs(args.interval.max(1));
    let export_dir = args.state_dir.join("exports");
    let mut agent = Agent {
        args,
        identity,
        http,
        link,
        feed,
        tasks_tx,
        runner: Runner::new(export_dir),
        collectors: None,
        meter: ResourceMeter::default(),
        outbox: VecDeque::new(),
        dropped: 0,
        interval,
        seq: 0,
        self_metrics: None,
        nats_retry: link::Backoff::default(),
        next_nats_try: tokio::time::Instant::now(),
    };
    agent.self_metrics = serve_self_metrics(&agent.args.metrics_listen);
    agent.collectors = agent.args.collector_bin.clone().map(|bin| Collectors::new(bin, &agent.args.state_dir));
    agent.restore_pipelines().await;
    agent.try_nats().await;
    agent.run(tasks_rx).await;
    Ok(())
}

/// Binds the agent's metrics endpoint; a port in use is a warning, not a reason to stop measuring.
/// The port is bound alone (no SO_REUSEPORT): a second agent on the host must not share it.
fn serve_self_metrics(listen: &str) -> Option<phoenix_pipeline::exporters::PrometheusExporter> {
    if listen == "off" {
        return None;
    }
    let bound = std::net::TcpListener::bind(listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| format!("cannot listen on {listen}: {e}"));
    match bound.and_then(phoenix_pipeline::exporters::PrometheusExporter::serve) {
        Ok(endpoint) => {
            tracing::info!(address = %endpoint.addr, "agent metrics at http://{}/metrics", endpoint.addr);
            Some(endpoint)
        }
        Err(e) => {
            tracing::warn!(error = %e, "the agent's metrics endpoint is not served (--metrics-listen)");
            None
        }
    }
}

async fn load_or_enroll(args: &AgentArgs, http: &reqwest::Client) -> anyhow::Result<Identity> {
    if let Some(mut identity) = identity::load(&args.state_dir)? {
        let server = args.server.trim_end_matches('/');
        if identity.server != server {
            tracing::warn!(enrolled_with = %identity.server, now = %server, "using the server given now");
            identity.server = server.to_string();
        }
        return Ok(identity);
    }
    let token = args.enroll_token.as_deref().with_context(|| {
        format!("no identity in {}: pass --enroll-token (or PHOENIX_ENROLL_TOKEN) to enrol", args.state_dir.display())
    })?;
    let labels = parse_labels(args.labels.as_deref().unwrap_or(""))?;
    let hostname = args.hostname.clone().unwrap_or_else(phoenix_pipeline::procfs::hostname);
    let identity = identity::enroll(http, &args.server, token, &hostname, &labels).await?;
    identity::save(&args.state_dir, &identity)?;
    tracing::info!(agent.id = %identity.agent_id, state_dir = %args.state_dir.display(), "enrolled");
    Ok(identity)
}

/// `env=prod,region=eu` -> labels.
pub fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').with_context(|| format!("label '{pair}' is not key=value"))?;
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

/// An interval that, after a stall, resumes at the normal pace instead of firing the missed ticks
/// back to back (which would run pipelines several intervals at once).
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

impl Agent {
    async fn run(&mut self, mut tasks: mpsc::Receiver<TaskAssignment>) {
        let mut heartbeat = ticker(self.interval);
        let mut measure = ticker(self.interval);
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    if let Some(new_interval) = self.heartbeat().await {
                        heartbeat = ticker(new_interval);
                        measure = ticker(new_interval);
                    }
                }
                _ = measure.tick() => self.measure().await,
                Some(task) = tasks.recv() => self.execute(task).await,
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down: stopping pipelines and flushing");
        // Collectors first: flushing may wait on the server, and a stop that is cut short must not
        // leave them running without their supervisor.
        if let Some(collectors) = self.collectors.as_mut() {
            collectors.stop_all().await;
        }
        self.feed.abort();
        self.flush().await;
        self.say_goodbye().await;
        if !self.outbox.is_empty() {
            tracing::warn!(pending = self.outbox.len(), "stopped with reports not delivered");
        }
    }

    /// Sends a heartbeat; answers the new interval when the server changed it.
    async fn heartbeat(&mut self) -> Option<Duration> {
        self.seq += 1;
        let degraded = self.runner.is_degraded() || self.collectors.as_ref().is_some_and(Collectors::is_degraded);
        let health = if degraded { ReportedHealth::Degraded } else { ReportedHealth::Healthy };
        let heartbeat = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            health,
            resources: self.meter.measure(),
            pipelines: match &self.collectors {
                Some(collectors) => collectors.statuses(),
                None => self.runner.statuses(),
            },
            seq: self.seq,
            stopping: false,
        };
        match self.link.heartbeat(heartbeat).await {
            Ok(ack) => {
                if matches!(self.link, Link::Nats(_)) {
                    // Only a heartbeat answered over NATS proves NATS works: then the backoff starts over.
                    self.nats_retry.reset();
                }
                if matches!(self.link, Link::Http(_)) && tokio::time::Instant::now() >= self.next_nats_try {
                    self.try_nats().await;
                }
                self.flush().await;
                let interval = Duration::from_secs(ack.interval_secs.max(1));
                (interval != self.interval).then(|| {
                    self.interval = interval;
                    interval
                })
            }
            Err(e) => {
                tracing::warn!(transport = self.link.name(), error = %e, "heartbeat failed");
                if matches!(self.link, Link::Nats(_)) {
                    self.use_http().await;
                }
                None
            }
        }
    }

    /// Restarts the pipelines that ran before this process started, so a restart does not wait for
    /// the server to re-apply them.
    async fn restore_pipelines(&mut self) {
        for spec in identity::load_applied(&self.args.state_dir) {
            let name = spec.pipeline.clone();
            let restored = match self.collectors.as_mut() {
                Some(collectors) => collectors.apply(spec).await.map(|_| ()),
                None => self.runner.restore(spec),
            };
            match restored {
                Ok(()) => tracing::info!(pipeline = %name, "pipeline restored"),
                Err(e) => tracing::warn!(pipeline = %name, error = %e, "cannot restore a pipeline"),
            }
        }
    }

    fn save_applied(&self) {
        let applied = match &self.collectors {
            Some(collectors) => collectors.applied(),
            None => self.runner.applied(),
        };
        if let Err(e) = identity::save_applied(&self.args.state_dir, &applied) {
            tracing::warn!(error = format!("{e:#}"), "cannot remember the applied pipelines");
        }
    }

    /// Tells the server this agent is going offline now (best effort: the timeout covers a failure).
    async fn say_goodbye(&mut self) {
        let goodbye = Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            health: ReportedHealth::Healthy,
            resources: self.meter.measure(),
            pipelines: Vec::new(),
            seq: self.seq + 1,
            stopping: true,
        };
        match tokio::time::timeout(Duration::from_secs(3), self.link.heartbeat(goodbye)).await {
            Ok(Ok(_)) => tracing::info!("told the server this agent is going offline"),
            _ => tracing::warn!("could not tell the server this agent is going offline"),
        }
    }

    async fn measure(&mut self) {
        let batches = match &mut self.collectors {
            Some(collectors) => collectors.supervise(),
            None => self.runner.run_interval(),
        };
        if let Some(endpoint) = &mut self.self_metrics {
            use phoenix_pipeline::exporters::Exporter;
            let _ = endpoint.export(&self.runner.self_metrics());
        }
        for batch in batches {
            self.queue(Outbound::Metrics(Envelope::new(kinds::METRICS, batch)));
        }
        self.flush().await;
    }

    async fn execute(&mut self, task: TaskAssignment) {
        tracing::info!(task.id = %task.task_id, task.kind = %task.task_type, "task received");
        let running = TaskStatusReport {
            task_id: task.task_id.clone(),
            attempt: Some(task.attempt),
            status: ReportedTaskStatus::Running,
            progress: None,
            result: None,
            error: None,
            retryable: true,
        };
        self.queue(Outbound::Report(Envelope::new(kinds::TASK_STATUS, running)));
        let outcome = match self.collectors.as_mut() {
            Some(collectors) if !self.runner.already_done(&task) => {
                let outcome = runner::run_on_collectors(collectors, &task).await;
                self.runner.mark_done(&outcome);
                outcome
            }
            _ => self.runner.execute(&task),
        };
        if let Some(error) = &outcome.error {
            tracing::warn!(task.id = %task.task_id, error = %error, "task failed");
        }
        if task.task_type.starts_with("pipeline.") {
            self.save_applied();
        }
        self.queue(Outbound::Report(Envelope::new(kinds::TASK_STATUS, outcome)));
        self.flush().await;
    }

    fn queue(&mut self, message: Outbound) {
        self.outbox.push_back(message);
        while self.outbox.len() > OUTBOX_LIMIT {
            self.outbox.pop_front();
            self.dropped += 1;
            tracing::warn!(dropped.total = self.dropped, "outbox full: the oldest report was dropped");
        }
    }

    /// Sends what waits, oldest first, until one send fails (it stays for the next try).
    async fn flush(&mut self) {
        while let Some(next) = self.outbox.front() {
            let sent = match next {
                Outbound::Report(report) => self.link.report(report).await,
                Outbound::Metrics(batch) => self.link.send_metrics(batch).await,
            };
            match sent {
                Ok(()) => {}
                Err(e) if link::is_permanent(&e) => {
                    // The server refused it for good (e.g. invalid): keeping it would block the rest.
                    self.dropped += 1;
                    tracing::warn!(error = %e, dropped.total = self.dropped, "the server refused a report; dropped");
                }
                Err(e) => {
                    tracing::warn!(transport = self.link.name(), error = %e, pending = self.outbox.len(), "cannot deliver reports yet");
                    return;
                }
            }
            self.outbox.pop_front();
        }
    }

    /// Switches to NATS when a NATS URL is known and it answers; otherwise waits longer before the
    /// next try (1 s doubling to a minute, with jitter, so a fleet does not reconnect in lockstep).
    async fn try_nats(&mut self) {
        let Some(url) = self.args.nats_url.clone().or_else(|| self.identity.nats_url.clone()) else { return };
        let connected = match self.nats_user_auth(&url).await {
            Ok(auth) => {
                let prefix = self.subject_prefix(auth.as_ref());
                NatsLink::connect(&url, &prefix, &self.identity, auth).await
            }
            Err(e) => Err(e),
        };
        match connected {
            Ok(nats) => self.switch(Link::Nats(Box::new(nats))).await,
            Err(e) => {
                let wait = self.nats_retry.next_wait();
                self.next_nats_try = tokio::time::Instant::now() + wait;
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_secs = wait.as_secs(),
                    "NATS unreachable; staying on HTTP"
                );
            }
        }
    }

    /// The agent's own NATS identity when the server gives one (and the URL carries no shared
    /// credentials): its key, and a JWT for it asked for now.
    async fn nats_user_auth(&self, url: &str) -> anyhow::Result<Option<NatsUserAuth>> {
        if phoenix_nats::nats_bus::urls_carry_credentials(url) {
            return Ok(None);
        }
        let key = nats_auth::load_or_create_key(&self.args.state_dir)?;
        let http = HttpLink::new(self.http.clone(), &self.identity);
        match http.nats_credential(&key.public_key()).await? {
            NatsCredentialAnswer::Issued(issued) => Ok(Some(NatsUserAuth::new(key, issued))),
            NatsCredentialAnswer::NotOffered => Ok(None),
            NatsCredentialAnswer::KeyRefused(detail) => {
                nats_auth::forget_key(&self.args.state_dir);
                anyhow::bail!("the server refused this agent's NATS key ({detail}); a new one is made next time")
            }
        }
    }

    /// The server's word (with the JWT) first, then the flag, the enrolment answer, the default.
    fn subject_prefix(&self, auth: Option<&NatsUserAuth>) -> String {
        auth.map(|auth| auth.subject_prefix.clone())
            .or_else(|| self.args.subject_prefix.clone())
            .or_else(|| self.identity.nats_subject_prefix.clone())
            .unwrap_or_else(|| phoenix_nats::subjects::DEFAULT_PREFIX.to_owned())
    }

    async fn use_http(&mut self) {
        // NATS connected but did not work: wait before trying it again, longer each time.
        self.next_nats_try = tokio::time::Instant::now() + self.nats_retry.next_wait();
        let http = Link::Http(HttpLink::new(self.http.clone(), &self.identity));
        self.switch(http).await;
    }

    async fn switch(&mut self, link: Link) {
        match link.feed_tasks(self.tasks_tx.clone()).await {
            Ok(feed) => {
                std::mem::replace(&mut self.feed, feed).retire();
                tracing::info!(from = self.link.name(), to = link.name(), "transport switched");
                self.link = link;
            }
            Err(e) => tracing::warn!(transport = link.name(), error = %e, "cannot receive tasks there; not switching"),
        }
    }
}
