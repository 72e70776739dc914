use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::deployments::{Deployment, DeploymentVersion, Promotion};
use phoenix_actors::experiments::{Experiment, ExperimentEvent, NewExperiment, Phase, PhaseChange};
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::store::{ExperimentSample, ExperimentStore, PipelineTotal};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, from_json, new_id, to_db_time, to_json};
use super::deployments::{add_version, deployment_from_row, insert_deployment, version_from_row};
use super::DieselStore;
use crate::db::models::{DeploymentVersionRow, ExperimentEventRow, ExperimentRow, PipelineDeploymentRow};
use crate::db::schema::{experiment_events, experiments, metric_samples};
use crate::db::{write_transaction, DbConnection, DbError};

fn parse_phase(column: &str, text: &str) -> Result<Phase, DbError> {
    text.parse().map_err(|e| DbError::Corrupt(format!("{column}: {e}")))
}

fn experiment_from_row(row: ExperimentRow) -> Result<Experiment, DbError> {
    Ok(Experiment {
        phase: parse_phase("experiments.phase", &row.phase)?,
        spec: from_json("experiments.spec", &row.spec)?,
        results: row.results.as_deref().map(|r| from_json("experiments.results", r)).transpose()?,
        target_agents: row
            .target_agents
            .as_deref()
            .map(|t| from_json("experiments.target_agents", t))
            .transpose()?
            .unwrap_or_default(),
        id: row.id,
        baseline_config: row.baseline_config,
        candidate_config: row.candidate_config,
        deployment_id: row.deployment_id,
        created_by: row.created_by,
        created_at: from_db_time(row.created_at),
        updated_at: from_db_time(row.updated_at),
        started_at: row.started_at.map(from_db_time),
        measuring_from: row.measuring_from.map(from_db_time),
        completed_at: row.completed_at.map(from_db_time),
        reason: row.phase_reason,
    })
}

fn event_from_row(row: ExperimentEventRow) -> Result<ExperimentEvent, DbError> {
    Ok(ExperimentEvent {
        from_phase: row.from_phase.as_deref().map(|p| parse_phase("experiment_events.from_phase", p)).transpose()?,
        to_phase: row.to_phase.as_deref().map(|p| parse_phase("experiment_events.to_phase", p)).transpose()?,
        data: row.data.as_deref().map(|d| from_json("experiment_events.data", d)).transpose()?,
        id: row.id,
        event_type: row.event_type,
        message: row.message,
        actor: row.actor,
        created_at: from_db_time(row.created_at),
    })
}

#[allow(clippy::too_many_arguments)]
fn event_row(
    experiment_id: &str,
    event_type: &str,
    from: Option<Phase>,
    to: Option<Phase>,
    message: &str,
    data: Option<&serde_json::Value>,
    actor: Option<String>,
    now: NaiveDateTime,
) -> Result<ExperimentEventRow, DbError> {
    Ok(ExperimentEventRow {
        id: new_id(),
        experiment_id: experiment_id.to_string(),
        event_type: event_type.to_string(),
        from_phase: from.map(|p| p.as_str().to_string()),
        to_phase: to.map(|p| p.as_str().to_string()),
        message: message.to_string(),
        data: data.map(to_json).transpose()?,
        actor,
        created_at: now,
    })
}

/// The compare-and-set at the heart of every transition: the row moves only if it is still in `from`.
fn apply_phase_change(
    conn: &mut DbConnection,
    id: &str,
    from: Phase,
    to: Phase,
    change: &PhaseChange,
    now: NaiveDateTime,
) -> Result<ExperimentRow, DbError> {
    let mut row: ExperimentRow = experiments::table.find(id).first(conn)?;
    if row.phase != from.as_str() {
        return Err(DbError::Conflict(format!("the experiment is {}, no longer {}", row.phase, from.as_str())));
    }
    row.phase = to.as_str().to_string();
    row.updated_at = now;
    row.phase_reason = change.keep_reason.then(|| change.message.clone());
    if let Some(at) = change.started_at {
        row.started_at = Some(to_db_time(at));
    }
    if let Some(at) = change.measuring_from {
        row.measuring_from = Some(to_db_time(at));
    }
    if let Some(at) = change.completed_at {
        row.completed_at = Some(to_db_time(at));
    }
    if let Some(agents) = &change.target_agents {
        row.target_agents = Some(to_json(agents)?);
    }
    if let Some(results) = &change.results {
        row.results = Some(to_json(results)?);
    }
    if let Some(deployment) = &change.deployment_id {
        row.deployment_id = Some(deployment.clone());
    }
    let updated = diesel::update(experiments::table.find(id))
        .filter(experiments::phase.eq(from.as_str()))
        .set(&row)
        .execute(conn)?;
    if updated != 1 {
        return Err(DbError::Conflict(format!("the experiment is no longer {}", from.as_str())));
    }
    let event = event_row(
        id,
        "phase_changed",
        Some(from),
        Some(to),
        &change.message,
        change.data.as_ref(),
        change.actor.clone(),
        now,
    )?;
    diesel::insert_into(experiment_events::table).values(&event).execute(conn)?;
    Ok(row)
}

