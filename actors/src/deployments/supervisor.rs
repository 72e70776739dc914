//! The `DeploymentSupervisor` actor: for every live deployment it compares the version each target agent
//! has applied with the current one and sends what is missing, all at once or in waves; it removes the
//! pipeline from agents that left the target, and stores the deployment's status.
//!
//! It keeps no state of its own: everything comes from the database (deployments, agents, the tasks it
//! sent, keyed per deployment), so after a restart it simply carries on. It reconciles every deployment
//! on a timer, and one deployment at once when something happens to it (a task of it changed, a version
//! was created, an operator acted).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use futures_util::StreamExt;
use phoenix_nats::{Bus, Envelope};
use serde_json::json;

use super::rollout::{self, apply_key, deployment_of_task_key, remove_key, resume_stamp, AgentRollout, Plan, Progress};
use super::{Deployment, DeploymentStatus};
use crate::events::Events;
use crate::experiments::Target;
use crate::ownership::{deployment_lease, HeldLeases};
use crate::store::{NewDeploymentEvent, Store, StoreError};
use crate::tasks::changes::{FollowsTaskChanges, TaskChange, NUDGE_DEBOUNCE};
use crate::tasks::{types, NewTask, Task, TaskQueue};

/// Tasks enqueued at once during a rollout.
const SEND_CONCURRENCY: usize = 16;

/// The rollout logic, with what it needs. Cheap to clone.
#[derive(Clone)]
pub struct Rollouts {
    store: Arc<dyn Store>,
    queue: TaskQueue,
    events: Events,
    apply_attempts: i32,
    /// The progress last announced per deployment (by this replica: a new owner announces afresh).
    announced: Arc<Mutex<HashMap<String, Progress>>>,
}

impl Rollouts {
    pub fn new(store: Arc<dyn Store>, queue: TaskQueue, events: Events, apply_attempts: i32) -> Self {
        Rollouts { store, queue, events, apply_attempts, announced: Arc::default() }
    }

    /// Every agent the target names now (not revoked), sorted; offline ones included — their tasks wait.
    async fn targets(&self, target: &Target) -> Result<Vec<String>, StoreError> {
        let agents = target.agents(&*self.store).await?;
        let ids: BTreeSet<String> = agents.into_iter().filter(|a| !a.credential_revoked).map(|a| a.id).collect();
        Ok(ids.into_iter().collect())
    }

    async fn tasks(&self, deployment_id: &str) -> Result<Vec<Task>, StoreError> {
        self.store.tasks_with_key_prefix(&rollout::key_prefix(deployment_id)).await
    }

    /// Where every agent of the deployment stands.
    pub async fn agent_status(&self, deployment: &Deployment) -> Result<Vec<AgentRollout>, StoreError> {
        let targets =
            if deployment.deleted_at.is_some() { Vec::new() } else { self.targets(&deployment.target).await? };
        let tasks = self.tasks(&deployment.id).await?;
        Ok(rollout::plan(deployment, &targets, &tasks, Utc::now()).agents)
    }

    /// One reconciliation of one deployment.
    pub async fn reconcile(&self, deployment: &Deployment) -> Result<(), StoreError> {
        if deployment.deleted_at.is_some() {
            self.lock_announced().remove(&deployment.id);
            return Ok(());
        }
        let targets = self.targets(&deployment.target).await?;
        let tasks = self.tasks(&deployment.id).await?;
        let plan = rollout::plan(deployment, &targets, &tasks, Utc::now());
        self.send(deployment, &plan).await?;
        self.announce_progress(Progress::of(deployment, &plan.agents)).await;
        if let Some((status, detail)) = plan.status {
            let expected = Some((deployment.current_version, deployment.status));
            self.set_status(deployment, status, detail, false, expected, None).await?;
        }
        Ok(())
    }

    /// Publishes `deployment.progress` when the counts differ from the last announced: at most once
    /// per reconciliation (the nudges of a large rollout are gathered), so watchers need not poll.
    async fn announce_progress(&self, progress: Progress) {
        {
            let mut announced = self.lock_announced();
            if announced.get(&progress.id) == Some(&progress) {
                return;
            }
            announced.insert(progress.id.clone(), progress.clone());
        }
        // Its own subject family (`events.rollout.<id>`): only the deployment's topic carries it, and
        // the followers of `events.deployment.*` are not woken by it.
        self.events.publish("rollout", &progress.id, "deployment.progress", &progress).await;
    }

