//! Experiments, their history, their measurements and their promotion.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::deployments::{Deployment, DeploymentVersion, Promotion};
use crate::experiments::{Experiment, ExperimentEvent, NewExperiment, Phase, PhaseChange};
use crate::paging::{Page, PageRequest};

/// One measurement an agent reported for an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSample {
    pub agent_id: String,
    /// `baseline` or `candidate`.
    pub variant: String,
    /// e.g. `pipeline.output.series`.
    pub metric: String,
    pub value: f64,
    /// What the sample is about: the `process` label of `pipeline.critical.present`, the `metric`
    /// label of the per-metric samples (`pipeline.metric.*`).
    pub subject: Option<String>,
    pub sampled_at: DateTime<Utc>,
}

/// One metric of one pipeline on one agent, aggregated over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineTotal {
    pub pipeline: String,
    pub agent_id: String,
    pub mean: f64,
    pub sum: f64,
    pub samples: u64,
}

/// Experiments as stored.
#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Stores a new `pending` experiment with a `created` history entry.
    async fn create_experiment(&self, new: NewExperiment, now: DateTime<Utc>) -> Result<Experiment, StoreError>;

    /// One experiment.
    async fn get_experiment(&self, id: &str) -> Result<Experiment, StoreError>;

    /// Experiments, newest first, optionally only those in `phase`.
    async fn list_experiments(&self, phase: Option<Phase>, page: PageRequest) -> Result<Page<Experiment>, StoreError>;

    /// Every experiment an actor must own: started and not yet in a final phase.
    async fn active_experiments(&self) -> Result<Vec<Experiment>, StoreError>;

    /// The experiments in `phase` that reached it at or after `since`, oldest first (for the sweep).
    async fn ended_since(&self, phase: Phase, since: DateTime<Utc>) -> Result<Vec<Experiment>, StoreError>;

    /// Moves the experiment from `from` to `to` and writes the history entry, in one transaction.
    /// `Conflict` when it is no longer in `from` (another writer moved it first).
    async fn change_phase(
        &self,
        id: &str,
        from: Phase,
        to: Phase,
        change: PhaseChange,
        now: DateTime<Utc>,
    ) -> Result<Experiment, StoreError>;

    /// Like [`change_phase`](Self::change_phase) to `promoted`, and in the same transaction creates the
    /// deployment (or its new version) holding the candidate.
    async fn promote_experiment(
        &self,
        id: &str,
        promotion: Promotion,
        change: PhaseChange,
        now: DateTime<Utc>,
    ) -> Result<(Experiment, Deployment, DeploymentVersion), StoreError>;

    /// Records a history entry that is not a phase change (e.g. an agent's apply failed and is retried).
    async fn record_experiment_event(
        &self,
        id: &str,
        event_type: &str,
        message: &str,
        data: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The history, oldest first.
    async fn experiment_events(&self, id: &str) -> Result<Vec<ExperimentEvent>, StoreError>;

    /// Deletes the experiment and its history; `Conflict` while it is active.
    async fn delete_experiment(&self, id: &str) -> Result<Experiment, StoreError>;

    /// The measurements agents reported for the experiment in `[from, until)`, oldest first.
    async fn experiment_samples(
        &self,
        id: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ExperimentSample>, StoreError>;

    /// Per pipeline and agent, the mean, sum and count of one metric's samples in `[from, until)`
    /// (cost analytics over every experiment and deployment).
    async fn pipeline_totals(
        &self,
        metric: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PipelineTotal>, StoreError>;
}
