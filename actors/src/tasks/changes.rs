//! Following task changes: every replica reacts to the `task.*` events announced on the bus (the
//! queue delivers work created on another replica, an experiment's actor or a deployment's rollout
//! takes its next step). One subscription per replica reads them and decodes each once, for all its
//! followers: during a rollout to thousands of agents these are most of the bus traffic.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use phoenix_nats::{Bus, Envelope};
use serde::Deserialize;

/// How long an actor woken by task changes gathers them before it looks again: a burst (the thousands
/// of a large rollout) becomes one step.
pub const NUDGE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(50);

/// What the followers read of a task event (the body is the whole task; the rest is not decoded).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskChange {
    /// The event: `task.created` or `task.updated`; filled from the envelope.
    #[serde(skip)]
    pub event: String,
    #[serde(rename = "id")]
    pub task_id: String,
    pub agent_id: String,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl TaskChange {
    /// Decodes a `task.*` event; `None` for anything else.
    pub fn decode(payload: &[u8]) -> Option<TaskChange> {
        let envelope = Envelope::<TaskChange>::decode(payload).ok()?;
        if !envelope.kind.starts_with("task.") {
            return None;
        }
        Some(TaskChange { event: envelope.kind, ..envelope.body })
    }
}

/// Something on this replica that reacts to task changes. Called in turn for each change, so a
/// follower should be quick (send a message, wake a waiter) or its slowness holds the others up.
#[async_trait]
pub trait FollowsTaskChanges: Send + Sync {
    async fn task_changed(&self, change: &TaskChange);
}

/// Hands every task change announced on the bus to each of `followers`, for as long as the bus runs.
pub async fn follow_task_changes(bus: Arc<dyn Bus>, followers: Vec<Arc<dyn FollowsTaskChanges>>) {
    let subject = format!("{}.events.task.*", bus.subjects().prefix());
    let mut messages = match bus.subscribe(&subject).await {
        Ok(messages) => messages,
        Err(e) => {
            return tracing::warn!(
                error = %e,
                "cannot follow task changes: work created on other replicas waits for its agent's next poll or \
                 heartbeat, experiments and rollouts advance on their timers only"
            );
        }
    };
    while let Some(message) = messages.next().await {
        let Some(change) = TaskChange::decode(&message.payload) else { continue };
        for follower in &followers {
            follower.task_changed(&change).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: &str, body: serde_json::Value) -> phoenix_nats::Bytes {
        Envelope::new(kind, body).encode().unwrap()
    }

    #[test]
    fn a_task_event_gives_the_ids_its_followers_need() {
        let body = json!({"id": "t1", "agent_id": "a1", "idempotency_key": "deployment:d1:v2:a1", "status": "pending"});
        let change = TaskChange::decode(&event("task.created", body)).unwrap();
        let expected = TaskChange {
            event: "task.created".into(),
            task_id: "t1".into(),
            agent_id: "a1".into(),
            idempotency_key: Some("deployment:d1:v2:a1".into()),
        };
        assert_eq!(change, expected);
        let without_key = TaskChange::decode(&event("task.updated", json!({"id": "t2", "agent_id": "a1"}))).unwrap();
        assert_eq!(without_key.idempotency_key, None);
    }

    #[test]
    fn other_events_and_garbage_are_skipped() {
        assert_eq!(TaskChange::decode(&event("agent.online", json!({"id": "a1", "agent_id": "a1"}))), None);
        assert_eq!(TaskChange::decode(&event("task.created", json!({"id": "t1"}))), None);
        assert_eq!(TaskChange::decode(b"not json"), None);
    }
}
