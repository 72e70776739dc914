//! The rollout plan: pure. Given a deployment, the agents its target names now and the tasks it has
//! sent, what each agent runs, what to send next and what the deployment's status is.
//!
//! Task keys say what a task is for: `deploy:<id>:<agent>:v<version>:g<generation>:r<resume>:apply` and
//! `deploy:<id>:<agent>:g<generation>:remove`. The generation counts the removals an agent has had, so a
//! version is applied again after the agent left the target and came back; the resume stamp gives
//! agents that failed before a `resume` a fresh try.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Deployment, DeploymentStatus, Rollout};
use crate::tasks::{Task, TaskStatus};

/// The prefix of every task key of a deployment.
pub fn key_prefix(deployment_id: &str) -> String {
    format!("deploy:{deployment_id}:")
}

/// The deployment a task key belongs to.
pub fn deployment_of_task_key(key: &str) -> Option<&str> {
    key.strip_prefix("deploy:")?.split(':').next()
}

pub fn apply_key(deployment_id: &str, agent: &str, version: i32, generation: usize, resume: i64) -> String {
    format!("deploy:{deployment_id}:{agent}:v{version}:g{generation}:r{resume}:apply")
}

pub fn remove_key(deployment_id: &str, agent: &str, generation: usize) -> String {
    format!("deploy:{deployment_id}:{agent}:g{generation}:remove")
}

/// What a task of the deployment is about.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    Apply { agent: String, version: i32, resume: i64 },
    Remove { agent: String },
}

fn parse(deployment_id: &str, key: &str) -> Option<Sent> {
    let rest = key.strip_prefix(&key_prefix(deployment_id))?;
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [agent, version, _generation, resume, "apply"] => Some(Sent::Apply {
            agent: agent.to_string(),
            version: version.strip_prefix('v')?.parse().ok()?,
            resume: resume.strip_prefix('r')?.parse().ok()?,
        }),
        [agent, _generation, "remove"] => Some(Sent::Remove { agent: agent.to_string() }),
        _ => None,
    }
}

/// Where one agent stands with the current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentRolloutState {
    /// It runs the current version.
    Applied,
    /// The current version is on its way (queued, handed out or running).
    InProgress,
    /// Its apply of the current version failed.
    Failed,
    /// Nothing sent yet (a later wave, or a paused rollout).
    Waiting,
    /// Not in the target any more: the pipeline is being removed.
    Removing,
}

/// One agent's line of `GET /deployments/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentRollout {
    pub agent_id: String,
    pub desired_version: Option<i32>,
    pub applied_version: Option<i32>,
    pub state: AgentRolloutState,
    pub last_error: Option<String>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Agents to send the current version to, with the generation of their key.
    pub apply: Vec<(String, usize)>,
    /// Agents to remove the pipeline from, with the generation of their key.
    pub remove: Vec<(String, usize)>,
    /// The status the deployment should have, and why.
    pub status: Option<(DeploymentStatus, Option<serde_json::Value>)>,
    /// Every agent concerned.
    pub agents: Vec<AgentRollout>,
    /// The wave being released (1-based), when a wave starts now.
    pub wave: Option<usize>,
    /// Applies not finished that must not run any more: of a superseded version, or to an agent that
    /// left the target (a late retry would otherwise bring the pipeline back after its removal).
    pub cancel: Vec<String>,
}

/// What the tasks say about one agent.
#[derive(Debug, Default)]
struct AgentHistory {
    /// Removals sent (the next key's generation).
    removals: usize,
    /// Highest version applied since the last removal.
    applied: Option<i32>,
    /// The latest task for the current version since the last removal (and the resume).
    current: Option<Task>,
    /// When the latest task for the current version was created.
    sent_at: Option<DateTime<Utc>>,
    /// A removal not finished yet.
    removing: bool,
    /// Applies not finished yet: (version, task id).
    open_applies: Vec<(i32, String)>,
}

