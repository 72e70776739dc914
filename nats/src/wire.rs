//! The messages between agents and the server. Over NATS each travels in an [`Envelope`] on the subject
//! named beside it; over HTTP the same envelope is the request or response body. `docs/PROTOCOL.md`
//! documents them for implementers of other agents, and a test keeps the two in step.
//!
//! [`Envelope`]: crate::Envelope

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `kind` of each envelope.
pub mod kinds {
    /// [`super::Heartbeat`], agent -> server.
    pub const HEARTBEAT: &str = "heartbeat";
    /// [`super::HeartbeatAck`], server -> agent (reply to a heartbeat).
    pub const HEARTBEAT_ACK: &str = "heartbeat_ack";
    /// [`super::TaskAssignment`], server -> agent.
    pub const TASK: &str = "task";
    /// [`super::TaskStatusReport`], agent -> server.
    pub const TASK_STATUS: &str = "task_status";
    /// [`super::MetricsBatch`], agent -> server.
    pub const METRICS: &str = "metrics";
}

/// What the agent says about its own health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportedHealth {
    /// Every pipeline runs as asked.
    Healthy,
    /// A pipeline failed, or the last apply was rolled back.
    Degraded,
}

/// Resource usage measured by the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceUsage {
    /// CPU seconds the agent process has used since it started.
    pub agent_cpu_seconds: f64,
    /// Resident memory of the agent process, bytes.
    pub agent_rss_bytes: u64,
    /// Host CPU busy over the last interval, percent of all cores (0–100).
    pub host_cpu_pct: f64,
    /// Host memory in use, bytes.
    pub host_memory_used_bytes: u64,
    /// Host memory in total, bytes.
    pub host_memory_total_bytes: u64,
}

/// One pipeline running on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineStatus {
    /// The pipeline's name on the agent (`deploy-<deployment id>`, or `exp-<experiment id>-<variant>`).
    pub name: String,
    /// The deployment version it runs, when it belongs to a deployment.
    #[serde(default)]
    pub version: Option<i64>,
    /// Content hash of the rendered config it runs.
    pub config_hash: String,
    /// `running`, `failed` or `stopped`.
    pub state: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// Agent -> server on `<prefix>.agent.<id>.heartbeat` (NATS request; the reply is a
/// [`HeartbeatAck`]) or `POST /api/v1/agent/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    /// The agent's version.
    pub agent_version: String,
    /// The agent's own view of its health.
    pub health: ReportedHealth,
    /// Resource usage.
    #[serde(default)]
    pub resources: ResourceUsage,
    /// The pipelines it runs.
    #[serde(default)]
    pub pipelines: Vec<PipelineStatus>,
    /// Increases by one per heartbeat of one agent process; a gap means heartbeats were lost.
    #[serde(default)]
    pub seq: u64,
    /// The last heartbeat of an agent shutting down: it is offline from now on, not after the timeout.
    #[serde(default)]
    pub stopping: bool,
}

/// Server -> agent, the answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatAck {
    /// How often the server wants heartbeats, seconds.
    pub interval_secs: u64,
    /// Tasks waiting for this agent (pull them over long-poll when on HTTP).
    pub pending_tasks: u64,
}

/// Server -> agent on `<prefix>.agent.<id>.tasks`, or an item of `GET /api/v1/agent/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskAssignment {
    /// The task id; a task id is run at most once by an agent.
    pub task_id: String,
    /// What to do, e.g. `pipeline.apply`.
    pub task_type: String,
    /// The task's parameters.
    pub payload: serde_json::Value,
    /// 1 for the first delivery, more for redeliveries.
    pub attempt: u32,
    /// Report progress within this many seconds or the task is handed out again.
    pub lease_secs: u64,
}

/// What an agent says about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportedTaskStatus {
    /// Started or still going (also extends the lease).
    Running,
    /// Done.
    Succeeded,
    /// Gave up.
    Failed,
}

/// Agent -> server on `<prefix>.agent.<id>.task_status` (JetStream) or
/// `POST /api/v1/agent/tasks/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatusReport {
    /// The task reported on.
    pub task_id: String,
    /// The attempt reported on (from the [`TaskAssignment`]); a report about any other attempt than
    /// the task's current one, older or newer, is ignored.
    #[serde(default)]
    pub attempt: Option<u32>,
    /// Its status now.
    pub status: ReportedTaskStatus,
    /// Progress details (free form), with `running`.
    #[serde(default)]
    pub progress: Option<serde_json::Value>,
    /// The outcome, with `succeeded`.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Why, with `failed`.
    #[serde(default)]
    pub error: Option<String>,
    /// With `failed`: whether trying again may help (default true).
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// One measured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sample {
    /// Metric name, e.g. `pipeline.output.series`.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Labels of the series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was measured.
    pub ts: DateTime<Utc>,
}

/// Agent -> server on `<prefix>.agent.<id>.metrics` (JetStream) or `POST /api/v1/agent/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsBatch {
    /// The pipeline measured.
    pub pipeline: String,
    /// The experiment it belongs to, if any.
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// `baseline` or `candidate` within an experiment.
    #[serde(default)]
    pub variant: Option<String>,
    /// Increases by one per batch of one pipeline of one agent process: a gap at the server means a
    /// batch was lost.
    #[serde(default)]
    pub seq: Option<u64>,
    /// The values.
    pub samples: Vec<Sample>,
}
