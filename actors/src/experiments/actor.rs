//! `ExperimentActor`: one per active experiment, on the replica holding the experiment's lease. It owns
//! the experiment's state between database writes, serialises the operator's commands with its own
//! reconciliation (so two steps never race), and keeps its timers: a periodic reconciliation, the exact
//! end of the measurement window, and the lease's renewal (it stops when another replica has the lease).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use chrono::Utc;

use super::runtime::{Command, CommandError, Runtime};
use super::{Experiment, Phase};
use crate::ownership::{experiment_lease, Ownership};
use crate::store::StoreError;
use crate::tasks::changes::NUDGE_DEBOUNCE;

/// The live actors by experiment id.
pub type ActorMap = Arc<Mutex<HashMap<String, Addr<ExperimentActor>>>>;

/// The phases in which an experiment has an actor: something will happen without an operator.
pub fn needs_actor(phase: Phase) -> bool {
    matches!(phase, Phase::Deploying | Phase::Running | Phase::Analyzing | Phase::Stopping)
}

pub struct ExperimentActor {
    experiment: Experiment,
    runtime: Runtime,
    actors: ActorMap,
    window_end: Option<SpawnHandle>,
    /// A reconciliation asked for by nudges is scheduled: more nudges meanwhile add nothing.
    nudge_pending: bool,
    ownership: Ownership,
    /// Another replica holds the lease now: stopping, and the lease is not ours to release.
    lease_lost: bool,
}

impl ExperimentActor {
    pub fn new(experiment: Experiment, runtime: Runtime, actors: ActorMap, ownership: Ownership) -> Self {
        ExperimentActor {
            experiment,
            runtime,
            actors,
            window_end: None,
            nudge_pending: false,
            ownership,
            lease_lost: false,
        }
    }

    /// Renews the lease; stops at once when another replica has it (that replica runs the experiment).
    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        let (ownership, lease) = (self.ownership.clone(), experiment_lease(&self.experiment.id));
        ctx.spawn(async move { ownership.hold(&lease).await }.into_actor(self).map(|held, actor, ctx| {
            if !held {
                tracing::info!(experiment.id = %actor.experiment.id, "the lease is not ours any more; stopping here");
                actor.lease_lost = true;
                ctx.stop();
            }
        }));
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let step = self.runtime.clone();
        let experiment = self.experiment.clone();
        // `wait`: no other message or timer runs until this step is done.
        ctx.wait(
            async move { step.reconcile(experiment).await }
                .into_actor(self)
                .map(|result, actor, ctx| actor.absorb(result, ctx)),
        );
    }

    fn absorb(&mut self, result: Result<Experiment, StoreError>, ctx: &mut Context<Self>) {
        match result {
            Ok(experiment) => self.adopt(experiment, ctx),
            Err(StoreError::NotFound) => ctx.stop(),
            Err(e) => {
                tracing::warn!(experiment.id = %self.experiment.id, error = %e, "reconciliation failed; retrying");
                self.refresh(ctx);
            }
        }
    }

    /// Re-reads the experiment: a step may have persisted part of its work before it failed.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        let store = self.runtime.store.clone();
        let id = self.experiment.id.clone();
        ctx.wait(async move { store.get_experiment(&id).await }.into_actor(self).map(
            |result, actor, ctx| match result {
                Ok(experiment) => actor.adopt(experiment, ctx),
                Err(StoreError::NotFound) => ctx.stop(),
                Err(e) => {
                    tracing::debug!(experiment.id = %actor.experiment.id, error = %e, "cannot re-read the experiment")
                }
            },
        ));
    }

    fn adopt(&mut self, experiment: Experiment, ctx: &mut Context<Self>) {
        let moved = experiment.phase != self.experiment.phase;
        self.experiment = experiment;
        if !needs_actor(self.experiment.phase) {
            ctx.stop();
        } else if moved {
            self.schedule_window_end(ctx);
        }
    }

    /// Wakes up exactly when the measurement window ends (the periodic check would be late).
    fn schedule_window_end(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.window_end.take() {
            ctx.cancel_future(timer);
        }
        if self.experiment.phase != Phase::Running {
            return;
        }
        if let Some(until) = self.experiment.measuring_until() {
            let wait = (until - Utc::now()).to_std().unwrap_or_default();
            self.window_end = Some(ctx.run_later(wait, |actor, ctx| actor.reconcile(ctx)));
        }
    }
}

impl Actor for ExperimentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.runtime.settings().reconcile_interval, |actor, ctx| actor.reconcile(ctx));
        ctx.run_interval(self.ownership.renew_every(), |actor, ctx| actor.renew_lease(ctx));
        self.schedule_window_end(ctx);
        self.reconcile(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let mut actors = self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        actors.remove(&self.experiment.id);
        if !self.lease_lost {
            // Done here (a final phase, or deleted): nobody needs to wait for the lease to expire.
            let (ownership, lease) = (self.ownership.clone(), experiment_lease(&self.experiment.id));
            actix::spawn(async move { ownership.release(&lease).await });
        }
    }
}

/// An operator's command, run between two reconciliations.
#[derive(Message)]
#[rtype(result = "Result<Experiment, CommandError>")]
pub struct Execute(pub Command);

impl Handler<Execute> for ExperimentActor {
    type Result = AtomicResponse<Self, Result<Experiment, CommandError>>;

    fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
        let step = self.runtime.clone();
        let experiment = self.experiment.clone();
        AtomicResponse::new(Box::pin(async move { step.execute(experiment, msg.0).await }.into_actor(self).map(
            |result, actor, ctx| {
                match &result {
                    Ok(experiment) => actor.adopt(experiment.clone(), ctx),
                    Err(CommandError::Store(_) | CommandError::NotAllowed { .. }) => actor.refresh(ctx),
                    Err(_) => {}
                }
                result
            },
        )))
    }
}

/// Something the experiment waits for happened (a task report): look again now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Nudge;

impl Handler<Nudge> for ExperimentActor {
    type Result = ();

    /// Nudges are gathered for a moment: deploying to many agents brings several task changes each.
    fn handle(&mut self, _: Nudge, ctx: &mut Context<Self>) {
        if self.nudge_pending {
            return;
        }
        self.nudge_pending = true;
        ctx.run_later(NUDGE_DEBOUNCE, |actor, ctx| {
            actor.nudge_pending = false;
            actor.reconcile(ctx);
        });
    }
}
