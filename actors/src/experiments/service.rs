//! The experiments service: creates and deletes experiments, routes commands to the experiment's actor
//! (or runs them directly when it has none here), rebuilds actors at start-up, adopts the experiments
//! of a replica that died, and wakes an actor when one of its tasks changes (the queue announces every
//! change on the bus). An actor runs on the replica that holds its experiment's lease (`ownership`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use chrono::Utc;

use super::actor::{needs_actor, ActorMap, Execute, ExperimentActor, Nudge};
use super::handover::RemoveWhen;
use super::runtime::{experiment_of_task_key, Command, CommandError, Runtime, VARIANTS};
use super::{Action, Experiment, NewExperiment, Phase};
use crate::ownership::{experiment_lease, Ownership};
use crate::store::StoreError;
use crate::tasks::changes::{FollowsTaskChanges, TaskChange};

/// How far back the sweep looks for ended experiments that still owe something.
const SWEEP_LOOKBACK: chrono::Duration = chrono::Duration::days(1);

/// The experiments service. Cheap to clone.
#[derive(Clone)]
pub struct Experiments {
    runtime: Runtime,
    actors: ActorMap,
    ownership: Ownership,
}

impl Experiments {
    pub fn new(runtime: Runtime, ownership: Ownership) -> Self {
        Experiments { runtime, actors: Arc::new(Mutex::new(HashMap::new())), ownership }
    }

    /// The logic (for KPIs and timelines read outside the actor).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Stores a new `pending` experiment and announces it.
    pub async fn create(&self, new: NewExperiment) -> Result<Experiment, StoreError> {
        let experiment = self.runtime.store.create_experiment(new, Utc::now()).await?;
        self.runtime.events.publish("experiment", &experiment.id, "experiment.created", experiment.view()).await;
        Ok(experiment)
    }

    /// Runs an operator's command: through the experiment's actor when it has one here, so it is ordered
    /// with the actor's own steps; otherwise directly (the phase's compare-and-set guards races with an
    /// actor on another replica, which re-reads the experiment when its next step finds it changed).
    pub async fn command(&self, id: &str, command: Command) -> Result<Experiment, CommandError> {
        if let Some(actor) = self.actor(id) {
            if let Ok(answer) = actor.send(Execute(command.clone())).await {
                return answer;
            }
            // The actor stopped meanwhile (its experiment reached a final phase): run it here.
        }
        let experiment = self.runtime.store.get_experiment(id).await?;
        let experiment = self.runtime.execute(experiment, command).await?;
        self.ensure_actor(&experiment).await;
        Ok(experiment)
    }

    /// Deletes an experiment that is not active. A `completed` one still runs both pipelines and a
    /// `rolled_back` one its baseline: what it still runs is removed first.
    pub async fn delete(&self, id: &str) -> Result<Experiment, CommandError> {
        let experiment = self.runtime.store.get_experiment(id).await?;
        if experiment.phase.after(Action::Delete).is_none() {
            return Err(CommandError::NotAllowed {
                action: Action::Delete.as_str(),
                phase: experiment.phase,
                allowed: experiment.phase.allowed_actions(),
            });
        }
        // Whatever it may still run goes (a `completed` or `rolled_back` one runs pipelines; an ended one
        // may owe a removal that failed to go out). Once the row is gone nothing would remember them, so
        // a removal that cannot be sent now refuses the delete rather than lose them.
        self.runtime.send_owed_removals(&experiment, &VARIANTS, RemoveWhen::Now).await.map_err(|e| {
            CommandError::Unavailable(format!("cannot send the removal of its pipelines now ({e}); try again"))
        })?;
        let deleted = self.runtime.store.delete_experiment(id).await.map_err(|e| match e {
            StoreError::Conflict(_) => CommandError::NotAllowed {
                action: Action::Delete.as_str(),
                phase: Phase::Deploying,
                allowed: Phase::Deploying.allowed_actions(),
            },
            other => CommandError::Store(other),
        })?;
        self.runtime.events.publish("experiment", id, "experiment.deleted", serde_json::json!({"id": id})).await;
        Ok(deleted)
    }

    /// Starts an actor for every experiment that needs one (at start-up). Returns how many.
    pub async fn rehydrate(&self) -> Result<usize, StoreError> {
        let active = self.runtime.store.active_experiments().await?;
        let count = active.len();
        for experiment in active {
            self.ensure_actor(&experiment).await;
        }
        self.finish_interrupted_promotions(Utc::now() - SWEEP_LOOKBACK).await?;
        Ok(count)
    }

