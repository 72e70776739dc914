//! The task queue service: enqueue, hand out (pushed over NATS or pulled by long-poll), take reports,
//! and the maintenance loop that redelivers expired leases and wakes agents whose retries fall due.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use phoenix_nats::wire::{kinds, TaskAssignment, TaskStatusReport};
use phoenix_nats::{Bus, Envelope};

use super::changes::{FollowsTaskChanges, TaskChange};
use super::{NewTask, ReportOutcome, Task, TaskPolicy, TaskStatus};
use crate::agents::{AgentRegistryHandle, Transport};
use crate::events::Events;
use crate::store::{Store, StoreError};

/// Most tasks handed out in one poll or push.
pub const MAX_TASKS_PER_DELIVERY: u32 = 20;

/// The queue. Cheap to clone.
#[derive(Clone)]
pub struct TaskQueue {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    registry: AgentRegistryHandle,
    events: Events,
    policy: TaskPolicy,
    /// Tasks created here whose announcement has not come back from the bus yet: this replica
    /// delivered them already (see `follower`).
    created_here: Arc<Mutex<RecentIds>>,
}

/// Most ids `created_here` keeps (should announcements be lost, it must not grow without end).
const MAX_CREATED_HERE: usize = 100_000;

/// A set of ids that forgets its oldest when full: ids whose removal never comes (an announcement
/// lost on the bus) leave in time instead of growing the set without end.
struct RecentIds {
    ids: HashSet<String>,
    /// Insertion order; may still hold ids removed since (skipped when their turn to leave comes).
    order: VecDeque<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> RecentIds {
        RecentIds { ids: HashSet::new(), order: VecDeque::new(), capacity }
    }

    fn insert(&mut self, id: &str) {
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
    }

    /// Whether `id` was there (it is not any more).
    fn remove(&mut self, id: &str) -> bool {
        self.ids.remove(id)
    }
}

/// Most deliveries of tasks created elsewhere waiting their turn. Past it one is dropped: the task
/// waits for the agent's next poll (HTTP) or heartbeat (NATS) instead.
const MAX_PENDING_DELIVERIES: usize = 65_536;

/// See [`TaskQueue::follower`].
struct RemoteEnqueues {
    queue: TaskQueue,
    agents: tokio::sync::mpsc::Sender<String>,
    /// Set while deliveries are being dropped, so a flood logs one warning rather than one per task.
    overflowing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl FollowsTaskChanges for RemoteEnqueues {
    async fn task_changed(&self, change: &TaskChange) {
        use std::sync::atomic::Ordering;
        if change.event != "task.created" || self.queue.forget_created_here(&change.task_id) {
            return;
        }
        let queued = self.agents.try_send(change.agent_id.clone()).is_ok();
        if !queued && !self.overflowing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                waiting = MAX_PENDING_DELIVERIES,
                "too many deliveries of tasks created elsewhere waiting; until they drain, such tasks wait for \
                 their agent's next poll or heartbeat"
            );
        } else if queued {
            self.overflowing.store(false, Ordering::Relaxed);
        }
    }
}

