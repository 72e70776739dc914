//! The one way in for agent messages, whatever the transport: NATS subscriptions (heartbeats as
//! request/reply, task status and metrics from the durable JetStream consumer) and the HTTP handlers
//! both end up in [`AgentGateway`]'s `handle_*` methods, so both transports behave the same.
//! What an agent may say about which pipeline is decided in [`grants`].

pub mod grants;
pub mod input;
pub mod quota;

pub use input::MAX_SAMPLES_PER_BATCH;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use phoenix_nats::wire::{kinds, Heartbeat, HeartbeatAck, MetricsBatch, PipelineStatus, TaskStatusReport};
use phoenix_nats::{Bus, BusError, DurableMessage, Envelope, Message};
use serde::de::DeserializeOwned;

use crate::agents::{AgentRegistryHandle, Transport};
use crate::audit::{ActorKind, Audit, NewAuditEntry, Outcome};
use crate::error_chain;
use crate::events::Events;
use crate::store::{AgentIdentity, Store, StoreError};
use crate::tasks::{ReportOutcome, TaskQueue};
use grants::{Claim, NotGiven, PipelineGrants};
use quota::{AgentQuotas, LongPollPermit, QuotaExceeded, QuotaSettings};

/// Name of the server's durable consumer and queue group (shared by every replica).
pub const SERVER_CONSUMER: &str = "phoenix-server";

/// Consecutive consumer errors after which the consumer is rebuilt.
const MAX_CONSUMER_FAILURES: u32 = 5;

/// How many heartbeats are processed at once.
const HEARTBEAT_CONCURRENCY: usize = 64;

/// Checks agent credentials (implemented by the server's auth service).
#[async_trait]
pub trait AgentAuthenticator: Send + Sync {
    /// The agent a credential belongs to, if it is valid and not revoked.
    async fn authenticate_agent(&self, credential: &str) -> Result<Option<AgentIdentity>, StoreError>;
}

/// Counters of what arrived and what was dropped, for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Heartbeats processed.
    pub heartbeats: AtomicU64,
    /// Task status reports processed.
    pub task_reports: AtomicU64,
    /// Metric batches stored.
    pub metric_batches: AtomicU64,
    /// Metric batches delivered again and recognised as already stored.
    pub duplicate_batches: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
}

impl IngestStats {
    /// Counts a message dropped for `reason`.
    pub fn dropped(&self, reason: &'static str) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *dropped.entry(reason).or_default() += 1;
    }

    /// Dropped messages by reason.
    pub fn dropped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.dropped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Why an agent message was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Not a valid envelope or body.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A body past the bounds of `input` (each problem with its path).
    #[error("invalid message: {}", .0.iter().map(|(path, problem)| format!("{path} {problem}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<input::Problem>),
    /// No valid credential.
    #[error("the agent credential is missing, invalid or revoked")]
    Unauthenticated,
    /// The credential belongs to another agent than the subject names.
    #[error("the credential belongs to another agent")]
    WrongAgent,
    /// A report about a task of another agent.
    #[error("the task belongs to another agent")]
    NotYourTask,
    /// A report about a task that does not exist.
    #[error("no such task")]
    UnknownTask,
    /// Measurements or a status about a pipeline (or an experiment's variant) the agent was not given.
    #[error(transparent)]
    NotGiven(#[from] NotGiven),
    /// More than the agent's quota.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// The store failed; the message may succeed later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// The reason counted in `phoenix_agent_messages_dropped_total`; over HTTP also the problem's code of a
    /// 403 or 429 (a 422 is `validation_failed` with every field named).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) | Refusal::Invalid(_) => "malformed",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::WrongAgent => "wrong_agent",
            Refusal::NotYourTask => "not_your_task",
            Refusal::UnknownTask => "unknown_task",
            Refusal::NotGiven(NotGiven::NotYourExperiment) => "not_your_experiment",
            Refusal::NotGiven(NotGiven::NotYourPipeline) => "not_your_pipeline",
            Refusal::Quota(QuotaExceeded::Samples { .. }) => "sample_quota_exceeded",
            Refusal::Quota(QuotaExceeded::LongPolls { .. }) => "too_many_long_polls",
            Refusal::Store(_) => "store_unavailable",
        }
    }
}