/// Creates the deployment (version 1) or the next version of an existing one, holding the candidate.
fn record_promotion(
    conn: &mut DbConnection,
    promotion: &Promotion,
    now: NaiveDateTime,
) -> Result<(PipelineDeploymentRow, DeploymentVersionRow), DbError> {
    match promotion {
        Promotion::New(new) => insert_deployment(conn, new, now),
        Promotion::Existing { deployment_id, version } => add_version(conn, deployment_id, version, None, now),
    }
}

const FINAL_OR_UNSTARTED: [&str; 6] = ["pending", "completed", "promoted", "stopped", "rolled_back", "failed"];

#[async_trait]
impl ExperimentStore for DieselStore {
    async fn create_experiment(&self, new: NewExperiment, now: DateTime<Utc>) -> Result<Experiment, StoreError> {
        let now = to_db_time(now);
        let row = ExperimentRow {
            id: new_id(),
            name: new.spec.name.clone(),
            description: new.spec.description.clone(),
            phase: Phase::Pending.as_str().into(),
            spec: to_json(&new.spec)?,
            baseline_config: Some(new.baseline_config),
            candidate_config: Some(new.candidate_config),
            results: None,
            deployment_id: None,
            created_by: new.created_by.clone(),
            created_at: now,
            updated_at: now,
            started_at: None,
            measuring_from: None,
            completed_at: None,
            target_agents: None,
            phase_reason: None,
        };
        let event = event_row(&row.id, "created", None, Some(Phase::Pending), "created", None, new.created_by, now)?;
        self.run(move |conn| {
            write_transaction(conn, |tx| {
                diesel::insert_into(experiments::table).values(&row).execute(tx)?;
                diesel::insert_into(experiment_events::table).values(&event).execute(tx)?;
                Ok::<_, DbError>(())
            })?;
            experiment_from_row(row)
        })
        .await
    }

    async fn get_experiment(&self, id: &str) -> Result<Experiment, StoreError> {
        let id = id.to_string();
        self.run(move |conn| experiment_from_row(experiments::table.find(&id).first(conn)?)).await
    }

