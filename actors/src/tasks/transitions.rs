//! How a status report changes a task. Pure, so the rules are tested without a database; the store
//! applies the result with an optimistic check that the task did not change meanwhile.

use chrono::{DateTime, Utc};
use phoenix_nats::wire::{ReportedTaskStatus, TaskStatusReport};

use super::{Task, TaskPolicy, TaskStatus};

/// What a report means for a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The task becomes this.
    Update(Box<Task>),
    /// A repeat, stale or backwards report: nothing changes.
    Ignore,
    /// The task belongs to another agent.
    NotYours,
}

/// Applies `report` from `agent_id` to `task` at `now`.
pub fn decide(
    task: &Task,
    agent_id: &str,
    report: &TaskStatusReport,
    now: DateTime<Utc>,
    policy: &TaskPolicy,
) -> Decision {
    if task.agent_id != agent_id {
        return Decision::NotYours;
    }
    let stale = report.attempt.is_some_and(|attempt| i64::from(attempt) != i64::from(task.attempts));
    // Only a task out with an agent can be reported on: a repeat of the report that sent it back to
    // pending (or finished it) must change nothing.
    let handed_out = matches!(task.status, TaskStatus::Dispatched | TaskStatus::Running);
    if !handed_out || stale {
        return Decision::Ignore;
    }
    let mut next = task.clone();
    next.updated_at = now;
    match report.status {
        ReportedTaskStatus::Running => {
            next.status = TaskStatus::Running;
            next.started_at = task.started_at.or(Some(now));
            next.lease_expires_at = Some(now + chrono_duration(policy.lease));
            next.progress = report.progress.clone().or_else(|| task.progress.clone());
        }
        ReportedTaskStatus::Succeeded => {
            next.status = TaskStatus::Succeeded;
            next.started_at = task.started_at.or(Some(now));
            next.finished_at = Some(now);
            next.lease_expires_at = None;
            next.result = report.result.clone();
        }
        ReportedTaskStatus::Failed => {
            next.error = Some(report.error.clone().unwrap_or_else(|| "the agent reported a failure".into()));
            next.lease_expires_at = None;
            if report.retryable && task.attempts < task.max_attempts {
                next.status = TaskStatus::Pending;
                next.not_before = now + chrono_duration(policy.backoff(task.attempts));
            } else {
                next.status = TaskStatus::Failed;
                next.finished_at = Some(now);
            }
        }
    }
    Decision::Update(Box::new(next))
}

/// A dispatched or running task whose lease ran out: handed out again, or failed after its last attempt.
pub fn lease_expired(task: &Task, now: DateTime<Utc>) -> Task {
    let mut next = task.clone();
    next.updated_at = now;
    next.lease_expires_at = None;
    if task.attempts < task.max_attempts {
        next.status = TaskStatus::Pending;
        next.not_before = now;
    } else {
        next.status = TaskStatus::Failed;
        next.finished_at = Some(now);
        next.error = Some(format!("no progress reported within the lease, {} attempts made", task.attempts));
    }
    next
}

/// `std` durations as `chrono` ones (saturating: a policy never needs more than centuries).
pub fn chrono_duration(duration: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskStatus, attempts: i32) -> Task {
        Task { attempts, ..Task::sample("a1", status) }
    }

    fn report(status: ReportedTaskStatus) -> TaskStatusReport {
        TaskStatusReport {
            task_id: "t1".into(),
            attempt: None,
            status,
            progress: None,
            result: None,
            error: None,
            retryable: true,
        }
    }

    fn updated(decision: Decision) -> Task {
        match decision {
            Decision::Update(task) => *task,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    #[test]
    fn running_extends_the_lease_and_keeps_the_first_start_time() {
        let policy = TaskPolicy::default();
        let now = Utc::now();
        let first =
            updated(decide(&task(TaskStatus::Dispatched, 1), "a1", &report(ReportedTaskStatus::Running), now, &policy));
        assert_eq!(first.status, TaskStatus::Running);
        assert_eq!(first.lease_expires_at, Some(now + chrono::Duration::seconds(60)));
        let later = now + chrono::Duration::seconds(30);
        let second = updated(decide(&first, "a1", &report(ReportedTaskStatus::Running), later, &policy));
        assert_eq!(second.started_at, Some(now));
        assert_eq!(second.lease_expires_at, Some(later + chrono::Duration::seconds(60)));
    }

    #[test]
    fn a_retryable_failure_goes_back_to_pending_after_a_backoff_until_attempts_run_out() {
        let policy = TaskPolicy::default();
        let now = Utc::now();
        let retry =
            updated(decide(&task(TaskStatus::Running, 2), "a1", &report(ReportedTaskStatus::Failed), now, &policy));
        assert_eq!(retry.status, TaskStatus::Pending);
        assert_eq!(retry.not_before, now + chrono::Duration::seconds(4));
        let last =
            updated(decide(&task(TaskStatus::Running, 3), "a1", &report(ReportedTaskStatus::Failed), now, &policy));
        assert_eq!(last.status, TaskStatus::Failed);
        let mut fatal = report(ReportedTaskStatus::Failed);
        fatal.retryable = false;
        assert_eq!(
            updated(decide(&task(TaskStatus::Running, 1), "a1", &fatal, now, &policy)).status,
            TaskStatus::Failed
        );
    }

    #[test]
    fn a_repeated_failure_of_a_task_waiting_for_its_retry_changes_nothing() {
        let policy = TaskPolicy::default();
        let retrying = updated(decide(
            &task(TaskStatus::Running, 1),
            "a1",
            &report(ReportedTaskStatus::Failed),
            Utc::now(),
            &policy,
        ));
        assert_eq!(retrying.status, TaskStatus::Pending);
        for again in [ReportedTaskStatus::Failed, ReportedTaskStatus::Running] {
            assert_eq!(decide(&retrying, "a1", &report(again), Utc::now(), &policy), Decision::Ignore);
        }
    }

    #[test]
    fn terminal_tasks_stale_attempts_and_other_agents_reports_change_nothing() {
        let policy = TaskPolicy::default();
        let now = Utc::now();
        let done = task(TaskStatus::Succeeded, 1);
        assert_eq!(decide(&done, "a1", &report(ReportedTaskStatus::Running), now, &policy), Decision::Ignore);
        let mut old_attempt = report(ReportedTaskStatus::Failed);
        old_attempt.attempt = Some(1);
        assert_eq!(decide(&task(TaskStatus::Running, 2), "a1", &old_attempt, now, &policy), Decision::Ignore);
        assert_eq!(
            decide(&task(TaskStatus::Running, 1), "a2", &report(ReportedTaskStatus::Running), now, &policy),
            Decision::NotYours
        );
    }

    #[test]
    fn an_expired_lease_hands_the_task_out_again_or_fails_it_after_the_last_attempt() {
        let now = Utc::now();
        assert_eq!(lease_expired(&task(TaskStatus::Dispatched, 1), now).status, TaskStatus::Pending);
        let failed = lease_expired(&task(TaskStatus::Running, 3), now);
        assert_eq!(failed.status, TaskStatus::Failed);
        assert!(failed.error.unwrap_or_default().contains("3 attempts"));
    }
}
