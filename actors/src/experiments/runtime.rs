//! What an experiment does: the operator's commands and, in each active phase, the reconciliation that
//! moves it on. The [`ExperimentActor`](super::actor::ExperimentActor) serialises calls into this; the
//! logic lives here so it reads top to bottom.
//!
//! Every change is persisted (phase and history entry in one transaction, compare-and-set on the phase)
//! before it is announced. Tasks sent to agents carry an idempotency key derived from the experiment,
//! agent, variant and verb, so a step repeated after a crash or a retry never sends a task twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use phoenix_pipeline::config::config_hash;
use serde::Deserialize;
use serde_json::{json, Value};

use super::handover::{self, RemoveWhen};
use super::kpis::{self, PriceModel};
use super::window::{self, BASELINE, CANDIDATE};
use super::{Action, Experiment, Phase, PhaseChange, Target};
use crate::agents::{Agent, AgentState};
use crate::deployments::{rollout, Deployment, DeploymentVersion, NewDeployment, NewVersion, Promotion, Rollout};
use crate::events::Events;
use crate::store::{Store, StoreError};
use crate::tasks::transitions::chrono_duration;
use crate::tasks::{NewTask, Task, TaskQueue, TaskStatus};

/// How experiments behave (the `[experiments]` section of the configuration).
#[derive(Debug, Clone)]
pub struct ExperimentSettings {
    /// How often an active experiment checks its tasks and agents (task reports also wake it at once).
    pub reconcile_interval: Duration,
    /// Seconds between two measurements of an agent (turns per-interval counts into rates).
    pub measure_interval_secs: f64,
    /// The prices and their currency, reported with every cost.
    pub prices: PriceModel,
    /// Hand-outs of an apply task before the experiment fails.
    pub apply_attempts: i32,
    /// How long an apply may wait for an agent that does not pick it up.
    pub deploy_timeout: Duration,
    /// How long `stopping` waits for agents to confirm the removal before `stopped`.
    pub stop_timeout: Duration,
    /// The experiment fails when more than this share of its agents is lost (offline or gone), percent.
    pub max_lost_agents_pct: f64,
}

/// An operator's request.
#[derive(Debug, Clone)]
pub struct Command {
    pub action: Action,
    /// The user asking; `None` for the system (auto-promotion).
    pub actor: Option<String>,
    /// For `promote`: where the candidate goes.
    pub promote: PromoteRequest,
}

/// `POST /experiments/{id}/promote`'s body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Add a version to this deployment instead of creating one.
    pub deployment_id: Option<String>,
    /// The new deployment's name (default: the experiment's).
    pub name: Option<String>,
    /// Notes for the version.
    pub notes: Option<String>,
}

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Not allowed in this phase.
    #[error("cannot {action} an experiment that is {}", phase.as_str())]
    NotAllowed { action: &'static str, phase: Phase, allowed: Vec<&'static str> },
    /// Allowed, but it cannot be done as asked (e.g. no agent matches the target).
    #[error("{0}")]
    Invalid(String),
    /// Allowed, but it clashes with existing state (e.g. a deployment of that name exists).
    #[error("{0}")]
    Conflict(String),
    /// Something the command names (other than the experiment) does not exist.
    #[error("{0}")]
    Missing(String),
    /// It could not be done now without losing something; it may succeed if tried again.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The pipeline's name on the agents for one variant.
pub fn pipeline_name(experiment_id: &str, variant: &str) -> String {
    format!("exp-{experiment_id}-{variant}")
}

/// The prefix of every task key of an experiment.
pub fn task_key_prefix(experiment_id: &str) -> String {
    format!("exp:{experiment_id}:")
}

/// The experiment a task key belongs to.
pub fn experiment_of_task_key(key: &str) -> Option<&str> {
    key.strip_prefix("exp:")?.split(':').next()
}

fn task_key(experiment_id: &str, agent_id: &str, variant: &str, verb: &str) -> String {
    format!("exp:{experiment_id}:{agent_id}:{variant}:{verb}")
}

