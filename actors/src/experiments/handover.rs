//! Promotion hands each host over from the experiment's pipelines to the deployment's: an agent is
//! told to remove `exp-<id>-baseline` and `exp-<id>-candidate` only once the deployment's pipeline runs
//! there, so the host is never without one. An agent the deployment never reaches (not in its target,
//! or its apply failed for good) has its experiment pipelines removed after [`HANDOVER_GRACE`] anyway:
//! a promoted experiment must not run forever.

use chrono::{DateTime, Duration, Utc};

use crate::deployments::rollout;
use crate::tasks::{Task, TaskStatus};

/// When the removals of a promoted experiment's pipelines may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveWhen {
    /// Agent by agent, once the deployment runs there ([`handed_over`]).
    AfterHandover,
    /// At once (the experiment is being deleted: nothing would remember them later).
    Now,
}

/// How long after a promotion an agent keeps the experiment's pipelines while waiting for the
/// deployment's.
pub const HANDOVER_GRACE: Duration = Duration::minutes(10);

/// Whether `agent` may now remove the experiment's pipelines: a `pipeline.apply` of the deployment
/// (any version) succeeded on it — `deployment_tasks` are the deployment's tasks — or the grace since
/// `promoted_at` is over.
pub fn handed_over(agent: &str, deployment_tasks: &[Task], promoted_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now >= promoted_at + HANDOVER_GRACE || deployment_tasks.iter().any(|task| runs_deployment_on(task, agent))
}

fn runs_deployment_on(task: &Task, agent: &str) -> bool {
    task.agent_id == agent
        && task.status == TaskStatus::Succeeded
        && task
            .idempotency_key
            .as_deref()
            .is_some_and(|key| rollout::deployment_of_task_key(key).is_some() && key.ends_with(":apply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(agent: &str, key: &str, status: TaskStatus) -> Task {
        Task { idempotency_key: Some(key.into()), ..Task::sample(agent, status) }
    }

    #[test]
    fn an_agent_hands_over_once_the_deployment_runs_there_or_the_grace_is_over() {
        let promoted = Utc::now();
        let soon = promoted + Duration::seconds(5);
        let applied = task("a", &rollout::apply_key("d", "a", 1, 0, 0), TaskStatus::Succeeded);
        let pending = task("b", &rollout::apply_key("d", "b", 1, 0, 0), TaskStatus::Dispatched);
        let removed = task("c", &rollout::remove_key("d", "c", 0), TaskStatus::Succeeded);
        let tasks = [applied, pending, removed];
        assert!(handed_over("a", &tasks, promoted, soon), "the deployment runs on a");
        assert!(!handed_over("b", &tasks, promoted, soon), "b's apply is not done yet");
        assert!(!handed_over("c", &tasks, promoted, soon), "a removal is no apply");
        assert!(!handed_over("z", &tasks, promoted, soon), "z is not in the deployment");
        let later = promoted + HANDOVER_GRACE;
        assert!(handed_over("b", &tasks, promoted, later) && handed_over("z", &tasks, promoted, later));
    }
}
