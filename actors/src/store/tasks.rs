//! The task queue's persistence.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phoenix_nats::wire::TaskStatusReport;

use super::StoreError;
use crate::paging::{Page, PageRequest};
use crate::tasks::{NewTask, QueueStats, ReportOutcome, Task, TaskFilter, TaskPolicy};

/// Tasks, leases and reports.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a pending task; with an idempotency key already used, returns that task instead
    /// (`false` = not newly created).
    async fn enqueue_task(
        &self,
        task: NewTask,
        policy: &TaskPolicy,
        now: DateTime<Utc>,
    ) -> Result<(Task, bool), StoreError>;

    /// Hands out up to `limit` due pending tasks of `agent_id`, highest priority first, each to
    /// exactly one caller however many claim at once: they become `dispatched` with a lease.
    async fn claim_tasks(
        &self,
        agent_id: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError>;

    /// Tasks handed to `agent_id` that it has not acknowledged yet (to push again on reconnect).
    async fn unacknowledged_tasks(&self, agent_id: &str) -> Result<Vec<Task>, StoreError>;

    /// Records that these dispatched tasks were handed out again now (so they are not re-sent before
    /// another acknowledgement window has passed).
    async fn mark_redelivered(&self, task_ids: &[String], now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Applies an agent's report (see [`crate::tasks::transitions::decide`]).
    async fn apply_task_report(
        &self,
        agent_id: &str,
        report: &TaskStatusReport,
        policy: &TaskPolicy,
        now: DateTime<Utc>,
    ) -> Result<ReportOutcome, StoreError>;

    /// Tasks whose lease ran out go back to pending (or fail after their last attempt); pending tasks
    /// past their deadline expire. Returns every task changed.
    async fn reap_tasks(&self, now: DateTime<Utc>) -> Result<Vec<Task>, StoreError>;

    /// Cancels a task that has not finished.
    async fn cancel_task(&self, id: &str, now: DateTime<Utc>) -> Result<Task, StoreError>;

    /// One task.
    async fn get_task(&self, id: &str) -> Result<Task, StoreError>;

    /// Every task whose idempotency key starts with `prefix` (the tasks an experiment or a deployment
    /// sent, keyed by it), oldest first.
    async fn tasks_with_key_prefix(&self, prefix: &str) -> Result<Vec<Task>, StoreError>;

    /// The `pipeline.apply` tasks that handed `pipeline` to `agent_id` and that it received
    /// (dispatched, running or succeeded), newest first: what entitles an agent to speak about a
    /// pipeline (see `gateway::grants`).
    async fn pipeline_hand_outs(&self, agent_id: &str, pipeline: &str) -> Result<Vec<Task>, StoreError>;

    /// Tasks matching the filter, newest first.
    async fn list_tasks(&self, filter: &TaskFilter, page: PageRequest) -> Result<Page<Task>, StoreError>;

    /// Agents with pending tasks whose `not_before` fell in `(since, until]` (retries now due).
    async fn agents_with_tasks_due_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;

    /// How many tasks of `agent_id` are due.
    async fn pending_task_count(&self, agent_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Counts and timings of the queue.
    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats, StoreError>;
}
