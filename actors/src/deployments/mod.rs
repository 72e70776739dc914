//! Deployments: a pipeline put on a fleet, as immutable numbered versions, rolled out by the
//! [`DeploymentSupervisor`](supervisor::DeploymentSupervisor) all at once or in waves.

pub mod rollout;
pub mod supervisor;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::experiments::Target;
use crate::pipelines::PipelineSpec;

/// How a version reaches the agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Rollout {
    /// Every target agent at once.
    AllAtOnce,
    /// `first_batch` agents, then each wave `growth` times the previous, `interval_secs` apart once the
    /// previous wave has finished; more than `max_failures` failed agents pause the rollout.
    Waves {
        #[serde(default = "default_first_batch")]
        first_batch: u32,
        #[serde(default = "default_growth")]
        growth: f64,
        #[serde(default)]
        interval_secs: u64,
        #[serde(default)]
        max_failures: u32,
    },
}

fn default_first_batch() -> u32 {
    1
}

fn default_growth() -> f64 {
    2.0
}

/// Where a deployment stands (stored, and announced when it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Agents are receiving the current version.
    RollingOut,
    /// Every target agent runs the current version.
    Active,
    /// The rollout ended with some agents failing.
    Degraded,
    /// A wave failed more than the budget (or an operator paused it): nothing more is sent until resumed.
    Paused,
    /// No agent could apply the current version.
    Failed,
    /// Removed from every agent; kept for its history.
    Deleted,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 6] = [
        DeploymentStatus::RollingOut,
        DeploymentStatus::Active,
        DeploymentStatus::Degraded,
        DeploymentStatus::Paused,
        DeploymentStatus::Failed,
        DeploymentStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::RollingOut => "rolling_out",
            DeploymentStatus::Active => "active",
            DeploymentStatus::Degraded => "degraded",
            DeploymentStatus::Paused => "paused",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Deleted => "deleted",
        }
    }
}

impl std::str::FromStr for DeploymentStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown deployment status '{s}'"))
    }
}

/// A version's place in the history.
pub const VERSION_ACTIVE: &str = "active";
pub const VERSION_SUPERSEDED: &str = "superseded";
pub const VERSION_ROLLED_BACK: &str = "rolled_back";

/// A deployment's latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// UUIDv7.
    pub id: String,
    /// A name for people, unique among deployments not deleted.
    pub name: String,
    /// The template of the current version, when it came from one.
    pub template: Option<String>,
    /// The current version's pipeline as submitted.
    pub pipeline: PipelineSpec,
    /// Where it runs.
    pub target: Target,
    pub rollout: Rollout,
    pub status: DeploymentStatus,
    /// Why it is in its status (the failing agents of a paused rollout).
    pub status_detail: Option<serde_json::Value>,
    /// The version the fleet should run.
    pub current_version: i32,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// When a paused rollout was last resumed.
    pub resumed_at: Option<DateTime<Utc>>,
}

/// A deployment as the outside world sees it (REST body, WebSocket snapshot, the `deployment` in events).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeploymentView<'a> {
    #[serde(flatten)]
    deployment: &'a Deployment,
    /// The pipeline's name on the agents.
    agent_pipeline: String,
}

impl Deployment {
    /// The public shape of this deployment.
    pub fn view(&self) -> DeploymentView<'_> {
        DeploymentView { agent_pipeline: self.agent_pipeline(), deployment: self }
    }

    /// [`Deployment::view`] as JSON.
    pub fn view_json(&self) -> serde_json::Value {
        serde_json::to_value(self.view()).unwrap_or_else(|e| {
            // Cannot happen with these types; if it did, say so rather than pass `null` ("gone") on.
            tracing::error!(deployment.id = %self.id, error = %e, "cannot render a deployment");
            serde_json::json!({"id": self.id, "error": "cannot be rendered"})
        })
    }

    /// The pipeline's name on the agents (stable across renames and versions).
    pub fn agent_pipeline(&self) -> String {
        agent_pipeline(&self.id)
    }
}

/// The pipeline name on the agents of deployment `id`.
pub fn agent_pipeline(id: &str) -> String {
    format!("deploy-{id}")
}

/// One immutable version of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentVersion {
    pub deployment_id: String,
    /// 1, 2, 3… contiguous per deployment.
    pub version: i32,
    /// The pipeline as submitted.
    pub pipeline: PipelineSpec,
    /// The rendered config.
    pub config: String,
    pub config_hash: String,
    /// `active`, `superseded` or `rolled_back`.
    pub status: String,
    /// For a rollback: the version whose config this one restores.
    pub rollback_from_version: Option<i32>,
    pub notes: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A version to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVersion {
    pub pipeline: PipelineSpec,
    pub config: String,
    pub config_hash: String,
    pub notes: String,
    pub created_by: Option<String>,
}

/// A deployment to create, with its version 1.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub name: String,
    pub target: Target,
    pub rollout: Rollout,
    pub version: NewVersion,
}

/// A change to a deployment: a new version when the config changed, and/or a new target or rollout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentChange {
    pub version: Option<NewVersion>,
    pub target: Option<Target>,
    pub rollout: Option<Rollout>,
    pub actor: Option<String>,
}

/// One entry of a deployment's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeploymentEvent {
    pub id: String,
    /// e.g. `version_created`, `wave_started`, `status_changed`, `target_changed`.
    pub event_type: String,
    pub version: Option<i32>,
    pub message: String,
    pub data: Option<serde_json::Value>,
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Which deployments a list shows (deleted ones never).
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub status: Option<DeploymentStatus>,
    pub name: Option<String>,
    pub template: Option<String>,
}

/// Where a promotion puts an experiment's candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Promotion {
    /// A new deployment.
    New(NewDeployment),
    /// A new version of an existing deployment.
    Existing { deployment_id: String, version: NewVersion },
}
