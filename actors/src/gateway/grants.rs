//! Who may speak about which pipeline. An enrolled agent is not a trusted one: it may report
//! measurements and statuses only for the pipelines the server handed it (a `pipeline.apply` task it
//! received), and a measurement batch counts for an experiment only when that hand-out was the
//! experiment's apply of that very variant. Anything else would let one agent swing another
//! experiment's verdict.
//!
//! [`judge`] is the rule, a pure function; [`PipelineGrants`] reads the hand-outs from the store and
//! keeps them for a while, since every heartbeat and batch asks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::store::{StoreError, TaskStore};

/// A grant once seen is kept this long: hand-outs are never taken back, so a kept grant can only
/// outlive an apply that failed later (whose pipeline then sends nothing anyway).
const GRANT_TTL: Duration = Duration::from_secs(600);

/// A refusal is checked again after this long (a newer hand-out may have come since).
const REFUSAL_TTL: Duration = Duration::from_secs(1);

/// Most (agent, pipeline) pairs kept; past it the stale ones go, then all (a cost, never a wrong answer).
const MAX_KEPT: usize = 100_000;

/// What an agent claims a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// A heartbeat's status of a pipeline: it names the pipeline alone.
    Status { pipeline: &'a str },
    /// A measurement batch: the pipeline and the experiment and variant it says it measures (both
    /// `None` for a deployed pipeline or an operator's own).
    Batch { pipeline: &'a str, experiment_id: Option<&'a str>, variant: Option<&'a str> },
}

impl Claim<'_> {
    /// The pipeline the claim is about.
    pub fn pipeline(&self) -> &str {
        match self {
            Claim::Status { pipeline } | Claim::Batch { pipeline, .. } => pipeline,
        }
    }
}

/// Why a claim is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotGiven {
    /// A batch for an experiment (or variant) that gave this agent no such pipeline.
    #[error("this agent was not sent that experiment's pipeline for that variant")]
    NotYourExperiment,
    /// A batch or status about a pipeline the agent was never given.
    #[error("this agent was not given that pipeline")]
    NotYourPipeline,
}

/// What one hand-out of a pipeline was for (from the apply task's payload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HandOut {
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
}

impl HandOut {
    /// What an apply task with this payload handed out.
    pub fn from_payload(payload: &serde_json::Value) -> HandOut {
        // A payload of another shape (an operator's own task) hands out a plain pipeline.
        HandOut::deserialize(payload).unwrap_or_default()
    }
}

/// The rule: a claim is granted by a hand-out of its pipeline to this agent, and a measurement batch
/// only by one for the same experiment and variant.
pub fn judge(hand_outs: &[HandOut], claim: &Claim) -> Result<(), NotGiven> {
    match *claim {
        Claim::Status { .. } if !hand_outs.is_empty() => Ok(()),
        Claim::Batch { experiment_id, variant, .. }
            if hand_outs
                .iter()
                .any(|h| h.experiment_id.as_deref() == experiment_id && h.variant.as_deref() == variant) =>
        {
            Ok(())
        }
        Claim::Batch { experiment_id: Some(_), .. } => Err(NotGiven::NotYourExperiment),
        _ => Err(NotGiven::NotYourPipeline),
    }
}

struct Kept {
    hand_outs: Vec<HandOut>,
    read_at: Instant,
}

/// The hand-outs per agent and pipeline, read from the store and kept (see the TTLs above).
#[derive(Clone)]
pub struct PipelineGrants {
    store: Arc<dyn TaskStore>,
    kept: Arc<Mutex<HashMap<(String, String), Kept>>>,
}

impl PipelineGrants {
    pub fn new(store: Arc<dyn TaskStore>) -> Self {
        PipelineGrants { store, kept: Arc::default() }
    }