/// Handles agent messages.
#[derive(Clone)]
pub struct AgentGateway {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    registry: AgentRegistryHandle,
    queue: TaskQueue,
    auth: Arc<dyn AgentAuthenticator>,
    grants: PipelineGrants,
    quotas: AgentQuotas,
    stats: Arc<IngestStats>,
    /// Announces experiment measurements for live charts.
    events: Events,
    heartbeat_interval: Duration,
    audit: Audit,
}

/// How the gateway treats agents.
#[derive(Debug, Clone, Copy)]
pub struct GatewaySettings {
    /// How often agents are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// What one agent may use.
    pub quotas: QuotaSettings,
}

impl AgentGateway {
    /// A gateway feeding `registry` and `queue`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        registry: AgentRegistryHandle,
        queue: TaskQueue,
        auth: Arc<dyn AgentAuthenticator>,
        settings: GatewaySettings,
    ) -> Self {
        let stats = Arc::new(IngestStats::default());
        let events = Events::new(bus.clone());
        let grants = PipelineGrants::new(store.clone());
        let quotas = AgentQuotas::new(settings.quotas);
        let heartbeat_interval = settings.heartbeat_interval;
        let audit = Audit::new(store.clone());
        AgentGateway { store, bus, registry, queue, auth, grants, quotas, stats, events, heartbeat_interval, audit }
    }

    /// A place for one more long-poll of `agent_id`, held until the permit is dropped; refused (and
    /// counted) when the agent holds as many as it may.
    pub fn enter_long_poll(&self, agent_id: &str) -> Result<LongPollPermit, Refusal> {
        self.counted(agent_id, self.quotas.enter_long_poll(agent_id).map_err(Refusal::Quota))
    }

    /// The counters.
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Records a heartbeat; on NATS also pushes tasks that are due and, after a reconnect, the ones
    /// handed out but never acknowledged. Statuses of pipelines the agent was not given are left out
    /// (and counted): the rest of the heartbeat still says the agent is alive.
    pub async fn handle_heartbeat(
        &self,
        agent_id: &str,
        heartbeat: Heartbeat,
        transport: Transport,
    ) -> Result<HeartbeatAck, Refusal> {
        self.counted(agent_id, self.heartbeat(agent_id, heartbeat, transport).await)
    }

    async fn heartbeat(
        &self,
        agent_id: &str,
        mut heartbeat: Heartbeat,
        transport: Transport,
    ) -> Result<HeartbeatAck, Refusal> {
        refuse_problems(input::heartbeat_problems(&heartbeat))?;
        heartbeat.pipelines = self.given_pipelines(agent_id, heartbeat.pipelines).await?;
        let recorded = self.registry.heartbeat(agent_id, heartbeat, transport).await?;
        self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        if transport == Transport::Nats {
            // After a reconnect everything unacknowledged goes again; otherwise only hand-outs that had
            // time to be acknowledged and were not.
            let older_than = if recorded.came_online { Duration::ZERO } else { self.queue.policy().ack_window };
            self.queue.push_unacknowledged(agent_id, older_than).await?;
            self.queue.push_due(agent_id).await?;
        }
        let pending_tasks = self.store.pending_task_count(agent_id, Utc::now()).await?;
        Ok(HeartbeatAck { interval_secs: self.heartbeat_interval.as_secs(), pending_tasks })
    }

    /// Applies a task status report.
    pub async fn handle_task_status(
        &self,
        agent_id: &str,
        report: &TaskStatusReport,
    ) -> Result<ReportOutcome, Refusal> {
        self.counted(agent_id, self.task_status(agent_id, report).await)
    }

    async fn task_status(&self, agent_id: &str, report: &TaskStatusReport) -> Result<ReportOutcome, Refusal> {
        refuse_problems(input::report_problems(report))?;
        let outcome = self.queue.report(agent_id, report).await.map_err(|e| match e {
            StoreError::NotFound => Refusal::UnknownTask,
            other => Refusal::Store(other),
        })?;
        self.stats.task_reports.fetch_add(1, Ordering::Relaxed);
        match outcome {
            ReportOutcome::NotYours => Err(Refusal::NotYourTask),
            other => Ok(other),
        }
    }

    /// The statuses about pipelines `agent_id` was given; each other one is counted as dropped.
    async fn given_pipelines(
        &self,
        agent_id: &str,
        statuses: Vec<PipelineStatus>,
    ) -> Result<Vec<PipelineStatus>, StoreError> {
        let mut given = Vec::with_capacity(statuses.len());
        for status in statuses {
            let claim = Claim::Status { pipeline: &status.name };
            match self.grants.check(agent_id, &claim).await? {
                Ok(()) => given.push(status),
                Err(not_given) => self.stats.dropped(Refusal::NotGiven(not_given).reason()),
            }
        }
        Ok(given)
    }

    /// Stores a metrics batch once, however often it is delivered (`batch_id` is the envelope id).
    /// A batch about a pipeline the agent was not given, or for an experiment's variant it was not
    /// sent, is refused and counted: never stored, never announced.
    /// `sent_at` is when the batch reached Phoenix (over NATS, when JetStream took it in): its sample
    /// times are judged against it, so batches that waited out a server outage in the stream still count.
    pub async fn handle_metrics(
        &self,
        agent_id: &str,
        batch_id: &str,
        batch: &MetricsBatch,
        sent_at: DateTime<Utc>,
    ) -> Result<bool, Refusal> {
        self.counted(agent_id, self.metrics(agent_id, batch_id, batch, sent_at).await)
    }

    async fn metrics(
        &self,
        agent_id: &str,
        batch_id: &str,
        batch: &MetricsBatch,
        sent_at: DateTime<Utc>,
    ) -> Result<bool, Refusal> {
        refuse_problems(input::batch_problems(batch, sent_at))?;
        // Metered before the grant is looked up: a flood costs no database round trips.
        self.quotas.take_samples(agent_id, batch.samples.len())?;
        let claim = Claim::Batch {
            pipeline: &batch.pipeline,
            experiment_id: batch.experiment_id.as_deref(),
            variant: batch.variant.as_deref(),
        };
        self.grants.check(agent_id, &claim).await??;
        let stored = self.store.insert_metrics(batch_id, agent_id, batch, sent_at).await?;
        let counter = if stored { &self.stats.metric_batches } else { &self.stats.duplicate_batches };
        counter.fetch_add(1, Ordering::Relaxed);
        if let (true, Some(experiment)) = (stored, &batch.experiment_id) {
            // Live charts: one event per stored batch of an experiment, on `metrics:<experiment id>`.
            let samples: serde_json::Map<String, serde_json::Value> = batch
                .samples
                .iter()
                .filter(|s| !s.labels.contains_key("process"))
                .map(|s| (s.metric.clone(), serde_json::json!(s.value)))
                .collect();
            let data = serde_json::json!({
                "agent_id": agent_id,
                "pipeline": batch.pipeline,
                "variant": batch.variant,
                "ts": batch.samples.first().map(|s| s.ts),
                "samples": samples,
            });
            self.events.publish("metrics", experiment, "metrics.sample", data).await;
        }
        Ok(stored)
    }

    /// Subscribes to the agent subjects and processes them in the background until the bus closes.
    pub async fn start(&self) -> Result<(), BusError> {
        let subjects = self.bus.subjects().clone();
        let heartbeats = self.bus.queue_subscribe(&subjects.all_agent_heartbeats(), SERVER_CONSUMER).await?;
        let results = self.bus.consume_durable(SERVER_CONSUMER).await?;
        let gateway = self.clone();
        tokio::spawn(async move {
            heartbeats
                .for_each_concurrent(HEARTBEAT_CONCURRENCY, |message| {
                    let gateway = gateway.clone();
                    async move { gateway.on_heartbeat(message).await }
                })
                .await;
        });
        let gateway = self.clone();
        tokio::spawn(async move { gateway.consume_results(results).await });
        Ok(())
    }

    async fn on_heartbeat(&self, message: Message) {
        let result = async {
            let (agent_id, envelope) =
                self.open::<Heartbeat>(&message.subject, &message.payload, kinds::HEARTBEAT).await?;
            self.handle_heartbeat(&agent_id, envelope.body, Transport::Nats).await
        }
        .await;
        match result {
            Ok(ack) => {
                // The reply subject is chosen by the sender; answering anywhere else than a reply inbox
                // would let an agent make the server publish on subjects it may not use itself.
                let Some(reply) = message.reply.filter(|r| r.starts_with("_INBOX.")) else { return };
                let sent = match Envelope::new(kinds::HEARTBEAT_ACK, ack).encode() {
                    Ok(payload) => self.bus.publish(&reply, payload).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = sent {
                    tracing::warn!(nats.subject = %message.subject, error = %e, "cannot answer a heartbeat");
                }
            }
            Err(refusal) => self.refused(&message.subject, &refusal),
        }
    }

    /// Processes agent results for as long as the process lives: when the consumer ends or keeps
    /// failing (NATS restarted, the stream was recreated), it subscribes again with backoff.
    async fn consume_results(&self, first: phoenix_nats::DurableSubscription) {
        let mut results = Some(first);
        let mut delay = Duration::from_secs(1);
        loop {
            if let Some(stream) = results.take() {
                self.drain_results(stream).await;
                tracing::warn!("agent results consumer stopped; subscribing again");
            }
            tokio::time::sleep(delay).await;
            match self.bus.consume_durable(SERVER_CONSUMER).await {
                Ok(stream) => {
                    tracing::info!("agent results consumer resumed");
                    results = Some(stream);
                    delay = Duration::from_secs(1);
                }
                Err(BusError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "cannot resume the agent results consumer");
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Handles results until the stream ends or fails repeatedly. Results are spread over a few
    /// workers by agent, so one agent's reports stay in order while many agents' are stored at once.
    async fn drain_results(&self, mut results: phoenix_nats::DurableSubscription) {
        let (senders, workers): (Vec<_>, Vec<_>) = (0..RESULT_WORKERS)
            .map(|_| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<DurableMessage>(256);
                let gateway = self.clone();
                let worker = tokio::spawn(async move {
                    while let Some(message) = rx.recv().await {
                        gateway.on_result(message).await;
                    }
                });
                (tx, worker)
            })
            .unzip();
        let mut failures_in_a_row = 0;
        while let Some(next) = results.next().await {
            match next {
                Ok(message) => {
                    failures_in_a_row = 0;
                    let agent = self.bus.subjects().agent_id_of(&message.subject).unwrap_or(&message.subject);
                    let worker = worker_for(agent, senders.len());
                    if senders[worker].send(message).await.is_err() {
                        tracing::warn!("an agent results worker stopped");
                        break;
                    }
                }
                Err(e) => {
                    failures_in_a_row += 1;
                    tracing::warn!(error = %e, "agent results consumer error");
                    if failures_in_a_row >= MAX_CONSUMER_FAILURES {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        drop(senders);
        for worker in workers {
            let _ = worker.await;
        }
    }

    async fn on_result(&self, message: DurableMessage) {
        let subjects = self.bus.subjects();
        let outcome = if message.subject.ends_with(".task_status") {
            self.result_task_status(&message).await
        } else if message.subject.ends_with(".metrics") {
            self.result_metrics(&message).await
        } else {
            let unexpected = Refusal::Malformed(format!("unexpected subject for {}", subjects.agent_results_stream()));
            self.counted(&message.subject, Err(unexpected))
        };
        match outcome {
            // Not acknowledged: JetStream delivers it again once the store is back (or the task settled).
            Err(Refusal::Store(e)) if matches!(e, StoreError::Unavailable(_) | StoreError::Conflict(_)) => {
                tracing::warn!(nats.subject = %message.subject, error = %e, "store unavailable; report left for redelivery");
                return;
            }
            Err(refusal) => self.refused(&message.subject, &refusal),
            Ok(()) => {}
        }
        if let Err(e) = message.ack().await {
            tracing::warn!(error = %e, "cannot acknowledge an agent report");
        }
    }

    async fn result_task_status(&self, message: &DurableMessage) -> Result<(), Refusal> {
        let (agent_id, envelope) =
            self.open::<TaskStatusReport>(&message.subject, &message.payload, kinds::TASK_STATUS).await?;
        self.handle_task_status(&agent_id, &envelope.body).await.map(|_| ())
    }

    async fn result_metrics(&self, message: &DurableMessage) -> Result<(), Refusal> {
        let (agent_id, envelope) =
            self.open::<MetricsBatch>(&message.subject, &message.payload, kinds::METRICS).await?;
        self.handle_metrics(&agent_id, &envelope.id, &envelope.body, message.published_at()).await.map(|_| ())
    }

    /// Decodes an agent envelope from NATS and checks that its credential belongs to the agent the
    /// subject names: the subject alone proves nothing, every agent may publish on agent subjects.
    async fn open<T: DeserializeOwned>(
        &self,
        subject: &str,
        payload: &[u8],
        kind: &str,
    ) -> Result<(String, Envelope<T>), Refusal> {
        self.counted(subject, self.authenticate(subject, payload, kind).await)
    }

    async fn authenticate<T: DeserializeOwned>(
        &self,
        subject: &str,
        payload: &[u8],
        kind: &str,
    ) -> Result<(String, Envelope<T>), Refusal> {
        let agent_id = self
            .bus
            .subjects()
            .agent_id_of(subject)
            .ok_or_else(|| Refusal::Malformed(format!("no agent id in subject {subject}")))?
            .to_string();
        let envelope = Envelope::<T>::decode(payload).map_err(|e| Refusal::Malformed(error_chain(&e)))?;
        if envelope.kind != kind {
            return Err(Refusal::Malformed(format!("a '{}' envelope on a {kind} subject", envelope.kind)));
        }
        let credential = envelope.auth.as_deref().ok_or(Refusal::Unauthenticated)?;
        let identity = self.auth.authenticate_agent(credential).await?.ok_or(Refusal::Unauthenticated)?;
        if identity.id != agent_id {
            return Err(Refusal::WrongAgent);
        }
        Ok((agent_id, envelope))
    }

    /// Counts and logs a refusal of an agent message, whichever transport brought it (`who` names the
    /// agent, or the NATS subject before the agent is known). A store failure is not the agent's doing:
    /// the transport decides what becomes of the message.
    fn counted<T>(&self, who: &str, result: Result<T, Refusal>) -> Result<T, Refusal> {
        if let Err(refusal) = &result {
            if !matches!(refusal, Refusal::Store(_)) {
                self.stats.dropped(refusal.reason());
                tracing::warn!(from = who, reason = refusal.reason(), error = %refusal, "agent message refused");
                self.audit_refusal(who, refusal);
            }
        }
        result
    }

    /// A refused agent message is a security event: audited (at most one per agent and reason every
    /// few seconds, `audit::REFUSAL_EVERY`; the counter has them all), without holding the message up.
    fn audit_refusal(&self, who: &str, refusal: &Refusal) {
        let mut entry =
            NewAuditEntry::new(ActorKind::Agent, format!("agent.refused.{}", refusal.reason()), Outcome::Refused);
        entry.actor_id = Some(who.to_owned());
        entry.detail = Some(refusal.to_string());
        if self.audit.admits_refusal(&entry) {
            let audit = self.audit.clone();
            tokio::spawn(async move { audit.record(entry).await });
        }
    }

    /// A NATS message that cannot be processed and will not be delivered again (acknowledged). Refusals
    /// were counted where they were made; a store failure is counted here.
    fn refused(&self, subject: &str, refusal: &Refusal) {
        if let Refusal::Store(e) = refusal {
            self.stats.dropped(refusal.reason());
            tracing::warn!(nats.subject = %subject, error = %e, "agent message dropped: the store failed");
        }
    }

    /// Deletes samples older than `retention`, every `interval`, until the process ends.
    pub async fn run_retention(self, retention: Duration, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let before = Utc::now() - crate::tasks::transitions::chrono_duration(retention);
            match self.store.prune_metrics(before).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(samples.deleted = deleted, "old metric samples pruned"),
                Err(e) => tracing::warn!(error = %e, "cannot prune old metric samples"),
            }
        }
    }
}

/// `Err(Refusal::Invalid)` when there is any problem.
fn refuse_problems(problems: Vec<input::Problem>) -> Result<(), Refusal> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Invalid(problems))
    }
}

/// Workers storing agent results at once.
const RESULT_WORKERS: usize = 8;

/// The results worker of `agent`: always the same one, so each agent's reports stay in order.
fn worker_for(agent: &str, workers: usize) -> usize {
    use std::hash::BuildHasher;
    // A fixed-key hasher: the same agent must map to the same worker for the life of the process.
    let hash = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(agent);
    (hash % workers.max(1) as u64) as usize
}