    async fn list_experiments(&self, phase: Option<Phase>, page: PageRequest) -> Result<Page<Experiment>, StoreError> {
        self.run(move |conn| {
            let mut query =
                experiments::table.order(experiments::id.desc()).limit(i64::from(page.limit) + 1).into_boxed();
            if let Some(before) = &page.after {
                query = query.filter(experiments::id.lt(before.clone()));
            }
            if let Some(phase) = phase {
                query = query.filter(experiments::phase.eq(phase.as_str()));
            }
            let rows: Vec<ExperimentRow> = query.load(conn)?;
            let items = rows.into_iter().map(experiment_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page.limit, |e| e.id.clone()))
        })
        .await
    }

    async fn ended_since(&self, phase: Phase, since: DateTime<Utc>) -> Result<Vec<Experiment>, StoreError> {
        self.run(move |conn| {
            let rows: Vec<ExperimentRow> = experiments::table
                .filter(experiments::phase.eq(phase.as_str()))
                .filter(experiments::completed_at.ge(to_db_time(since)))
                .order(experiments::completed_at.asc())
                .load(conn)?;
            rows.into_iter().map(experiment_from_row).collect()
        })
        .await
    }

    async fn active_experiments(&self) -> Result<Vec<Experiment>, StoreError> {
        self.run(|conn| {
            let rows: Vec<ExperimentRow> = experiments::table
                .filter(experiments::phase.ne_all(FINAL_OR_UNSTARTED))
                .order(experiments::id.asc())
                .load(conn)?;
            rows.into_iter().map(experiment_from_row).collect()
        })
        .await
    }

    async fn change_phase(
        &self,
        id: &str,
        from: Phase,
        to: Phase,
        change: PhaseChange,
        now: DateTime<Utc>,
    ) -> Result<Experiment, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let row = write_transaction(conn, |tx| apply_phase_change(tx, &id, from, to, &change, to_db_time(now)))?;
            experiment_from_row(row)
        })
        .await
    }

    async fn promote_experiment(
        &self,
        id: &str,
        promotion: Promotion,
        mut change: PhaseChange,
        now: DateTime<Utc>,
    ) -> Result<(Experiment, Deployment, DeploymentVersion), StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let now = to_db_time(now);
            let (row, deployment, version) = write_transaction(conn, |tx| {
                let (deployment, version) = record_promotion(tx, &promotion, now)?;
                change.deployment_id = Some(deployment.id.clone());
                let row = apply_phase_change(tx, &id, Phase::Completed, Phase::Promoted, &change, now)?;
                Ok::<_, DbError>((row, deployment, version))
            })?;
            Ok((experiment_from_row(row)?, deployment_from_row(deployment)?, version_from_row(version)?))
        })
        .await
    }

    async fn record_experiment_event(
        &self,
        id: &str,
        event_type: &str,
        message: &str,
        data: Option<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let row = event_row(id, event_type, None, None, message, data.as_ref(), None, to_db_time(now))?;
        self.run(move |conn| {
            diesel::insert_into(experiment_events::table).values(&row).execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn experiment_events(&self, id: &str) -> Result<Vec<ExperimentEvent>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            // A missing experiment is a 404, not an empty history.
            experiments::table.find(&id).select(experiments::id).first::<String>(conn)?;
            let rows: Vec<ExperimentEventRow> = experiment_events::table
                .filter(experiment_events::experiment_id.eq(&id))
                .order((experiment_events::created_at.asc(), experiment_events::id.asc()))
                .load(conn)?;
            rows.into_iter().map(event_from_row).collect()
        })
        .await
    }

    async fn delete_experiment(&self, id: &str) -> Result<Experiment, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let row = write_transaction(conn, |tx| {
                let row: ExperimentRow = experiments::table.find(&id).first(tx)?;
                if parse_phase("experiments.phase", &row.phase)?.is_active() {
                    return Err(DbError::Conflict(format!("the experiment is {}", row.phase)));
                }
                diesel::delete(experiment_events::table.filter(experiment_events::experiment_id.eq(&id)))
                    .execute(tx)?;
                diesel::delete(experiments::table.find(&id)).execute(tx)?;
                Ok(row)
            })?;
            experiment_from_row(row)
        })
        .await
    }

    async fn experiment_samples(
        &self,
        id: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ExperimentSample>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let rows: Vec<(String, Option<String>, String, f64, String, NaiveDateTime)> = metric_samples::table
                .filter(metric_samples::experiment_id.eq(&id))
                .filter(metric_samples::sampled_at.ge(to_db_time(from)))
                .filter(metric_samples::sampled_at.lt(to_db_time(until)))
                .order((metric_samples::sampled_at.asc(), metric_samples::id.asc()))
                .select((
                    metric_samples::agent_id,
                    metric_samples::variant,
                    metric_samples::metric,
                    metric_samples::value,
                    metric_samples::labels,
                    metric_samples::sampled_at,
                ))
                .load(conn)?;
            rows.into_iter()
                .filter_map(|(agent_id, variant, metric, value, labels, at)| {
                    variant.map(|variant| (agent_id, variant, metric, value, labels, at))
                })
                .map(|(agent_id, variant, metric, value, labels, at)| {
                    let subject_label = match metric.as_str() {
                        "pipeline.critical.present" => Some("process"),
                        m if m.starts_with("pipeline.metric.") => Some("metric"),
                        _ => None,
                    };
                    let subject = match subject_label {
                        Some(label) => {
                            let labels: std::collections::BTreeMap<String, String> =
                                from_json("metric_samples.labels", &labels)?;
                            labels.get(label).cloned()
                        }
                        None => None,
                    };
                    Ok(ExperimentSample { agent_id, variant, metric, value, subject, sampled_at: from_db_time(at) })
                })
                .collect()
        })
        .await
    }

    async fn pipeline_totals(
        &self,
        metric: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<PipelineTotal>, StoreError> {
        let metric = metric.to_string();
        self.run(move |conn| {
            let rows: Vec<(String, String, Option<f64>, Option<f64>, i64)> = metric_samples::table
                .filter(metric_samples::metric.eq(&metric))
                .filter(metric_samples::sampled_at.ge(to_db_time(from)))
                .filter(metric_samples::sampled_at.lt(to_db_time(until)))
                .group_by((metric_samples::pipeline, metric_samples::agent_id))
                .select((
                    metric_samples::pipeline,
                    metric_samples::agent_id,
                    diesel::dsl::avg(metric_samples::value),
                    diesel::dsl::sum(metric_samples::value),
                    diesel::dsl::count_star(),
                ))
                .order((metric_samples::pipeline.asc(), metric_samples::agent_id.asc()))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|(pipeline, agent_id, mean, sum, samples)| PipelineTotal {
                    pipeline,
                    agent_id,
                    mean: mean.unwrap_or(0.0),
                    sum: sum.unwrap_or(0.0),
                    samples: u64::try_from(samples).unwrap_or(0),
                })
                .collect())
        })
        .await
    }
}