fn histories(deployment: &Deployment, tasks: &[Task]) -> BTreeMap<String, AgentHistory> {
    let resume = resume_stamp(deployment);
    let mut by_agent: BTreeMap<String, AgentHistory> = BTreeMap::new();
    // Tasks come oldest first (UUIDv7 ids), so later ones override earlier ones.
    for task in tasks {
        let Some(sent) = task.idempotency_key.as_deref().and_then(|key| parse(&deployment.id, key)) else {
            continue;
        };
        match sent {
            Sent::Remove { agent } => {
                let history = by_agent.entry(agent).or_default();
                history.removals += 1;
                history.applied = None;
                history.current = None;
                history.sent_at = None;
                history.removing = !task.status.is_terminal();
            }
            Sent::Apply { agent, version, resume: stamp } => {
                let history = by_agent.entry(agent).or_default();
                if !task.status.is_terminal() {
                    history.open_applies.push((version, task.id.clone()));
                }
                if task.status == TaskStatus::Succeeded {
                    history.applied = history.applied.max(Some(version));
                }
                if version == deployment.current_version {
                    history.sent_at = Some(task.created_at);
                    // A failure before the last resume is forgotten (the agent gets another try); a task
                    // still under way, whenever it was sent, is in progress, not to be sent again.
                    if stamp == resume || !task.status.is_terminal() || task.status == TaskStatus::Succeeded {
                        history.current = Some(task.clone());
                    }
                }
            }
        }
    }
    by_agent
}

/// The stamp of the latest resume (0 before any).
pub fn resume_stamp(deployment: &Deployment) -> i64 {
    deployment.resumed_at.map_or(0, |at| at.timestamp_millis())
}

fn state_of(history: Option<&AgentHistory>, version: i32) -> (AgentRolloutState, Option<String>) {
    let Some(history) = history else { return (AgentRolloutState::Waiting, None) };
    if history.applied == Some(version) {
        return (AgentRolloutState::Applied, None);
    }
    match &history.current {
        None => (AgentRolloutState::Waiting, None),
        Some(task) if task.status == TaskStatus::Succeeded => (AgentRolloutState::Applied, None),
        Some(task) if task.status.is_terminal() => (
            AgentRolloutState::Failed,
            Some(task.error.clone().unwrap_or_else(|| format!("the apply was {}", task.status.as_str()))),
        ),
        Some(_) => (AgentRolloutState::InProgress, None),
    }
}

/// Cumulative agents released after each wave: `first`, then each wave `growth` times the previous.
fn wave_bounds(total: usize, first: u32, growth: f64) -> Vec<usize> {
    let mut bounds = Vec::new();
    let mut size = f64::from(first.max(1));
    let mut released = 0usize;
    while released < total {
        released = (released + size.ceil() as usize).min(total);
        bounds.push(released);
        size = (size * growth.max(1.0)).max(1.0);
    }
    bounds
}

/// The plan for `deployment` with `targets` (sorted agent ids) and its `tasks` (oldest first).
pub fn plan(deployment: &Deployment, targets: &[String], tasks: &[Task], now: DateTime<Utc>) -> Plan {
    let version = deployment.current_version;
    let histories = histories(deployment, tasks);
    let target_set: BTreeSet<&String> = targets.iter().collect();
    let mut plan = Plan::default();
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    let (mut applied, mut in_progress) = (0usize, 0usize);
    for agent in targets {
        let history = histories.get(agent);
        let (state, error) = state_of(history, version);
        match state {
            AgentRolloutState::Applied => applied += 1,
            AgentRolloutState::InProgress => in_progress += 1,
            AgentRolloutState::Failed => failed.push((agent.clone(), error.clone().unwrap_or_default())),
            AgentRolloutState::Waiting => waiting.push((agent.clone(), history.map_or(0, |h| h.removals))),
            AgentRolloutState::Removing => {}
        }
        plan.agents.push(AgentRollout {
            agent_id: agent.clone(),
            desired_version: Some(version),
            applied_version: history.and_then(|h| h.applied),
            state,
            last_error: error,
        });
    }
    for (agent, history) in &histories {
        let leaving = !target_set.contains(agent);
        plan.cancel.extend(
            history.open_applies.iter().filter(|(v, _)| leaving || *v != version).map(|(_, task)| task.clone()),
        );
    }
    // Agents that run (or are being sent) a version but are no longer in the target.
    for (agent, history) in &histories {
        if target_set.contains(agent) {
            continue;
        }
        let holds_pipeline =
            history.applied.is_some() || history.current.as_ref().is_some_and(|t| !t.status.is_terminal());
        if holds_pipeline {
            plan.remove.push((agent.clone(), history.removals));
        }
        if holds_pipeline || history.removing {
            plan.agents.push(AgentRollout {
                agent_id: agent.clone(),
                desired_version: None,
                applied_version: history.applied,
                state: AgentRolloutState::Removing,
                last_error: None,
            });
        }
    }
    let failure_detail = || {
        serde_json::json!({
            "version": version,
            "failed_agents": failed.iter().map(|(agent, error)| serde_json::json!({"agent_id": agent, "error": error})).collect::<Vec<_>>(),
        })
    };
    if deployment.status == DeploymentStatus::Paused {
        return plan;
    }
    match &deployment.rollout {
        Rollout::AllAtOnce => plan.apply = waiting.clone(),
        Rollout::Waves { first_batch, growth, interval_secs, max_failures } => {
            if failed.len() > *max_failures as usize {
                plan.status = Some((DeploymentStatus::Paused, Some(failure_detail())));
                return plan;
            }
            let released = targets.len() - waiting.len();
            let last_sent = histories.values().filter_map(|h| h.sent_at).max();
            let rested = last_sent.is_none_or(|at| (now - at).num_seconds() >= *interval_secs as i64);
            if in_progress == 0 && !waiting.is_empty() && (released == 0 || rested) {
                let bounds = wave_bounds(targets.len(), *first_batch, *growth);
                let wave = bounds.iter().position(|b| *b > released).unwrap_or(bounds.len() - 1);
                plan.apply = waiting.iter().take(bounds[wave] - released).cloned().collect();
                plan.wave = Some(wave + 1);
            }
        }
    }
    let pending = in_progress + plan.apply.len() + if plan.apply.is_empty() { waiting.len() } else { 0 };
    plan.status = Some(if targets.is_empty() || applied == targets.len() {
        (DeploymentStatus::Active, None)
    } else if pending > 0 {
        (DeploymentStatus::RollingOut, (!failed.is_empty()).then(failure_detail))
    } else if applied == 0 {
        (DeploymentStatus::Failed, Some(failure_detail()))
    } else {
        (DeploymentStatus::Degraded, Some(failure_detail()))
    });
    plan
}