impl TaskQueue {
    /// A queue over `store`, delivering through `bus` (NATS agents) and `registry` (long-poll waiters).
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        registry: AgentRegistryHandle,
        events: Events,
        policy: TaskPolicy,
    ) -> Self {
        let created_here = Arc::new(Mutex::new(RecentIds::new(MAX_CREATED_HERE)));
        TaskQueue { store, bus, registry, events, policy, created_here }
    }

    /// The queue's lease, retry and deadline policy.
    pub fn policy(&self) -> &TaskPolicy {
        &self.policy
    }

    /// Stores a task for an existing agent and delivers it at once: pushed when the agent is on NATS,
    /// else its long-poll is woken. An idempotency key already used returns the earlier task.
    pub async fn enqueue(&self, task: NewTask) -> Result<Task, StoreError> {
        self.store.get_agent(&task.agent_id).await?;
        let (task, created) = self.store.enqueue_task(task, &self.policy, Utc::now()).await?;
        if created {
            self.remember_created_here(&task.id);
            self.events.publish("task", &task.id, "task.created", &task).await;
            self.deliver(&task.agent_id).await;
        }
        Ok(task)
    }

    fn remember_created_here(&self, id: &str) {
        self.created_here.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id);
    }

    /// Whether the task was created here (its announcement is back: forgotten now).
    fn forget_created_here(&self, id: &str) -> bool {
        self.created_here.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id)
    }

    /// The follower of task changes that delivers every task created on another replica (each
    /// creation is announced on the bus as `task.created`; this replica's own were delivered when
    /// created) as if it had been created here: an agent may be long-polling this replica while
    /// another enqueues its work, and only the replicas that took the agent's heartbeats (shared among
    /// them by a queue group) know it is on NATS. Claiming is atomic, so the replicas that try push
    /// each task once. Deliveries run one at a time on a task of their own (spawned here), so a slow
    /// database does not hold up the other followers.
    pub fn follower(&self) -> Arc<dyn FollowsTaskChanges> {
        let (agents, mut due) = tokio::sync::mpsc::channel::<String>(MAX_PENDING_DELIVERIES);
        let queue = self.clone();
        actix::spawn(async move {
            while let Some(agent_id) = due.recv().await {
                queue.deliver(&agent_id).await;
            }
        });
        Arc::new(RemoteEnqueues { queue: self.clone(), agents, overflowing: Default::default() })
    }

    /// Hands due work to the agent: over NATS when it is connected there, and in every case wakes
    /// its long-poll waiters (an agent on NATS may still poll, e.g. while falling back).
    pub async fn deliver(&self, agent_id: &str) {
        self.registry.work_arrived(agent_id);
        if self.registry.transport(agent_id).await == Some(Transport::Nats) {
            if let Err(e) = self.push_due(agent_id).await {
                tracing::warn!(agent.id = agent_id, error = %e, "cannot push tasks over NATS; they stay queued");
            }
        }
    }

    /// Long-poll: claims due tasks; if there are none, waits (without polling the database) until work
    /// arrives or `wait` passes. An empty answer means the wait ended.
    pub async fn poll(&self, agent_id: &str, wait: Duration) -> Result<Vec<Task>, StoreError> {
        // Tasks an earlier poll took but whose answer never reached the agent (it had hung up).
        let stranded = self.unacknowledged(agent_id, self.policy.ack_window).await?;
        if !stranded.is_empty() {
            return Ok(stranded);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the claim: an enqueue between the claim and the wait still wakes us.
            let waiter = self.registry.register_waiter(agent_id).await;
            let tasks = self.claim(agent_id).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !tasks.is_empty() || remaining.is_zero() {
                return Ok(tasks);
            }
            let Some(waiter) = waiter else { return Ok(tasks) };
            if !waiter.wait(remaining).await {
                return self.claim(agent_id).await;
            }
        }
    }

    /// Claims the agent's due tasks and publishes each on its NATS task subject.
    pub async fn push_due(&self, agent_id: &str) -> Result<usize, StoreError> {
        let tasks = self.claim(agent_id).await?;
        self.publish_assignments(agent_id, &tasks).await;
        Ok(tasks.len())
    }

    /// Publishes again the tasks handed to the agent more than `older_than` ago that it has not
    /// acknowledged: after a reconnect, or when the hand-out went to a long-poll whose client had gone
    /// (the agent switched to NATS). Agents run a task id once, so a second copy is harmless.
    pub async fn push_unacknowledged(&self, agent_id: &str, older_than: Duration) -> Result<usize, StoreError> {
        let tasks = self.unacknowledged(agent_id, older_than).await?;
        self.publish_assignments(agent_id, &tasks).await;
        Ok(tasks.len())
    }

    /// Unacknowledged tasks handed out more than `older_than` ago, stamped as handed out again now.
    async fn unacknowledged(&self, agent_id: &str, older_than: Duration) -> Result<Vec<Task>, StoreError> {
        let now = Utc::now();
        let cutoff = now - super::transitions::chrono_duration(older_than);
        let tasks = self.store.unacknowledged_tasks(agent_id).await?;
        let stale: Vec<Task> = tasks.into_iter().filter(|t| t.dispatched_at.is_none_or(|at| at <= cutoff)).collect();
        if !stale.is_empty() {
            let ids: Vec<String> = stale.iter().map(|t| t.id.clone()).collect();
            self.store.mark_redelivered(&ids, now).await?;
        }
        Ok(stale)
    }

    /// Applies an agent's status report and announces the change.
    pub async fn report(&self, agent_id: &str, report: &TaskStatusReport) -> Result<ReportOutcome, StoreError> {
        let outcome = self.store.apply_task_report(agent_id, report, &self.policy, Utc::now()).await?;
        if let ReportOutcome::Applied(task) = &outcome {
            self.events.publish("task", &task.id, "task.updated", task).await;
        }
        Ok(outcome)
    }

    /// Cancels a task that has not finished yet.
    pub async fn cancel(&self, id: &str) -> Result<Task, StoreError> {
        let task = self.store.cancel_task(id, Utc::now()).await?;
        self.events.publish("task", &task.id, "task.updated", &task).await;
        Ok(task)
    }

    /// Runs the maintenance loop every `interval` until the process ends.
    pub async fn run_maintenance(self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Utc::now();
        loop {
            ticker.tick().await;
            let now = Utc::now();
            if let Err(e) = self.maintain(last, now).await {
                tracing::warn!(error = %e, "task maintenance failed; retrying next tick");
                continue;
            }
            last = now;
        }
    }

    /// One maintenance pass: reap expired leases and deadlines, then deliver work that fell due
    /// (redeliveries, and retries whose backoff ended) since the previous pass.
    pub async fn maintain(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut agents = std::collections::BTreeSet::new();
        for task in self.store.reap_tasks(now).await? {
            self.events.publish("task", &task.id, "task.updated", &task).await;
            if task.status == TaskStatus::Pending {
                agents.insert(task.agent_id);
            }
        }
        agents.extend(self.store.agents_with_tasks_due_between(since, now).await?);
        for agent_id in agents {
            self.deliver(&agent_id).await;
        }
        Ok(())
    }

    async fn claim(&self, agent_id: &str) -> Result<Vec<Task>, StoreError> {
        let tasks = self.store.claim_tasks(agent_id, MAX_TASKS_PER_DELIVERY, self.policy.lease, Utc::now()).await?;
        for task in &tasks {
            self.events.publish("task", &task.id, "task.updated", task).await;
        }
        Ok(tasks)
    }

    async fn publish_assignments(&self, agent_id: &str, tasks: &[Task]) {
        let Ok(subject) = self.bus.subjects().agent_tasks(agent_id) else {
            tracing::warn!(agent.id = agent_id, "agent id cannot be used in a subject");
            return;
        };
        for task in tasks {
            let envelope = Envelope::new(kinds::TASK, assignment(task, &self.policy));
            let published = match envelope.encode() {
                Ok(payload) => self.bus.publish(&subject, payload).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            // The row stays dispatched: if the push was lost, the lease runs out and it is handed out again.
            if let Err(e) = published {
                tracing::warn!(task.id = %task.id, agent.id = agent_id, error = %e, "cannot push a task");
            }
        }
    }
}

/// The wire form of a task handed to an agent.
pub fn assignment(task: &Task, policy: &TaskPolicy) -> TaskAssignment {
    TaskAssignment {
        task_id: task.id.clone(),
        task_type: task.task_type.clone(),
        payload: task.payload.clone(),
        attempt: u32::try_from(task.attempts).unwrap_or(0),
        lease_secs: policy.lease.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn recent_ids_forget_the_oldest_when_full_and_each_id_once() {
        let mut ids = RecentIds::new(3);
        for id in ["a", "b", "c", "d"] {
            ids.insert(id);
        }
        assert!(!ids.remove("a"), "the oldest left to make room");
        assert!(ids.remove("b") && ids.remove("d"));
        assert!(!ids.remove("b"), "removed once");
        // Removed ids still take their place in the order until their turn comes: never more than 3.
        ids.insert("e");
        assert!(ids.order.len() <= 3 && ids.ids.len() <= 3);
        assert!(ids.remove("c") && ids.remove("e"));
    }
}