    /// Forgets the progress announced for deployments not in `live` (deleted since).
    fn forget_progress_except(&self, live: &[Deployment]) {
        let live: BTreeSet<&str> = live.iter().map(|d| d.id.as_str()).collect();
        self.lock_announced().retain(|id, _| live.contains(id.as_str()));
    }

    fn lock_announced(&self) -> std::sync::MutexGuard<'_, HashMap<String, Progress>> {
        self.announced.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cancels what must not run any more, sends the plan's applies and removals, and records a wave
    /// that starts.
    async fn send(&self, deployment: &Deployment, plan: &Plan) -> Result<(), StoreError> {
        for task in &plan.cancel {
            if let Err(e) = self.queue.cancel(task).await {
                tracing::debug!(task.id = %task, error = %e, "apply already ended");
            }
        }
        if !plan.apply.is_empty() {
            let version = self.store.deployment_version(&deployment.id, deployment.current_version).await?;
            let resume = resume_stamp(deployment);
            let tasks = plan.apply.iter().map(|(agent, generation)| {
                let task = NewTask {
                    agent_id: agent.clone(),
                    task_type: types::PIPELINE_APPLY.into(),
                    payload: json!({
                        "pipeline": deployment.agent_pipeline(),
                        "config": version.config,
                        "config_hash": version.config_hash,
                        "version": version.version,
                        "deployment_id": deployment.id,
                    }),
                    priority: 0,
                    max_attempts: Some(self.apply_attempts),
                    idempotency_key: Some(apply_key(&deployment.id, agent, version.version, *generation, resume)),
                    ttl_secs: None,
                };
                self.enqueue(&deployment.id, task)
            });
            // Several at once: each is a few round trips to the database and the bus.
            futures_util::stream::iter(tasks).buffer_unordered(SEND_CONCURRENCY).collect::<Vec<()>>().await;
        }
        for (agent, generation) in &plan.remove {
            let task = NewTask {
                agent_id: agent.clone(),
                task_type: types::PIPELINE_REMOVE.into(),
                payload: json!({"pipeline": deployment.agent_pipeline()}),
                priority: 0,
                max_attempts: None,
                idempotency_key: Some(remove_key(&deployment.id, agent, *generation)),
                ttl_secs: None,
            };
            self.enqueue(&deployment.id, task).await;
        }
        if let Some(wave) = plan.wave {
            let agents: Vec<&String> = plan.apply.iter().map(|(agent, _)| agent).collect();
            let event = NewDeploymentEvent {
                event_type: "wave_started".into(),
                version: Some(deployment.current_version),
                message: format!("wave {wave}: {} agent(s)", agents.len()),
                data: Some(json!({"wave": wave, "agents": agents})),
                actor: None,
            };
            self.store.record_deployment_event(&deployment.id, event, Utc::now()).await?;
            let data =
                json!({"id": deployment.id, "version": deployment.current_version, "wave": wave, "agents": agents});
            self.events.publish("deployment", &deployment.id, "deployment.wave_started", data).await;
        }
        Ok(())
    }

    async fn enqueue(&self, deployment_id: &str, task: NewTask) {
        let agent = task.agent_id.clone();
        if let Err(e) = self.queue.enqueue(task).await {
            tracing::warn!(deployment.id = deployment_id, agent.id = %agent, error = %e, "cannot send; retrying later");
        }
    }

    /// Stores a status (and announces it when it changed).
    pub async fn set_status(
        &self,
        deployment: &Deployment,
        status: DeploymentStatus,
        detail: Option<serde_json::Value>,
        resumed: bool,
        expected: Option<(i32, DeploymentStatus)>,
        actor: Option<String>,
    ) -> Result<Deployment, StoreError> {
        let (updated, changed) = self
            .store
            .set_deployment_status(&deployment.id, status, detail, resumed, expected, actor, Utc::now())
            .await?;
        if changed {
            tracing::info!(deployment.id = %updated.id, from = deployment.status.as_str(), to = status.as_str(), "deployment status changed");
            let data = json!({"id": updated.id, "from": deployment.status, "to": status, "detail": updated.status_detail, "deployment": updated.view()});
            self.events.publish("deployment", &updated.id, "deployment.status_changed", data).await;
        }
        Ok(updated)
    }

