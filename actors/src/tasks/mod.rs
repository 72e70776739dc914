//! The task queue: work for one agent, persisted, leased, retried, and reported on.

pub mod changes;
pub mod queue;
pub mod transitions;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use queue::TaskQueue;

/// The task types the server sends on its own (operators may enqueue others through the API).
pub mod types {
    /// Start (or replace) a named pipeline on the agent; its payload names the pipeline and, for an
    /// experiment, the experiment and variant.
    pub const PIPELINE_APPLY: &str = "pipeline.apply";
    /// Stop a named pipeline.
    pub const PIPELINE_REMOVE: &str = "pipeline.remove";
}

/// Where a task is in its life.
///
/// `pending -> dispatched -> running -> succeeded | failed`, plus `cancelled` (by an operator) and
/// `expired` (never picked up before its deadline). A failed attempt that may be retried goes back to
/// `pending` with a later `not_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting for its agent.
    Pending,
    /// Handed to the agent, not yet acknowledged.
    Dispatched,
    /// The agent reported it started.
    Running,
    /// Done.
    Succeeded,
    /// Gave up (after the last attempt, or not retryable).
    Failed,
    /// Cancelled by an operator.
    Cancelled,
    /// Not picked up before its deadline.
    Expired,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Dispatched,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Expired,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Expired => "expired",
        }
    }

    /// No report changes a task in a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown task status '{s}'"))
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// UUIDv7.
    pub id: String,
    /// The agent that runs it.
    pub agent_id: String,
    /// What to do, e.g. `pipeline.apply`.
    pub task_type: String,
    /// Parameters.
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i32,
    /// Where it is in its life.
    pub status: TaskStatus,
    /// How many times it was handed out.
    pub attempts: i32,
    /// Hand-outs allowed before it fails for good.
    pub max_attempts: i32,
    /// A second enqueue with the same key returns this task instead of making another.
    pub idempotency_key: Option<String>,
    /// Not handed out before this (retry backoff).
    pub not_before: DateTime<Utc>,
    /// While dispatched or running: handed out again if no progress arrives by then.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Fails as `expired` if still pending then.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last progress the agent reported.
    pub progress: Option<serde_json::Value>,
    /// The outcome, when succeeded.
    pub result: Option<serde_json::Value>,
    /// The last error.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last hand-out.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// When the agent first reported it running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
impl Task {
    /// A `pipeline.apply` of `agent` in `status`, handed out once, for unit tests.
    pub(crate) fn sample(agent: &str, status: TaskStatus) -> Task {
        let now = Utc::now();
        Task {
            id: "t1".into(),
            agent_id: agent.into(),
            task_type: "pipeline.apply".into(),
            payload: serde_json::json!({}),
            priority: 0,
            status,
            attempts: 1,
            max_attempts: 3,
            idempotency_key: None,
            not_before: now,
            lease_expires_at: None,
            expires_at: None,
            progress: None,
            result: None,
            error: None,
            created_at: now,
            updated_at: now,
            dispatched_at: Some(now),
            started_at: None,
            finished_at: None,
        }
    }
}

/// A task to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewTask {
    /// The agent that runs it.
    pub agent_id: String,
    /// What to do.
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")]
    pub task_type: String,
    /// Parameters.
    pub payload: serde_json::Value,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Hand-outs allowed; the queue's default when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// Makes enqueueing idempotent.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Seconds it may stay pending; the queue's default when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31622400)]
    pub ttl_secs: Option<u64>,
}

/// Leases, retries and deadlines of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPolicy {
    /// How long an agent has to report progress before the task is handed out again.
    pub lease: Duration,
    /// Delay before the first retry; doubles with every further attempt.
    pub backoff_base: Duration,
    /// Longest delay between retries.
    pub backoff_max: Duration,
    /// Hand-outs allowed unless the task says otherwise.
    pub default_max_attempts: i32,
    /// How long a task may stay pending unless it says otherwise.
    pub default_ttl: Duration,
    /// A task handed out but not acknowledged (reported `running`) for this long is handed out again
    /// to the same agent, without using up an attempt: the hand-out probably never arrived.
    pub ack_window: Duration,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy {
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            default_max_attempts: 5,
            default_ttl: Duration::from_secs(24 * 3600),
            ack_window: Duration::from_secs(20),
        }
    }
}

impl TaskPolicy {
    /// Delay before handing a task out again after its `attempts`-th attempt failed:
    /// `base * 2^(attempts-1)`, at most `backoff_max`.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(30);
        self.backoff_base.saturating_mul(2u32.saturating_pow(exponent)).min(self.backoff_max)
    }
}

/// What a status report did to its task.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportOutcome {
    /// The task changed (and here it is now).
    Applied(Task),
    /// Nothing changed: a repeat, or a report that would move the task backwards.
    Ignored(Task),
    /// The task belongs to another agent: refused.
    NotYours,
}

/// Counts and timings of the queue (`GET /api/v1/tasks/queue`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Number of tasks per status (every status listed, zeros included).
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Age of the oldest pending task, seconds.
    pub oldest_pending_age_secs: Option<f64>,
    /// Mean time from creation to first hand-out, over tasks handed out in the last hour, seconds.
    pub mean_wait_secs: Option<f64>,
    /// Mean time from start to finish, over tasks finished in the last hour, seconds.
    pub mean_run_secs: Option<f64>,
}

/// Which tasks a list shows.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this agent's.
    pub agent_id: Option<String>,
    /// Only in this status.
    pub status: Option<TaskStatus>,
    /// Only of this type.
    pub task_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let policy = TaskPolicy::default();
        assert_eq!(policy.backoff(1), Duration::from_secs(2));
        assert_eq!(policy.backoff(2), Duration::from_secs(4));
        assert_eq!(policy.backoff(5), Duration::from_secs(32));
        assert_eq!(policy.backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
        assert!(TaskStatus::Expired.is_terminal() && !TaskStatus::Running.is_terminal());
    }
}