    /// Every time leases are renewed: starts the actors of active experiments that no live replica holds
    /// (their replica died, or this one lost and regained the database). Runs until the process ends.
    pub async fn adopt_orphans(self) {
        loop {
            tokio::time::sleep(self.ownership.renew_every()).await;
            match self.runtime.store.active_experiments().await {
                Ok(active) => {
                    for experiment in active {
                        self.ensure_actor(&experiment).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot look for experiments to adopt yet"),
            }
        }
    }

    /// Every `every`: sends the removals that recently ended experiments owe (their enqueue failed on
    /// the way to the final phase) and finishes automatic promotions that did not happen. Looks back
    /// [`SWEEP_LOOKBACK`]: an experiment that ended earlier was swept many times already. Runs until the
    /// process ends.
    pub async fn sweep(self, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            let since = Utc::now() - SWEEP_LOOKBACK;
            match self.send_owed_removals(since).await {
                Ok(0) => {}
                Ok(sent) => tracing::info!(tasks = sent, "sent removals that had failed to go out"),
                Err(e) => tracing::warn!(error = %e, "removal sweep failed; trying again later"),
            }
            if let Err(e) = self.finish_interrupted_promotions(since).await {
                tracing::warn!(error = %e, "cannot finish automatic promotions yet; trying again later");
            }
        }
    }

    /// One pass over the experiments that ended since `since`: the removals they owe.
    pub async fn send_owed_removals(&self, since: chrono::DateTime<Utc>) -> Result<usize, StoreError> {
        let mut sent = 0;
        for phase in [Phase::Promoted, Phase::Stopped, Phase::Failed, Phase::RolledBack] {
            for experiment in self.runtime.store.ended_since(phase, since).await? {
                let variants = Runtime::variants_to_remove(phase);
                match self.runtime.send_owed_removals(&experiment, variants, RemoveWhen::AfterHandover).await {
                    Ok(n) => sent += n,
                    Err(e) => tracing::warn!(experiment.id = %experiment.id, error = %e, "removal still owed"),
                }
            }
        }
        Ok(sent)
    }

    /// Promotes the experiments completed since `since` whose automatic promotion did not happen (the
    /// server stopped, or the database failed, between storing `completed` and promoting).
    async fn finish_interrupted_promotions(&self, since: chrono::DateTime<Utc>) -> Result<(), StoreError> {
        for experiment in self.runtime.store.ended_since(Phase::Completed, since).await? {
            if self.runtime.owes_auto_promotion(&experiment).await? {
                tracing::info!(experiment.id = %experiment.id, "finishing an automatic promotion that did not happen");
                self.runtime.auto_promote(experiment).await?;
            }
        }
        Ok(())
    }

    fn actor(&self, id: &str) -> Option<Addr<ExperimentActor>> {
        self.lock().get(id).filter(|addr| addr.connected()).cloned()
    }

    /// Starts the experiment's actor here unless it runs already, here or (holding the lease) elsewhere.
    async fn ensure_actor(&self, experiment: &Experiment) {
        if !needs_actor(experiment.phase) || self.actor(&experiment.id).is_some() {
            return;
        }
        if !self.ownership.hold(&experiment_lease(&experiment.id)).await {
            return;
        }
        let mut actors = self.lock();
        if actors.get(&experiment.id).is_some_and(|addr| addr.connected()) {
            return;
        }
        tracing::debug!(experiment.id = %experiment.id, replica = self.ownership.replica(), "running the experiment here");
        let actor =
            ExperimentActor::new(experiment.clone(), self.runtime.clone(), self.actors.clone(), self.ownership.clone());
        actors.insert(experiment.id.clone(), actor.start());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Addr<ExperimentActor>>> {
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A change to one of an experiment's tasks wakes the experiment's actor, if it runs here.
#[async_trait::async_trait]
impl FollowsTaskChanges for Experiments {
    async fn task_changed(&self, change: &TaskChange) {
        let Some(id) = change.idempotency_key.as_deref().and_then(experiment_of_task_key) else { return };
        if let Some(actor) = self.actor(id) {
            actor.do_send(Nudge);
        }
    }
}
