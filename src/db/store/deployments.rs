use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::deployments::{
    Deployment, DeploymentChange, DeploymentEvent, DeploymentFilter, DeploymentStatus, DeploymentVersion,
    NewDeployment, NewVersion, VERSION_ACTIVE, VERSION_ROLLED_BACK, VERSION_SUPERSEDED,
};
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::pipelines::PipelineSpec;
use phoenix_actors::store::{DeploymentStore, NewDeploymentEvent};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, from_json, new_id, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::{DeploymentEventRow, DeploymentVersionRow, PipelineDeploymentRow};
use crate::db::schema::{deployment_events, deployment_versions, pipeline_deployments};
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};

pub(super) fn deployment_from_row(row: PipelineDeploymentRow) -> Result<Deployment, DbError> {
    Ok(Deployment {
        pipeline: from_json("pipeline_deployments.pipeline", &row.pipeline)?,
        target: from_json("pipeline_deployments.target", &row.target)?,
        rollout: from_json("pipeline_deployments.rollout", &row.rollout)?,
        status: row.status.parse().map_err(|e| DbError::Corrupt(format!("pipeline_deployments.status: {e}")))?,
        status_detail: row
            .status_detail
            .as_deref()
            .map(|d| from_json("pipeline_deployments.status_detail", d))
            .transpose()?,
        id: row.id,
        name: row.name,
        template: row.template,
        current_version: row.current_version,
        created_by: row.created_by,
        created_at: from_db_time(row.created_at),
        updated_at: from_db_time(row.updated_at),
        deleted_at: row.deleted_at.map(from_db_time),
        resumed_at: row.resumed_at.map(from_db_time),
    })
}

pub(super) fn version_from_row(row: DeploymentVersionRow) -> Result<DeploymentVersion, DbError> {
    Ok(DeploymentVersion {
        pipeline: from_json("deployment_versions.pipeline", &row.pipeline)?,
        deployment_id: row.deployment_id,
        version: row.version,
        config: row.config,
        config_hash: row.config_hash,
        status: row.status,
        rollback_from_version: row.rollback_from_version,
        notes: row.notes,
        created_by: row.created_by,
        created_at: from_db_time(row.created_at),
    })
}

fn event_from_row(row: DeploymentEventRow) -> Result<DeploymentEvent, DbError> {
    Ok(DeploymentEvent {
        data: row.data.as_deref().map(|d| from_json("deployment_events.data", d)).transpose()?,
        id: row.id,
        event_type: row.event_type,
        version: row.version,
        message: row.message,
        actor: row.actor,
        created_at: from_db_time(row.created_at),
    })
}

fn template_of(spec: &PipelineSpec) -> Option<String> {
    match spec {
        PipelineSpec::Template { template, .. } => Some(template.clone()),
        PipelineSpec::Inline { .. } => None,
    }
}

fn insert_event(
    conn: &mut DbConnection,
    deployment_id: &str,
    event: &NewDeploymentEvent,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    let row = DeploymentEventRow {
        id: new_id(),
        deployment_id: deployment_id.to_string(),
        event_type: event.event_type.clone(),
        version: event.version,
        message: event.message.clone(),
        data: event.data.as_ref().map(to_json).transpose()?,
        actor: event.actor.clone(),
        created_at: now,
    };
    diesel::insert_into(deployment_events::table).values(&row).execute(conn)?;
    Ok(())
}

