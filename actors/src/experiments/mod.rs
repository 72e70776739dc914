//! Experiments: a baseline and a candidate pipeline run side by side on the same hosts, measured, and
//! judged. This module holds what an experiment is, its phase machine (DESIGN.md §7) and its analysis.

pub mod actor;
pub mod handover;
pub mod kpis;
pub mod phases;
pub mod runtime;
pub mod service;
pub mod stats;
pub mod view;
pub mod window;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::pipelines::PipelineSpec;

pub use phases::{Action, Phase};

/// Which agents an experiment (or a deployment) runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Every agent with these labels.
    Selector(Labels),
    /// These agents.
    Agents(Vec<String>),
}

impl Target {
    /// The agents the target names that exist now (any state), in enrolment order. Experiments and
    /// deployments each decide which of them they can use.
    pub async fn agents<S: crate::store::FleetStore + ?Sized>(
        &self,
        store: &S,
    ) -> Result<Vec<crate::agents::Agent>, crate::StoreError> {
        match self {
            Target::Agents(ids) => store.get_agents(ids).await,
            Target::Selector(labels) => {
                let filter =
                    crate::agents::AgentFilter { state: None, selector: crate::labels::LabelSelector(labels.clone()) };
                let mut page = crate::paging::PageRequest { limit: crate::paging::MAX_PAGE_SIZE, after: None };
                let mut agents = Vec::new();
                loop {
                    let found = store.list_agents(&filter, page.clone()).await?;
                    agents.extend(found.items);
                    match found.next_cursor {
                        Some(cursor) => page.after = Some(cursor),
                        None => return Ok(agents),
                    }
                }
            }
        }
    }
}

/// What the candidate must achieve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessCriteria {
    /// At least this much fewer active series than the baseline, percent.
    #[serde(default = "default_reduction")]
    pub min_cardinality_reduction_pct: f64,
    /// At most this much more pipeline CPU than the baseline, percent.
    #[serde(default = "default_cpu")]
    pub max_cpu_overhead_pct: f64,
    /// At least this share of the baseline's critical series kept, percent.
    #[serde(default = "default_accuracy")]
    pub min_accuracy_pct: f64,
}

fn default_reduction() -> f64 {
    50.0
}

fn default_cpu() -> f64 {
    10.0
}

fn default_accuracy() -> f64 {
    99.0
}

impl Default for SuccessCriteria {
    fn default() -> Self {
        SuccessCriteria {
            min_cardinality_reduction_pct: default_reduction(),
            max_cpu_overhead_pct: default_cpu(),
            min_accuracy_pct: default_accuracy(),
        }
    }
}

/// An experiment as submitted (stored and returned exactly so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// A name for people.
    pub name: String,
    /// What it is about.
    #[serde(default)]
    pub description: String,
    /// The pipeline compared against.
    pub baseline: PipelineSpec,
    /// The pipeline tried.
    pub candidate: PipelineSpec,
    /// Where both run.
    pub target: Target,
    /// Seconds after both run before measuring starts.
    #[serde(default)]
    pub warmup_secs: u64,
    /// Seconds measured.
    pub duration_secs: u64,
    /// What the candidate must keep: process names (their series present), or series selectors such as
    /// `http.requests{route="/checkout"}` (those series kept exactly: same attributes, same value).
    #[serde(default)]
    pub critical_processes: Vec<String>,
    /// What the candidate must achieve.
    #[serde(default)]
    pub success_criteria: SuccessCriteria,
    /// Promote the candidate on a `pass` verdict.
    #[serde(default)]
    pub auto_promote: bool,
    /// Run the candidate in shadow (the default): measured exactly like the baseline, on the same input,
    /// but its output sent nowhere, so the backend is not billed twice; promote makes it live. `false`
    /// sends the candidate's output where its config says, beside the baseline's.
    #[serde(default = "shadow_by_default")]
    pub shadow: bool,
    /// In shadow, the one exporter of the candidate's config that still gets its output (a test
    /// backend, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_exporter: Option<String>,
}

fn shadow_by_default() -> bool {
    true
}

impl ExperimentSpec {
    /// The config the agents run for the candidate while it is tried (its stored config is what a
    /// promotion deploys).
    pub fn candidate_as_tried(&self, config: &str) -> Result<String, String> {
        if self.shadow {
            phoenix_pipeline::config::shadowed(config, self.shadow_exporter.as_deref())
        } else {
            Ok(config.to_string())
        }
    }
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// UUIDv7.
    pub id: String,
    /// Where it is in its life.
    pub phase: Phase,
    /// As submitted.
    pub spec: ExperimentSpec,
    /// The baseline's rendered config.
    pub baseline_config: Option<String>,
    /// The candidate's rendered config.
    pub candidate_config: Option<String>,
    /// KPIs and verdict once analysed (JSON).
    pub results: Option<serde_json::Value>,
    /// The deployment a promotion created or updated.
    pub deployment_id: Option<String>,
    /// Who created it.
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the measurement window began (after warm-up).
    pub measuring_from: Option<DateTime<Utc>>,
    /// When it reached a final phase.
    pub completed_at: Option<DateTime<Utc>>,
    /// The agents the target resolved to when it started (empty before).
    pub target_agents: Vec<String>,
    /// Why it is in its phase, when that needs saying (a failure's reason).
    pub reason: Option<String>,
}

impl Experiment {
    /// When both variants started running everywhere (the warm-up's start).
    pub fn running_since(&self) -> Option<DateTime<Utc>> {
        self.measuring_from.map(|from| from - seconds(self.spec.warmup_secs))
    }

    /// When the measurement window ends.
    pub fn measuring_until(&self) -> Option<DateTime<Utc>> {
        self.measuring_from.map(|from| from + seconds(self.spec.duration_secs))
    }
}

/// A spec's seconds as a time span (saturating: validation keeps them far below the limit).
pub(crate) fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// A new experiment with its rendered configs.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    /// As submitted.
    pub spec: ExperimentSpec,
    /// The baseline's rendered config.
    pub baseline_config: String,
    /// The candidate's rendered config.
    pub candidate_config: String,
    /// Who created it.
    pub created_by: Option<String>,
}

/// A phase change to persist: the new phase, the fields it sets, and the history entry recording it.
#[derive(Debug, Clone, Default)]
pub struct PhaseChange {
    /// Why, in words (stored in the history and as the experiment's `reason` when `keep_reason`).
    pub message: String,
    /// Who asked (a user id), `None` for the system.
    pub actor: Option<String>,
    /// Extra data for the history entry.
    pub data: Option<serde_json::Value>,
    /// Keep `message` as the experiment's reason (failures).
    pub keep_reason: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub measuring_from: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub target_agents: Option<Vec<String>>,
    pub results: Option<serde_json::Value>,
    pub deployment_id: Option<String>,
}

/// One entry of an experiment's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExperimentEvent {
    /// UUIDv7.
    pub id: String,
    /// e.g. `created`, `phase_changed`.
    pub event_type: String,
    /// Phase before.
    pub from_phase: Option<Phase>,
    /// Phase after.
    pub to_phase: Option<Phase>,
    /// Why, in words.
    pub message: String,
    /// Details (e.g. the agents that failed).
    pub data: Option<serde_json::Value>,
    /// Who (a user id; `None` for the system).
    pub actor: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}
