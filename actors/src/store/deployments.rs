//! Deployments, their versions and their history.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::deployments::{
    Deployment, DeploymentChange, DeploymentEvent, DeploymentFilter, DeploymentStatus, DeploymentVersion, NewDeployment,
};
use crate::paging::{Page, PageRequest};

/// A history entry to record.
#[derive(Debug, Clone, Default)]
pub struct NewDeploymentEvent {
    pub event_type: String,
    pub version: Option<i32>,
    pub message: String,
    pub data: Option<serde_json::Value>,
    pub actor: Option<String>,
}

/// Deployments as stored.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores a deployment `rolling_out` with its version 1. `Conflict` when a live deployment has the name.
    async fn create_deployment(
        &self,
        new: NewDeployment,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, DeploymentVersion), StoreError>;

    /// One deployment (deleted ones too).
    async fn get_deployment(&self, id: &str) -> Result<Deployment, StoreError>;

    /// Deployments not deleted, newest first.
    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        page: PageRequest,
    ) -> Result<Page<Deployment>, StoreError>;

    /// Every deployment not deleted (what the supervisor rolls out).
    async fn live_deployments(&self) -> Result<Vec<Deployment>, StoreError>;

    /// Applies a change in one transaction. A version whose config hash equals the current one's is not
    /// recorded (`None`); a new one takes the next number, supersedes the active one and sets the
    /// deployment `rolling_out` (unless paused). Target and rollout changes are recorded in the history.
    async fn change_deployment(
        &self,
        id: &str,
        change: DeploymentChange,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, Option<DeploymentVersion>), StoreError>;

    /// Records version n+1 with the config of `to` (default: n-1), marks version n `rolled_back`.
    /// `Conflict` when `to` does not exist.
    async fn rollback_deployment(
        &self,
        id: &str,
        to: Option<i32>,
        notes: Option<String>,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, DeploymentVersion), StoreError>;

    /// Versions, newest first.
    async fn deployment_versions(&self, id: &str, page: PageRequest) -> Result<Page<DeploymentVersion>, StoreError>;

    /// One version.
    async fn deployment_version(&self, id: &str, version: i32) -> Result<DeploymentVersion, StoreError>;

    /// Sets the status (and why), with a history entry when it changed; `resumed` also stamps
    /// `resumed_at`. With `expected` (version, status), only if the deployment is still so — a status
    /// computed from an older snapshot is not written. A deleted deployment keeps `deleted`.
    #[allow(clippy::too_many_arguments)]
    async fn set_deployment_status(
        &self,
        id: &str,
        status: DeploymentStatus,
        detail: Option<serde_json::Value>,
        resumed: bool,
        expected: Option<(i32, DeploymentStatus)>,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, bool), StoreError>;

    /// Records a history entry.
    async fn record_deployment_event(
        &self,
        id: &str,
        event: NewDeploymentEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The history, oldest first.
    async fn deployment_events(&self, id: &str) -> Result<Vec<DeploymentEvent>, StoreError>;
}