use crate::tasks::types::{PIPELINE_APPLY as APPLY, PIPELINE_REMOVE as REMOVE};
pub const VARIANTS: [&str; 2] = [BASELINE, CANDIDATE];

/// The experiment's tasks, by key.
struct Sent(BTreeMap<String, Task>);

impl Sent {
    /// The tasks of one verb (`apply` or `remove`).
    fn of_verb<'a>(&'a self, verb: &str) -> impl Iterator<Item = &'a Task> + 'a {
        let suffix = format!(":{verb}");
        self.0.iter().filter(move |(key, _)| key.ends_with(&suffix)).map(|(_, task)| task)
    }
}

/// The logic of experiments, with what it needs. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) queue: TaskQueue,
    pub(crate) events: Events,
    pub(crate) settings: Arc<ExperimentSettings>,
}

impl Runtime {
    pub fn new(store: Arc<dyn Store>, queue: TaskQueue, events: Events, settings: ExperimentSettings) -> Self {
        Runtime { store, queue, events, settings: Arc::new(settings) }
    }

    pub fn settings(&self) -> &ExperimentSettings {
        &self.settings
    }

    /// Carries out an operator's command (not `delete`, which the service handles).
    pub async fn execute(&self, experiment: Experiment, command: Command) -> Result<Experiment, CommandError> {
        if experiment.phase.after(command.action).is_none() {
            return Err(not_allowed(command.action, experiment.phase));
        }
        let id = experiment.id.clone();
        let outcome = match command.action {
            Action::Start => self.start(experiment, command.actor).await,
            Action::Stop => self.stop(experiment, command.actor).await,
            Action::Rollback => self.rollback(experiment, command.actor).await,
            Action::Promote => self.promote(experiment, command.promote, command.actor).await.map(|(e, _, _)| e),
            Action::Delete => Err(CommandError::Invalid("delete is not a phase change".into())),
        };
        match outcome {
            Err(CommandError::Store(StoreError::Conflict(reason))) => {
                let now = self.store.get_experiment(&id).await?;
                match now.phase.after(command.action) {
                    // Another writer moved it first: answer with the phase it is in now.
                    None => Err(not_allowed(command.action, now.phase)),
                    Some(_) => Err(CommandError::Conflict(reason)),
                }
            }
            other => other,
        }
    }

    /// Moves the experiment on as far as its tasks, agents and clock allow.
    pub async fn reconcile(&self, experiment: Experiment) -> Result<Experiment, StoreError> {
        match experiment.phase {
            Phase::Deploying => self.reconcile_deploying(experiment).await,
            Phase::Running => self.reconcile_running(experiment).await,
            Phase::Analyzing => self.analyse(experiment).await,
            Phase::Stopping => self.reconcile_stopping(experiment).await,
            _ => Ok(experiment),
        }
    }

    // --- commands ---

    async fn start(&self, experiment: Experiment, actor: Option<String>) -> Result<Experiment, CommandError> {
        let agents = self.resolve_target(&experiment.spec.target).await?;
        let change = PhaseChange {
            message: format!("started on {} agent(s)", agents.len()),
            actor,
            started_at: Some(Utc::now()),
            target_agents: Some(agents),
            ..PhaseChange::default()
        };
        let experiment = self.transition(&experiment, Phase::Deploying, change).await?;
        self.send_missing(&experiment, &Sent(BTreeMap::new()), APPLY).await;
        Ok(experiment)
    }

    async fn stop(&self, experiment: Experiment, actor: Option<String>) -> Result<Experiment, CommandError> {
        let change = PhaseChange { message: "stop requested".into(), actor, ..PhaseChange::default() };
        let stopping = self.transition(&experiment, Phase::Stopping, change).await?;
        // The stop is committed: a failure from here on is the actor's to retry, not the caller's.
        match self.reconcile_stopping(stopping.clone()).await {
            Ok(moved) => Ok(moved),
            Err(e) => {
                tracing::warn!(experiment.id = %stopping.id, error = %e, "removing the pipelines failed; retrying");
                Ok(stopping)
            }
        }
    }