/// How many of a deployment's agents stand where for its current version: the body of the
/// `deployment.progress` event, announced whenever it changes (agents applying a version otherwise
/// raise no deployment event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub id: String,
    pub version: i32,
    /// Every agent concerned, leaving ones included.
    pub agents: usize,
    pub applied: usize,
    pub in_progress: usize,
    pub failed: usize,
    pub waiting: usize,
    pub removing: usize,
}

impl Progress {
    pub fn of(deployment: &Deployment, agents: &[AgentRollout]) -> Progress {
        let count = |state: AgentRolloutState| agents.iter().filter(|a| a.state == state).count();
        Progress {
            id: deployment.id.clone(),
            version: deployment.current_version,
            agents: agents.len(),
            applied: count(AgentRolloutState::Applied),
            in_progress: count(AgentRolloutState::InProgress),
            failed: count(AgentRolloutState::Failed),
            waiting: count(AgentRolloutState::Waiting),
            removing: count(AgentRolloutState::Removing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::Target;
    use crate::pipelines::PipelineSpec;

    fn deployment(rollout: Rollout) -> Deployment {
        Deployment {
            id: "d".into(),
            name: "d".into(),
            template: None,
            pipeline: PipelineSpec::Inline { config: String::new() },
            target: Target::Agents(vec![]),
            rollout,
            status: DeploymentStatus::RollingOut,
            status_detail: None,
            current_version: 1,
            created_by: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            deleted_at: None,
            resumed_at: None,
        }
    }

    fn task(key: String, status: TaskStatus, error: Option<&str>) -> Task {
        Task {
            id: uuid::Uuid::now_v7().to_string(),
            agent_id: String::new(),
            task_type: String::new(),
            payload: serde_json::Value::Null,
            priority: 0,
            status,
            attempts: 1,
            max_attempts: 3,
            idempotency_key: Some(key),
            not_before: Utc::now(),
            lease_expires_at: None,
            expires_at: None,
            progress: None,
            result: None,
            error: error.map(str::to_string),
            created_at: Utc::now() - chrono::Duration::seconds(60),
            updated_at: Utc::now(),
            dispatched_at: None,
            started_at: None,
            finished_at: None,
        }
    }

    fn agents(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("a{i:02}")).collect()
    }

    #[test]
    fn waves_grow_by_the_factor_and_cover_everyone() {
        assert_eq!(wave_bounds(10, 1, 2.0), [1, 3, 7, 10]);
        assert_eq!(wave_bounds(5, 3, 5.0), [3, 5]);
        assert_eq!(wave_bounds(0, 1, 2.0), Vec::<usize>::new());
    }

    #[test]
    fn all_at_once_sends_everyone_and_is_active_when_all_applied() {
        let d = deployment(Rollout::AllAtOnce);
        let first = plan(&d, &agents(3), &[], Utc::now());
        assert_eq!(first.apply.len(), 3);
        assert_eq!(first.status.map(|s| s.0), Some(DeploymentStatus::RollingOut));
        let done: Vec<Task> =
            agents(3).iter().map(|a| task(apply_key("d", a, 1, 0, 0), TaskStatus::Succeeded, None)).collect();
        let after = plan(&d, &agents(3), &done, Utc::now());
        assert!(after.apply.is_empty());
        assert_eq!(after.status.map(|s| s.0), Some(DeploymentStatus::Active));
    }

    #[test]
    fn a_wave_failing_beyond_the_budget_pauses_and_the_next_waits_for_the_previous() {
        let d = deployment(Rollout::Waves { first_batch: 2, growth: 2.0, interval_secs: 0, max_failures: 0 });
        let first = plan(&d, &agents(6), &[], Utc::now());
        assert_eq!(first.apply.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["a00", "a01"]);
        assert_eq!(first.wave, Some(1));
        let running = vec![task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Running, None)];
        assert!(plan(&d, &agents(6), &running, Utc::now()).apply.is_empty(), "wave 1 not finished");
        let broken = vec![
            task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Succeeded, None),
            task(apply_key("d", "a01", 1, 0, 0), TaskStatus::Failed, Some("port in use")),
        ];
        let paused = plan(&d, &agents(6), &broken, Utc::now());
        let (status, detail) = paused.status.expect("status");
        assert_eq!(status, DeploymentStatus::Paused);
        assert_eq!(detail.expect("detail")["failed_agents"][0]["error"], "port in use");
        let fine = vec![
            task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Succeeded, None),
            task(apply_key("d", "a01", 1, 0, 0), TaskStatus::Succeeded, None),
        ];
        let second = plan(&d, &agents(6), &fine, Utc::now());
        assert_eq!(second.apply.len(), 4, "2, then 4 more");
        assert_eq!(second.wave, Some(2));
    }

    #[test]
    fn after_a_resume_failures_get_another_try_but_applies_under_way_are_not_sent_again() {
        let mut d = deployment(Rollout::AllAtOnce);
        d.resumed_at = Some(Utc::now());
        let before = vec![
            task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Failed, Some("port in use")),
            task(apply_key("d", "a01", 1, 0, 0), TaskStatus::Running, None),
        ];
        let plan = plan(&d, &agents(2), &before, Utc::now());
        assert_eq!(plan.apply, [("a00".to_string(), 0)], "only the failed one is sent again");
        assert_eq!(plan.agents[1].state, AgentRolloutState::InProgress);
    }

    #[test]
    fn applies_of_a_superseded_version_or_to_agents_that_left_are_cancelled() {
        let mut d = deployment(Rollout::AllAtOnce);
        d.current_version = 2;
        let old = task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Pending, None);
        let current = task(apply_key("d", "a00", 2, 0, 0), TaskStatus::Running, None);
        let gone = task(apply_key("d", "a09", 2, 0, 0), TaskStatus::Dispatched, None);
        let plan = plan(&d, &agents(1), &[old.clone(), current, gone.clone()], Utc::now());
        assert_eq!(plan.cancel, [old.id, gone.id]);
    }

    #[test]
    fn agents_that_leave_the_target_are_removed_and_come_back_with_a_new_generation() {
        let d = deployment(Rollout::AllAtOnce);
        let applied = vec![task(apply_key("d", "a00", 1, 0, 0), TaskStatus::Succeeded, None)];
        let left = plan(&d, &[], &applied, Utc::now());
        assert_eq!(left.remove, [("a00".to_string(), 0)]);
        let mut history = applied.clone();
        history.push(task(remove_key("d", "a00", 0), TaskStatus::Succeeded, None));
        let back = plan(&d, &agents(1), &history, Utc::now());
        assert_eq!(back.apply, [("a00".to_string(), 1)], "applied again, under generation 1");
    }

    #[test]
    fn progress_counts_the_agents_by_state() {
        let agent = |id: &str, state| AgentRollout {
            agent_id: id.into(),
            desired_version: Some(1),
            applied_version: None,
            state,
            last_error: None,
        };
        let agents = [
            agent("a", AgentRolloutState::Applied),
            agent("b", AgentRolloutState::Applied),
            agent("c", AgentRolloutState::InProgress),
            agent("d", AgentRolloutState::Failed),
            agent("e", AgentRolloutState::Waiting),
            agent("f", AgentRolloutState::Removing),
        ];
        let progress = Progress::of(&deployment(Rollout::AllAtOnce), &agents);
        let expected = Progress {
            id: "d".into(),
            version: 1,
            agents: 6,
            applied: 2,
            in_progress: 1,
            failed: 1,
            waiting: 1,
            removing: 1,
        };
        assert_eq!(progress, expected);
    }
}