    /// Carries out an operator's action (run by the supervisor, so never alongside a reconciliation).
    /// A resumed rollout is stepped at once only by the holder of its lease (`owner_here`); elsewhere
    /// the owner picks the new status up on its next pass.
    async fn operate(
        &self,
        id: &str,
        operation: Operation,
        actor: Option<String>,
        owner_here: bool,
    ) -> Result<Deployment, StoreError> {
        let deployment = self.store.get_deployment(id).await?;
        if deployment.deleted_at.is_some() {
            return match operation {
                Operation::Delete => Ok(deployment),
                _ => Err(StoreError::Conflict(format!("deployment {id} was deleted"))),
            };
        }
        match operation {
            // Already paused (perhaps by a failing wave): its failing agents stay on record.
            Operation::Pause if deployment.status == DeploymentStatus::Paused => Ok(deployment),
            Operation::Pause => {
                let detail = json!({"reason": "paused by an operator"});
                self.set_status(&deployment, DeploymentStatus::Paused, Some(detail), false, None, actor).await
            }
            Operation::Resume => {
                if deployment.status != DeploymentStatus::Paused {
                    let now = deployment.status.as_str();
                    return Err(StoreError::Conflict(format!("deployment {id} is {now}, not paused")));
                }
                let resumed =
                    self.set_status(&deployment, DeploymentStatus::RollingOut, None, true, None, actor).await?;
                if !owner_here {
                    return Ok(resumed);
                }
                self.reconcile(&resumed).await?;
                self.store.get_deployment(id).await
            }
            Operation::Delete => {
                // Removes the pipeline from every agent that has it, then marks the deployment deleted.
                let tasks = self.tasks(&deployment.id).await?;
                let plan = rollout::plan(&deployment, &[], &tasks, Utc::now());
                self.send(&deployment, &Plan { remove: plan.remove, cancel: plan.cancel, ..Plan::default() }).await?;
                self.set_status(&deployment, DeploymentStatus::Deleted, None, false, None, actor).await
            }
        }
    }
}

/// What an operator can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Send nothing more until resumed.
    Pause,
    /// Continue; agents that failed before get another try.
    Resume,
    /// Remove the pipeline everywhere and mark the deployment deleted.
    Delete,
}

/// An operator's action, run between two reconciliations.
#[derive(Message)]
#[rtype(result = "Result<Deployment, StoreError>")]
struct Operate {
    id: String,
    operation: Operation,
    actor: Option<String>,
}

impl Handler<Operate> for DeploymentSupervisor {
    type Result = AtomicResponse<Self, Result<Deployment, StoreError>>;

    fn handle(&mut self, msg: Operate, _: &mut Context<Self>) -> Self::Result {
        let (rollouts, leases) = (self.rollouts.clone(), self.leases.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let owner_here = leases.hold(&deployment_lease(&msg.id)).await;
                rollouts.operate(&msg.id, msg.operation, msg.actor, owner_here).await
            }
            .into_actor(self),
        ))
    }
}

/// Reconcile one deployment now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Nudge(pub String);

/// How the rest of the server reaches the supervisor. Cheap to clone.
#[derive(Clone)]
pub struct SupervisorHandle(Addr<DeploymentSupervisor>);

impl SupervisorHandle {
    /// Reconcile this deployment now (after an operator changed it).
    pub fn nudge(&self, deployment_id: &str) {
        self.0.do_send(Nudge(deployment_id.to_string()));
    }

    /// Pauses, resumes or deletes, in turn with the supervisor's own steps.
    pub async fn operate(
        &self,
        deployment_id: &str,
        operation: Operation,
        actor: Option<String>,
    ) -> Result<Deployment, StoreError> {
        let message = Operate { id: deployment_id.to_string(), operation, actor };
        self.0.send(message).await.map_err(|e| StoreError::Internal(Box::new(e)))?
    }
}