    /// Removes the candidate from every agent and keeps the baseline running.
    async fn rollback(&self, experiment: Experiment, actor: Option<String>) -> Result<Experiment, CommandError> {
        let sent = self.sent(&experiment).await?;
        self.cancel_unfinished_applies(&sent).await;
        for agent in &experiment.target_agents {
            // A removal that cannot be sent now is sent by the removal sweep.
            let _ = self.send(&experiment, agent, CANDIDATE, REMOVE).await;
        }
        let change = PhaseChange {
            message: "rolled back: the candidate was removed, the baseline keeps running".into(),
            actor,
            completed_at: Some(Utc::now()),
            ..PhaseChange::default()
        };
        Ok(self.transition(&experiment, Phase::RolledBack, change).await?)
    }

    /// Records the candidate as a deployment version (the supervisor rolls it out) and removes the
    /// experiment's two pipelines.
    pub async fn promote(
        &self,
        experiment: Experiment,
        request: PromoteRequest,
        actor: Option<String>,
    ) -> Result<(Experiment, Deployment, DeploymentVersion), CommandError> {
        let config = experiment
            .candidate_config
            .clone()
            .ok_or_else(|| CommandError::Invalid("the experiment has no rendered candidate config".into()))?;
        let version = NewVersion {
            pipeline: experiment.spec.candidate.clone(),
            config_hash: config_hash(&config),
            config,
            notes: request
                .notes
                .unwrap_or_else(|| format!("promoted from experiment {} ({})", experiment.spec.name, experiment.id)),
            created_by: actor.clone(),
        };
        let promotion = match request.deployment_id {
            Some(deployment_id) => Promotion::Existing { deployment_id, version },
            None => Promotion::New(NewDeployment {
                name: request.name.unwrap_or_else(|| experiment.spec.name.clone()),
                target: experiment.spec.target.clone(),
                rollout: Rollout::AllAtOnce,
                version,
            }),
        };
        let change = PhaseChange {
            message: "promoted: the candidate is now a deployment".into(),
            actor,
            completed_at: Some(Utc::now()),
            ..PhaseChange::default()
        };
        let into = match &promotion {
            Promotion::Existing { deployment_id, .. } => Some(deployment_id.clone()),
            Promotion::New(_) => None,
        };
        let (promoted, deployment, version) =
            self.store.promote_experiment(&experiment.id, promotion, change, Utc::now()).await.map_err(|e| {
                match (e, into) {
                    (StoreError::NotFound, Some(id)) => {
                        CommandError::Missing(format!("deployment {id} not found (or deleted)"))
                    }
                    (e, _) => CommandError::Store(e),
                }
            })?;
        self.announce_phase(&promoted, experiment.phase).await;
        self.events.publish("deployment", &deployment.id, "deployment.version_created", &version).await;
        // The deployment supervisor rolls the version out (it follows `deployment.version_created`). Each
        // agent removes the experiment's pipelines once the deployment's runs there (`handover.rs`): the
        // removal sweep sends those removals; here only to agents already running the deployment.
        let _ = self.send_owed_removals(&promoted, &VARIANTS, RemoveWhen::AfterHandover).await;
        Ok((promoted, deployment, version))
    }

    // --- reconciliation per phase ---

    async fn reconcile_deploying(&self, experiment: Experiment) -> Result<Experiment, StoreError> {
        let sent = self.sent(&experiment).await?;
        self.send_missing(&experiment, &sent, APPLY).await;
        if let Some(reason) = failed_apply(&sent) {
            return self.fail(experiment, reason).await;
        }
        if let Some(reason) = self.lost_agents(&experiment).await? {
            return self.fail(experiment, reason).await;
        }
        let expected = experiment.target_agents.len() * VARIANTS.len();
        let succeeded = sent.of_verb("apply").filter(|t| t.status == TaskStatus::Succeeded).count();
        if succeeded < expected {
            return Ok(experiment);
        }
        let now = Utc::now();
        let change = PhaseChange {
            message: format!(
                "both variants run on all {} agent(s); warm-up {} s, then {} s measured",
                experiment.target_agents.len(),
                experiment.spec.warmup_secs,
                experiment.spec.duration_secs
            ),
            measuring_from: Some(now + super::seconds(experiment.spec.warmup_secs)),
            ..PhaseChange::default()
        };
        self.transition(&experiment, Phase::Running, change).await
    }

