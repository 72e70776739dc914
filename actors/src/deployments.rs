//! Deployments: a pipeline put on a fleet, as immutable numbered versions. Experiments create them when
//! a candidate is promoted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::experiments::Target;

/// A deployment's latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// UUIDv7.
    pub id: String,
    /// A name for people (unique among deployments not deleted).
    pub name: String,
    /// The template its pipeline came from, when it came from one.
    pub template: Option<String>,
    /// The pipeline's name on the agents.
    pub pipeline: String,
    /// Where it runs.
    pub target: Target,
    /// How versions are rolled out (`{"strategy": "all_at_once"}` or waves).
    pub rollout: serde_json::Value,
    /// e.g. `rolling_out`.
    pub status: String,
    /// The version the fleet should run.
    pub current_version: i32,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One immutable version of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentVersion {
    pub deployment_id: String,
    /// 1, 2, 3… contiguous per deployment.
    pub version: i32,
    /// The pipeline's name on the agents.
    pub pipeline: String,
    /// The rendered config.
    pub config: String,
    pub config_hash: String,
    /// `active`, `superseded` or `rolled_back`.
    pub status: String,
    pub rollback_from_version: Option<i32>,
    pub notes: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Where a promotion puts the candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum PromotionTarget {
    /// A new deployment with this name, on the experiment's target, rolled out all at once.
    New { name: String, template: Option<String> },
    /// A new version of this existing deployment.
    Existing { deployment_id: String },
}

/// The candidate as a deployment version.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub target: PromotionTarget,
    pub config: String,
    pub config_hash: String,
    pub notes: String,
    pub created_by: Option<String>,
}