    /// Whether `agent_id` may say `claim`.
    pub async fn check(&self, agent_id: &str, claim: &Claim<'_>) -> Result<Result<(), NotGiven>, StoreError> {
        let key = (agent_id.to_string(), claim.pipeline().to_string());
        if let Some(verdict) = self.kept_verdict(&key, claim) {
            return Ok(verdict);
        }
        let tasks = self.store.pipeline_hand_outs(agent_id, claim.pipeline()).await?;
        let hand_outs: Vec<HandOut> = tasks.iter().map(|task| HandOut::from_payload(&task.payload)).collect();
        let verdict = judge(&hand_outs, claim);
        self.keep(key, hand_outs);
        Ok(verdict)
    }

    fn kept_verdict(&self, key: &(String, String), claim: &Claim) -> Option<Result<(), NotGiven>> {
        let kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = kept.get(key)?;
        let verdict = judge(&entry.hand_outs, claim);
        let ttl = if verdict.is_ok() { GRANT_TTL } else { REFUSAL_TTL };
        (entry.read_at.elapsed() < ttl).then_some(verdict)
    }

    fn keep(&self, key: (String, String), hand_outs: Vec<HandOut>) {
        let mut kept = self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.retain(|_, entry| entry.read_at.elapsed() < GRANT_TTL);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(key, Kept { hand_outs, read_at: Instant::now() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment_apply(experiment: &str, variant: &str) -> HandOut {
        HandOut { experiment_id: Some(experiment.into()), variant: Some(variant.into()) }
    }

    fn batch<'a>(experiment: Option<&'a str>, variant: Option<&'a str>) -> Claim<'a> {
        Claim::Batch { pipeline: "exp-e1-candidate", experiment_id: experiment, variant }
    }

    #[test]
    fn a_batch_is_granted_only_by_the_apply_of_its_experiment_and_variant() {
        let given = [experiment_apply("e1", "candidate")];
        assert_eq!(judge(&given, &batch(Some("e1"), Some("candidate"))), Ok(()));
        assert_eq!(judge(&given, &batch(Some("e1"), Some("baseline"))), Err(NotGiven::NotYourExperiment));
        assert_eq!(judge(&given, &batch(Some("e2"), Some("candidate"))), Err(NotGiven::NotYourExperiment));
        assert_eq!(judge(&given, &batch(None, None)), Err(NotGiven::NotYourPipeline), "not as a plain pipeline");
    }

    #[test]
    fn nothing_handed_out_grants_nothing() {
        assert_eq!(judge(&[], &batch(Some("e1"), Some("candidate"))), Err(NotGiven::NotYourExperiment));
        assert_eq!(judge(&[], &batch(None, None)), Err(NotGiven::NotYourPipeline));
        let status = Claim::Status { pipeline: "deploy-d1" };
        assert_eq!(judge(&[], &status), Err(NotGiven::NotYourPipeline));
    }

    #[test]
    fn a_deployed_pipeline_grants_plain_batches_and_statuses() {
        let given = [HandOut::default()];
        let plain = Claim::Batch { pipeline: "deploy-d1", experiment_id: None, variant: None };
        assert_eq!(judge(&given, &plain), Ok(()));
        assert_eq!(judge(&given, &Claim::Status { pipeline: "deploy-d1" }), Ok(()));
        assert_eq!(
            judge(
                &given,
                &Claim::Batch { pipeline: "deploy-d1", experiment_id: Some("e1"), variant: Some("candidate") }
            ),
            Err(NotGiven::NotYourExperiment),
            "a deployed pipeline cannot report for an experiment"
        );
    }

    #[test]
    fn a_hand_out_reads_its_experiment_from_the_apply_payload() {
        let payload = serde_json::json!({"pipeline": "exp-e1-baseline", "experiment_id": "e1", "variant": "baseline"});
        assert_eq!(HandOut::from_payload(&payload), experiment_apply("e1", "baseline"));
        assert_eq!(HandOut::from_payload(&serde_json::json!(["not", "an", "object"])), HandOut::default());
    }
}