/// Stores a new deployment and its version 1 (inside the caller's transaction).
pub(super) fn insert_deployment(
    conn: &mut DbConnection,
    new: &NewDeployment,
    now: NaiveDateTime,
) -> Result<(PipelineDeploymentRow, DeploymentVersionRow), DbError> {
    let row = PipelineDeploymentRow {
        id: new_id(),
        name: new.name.clone(),
        template: template_of(&new.version.pipeline),
        pipeline: to_json(&new.version.pipeline)?,
        target: to_json(&new.target)?,
        rollout: to_json(&new.rollout)?,
        status: DeploymentStatus::RollingOut.as_str().into(),
        current_version: 0,
        created_by: new.version.created_by.clone(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        status_detail: None,
        resumed_at: None,
    };
    diesel::insert_into(pipeline_deployments::table).values(&row).execute(conn).map_err(|e| {
        if is_unique_violation(&e) {
            DbError::Conflict(format!("a deployment named '{}' exists", new.name))
        } else {
            DbError::from(e)
        }
    })?;
    add_version(conn, &row.id, &new.version, None, now)
}

/// Records the next version of a live deployment as its active one (inside the caller's transaction).
/// The number comes from an atomic increment of `current_version`, which also locks the row on
/// PostgreSQL, so concurrent writers get contiguous, unique numbers.
pub(super) fn add_version(
    conn: &mut DbConnection,
    deployment_id: &str,
    version: &NewVersion,
    rollback_from_version: Option<i32>,
    now: NaiveDateTime,
) -> Result<(PipelineDeploymentRow, DeploymentVersionRow), DbError> {
    let next: i32 = diesel::update(pipeline_deployments::table.find(deployment_id))
        .filter(pipeline_deployments::deleted_at.is_null())
        .set(pipeline_deployments::current_version.eq(pipeline_deployments::current_version + 1))
        .returning(pipeline_deployments::current_version)
        .get_result(conn)
        .optional()?
        // Not found (or deleted): the caller says which deployment.
        .ok_or(DbError::Query(diesel::result::Error::NotFound))?;
    diesel::update(deployment_versions::table.filter(deployment_versions::deployment_id.eq(deployment_id)))
        .filter(deployment_versions::status.eq(VERSION_ACTIVE))
        .set(deployment_versions::status.eq(VERSION_SUPERSEDED))
        .execute(conn)?;
    let version_row = DeploymentVersionRow {
        id: new_id(),
        deployment_id: deployment_id.to_string(),
        version: next,
        pipeline: to_json(&version.pipeline)?,
        config: version.config.clone(),
        config_hash: version.config_hash.clone(),
        status: VERSION_ACTIVE.into(),
        rollback_from_version,
        notes: version.notes.clone(),
        created_by: version.created_by.clone(),
        created_at: now,
    };
    diesel::insert_into(deployment_versions::table).values(&version_row).execute(conn)?;
    let current: PipelineDeploymentRow = pipeline_deployments::table.find(deployment_id).first(conn)?;
    // A paused rollout stays paused: the operator resumes it.
    let status = if current.status == DeploymentStatus::Paused.as_str() {
        current.status.clone()
    } else {
        DeploymentStatus::RollingOut.as_str().to_string()
    };
    let deployment = diesel::update(pipeline_deployments::table.find(deployment_id))
        .set((
            pipeline_deployments::pipeline.eq(&version_row.pipeline),
            pipeline_deployments::template.eq(template_of(&version.pipeline)),
            pipeline_deployments::status.eq(status),
            pipeline_deployments::updated_at.eq(now),
        ))
        .get_result(conn)?;
    let message = match rollback_from_version {
        Some(from) => format!("version {next} restores version {from}'s config"),
        None => format!("version {next} recorded"),
    };
    let event = NewDeploymentEvent {
        event_type: "version_created".into(),
        version: Some(next),
        message,
        data: Some(serde_json::json!({"config_hash": version.config_hash, "notes": version.notes})),
        actor: version.created_by.clone(),
    };
    insert_event(conn, deployment_id, &event, now)?;
    Ok((deployment, version_row))
}

fn current_version_row(
    conn: &mut DbConnection,
    deployment: &PipelineDeploymentRow,
) -> Result<DeploymentVersionRow, DbError> {
    Ok(deployment_versions::table
        .filter(deployment_versions::deployment_id.eq(&deployment.id))
        .filter(deployment_versions::version.eq(deployment.current_version))
        .first(conn)?)
}

fn change(
    conn: &mut DbConnection,
    id: &str,
    change: &DeploymentChange,
    now: NaiveDateTime,
) -> Result<(PipelineDeploymentRow, Option<DeploymentVersionRow>), DbError> {
    let mut row: PipelineDeploymentRow =
        pipeline_deployments::table.find(id).filter(pipeline_deployments::deleted_at.is_null()).first(conn)?;
    if let Some(target) = &change.target {
        let target = to_json(target)?;
        if target != row.target {
            diesel::update(pipeline_deployments::table.find(id))
                .set((pipeline_deployments::target.eq(&target), pipeline_deployments::updated_at.eq(now)))
                .execute(conn)?;
            let event = NewDeploymentEvent {
                event_type: "target_changed".into(),
                message: "target changed".into(),
                data: Some(
                    serde_json::json!({"from": from_json::<serde_json::Value>("target", &row.target)?, "to": change.target}),
                ),
                actor: change.actor.clone(),
                ..NewDeploymentEvent::default()
            };
            insert_event(conn, id, &event, now)?;
        }
    }
    if let Some(rollout) = &change.rollout {
        let rollout = to_json(rollout)?;
        if rollout != row.rollout {
            diesel::update(pipeline_deployments::table.find(id))
                .set((pipeline_deployments::rollout.eq(&rollout), pipeline_deployments::updated_at.eq(now)))
                .execute(conn)?;
            let event = NewDeploymentEvent {
                event_type: "rollout_changed".into(),
                message: "rollout strategy changed".into(),
                data: Some(serde_json::json!({"to": change.rollout})),
                actor: change.actor.clone(),
                ..NewDeploymentEvent::default()
            };
            insert_event(conn, id, &event, now)?;
        }
    }
    let mut created = None;
    if let Some(version) = &change.version {
        let current = current_version_row(conn, &row)?;
        if current.config_hash != version.config_hash {
            created = Some(add_version(conn, id, version, None, now)?.1);
        }
    }
    row = pipeline_deployments::table.find(id).first(conn)?;
    Ok((row, created))
}

fn rollback(
    conn: &mut DbConnection,
    id: &str,
    to: Option<i32>,
    notes: Option<String>,
    actor: Option<String>,
    now: NaiveDateTime,
) -> Result<(PipelineDeploymentRow, DeploymentVersionRow), DbError> {
    let row: PipelineDeploymentRow =
        pipeline_deployments::table.find(id).filter(pipeline_deployments::deleted_at.is_null()).first(conn)?;
    let target = to.unwrap_or(row.current_version - 1);
    let restored: DeploymentVersionRow = deployment_versions::table
        .filter(deployment_versions::deployment_id.eq(id))
        .filter(deployment_versions::version.eq(target))
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            DbError::Conflict(format!(
                "deployment {id} has no version {target} to roll back to (versions 1 to {})",
                row.current_version
            ))
        })?;
    diesel::update(deployment_versions::table.filter(deployment_versions::deployment_id.eq(id)))
        .filter(deployment_versions::version.eq(row.current_version))
        .set(deployment_versions::status.eq(VERSION_ROLLED_BACK))
        .execute(conn)?;
    let version = NewVersion {
        pipeline: from_json("deployment_versions.pipeline", &restored.pipeline)?,
        config: restored.config,
        config_hash: restored.config_hash,
        notes: notes.unwrap_or_else(|| format!("rollback of version {} to version {target}", row.current_version)),
        created_by: actor,
    };
    add_version(conn, id, &version, Some(target), now)
}

