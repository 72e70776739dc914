//! An experiment as the outside world sees it: the REST API's body, the WebSocket snapshot and the
//! `experiment` inside events are all this one shape, so a client can use any of them in place of another.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Experiment, ExperimentSpec, Phase};

/// Everything submitted, as submitted, plus its state. `status` is the deprecated alias of `phase`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExperimentView<'a> {
    id: &'a str,
    #[serde(flatten)]
    spec: &'a ExperimentSpec,
    phase: Phase,
    status: Phase,
    reason: &'a Option<String>,
    allowed_actions: Vec<&'static str>,
    target_agents: &'a [String],
    baseline_config: &'a Option<String>,
    candidate_config: &'a Option<String>,
    results: &'a Option<Value>,
    deployment_id: &'a Option<String>,
    created_by: &'a Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    measuring_from: Option<DateTime<Utc>>,
    measuring_until: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

impl Experiment {
    /// The public shape of this experiment.
    pub fn view(&self) -> ExperimentView<'_> {
        ExperimentView {
            id: &self.id,
            spec: &self.spec,
            phase: self.phase,
            status: self.phase,
            reason: &self.reason,
            allowed_actions: self.phase.allowed_actions(),
            target_agents: &self.target_agents,
            baseline_config: &self.baseline_config,
            candidate_config: &self.candidate_config,
            results: &self.results,
            deployment_id: &self.deployment_id,
            created_by: &self.created_by,
            created_at: self.created_at,
            updated_at: self.updated_at,
            started_at: self.started_at,
            measuring_from: self.measuring_from,
            measuring_until: self.measuring_until(),
            completed_at: self.completed_at,
        }
    }

    /// [`Experiment::view`] as JSON.
    pub fn view_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or_else(|e| {
            // Cannot happen with these types; if it did, say so rather than pass `null` ("gone") on.
            tracing::error!(experiment.id = %self.id, error = %e, "cannot render an experiment");
            serde_json::json!({"id": self.id, "error": "cannot be rendered"})
        })
    }
}
