//! The one way in for agent messages, whatever the transport: NATS subscriptions (heartbeats as
//! request/reply, task status and metrics from the durable JetStream consumer) and the HTTP handlers
//! both end up in [`AgentGateway`]'s `handle_*` methods, so both transports behave the same.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures_util::StreamExt;
use phoenix_nats::wire::{kinds, Heartbeat, HeartbeatAck, MetricsBatch, TaskStatusReport};
use phoenix_nats::{Bus, BusError, DurableMessage, Envelope, Message};
use serde::de::DeserializeOwned;

use crate::agents::{AgentRegistryHandle, Transport};
use crate::error_chain;
use crate::events::Events;
use crate::store::{AgentIdentity, Store, StoreError};
use crate::tasks::{ReportOutcome, TaskQueue};

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
    /// The store failed; the message may succeed later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::WrongAgent => "wrong_agent",
            Refusal::NotYourTask => "not_your_task",
            Refusal::UnknownTask => "unknown_task",
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
    stats: Arc<IngestStats>,
    /// Announces experiment measurements for live charts.
    events: Events,
    heartbeat_interval: Duration,
}

impl AgentGateway {
    /// A gateway feeding `registry` and `queue`; agents are told to heartbeat every `heartbeat_interval`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        registry: AgentRegistryHandle,
        queue: TaskQueue,
        auth: Arc<dyn AgentAuthenticator>,
        heartbeat_interval: Duration,
    ) -> Self {
        let stats = Arc::new(IngestStats::default());
        let events = Events::new(bus.clone());
        AgentGateway { store, bus, registry, queue, auth, stats, events, heartbeat_interval }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Records a heartbeat; on NATS also pushes tasks that are due and, after a reconnect, the ones
    /// handed out but never acknowledged.
    pub async fn handle_heartbeat(
        &self,
        agent_id: &str,
        heartbeat: Heartbeat,
        transport: Transport,
    ) -> Result<HeartbeatAck, StoreError> {
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

    /// Stores a metrics batch once, however often it is delivered (`batch_id` is the envelope id).
    pub async fn handle_metrics(
        &self,
        agent_id: &str,
        batch_id: &str,
        batch: &MetricsBatch,
    ) -> Result<bool, StoreError> {
        let stored = self.store.insert_metrics(batch_id, agent_id, batch, Utc::now()).await?;
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
            Ok::<_, Refusal>(self.handle_heartbeat(&agent_id, envelope.body, Transport::Nats).await?)
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
            Err(Refusal::Malformed(format!("unexpected subject for {}", subjects.agent_results_stream())))
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
        let problems = validate_batch(&envelope.body);
        if !problems.is_empty() {
            let listed: Vec<String> = problems.iter().map(|(path, message)| format!("{path}: {message}")).collect();
            return Err(Refusal::Malformed(listed.join("; ")));
        }
        self.handle_metrics(&agent_id, &envelope.id, &envelope.body).await?;
        Ok(())
    }

    /// Decodes an agent envelope from NATS and checks that its credential belongs to the agent the
    /// subject names: the subject alone proves nothing, every agent may publish on agent subjects.
    async fn open<T: DeserializeOwned>(
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

    fn refused(&self, subject: &str, refusal: &Refusal) {
        self.stats.dropped(refusal.reason());
        tracing::warn!(nats.subject = %subject, reason = refusal.reason(), error = %refusal, "agent message dropped");
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

/// Most samples one metrics batch may carry.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// Every problem of a metrics batch, as `(path, message)`; both transports refuse a batch that has any.
pub fn validate_batch(batch: &MetricsBatch) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if batch.pipeline.trim().is_empty() {
        problems.push(("body.pipeline".into(), "must not be empty".into()));
    }
    if batch.samples.len() > MAX_SAMPLES_PER_BATCH {
        problems.push(("body.samples".into(), format!("at most {MAX_SAMPLES_PER_BATCH} samples per batch")));
    }
    for (i, sample) in batch.samples.iter().enumerate().take(MAX_SAMPLES_PER_BATCH) {
        if sample.metric.trim().is_empty() {
            problems.push((format!("body.samples[{i}].metric"), "must not be empty".into()));
        }
        if !sample.value.is_finite() {
            problems.push((format!("body.samples[{i}].value"), "must be a finite number".into()));
        }
    }
    problems
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
