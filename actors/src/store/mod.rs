//! The persistence contract of the domain. `Store` is the sum of one trait per area, so each area's
//! methods stay together and an implementation can be read area by area.

mod audit;
mod auth;
mod deployments;
mod experiments;
mod fleet;
mod leases;
mod metrics;
mod tasks;
mod templates;

use async_trait::async_trait;

pub use audit::AuditStore;
pub use auth::{AccessStatus, NewRefreshToken, RefreshUse, SettingsStore, UserStore};
pub use deployments::{DeploymentStore, NewDeploymentEvent};
pub use experiments::{ExperimentSample, ExperimentStore, PipelineTotal};
pub use fleet::{
    AgentAuthStore, AgentIdentity, EnrollmentToken, FleetStore, NatsKeyRegistration, NewAgent, NewEnrollmentToken,
    RevokedNatsKey, MAX_NATS_KEYS_PER_DAY,
};
pub use leases::{Lease, LeaseStore};
pub use metrics::{CardinalityQuery, CardinalityReport, MetricCardinality, MetricsStore};
pub use tasks::TaskStore;
pub use templates::{StoredTemplate, TemplateStore};

/// Errors a [`Store`] reports, in kinds callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested row does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule refused the write (the row, or a row with the same key, exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached right now; the operation may succeed later.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a bug or corrupt data.
    #[error("store failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the domain keeps its state. Implementations must be safe to call from many tasks at once.
#[async_trait]
pub trait Store:
    AuditStore
    + UserStore
    + SettingsStore
    + AgentAuthStore
    + FleetStore
    + TaskStore
    + MetricsStore
    + TemplateStore
    + ExperimentStore
    + DeploymentStore
    + LeaseStore
    + Send
    + Sync
    + 'static
{
    /// The backend's name, for logs and `/version` (`"postgres"`, `"sqlite"`).
    fn backend_name(&self) -> &'static str;

    /// A cheap round trip proving the database answers queries (used by `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// How many agents are in each state, experiments in each phase and deployments in each status.
    async fn overview_counts(&self) -> Result<OverviewCounts, StoreError>;
}

/// Counts for the overview, keyed by state, phase and status (only those that occur).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OverviewCounts {
    pub agents: std::collections::BTreeMap<String, u64>,
    pub experiments: std::collections::BTreeMap<String, u64>,
    pub deployments: std::collections::BTreeMap<String, u64>,
}