    async fn reconcile_running(&self, experiment: Experiment) -> Result<Experiment, StoreError> {
        if let Some(reason) = self.lost_agents(&experiment).await? {
            return self.fail(experiment, reason).await;
        }
        match experiment.measuring_until() {
            Some(until) if Utc::now() >= until => {
                let change = PhaseChange { message: "the measurement window ended".into(), ..PhaseChange::default() };
                let experiment = self.transition(&experiment, Phase::Analyzing, change).await?;
                self.analyse(experiment).await
            }
            _ => Ok(experiment),
        }
    }

    /// Computes the final KPIs: `completed` with them, or `failed` when the data cannot support a
    /// verdict. A `pass` with `auto_promote` promotes at once.
    async fn analyse(&self, experiment: Experiment) -> Result<Experiment, StoreError> {
        let report = self.kpis(&experiment, true).await?;
        let Some(verdict) = report.get("verdict").and_then(Value::as_str).map(str::to_string) else {
            let reason = report["insufficient_data"].as_str().unwrap_or("no verdict could be reached").to_string();
            return self.fail(experiment, reason).await;
        };
        let change = PhaseChange {
            message: format!("analysed: verdict {verdict}"),
            completed_at: Some(Utc::now()),
            results: Some(report),
            ..PhaseChange::default()
        };
        let completed = self.transition(&experiment, Phase::Completed, change).await?;
        if verdict != "pass" || !completed.spec.auto_promote {
            return Ok(completed);
        }
        self.auto_promote(completed).await
    }

    /// Whether a completed experiment still owes its automatic promotion — the server stopped between
    /// storing `completed` and promoting: a pass with `auto_promote`, no deployment, no failed attempt.
    pub async fn owes_auto_promotion(&self, experiment: &Experiment) -> Result<bool, StoreError> {
        let passed = experiment.results.as_ref().and_then(|r| r.get("verdict")).and_then(Value::as_str) == Some("pass");
        if experiment.phase != Phase::Completed || !experiment.spec.auto_promote || !passed {
            return Ok(false);
        }
        if experiment.deployment_id.is_some() {
            return Ok(false);
        }
        let events = self.store.experiment_events(&experiment.id).await?;
        Ok(!events.iter().any(|e| e.event_type == "auto_promote_failed"))
    }

    /// Promotes a passing `auto_promote` experiment. A refusal (say, a deployment of that name exists)
    /// is recorded as an event and not tried again; a database failure is left to the sweep to retry,
    /// and losing a race to another promotion is no failure at all.
    pub async fn auto_promote(&self, completed: Experiment) -> Result<Experiment, StoreError> {
        match self.promote(completed.clone(), PromoteRequest::default(), None).await {
            Ok((promoted, _, _)) => Ok(promoted),
            Err(CommandError::Store(e)) => {
                tracing::warn!(experiment.id = %completed.id, error = %e, "automatic promotion failed; the sweep retries");
                Ok(completed)
            }
            Err(CommandError::NotAllowed { phase, .. }) if phase != Phase::Completed => Ok(completed),
            Err(e) => {
                tracing::warn!(experiment.id = %completed.id, error = %e, "automatic promotion failed");
                let message = format!("automatic promotion failed: {e}");
                self.store
                    .record_experiment_event(&completed.id, "auto_promote_failed", &message, None, Utc::now())
                    .await?;
                Ok(completed)
            }
        }
    }