pub struct DeploymentSupervisor {
    rollouts: Rollouts,
    /// A rollout is stepped only on the replica holding its deployment's lease.
    leases: HeldLeases,
    interval: Duration,
    /// Deployments nudged since the last pass: a burst of task changes (thousands during a large
    /// rollout) becomes one reconciliation per deployment.
    nudged: BTreeSet<String>,
    pass_scheduled: bool,
}

impl DeploymentSupervisor {
    /// Starts the supervisor, and its bus subscription that nudges it when a version is created. Task
    /// changes reach it as a follower of [`follow_task_changes`](crate::tasks::changes::follow_task_changes).
    pub fn start(rollouts: Rollouts, leases: HeldLeases, interval: Duration, bus: Arc<dyn Bus>) -> SupervisorHandle {
        let supervisor =
            DeploymentSupervisor { rollouts, leases, interval, nudged: BTreeSet::new(), pass_scheduled: false };
        let addr = supervisor.start();
        actix::spawn(follow_versions(bus, addr.clone()));
        SupervisorHandle(addr)
    }

    fn reconcile_all(&mut self, ctx: &mut Context<Self>) {
        let (rollouts, leases) = (self.rollouts.clone(), self.leases.clone());
        ctx.wait(
            async move {
                let deployments = match rollouts.store.live_deployments().await {
                    Ok(deployments) => deployments,
                    Err(e) => return tracing::warn!(error = %e, "cannot read deployments; retrying"),
                };
                rollouts.forget_progress_except(&deployments);
                for deployment in deployments {
                    if !leases.hold(&deployment_lease(&deployment.id)).await {
                        continue;
                    }
                    if let Err(e) = rollouts.reconcile(&deployment).await {
                        tracing::warn!(deployment.id = %deployment.id, error = %e, "rollout step failed; retrying");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for DeploymentSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |supervisor, ctx| supervisor.reconcile_all(ctx));
        self.reconcile_all(ctx);
    }
}

impl Handler<Nudge> for DeploymentSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Nudge, ctx: &mut Context<Self>) {
        self.nudged.insert(msg.0);
        if !self.pass_scheduled {
            self.pass_scheduled = true;
            ctx.run_later(NUDGE_DEBOUNCE, |supervisor, ctx| supervisor.reconcile_nudged(ctx));
        }
    }
}

impl DeploymentSupervisor {
    fn reconcile_nudged(&mut self, ctx: &mut Context<Self>) {
        self.pass_scheduled = false;
        let ids = std::mem::take(&mut self.nudged);
        let (rollouts, leases) = (self.rollouts.clone(), self.leases.clone());
        ctx.wait(
            async move {
                for id in ids {
                    if !leases.hold(&deployment_lease(&id)).await {
                        continue;
                    }
                    let outcome = match rollouts.store.get_deployment(&id).await {
                        Ok(deployment) => rollouts.reconcile(&deployment).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = outcome {
                        tracing::debug!(deployment.id = %id, error = %e, "rollout step failed; the timer retries");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// Nudges the supervisor for every version created, for as long as the bus runs.
async fn follow_versions(bus: Arc<dyn Bus>, supervisor: Addr<DeploymentSupervisor>) {
    let subject = format!("{}.events.deployment.*", bus.subjects().prefix());
    let mut versions = match bus.subscribe(&subject).await {
        Ok(versions) => versions,
        Err(e) => {
            return tracing::warn!(error = %e, "cannot follow new versions; deployments advance on their timer only")
        }
    };
    while let Some(message) = versions.next().await {
        let Ok(envelope) = Envelope::<serde_json::Value>::decode(&message.payload) else { continue };
        if envelope.kind != "deployment.version_created" {
            continue;
        }
        if let Some(id) = envelope.body["deployment_id"].as_str() {
            supervisor.do_send(Nudge(id.to_string()));
        }
    }
}

/// A change to one of a deployment's tasks reconciles that deployment.
#[async_trait::async_trait]
impl FollowsTaskChanges for SupervisorHandle {
    async fn task_changed(&self, change: &TaskChange) {
        if let Some(id) = change.idempotency_key.as_deref().and_then(deployment_of_task_key) {
            self.nudge(id);
        }
    }
}