#[async_trait]
impl DeploymentStore for DieselStore {
    async fn create_deployment(
        &self,
        new: NewDeployment,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, DeploymentVersion), StoreError> {
        self.run(move |conn| {
            let (row, version) = write_transaction(conn, |tx| insert_deployment(tx, &new, to_db_time(now)))?;
            Ok((deployment_from_row(row)?, version_from_row(version)?))
        })
        .await
    }

    async fn get_deployment(&self, id: &str) -> Result<Deployment, StoreError> {
        let id = id.to_string();
        self.run(move |conn| deployment_from_row(pipeline_deployments::table.find(&id).first(conn)?)).await
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        page: PageRequest,
    ) -> Result<Page<Deployment>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| {
            let mut query = pipeline_deployments::table
                .filter(pipeline_deployments::deleted_at.is_null())
                .order(pipeline_deployments::id.desc())
                .limit(i64::from(page.limit) + 1)
                .into_boxed();
            if let Some(before) = &page.after {
                query = query.filter(pipeline_deployments::id.lt(before.clone()));
            }
            if let Some(status) = filter.status {
                query = query.filter(pipeline_deployments::status.eq(status.as_str()));
            }
            if let Some(name) = &filter.name {
                query = query.filter(pipeline_deployments::name.eq(name.clone()));
            }
            if let Some(template) = &filter.template {
                query = query.filter(pipeline_deployments::template.eq(template.clone()));
            }
            let rows: Vec<PipelineDeploymentRow> = query.load(conn)?;
            let items = rows.into_iter().map(deployment_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page.limit, |d| d.id.clone()))
        })
        .await
    }

    async fn live_deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        self.run(|conn| {
            let rows: Vec<PipelineDeploymentRow> = pipeline_deployments::table
                .filter(pipeline_deployments::deleted_at.is_null())
                .order(pipeline_deployments::id.asc())
                .load(conn)?;
            rows.into_iter().map(deployment_from_row).collect()
        })
        .await
    }

    async fn change_deployment(
        &self,
        id: &str,
        changes: DeploymentChange,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, Option<DeploymentVersion>), StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let (row, version) = write_transaction(conn, |tx| change(tx, &id, &changes, to_db_time(now)))?;
            Ok((deployment_from_row(row)?, version.map(version_from_row).transpose()?))
        })
        .await
    }

    async fn rollback_deployment(
        &self,
        id: &str,
        to: Option<i32>,
        notes: Option<String>,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, DeploymentVersion), StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let (row, version) = write_transaction(conn, |tx| rollback(tx, &id, to, notes, actor, to_db_time(now)))?;
            Ok((deployment_from_row(row)?, version_from_row(version)?))
        })
        .await
    }

    async fn deployment_versions(&self, id: &str, page: PageRequest) -> Result<Page<DeploymentVersion>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            pipeline_deployments::table.find(&id).select(pipeline_deployments::id).first::<String>(conn)?;
            let mut query = deployment_versions::table
                .filter(deployment_versions::deployment_id.eq(&id))
                .order(deployment_versions::version.desc())
                .limit(i64::from(page.limit) + 1)
                .into_boxed();
            if let Some(before) = page.after.as_deref().and_then(|c| c.parse::<i32>().ok()) {
                query = query.filter(deployment_versions::version.lt(before));
            }
            let rows: Vec<DeploymentVersionRow> = query.load(conn)?;
            let items = rows.into_iter().map(version_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page.limit, |v| v.version.to_string()))
        })
        .await
    }

    async fn deployment_version(&self, id: &str, version: i32) -> Result<DeploymentVersion, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            version_from_row(
                deployment_versions::table
                    .filter(deployment_versions::deployment_id.eq(&id))
                    .filter(deployment_versions::version.eq(version))
                    .first(conn)?,
            )
        })
        .await
    }

    async fn set_deployment_status(
        &self,
        id: &str,
        status: DeploymentStatus,
        detail: Option<serde_json::Value>,
        resumed: bool,
        expected: Option<(i32, DeploymentStatus)>,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(Deployment, bool), StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let now = to_db_time(now);
            let (row, changed) = write_transaction(conn, |tx| {
                let row: PipelineDeploymentRow = pipeline_deployments::table.find(&id).first(tx)?;
                let stale =
                    expected.is_some_and(|(version, was)| row.current_version != version || row.status != was.as_str());
                if stale || (row.deleted_at.is_some() && status != DeploymentStatus::Deleted) {
                    return Ok::<_, DbError>((row, false));
                }
                let detail_text = detail.as_ref().map(to_json).transpose()?;
                let changed = row.status != status.as_str() || row.status_detail != detail_text;
                if !changed && !resumed {
                    return Ok((row, false));
                }
                let deleted_at = if status == DeploymentStatus::Deleted { Some(now) } else { row.deleted_at };
                let resumed_at = if resumed { Some(now) } else { row.resumed_at };
                // The condition is in the UPDATE itself: a version committed after the read above (on
                // PostgreSQL's READ COMMITTED) makes this write nothing rather than a stale status.
                let (version, was) = (row.current_version, row.status.clone());
                let updated: Option<PipelineDeploymentRow> = diesel::update(pipeline_deployments::table.find(&id))
                    .filter(pipeline_deployments::current_version.eq(version))
                    .filter(pipeline_deployments::status.eq(was))
                    .set((
                        pipeline_deployments::status.eq(status.as_str()),
                        pipeline_deployments::status_detail.eq(&detail_text),
                        pipeline_deployments::deleted_at.eq(deleted_at),
                        pipeline_deployments::resumed_at.eq(resumed_at),
                        pipeline_deployments::updated_at.eq(now),
                    ))
                    .get_result(tx)
                    .optional()?;
                let Some(updated) = updated else { return Ok((row, false)) };
                if row.status != status.as_str() {
                    let event = NewDeploymentEvent {
                        event_type: "status_changed".into(),
                        version: Some(row.current_version),
                        message: format!("{} -> {}", row.status, status.as_str()),
                        data: detail.clone(),
                        actor: actor.clone(),
                    };
                    insert_event(tx, &id, &event, now)?;
                }
                Ok((updated, row.status != status.as_str()))
            })?;
            Ok((deployment_from_row(row)?, changed))
        })
        .await
    }

    async fn record_deployment_event(
        &self,
        id: &str,
        event: NewDeploymentEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.run(move |conn| insert_event(conn, &id, &event, to_db_time(now))).await
    }

    async fn deployment_events(&self, id: &str) -> Result<Vec<DeploymentEvent>, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            pipeline_deployments::table.find(&id).select(pipeline_deployments::id).first::<String>(conn)?;
            let rows: Vec<DeploymentEventRow> = deployment_events::table
                .filter(deployment_events::deployment_id.eq(&id))
                .order((deployment_events::created_at.asc(), deployment_events::id.asc()))
                .load(conn)?;
            rows.into_iter().map(event_from_row).collect()
        })
        .await
    }
}