    async fn reconcile_stopping(&self, experiment: Experiment) -> Result<Experiment, StoreError> {
        let sent = self.sent(&experiment).await?;
        self.cancel_unfinished_applies(&sent).await;
        let just_sent = self.send_missing(&experiment, &sent, REMOVE).await;
        // Confirmed means the agent reported the removal done; a failed or expired one is not.
        let unconfirmed: BTreeSet<String> = sent
            .of_verb("remove")
            .filter(|t| t.status != TaskStatus::Succeeded)
            .map(|t| t.agent_id.clone())
            .chain(just_sent)
            .collect();
        let timed_out = Utc::now() - experiment.updated_at >= chrono_duration(self.settings.stop_timeout);
        if !unconfirmed.is_empty() && !timed_out {
            return Ok(experiment);
        }
        let message = if unconfirmed.is_empty() {
            format!("stopped: pipelines removed from {} agent(s)", experiment.target_agents.len())
        } else {
            format!(
                "stopped; {} agent(s) did not confirm the removal within {} s (it stays queued for them until \
                 the task expires): {}",
                unconfirmed.len(),
                self.settings.stop_timeout.as_secs(),
                unconfirmed.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let change = PhaseChange { message, completed_at: Some(Utc::now()), ..PhaseChange::default() };
        self.transition(&experiment, Phase::Stopped, change).await
    }

    /// Removes both pipelines everywhere, then records the failure.
    async fn fail(&self, experiment: Experiment, reason: String) -> Result<Experiment, StoreError> {
        tracing::warn!(experiment.id = %experiment.id, reason = %reason, "experiment failed");
        let sent = self.sent(&experiment).await?;
        self.cancel_unfinished_applies(&sent).await;
        self.send_missing(&experiment, &sent, REMOVE).await;
        let change = PhaseChange {
            message: reason,
            keep_reason: true,
            completed_at: Some(Utc::now()),
            ..PhaseChange::default()
        };
        self.transition(&experiment, Phase::Failed, change).await
    }

    // --- KPIs ---

    /// The KPI report over the measurement window (so far, unless `final_window`): the DESIGN §6 shape,
    /// or `insufficient_data` saying why there is none.
    pub async fn kpis(&self, experiment: &Experiment, final_window: bool) -> Result<Value, StoreError> {
        let (Some(from), Some(until)) = (experiment.measuring_from, experiment.measuring_until()) else {
            return Ok(json!({
                "final": false,
                "window": null,
                "insufficient_data": "the measurement window has not started",
            }));
        };
        let to = if final_window { until } else { until.min(Utc::now()) };
        let samples =
            if to > from { self.store.experiment_samples(&experiment.id, from, to).await? } else { Vec::new() };
        let aligned = window::align(&samples, self.settings.measure_interval_secs);
        let window =
            json!({"from": from, "to": to, "intervals": aligned.baseline.series.len(), "agents": aligned.agents});
        let s = &experiment.spec.success_criteria;
        let analysis =
            kpis::analyse(&aligned.baseline, &aligned.candidate, aligned.accuracy_pct, s, self.settings.prices);
        let per_metric = kpis::per_metric(&aligned.per_metric);
        Ok(match analysis {
            Ok(a) => report(&a, &per_metric, window, final_window, self.settings.prices.currency.as_str()),
            Err(reason) => json!({"final": final_window, "window": window, "insufficient_data": reason}),
        })
    }

    /// Per-variant, per-interval measurements since the variants started (warm-up included).
    pub async fn timeline(&self, experiment: &Experiment) -> Result<Value, StoreError> {
        let Some(since) = experiment.running_since() else {
            return Ok(json!({"measuring_from": null, "intervals": []}));
        };
        let until = experiment.measuring_until().map_or_else(Utc::now, |u| u.min(Utc::now()));
        let samples =
            if until > since { self.store.experiment_samples(&experiment.id, since, until).await? } else { Vec::new() };
        let aligned = window::align(&samples, self.settings.measure_interval_secs);
        let variant = |w: &kpis::VariantWindow, k: usize| {
            json!({
                "series": w.series[k],
                "points_per_sec": w.points_per_sec[k],
                "cpu_seconds_per_sec": w.cpu_seconds_per_sec[k],
                "memory_bytes": w.memory_bytes[k],
            })
        };
        let intervals: Vec<Value> = (0..aligned.at.len())
            .map(|k| json!({"at": aligned.at[k], "baseline": variant(&aligned.baseline, k), "candidate": variant(&aligned.candidate, k)}))
            .collect();
        Ok(json!({"measuring_from": experiment.measuring_from, "agents": aligned.agents, "intervals": intervals}))
    }

    // --- helpers ---

    /// Persists the move, then announces it.
    async fn transition(
        &self,
        experiment: &Experiment,
        to: Phase,
        change: PhaseChange,
    ) -> Result<Experiment, StoreError> {
        let moved = self.store.change_phase(&experiment.id, experiment.phase, to, change, Utc::now()).await?;
        self.announce_phase(&moved, experiment.phase).await;
        Ok(moved)
    }

    async fn announce_phase(&self, experiment: &Experiment, from: Phase) {
        tracing::info!(experiment.id = %experiment.id, from = from.as_str(), to = experiment.phase.as_str(), "experiment phase changed");
        let data = json!({"id": experiment.id, "from": from, "to": experiment.phase, "reason": experiment.reason, "experiment": experiment.view()});
        self.events.publish("experiment", &experiment.id, "experiment.phase_changed", data).await;
    }

    /// The agents a target names now: those matching the selector (not offline), or the listed ones
    /// (each must exist and be online).
    pub async fn resolve_target(&self, target: &Target) -> Result<Vec<String>, CommandError> {
        let found = target.agents(&*self.store).await?;
        match target {
            Target::Selector(labels) => {
                let agents: Vec<String> = found.into_iter().filter(reachable).map(|a| a.id).collect();
                if agents.is_empty() {
                    return Err(CommandError::Invalid(format!(
                        "no online agent matches the target selector {}",
                        serde_json::to_string(labels).unwrap_or_default()
                    )));
                }
                Ok(agents)
            }
            Target::Agents(ids) => {
                let found: BTreeMap<String, Agent> = found.into_iter().map(|a| (a.id.clone(), a)).collect();
                let problems: Vec<String> = ids
                    .iter()
                    .filter_map(|id| match found.get(id) {
                        None => Some(format!("agent {id} does not exist")),
                        Some(a) if a.credential_revoked => Some(format!("agent {id} has a revoked credential")),
                        Some(a) if a.state == AgentState::Offline => Some(format!("agent {id} is offline")),
                        Some(_) => None,
                    })
                    .collect();
                if !problems.is_empty() {
                    return Err(CommandError::Invalid(problems.join("; ")));
                }
                Ok(ids.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect())
            }
        }
    }

    /// Why the experiment has lost too many agents, if it has.
    async fn lost_agents(&self, experiment: &Experiment) -> Result<Option<String>, StoreError> {
        let targets = &experiment.target_agents;
        if targets.is_empty() {
            return Ok(None);
        }
        let found: BTreeMap<String, Agent> =
            self.store.get_agents(targets).await?.into_iter().map(|a| (a.id.clone(), a)).collect();
        let lost: Vec<&String> = targets.iter().filter(|id| !found.get(*id).is_some_and(reachable)).collect();
        let lost_pct = lost.len() as f64 * 100.0 / targets.len() as f64;
        if lost.is_empty() || lost_pct <= self.settings.max_lost_agents_pct {
            return Ok(None);
        }
        let names: Vec<&str> = lost.iter().map(|s| s.as_str()).collect();
        Ok(Some(format!(
            "lost {} of {} agents (more than {}% allowed): {}",
            lost.len(),
            targets.len(),
            self.settings.max_lost_agents_pct,
            names.join(", ")
        )))
    }

    async fn sent(&self, experiment: &Experiment) -> Result<Sent, StoreError> {
        let tasks = self.store.tasks_with_key_prefix(&task_key_prefix(&experiment.id)).await?;
        Ok(Sent(tasks.into_iter().filter_map(|t| t.idempotency_key.clone().map(|k| (k, t))).collect()))
    }

    /// The variants an ended experiment must no longer run anywhere: both, except after a rollback
    /// (which keeps the baseline) and while `completed` (the operator has not decided yet).
    pub fn variants_to_remove(phase: Phase) -> &'static [&'static str] {
        match phase {
            Phase::Promoted | Phase::Stopped | Phase::Failed => &VARIANTS,
            Phase::RolledBack => &[CANDIDATE],
            _ => &[],
        }
    }

    /// Sends the removal of `variants` to every agent of the experiment that has not been sent it yet
    /// (found by task key, so this is idempotent) and still exists (a decommissioned agent runs nothing).
    /// Returns how many it sent, or `Err` when some could not be enqueued — the caller retries (the
    /// removal sweep) or refuses (delete).
    pub async fn send_owed_removals(
        &self,
        experiment: &Experiment,
        variants: &[&str],
        when: RemoveWhen,
    ) -> Result<usize, String> {
        let owed = |sent: &Sent, agent: &str, variant: &str| {
            !sent.0.contains_key(&task_key(&experiment.id, agent, variant, "remove"))
        };
        let sent = self.sent(experiment).await.map_err(|e| e.to_string())?;
        let handed_over = self.handed_over(experiment, when).await.map_err(|e| e.to_string())?;
        let owing: Vec<String> = experiment
            .target_agents
            .iter()
            .filter(|agent| variants.iter().any(|variant| owed(&sent, agent, variant)))
            .filter(|agent| handed_over(agent))
            .cloned()
            .collect();
        if owing.is_empty() {
            return Ok(0);
        }
        let present: BTreeSet<String> =
            self.store.get_agents(&owing).await.map_err(|e| e.to_string())?.into_iter().map(|a| a.id).collect();
        let (mut resent, mut failure) = (0, None);
        for agent in owing.iter().filter(|agent| present.contains(*agent)) {
            for variant in variants.iter().filter(|variant| owed(&sent, agent, variant)) {
                match self.send(experiment, agent, variant, REMOVE).await {
                    Ok(()) => resent += 1,
                    Err(e) => failure = Some(e),
                }
            }
        }
        failure.map_or(Ok(resent), Err)
    }

    /// Which agents may lose the experiment's pipelines now: after a promotion only those the
    /// deployment already runs on (or once the grace is over, `handover.rs`); otherwise all.
    async fn handed_over(
        &self,
        experiment: &Experiment,
        when: RemoveWhen,
    ) -> Result<impl Fn(&String) -> bool, StoreError> {
        let promotion = match (when, &experiment.phase, &experiment.deployment_id) {
            (RemoveWhen::AfterHandover, Phase::Promoted, Some(deployment)) => {
                let tasks = self.store.tasks_with_key_prefix(&rollout::key_prefix(deployment)).await?;
                // A promotion stamps `completed_at` with its own time.
                Some((tasks, experiment.completed_at.unwrap_or(experiment.updated_at)))
            }
            _ => None,
        };
        let now = Utc::now();
        Ok(move |agent: &String| match &promotion {
            Some((tasks, promoted_at)) => handover::handed_over(agent, tasks, *promoted_at, now),
            None => true,
        })
    }

    /// Sends `verb` for both variants to every agent that has not been sent it yet; returns those agents.
    async fn send_missing(&self, experiment: &Experiment, sent: &Sent, verb: &str) -> Vec<String> {
        let short = verb.trim_start_matches("pipeline.");
        let mut sent_to = Vec::new();
        for agent in &experiment.target_agents {
            for variant in VARIANTS {
                if !sent.0.contains_key(&task_key(&experiment.id, agent, variant, short)) {
                    let _ = self.send(experiment, agent, variant, verb).await;
                    sent_to.push(agent.clone());
                }
            }
        }
        sent_to
    }

    /// Enqueues one task (idempotent by its key). A failure is logged and returned: the next
    /// reconciliation (or, for an ended experiment, the removal sweep) sends it again.
    async fn send(&self, experiment: &Experiment, agent: &str, variant: &str, verb: &str) -> Result<(), String> {
        let name = pipeline_name(&experiment.id, variant);
        let (payload, ttl) = if verb == APPLY {
            let config = if variant == BASELINE {
                experiment.baseline_config.clone()
            } else {
                let stored = experiment.candidate_config.as_deref().unwrap_or_default();
                // Checked when the experiment was created: a failure here is a config changed since.
                Some(experiment.spec.candidate_as_tried(stored)?)
            };
            let payload = json!({
                "pipeline": name,
                "config": config,
                "config_hash": config.as_deref().map(config_hash),
                "experiment_id": experiment.id,
                "variant": variant,
                "critical": experiment.spec.critical_processes,
            });
            (payload, Some(self.settings.deploy_timeout.as_secs().max(1)))
        } else {
            (json!({"pipeline": name}), None)
        };
        let task = NewTask {
            agent_id: agent.to_string(),
            task_type: verb.to_string(),
            payload,
            priority: 0,
            max_attempts: Some(self.settings.apply_attempts),
            idempotency_key: Some(task_key(&experiment.id, agent, variant, verb.trim_start_matches("pipeline."))),
            ttl_secs: ttl,
        };
        self.queue.enqueue(task).await.map(|_| ()).map_err(|e| {
            tracing::warn!(experiment.id = %experiment.id, agent.id = agent, error = %e, "cannot send {verb}; retrying later");
            e.to_string()
        })
    }

    async fn cancel_unfinished_applies(&self, sent: &Sent) {
        for task in sent.of_verb("apply").filter(|t| !t.status.is_terminal()) {
            if let Err(e) = self.queue.cancel(&task.id).await {
                tracing::debug!(task.id = %task.id, error = %e, "apply already ended");
            }
        }
    }
}

/// An agent that can take tasks now.
fn reachable(agent: &Agent) -> bool {
    agent.state != AgentState::Offline && !agent.credential_revoked
}

/// The first apply that ended without success, as a reason.
fn failed_apply(sent: &Sent) -> Option<String> {
    sent.of_verb("apply")
        .find(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Expired | TaskStatus::Cancelled))
        .map(|t| {
            let variant = t.payload.get("variant").and_then(Value::as_str).unwrap_or("pipeline");
            let why = match (t.status, &t.error) {
                (TaskStatus::Expired, _) => "the agent did not pick it up in time".to_string(),
                (_, Some(error)) => error.clone(),
                (status, None) => format!("the task was {}", status.as_str()),
            };
            format!("agent {} could not apply the {variant} after {} attempt(s): {why}", t.agent_id, t.attempts)
        })
}

