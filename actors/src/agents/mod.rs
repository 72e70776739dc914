//! Agents as the server sees them, and the actors that track them: one [`session::AgentSession`] per
//! agent (liveness) under the [`registry::AgentRegistry`] (sessions, long-poll waiters).

pub mod messages;
pub mod registry;
pub mod session;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use phoenix_nats::wire::{PipelineStatus, ResourceUsage};
use serde::{Deserialize, Serialize};

use crate::labels::{LabelSelector, Labels};

pub use registry::{AgentRegistry, AgentRegistryHandle};

/// Liveness of an agent as the server judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    /// Heartbeating and healthy.
    Online,
    /// Heartbeating, but a pipeline failed or an apply was rolled back.
    Degraded,
    /// No heartbeat within the timeout.
    Offline,
}

impl AgentState {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Degraded => "degraded",
            AgentState::Offline => "offline",
        }
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "online" => Ok(AgentState::Online),
            "degraded" => Ok(AgentState::Degraded),
            "offline" => Ok(AgentState::Offline),
            other => Err(format!("unknown agent state '{other}' (expected online, degraded or offline)")),
        }
    }
}

/// How an agent talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// NATS: tasks are pushed.
    Nats,
    /// HTTP long-poll: tasks are pulled.
    Http,
}

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    /// UUIDv7.
    pub id: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its labels.
    pub labels: Labels,
    /// Liveness.
    pub state: AgentState,
    /// Version it last reported.
    pub agent_version: Option<String>,
    /// Its last heartbeat (enrolment counts as one).
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Resource usage it last reported.
    pub resources: Option<ResourceUsage>,
    /// Pipelines it last reported, with their versions.
    pub pipelines: Vec<PipelineStatus>,
    /// When it enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When this record last changed.
    pub updated_at: DateTime<Utc>,
    /// True once an admin revoked its credential.
    pub credential_revoked: bool,
}

/// Which agents a list shows.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Only agents in this state.
    pub state: Option<AgentState>,
    /// Only agents with these labels.
    pub selector: LabelSelector,
}