fn not_allowed(action: Action, phase: Phase) -> CommandError {
    CommandError::NotAllowed { action: action.as_str(), phase, allowed: phase.allowed_actions() }
}

/// The DESIGN §6 KPI shape.
fn report(
    a: &kpis::Analysis,
    per_metric: &[kpis::MetricKpis],
    window: Value,
    final_window: bool,
    currency: &str,
) -> Value {
    let variant = |v: &kpis::VariantKpis| {
        json!({
            "intervals": v.intervals,
            "series": v.active_series,
            "points_per_sec": v.points_per_sec,
            "cpu_seconds_per_sec": v.cpu_seconds_per_sec,
            "memory_bytes": v.memory_bytes,
            "cost_monthly": v.cost_monthly,
            "cost_yearly": v.cost_yearly,
        })
    };
    json!({
        "final": final_window,
        "window": window,
        "baseline": variant(&a.baseline),
        "candidate": variant(&a.candidate),
        "cardinality_reduction_pct": a.cardinality_reduction_pct,
        "ingest_reduction_pct": a.ingest_reduction_pct,
        "cpu_overhead_pct": a.cpu_overhead_pct,
        "memory_overhead_pct": a.memory_reduction_pct.map(|r| -r),
        "accuracy_pct": a.accuracy_pct,
        "per_metric": per_metric,
        "cost": {
            "currency": currency,
            "baseline_monthly": a.baseline.cost_monthly,
            "candidate_monthly": a.candidate.cost_monthly,
            "monthly_saving": a.monthly_saving,
            "yearly_saving": a.yearly_saving,
        },
        "verdict": a.verdict,
        "u": a.u,
        "p_value": a.p_value,
        "recommendation": a.recommendation,
    })
}
