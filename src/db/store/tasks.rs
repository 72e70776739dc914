use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::store::TaskStore;
use phoenix_actors::tasks::transitions::{chrono_duration, decide, lease_expired, Decision};
use phoenix_actors::tasks::{types, NewTask, QueueStats, ReportOutcome, Task, TaskFilter, TaskPolicy, TaskStatus};
use phoenix_actors::StoreError;
use phoenix_nats::wire::TaskStatusReport;

use super::convert::{from_db_time, from_json, new_id, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::TaskRow;
use crate::db::schema::tasks;
use crate::db::{is_unique_violation, DbConnection, DbError};

/// `text` as a LIKE pattern that matches it literally (its wildcards and the escape escaped).
pub(super) fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// How often a report retries its optimistic update when the task changed underneath it.
const REPORT_RETRIES: usize = 5;

fn task_from_row(row: TaskRow) -> Result<Task, DbError> {
    let json = |column: &str, text: Option<String>| text.map(|t| from_json(column, &t)).transpose();
    Ok(Task {
        payload: from_json("tasks.payload", &row.payload)?,
        status: row.status.parse().map_err(DbError::Corrupt)?,
        progress: json("tasks.progress", row.progress)?,
        result: json("tasks.result", row.result)?,
        id: row.id,
        agent_id: row.agent_id,
        task_type: row.task_type,
        priority: row.priority,
        attempts: row.attempts,
        max_attempts: row.max_attempts,
        idempotency_key: row.idempotency_key,
        not_before: from_db_time(row.not_before),
        lease_expires_at: row.lease_expires_at.map(from_db_time),
        expires_at: row.expires_at.map(from_db_time),
        error: row.error,
        created_at: from_db_time(row.created_at),
        updated_at: from_db_time(row.updated_at),
        dispatched_at: row.dispatched_at.map(from_db_time),
        started_at: row.started_at.map(from_db_time),
        finished_at: row.finished_at.map(from_db_time),
    })
}

fn row_from_task(task: &Task) -> Result<TaskRow, DbError> {
    let json = |value: &Option<serde_json::Value>| value.as_ref().map(to_json).transpose();
    Ok(TaskRow {
        id: task.id.clone(),
        agent_id: task.agent_id.clone(),
        task_type: task.task_type.clone(),
        payload: to_json(&task.payload)?,
        priority: task.priority,
        status: task.status.as_str().into(),
        attempts: task.attempts,
        max_attempts: task.max_attempts,
        idempotency_key: task.idempotency_key.clone(),
        not_before: to_db_time(task.not_before),
        lease_expires_at: task.lease_expires_at.map(to_db_time),
        progress: json(&task.progress)?,
        result: json(&task.result)?,
        error: task.error.clone(),
        created_at: to_db_time(task.created_at),
        updated_at: to_db_time(task.updated_at),
        dispatched_at: task.dispatched_at.map(to_db_time),
        started_at: task.started_at.map(to_db_time),
        finished_at: task.finished_at.map(to_db_time),
        expires_at: task.expires_at.map(to_db_time),
    })
}

fn by_idempotency_key(conn: &mut DbConnection, key: &str) -> Result<Option<Task>, DbError> {
    tasks::table
        .filter(tasks::idempotency_key.eq(key))
        .first::<TaskRow>(conn)
        .optional()?
        .map(task_from_row)
        .transpose()
}

fn enqueue(
    conn: &mut DbConnection,
    new: NewTask,
    policy: &TaskPolicy,
    now: DateTime<Utc>,
) -> Result<(Task, bool), DbError> {
    if let Some(key) = &new.idempotency_key {
        if let Some(existing) = by_idempotency_key(conn, key)? {
            return Ok((existing, false));
        }
    }
    let ttl = new.ttl_secs.map_or(policy.default_ttl, Duration::from_secs);
    let task = Task {
        id: new_id(),
        agent_id: new.agent_id,
        task_type: new.task_type,
        payload: new.payload,
        priority: new.priority,
        status: TaskStatus::Pending,
        attempts: 0,
        max_attempts: new.max_attempts.unwrap_or(policy.default_max_attempts),
        idempotency_key: new.idempotency_key,
        not_before: now,
        lease_expires_at: None,
        expires_at: Some(now + chrono_duration(ttl)),
        progress: None,
        result: None,
        error: None,
        created_at: now,
        updated_at: now,
        dispatched_at: None,
        started_at: None,
        finished_at: None,
    };
    match diesel::insert_into(tasks::table).values(&row_from_task(&task)?).execute(conn) {
        Ok(_) => Ok((task, true)),
        // Two enqueues with the same key raced: the other one's task is the task.
        Err(e) if is_unique_violation(&e) => match &task.idempotency_key {
            Some(key) => by_idempotency_key(conn, key)?.map(|t| (t, false)).ok_or_else(|| e.into()),
            None => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Claims by conditional update (`... WHERE status = 'pending'`): of concurrent claimers of one task
/// exactly one changes the row, on PostgreSQL (the row lock re-checks the condition) and SQLite
/// (writes are serialised) alike.
fn claim(
    conn: &mut DbConnection,
    agent_id: &str,
    limit: u32,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Task>, DbError> {
    let now_db = to_db_time(now);
    let candidates: Vec<String> = tasks::table
        .select(tasks::id)
        .filter(tasks::agent_id.eq(agent_id))
        .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
        .filter(tasks::not_before.le(now_db))
        .filter(tasks::expires_at.is_null().or(tasks::expires_at.gt(now_db)))
        .order((tasks::priority.desc(), tasks::created_at.asc()))
        .limit(i64::from(limit))
        .load(conn)?;
    let lease_until = to_db_time(now + chrono_duration(lease));
    let mut claimed = Vec::with_capacity(candidates.len());
    for id in candidates {
        let row: Option<TaskRow> =
            diesel::update(tasks::table.find(&id).filter(tasks::status.eq(TaskStatus::Pending.as_str())))
                .set((
                    tasks::status.eq(TaskStatus::Dispatched.as_str()),
                    tasks::attempts.eq(tasks::attempts + 1),
                    tasks::lease_expires_at.eq(Some(lease_until)),
                    tasks::dispatched_at.eq(Some(now_db)),
                    tasks::updated_at.eq(now_db),
                ))
                .get_result(conn)
                .optional()?;
        if let Some(row) = row {
            claimed.push(task_from_row(row)?);
        }
    }
    Ok(claimed)
}

/// Writes `next` only if the task is still as it was read (`previous`); false when it changed meanwhile.
fn replace_if_unchanged(conn: &mut DbConnection, previous: &Task, next: &Task) -> Result<bool, DbError> {
    let changed = diesel::update(
        tasks::table
            .find(&previous.id)
            .filter(tasks::status.eq(previous.status.as_str()))
            .filter(tasks::attempts.eq(previous.attempts))
            .filter(tasks::updated_at.eq(to_db_time(previous.updated_at))),
    )
    .set(&row_from_task(next)?)
    .execute(conn)?;
    Ok(changed == 1)
}

fn apply_report(
    conn: &mut DbConnection,
    agent_id: &str,
    report: &TaskStatusReport,
    policy: &TaskPolicy,
    now: DateTime<Utc>,
) -> Result<ReportOutcome, DbError> {
    for _ in 0..REPORT_RETRIES {
        let task = task_from_row(tasks::table.find(&report.task_id).first(conn)?)?;
        match decide(&task, agent_id, report, now, policy) {
            Decision::NotYours => return Ok(ReportOutcome::NotYours),
            Decision::Ignore => return Ok(ReportOutcome::Ignored(task)),
            Decision::Update(next) => {
                if replace_if_unchanged(conn, &task, &next)? {
                    return Ok(ReportOutcome::Applied(*next));
                }
            }
        }
    }
    Err(DbError::Conflict(format!("task {} kept changing while a report was applied", report.task_id)))
}

fn tasks_from_rows(rows: Vec<TaskRow>) -> Result<Vec<Task>, DbError> {
    rows.into_iter().map(task_from_row).collect()
}

fn reap(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<Task>, DbError> {
    let now_db = to_db_time(now);
    let leased = [TaskStatus::Dispatched.as_str(), TaskStatus::Running.as_str()];
    let rows: Vec<TaskRow> =
        tasks::table.filter(tasks::status.eq_any(leased)).filter(tasks::lease_expires_at.lt(now_db)).load(conn)?;
    let overdue: Vec<TaskRow> = tasks::table
        .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
        .filter(tasks::expires_at.lt(now_db))
        .load(conn)?;
    let mut changed = Vec::new();
    for task in tasks_from_rows(rows)? {
        let next = lease_expired(&task, now);
        if replace_if_unchanged(conn, &task, &next)? {
            changed.push(next);
        }
    }
    for task in tasks_from_rows(overdue)? {
        let mut next = task.clone();
        next.status = TaskStatus::Expired;
        next.finished_at = Some(now);
        next.updated_at = now;
        next.error = Some("not picked up by its agent before its deadline".into());
        if replace_if_unchanged(conn, &task, &next)? {
            changed.push(next);
        }
    }
    Ok(changed)
}

fn cancel(conn: &mut DbConnection, id: &str, now: DateTime<Utc>) -> Result<Task, DbError> {
    let task = task_from_row(tasks::table.find(id).first(conn)?)?;
    if task.status.is_terminal() {
        return Err(DbError::Conflict(format!("task {id} already ended as {}", task.status.as_str())));
    }
    let mut next = task.clone();
    next.status = TaskStatus::Cancelled;
    next.finished_at = Some(now);
    next.updated_at = now;
    next.lease_expires_at = None;
    if replace_if_unchanged(conn, &task, &next)? {
        Ok(next)
    } else {
        Err(DbError::Conflict(format!("task {id} changed while being cancelled; try again")))
    }
}

fn list(conn: &mut DbConnection, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>, DbError> {
    let mut query = tasks::table.order(tasks::id.desc()).limit(i64::from(page.limit) + 1).into_boxed();
    if let Some(before) = &page.after {
        query = query.filter(tasks::id.lt(before.clone()));
    }
    if let Some(agent_id) = &filter.agent_id {
        query = query.filter(tasks::agent_id.eq(agent_id.clone()));
    }
    if let Some(status) = filter.status {
        query = query.filter(tasks::status.eq(status.as_str()));
    }
    if let Some(task_type) = &filter.task_type {
        query = query.filter(tasks::task_type.eq(task_type.clone()));
    }
    let items = tasks_from_rows(query.load(conn)?)?;
    Ok(Page::from_overfetch(items, page.limit, |t| t.id.clone()))
}

fn mean_secs(pairs: &[(chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)]) -> Option<f64> {
    let spans: Vec<f64> = pairs.iter().filter_map(|(from, to)| to.map(|to| (to - *from).as_seconds_f64())).collect();
    (!spans.is_empty()).then(|| spans.iter().sum::<f64>() / spans.len() as f64)
}

/// Recent tasks considered for the mean wait and run times.
const STATS_SAMPLE: i64 = 10_000;

fn stats(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<QueueStats, DbError> {
    let counts: Vec<(String, i64)> =
        tasks::table.group_by(tasks::status).select((tasks::status, diesel::dsl::count_star())).load(conn)?;
    let mut by_status: BTreeMap<String, u64> = TaskStatus::ALL.iter().map(|s| (s.as_str().to_string(), 0)).collect();
    for (status, count) in counts {
        by_status.insert(status, u64::try_from(count).unwrap_or(0));
    }
    let oldest: Option<chrono::NaiveDateTime> = tasks::table
        .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
        .select(diesel::dsl::min(tasks::created_at))
        .first(conn)?;
    let hour_ago = to_db_time(now - chrono::Duration::hours(1));
    let waits: Vec<(chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> = tasks::table
        .filter(tasks::dispatched_at.gt(hour_ago))
        .select((tasks::created_at, tasks::dispatched_at))
        .limit(STATS_SAMPLE)
        .load(conn)?;
    let runs: Vec<(Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>)> = tasks::table
        .filter(tasks::finished_at.gt(hour_ago))
        .select((tasks::started_at, tasks::finished_at))
        .limit(STATS_SAMPLE)
        .load(conn)?;
    let runs: Vec<_> = runs.into_iter().filter_map(|(start, end)| start.map(|s| (s, end))).collect();
    Ok(QueueStats {
        by_status,
        oldest_pending_age_secs: oldest.map(|t| (now - from_db_time(t)).as_seconds_f64()),
        mean_wait_secs: mean_secs(&waits),
        mean_run_secs: mean_secs(&runs),
    })
}

#[async_trait]
impl TaskStore for DieselStore {
    async fn enqueue_task(
        &self,
        task: NewTask,
        policy: &TaskPolicy,
        now: DateTime<Utc>,
    ) -> Result<(Task, bool), StoreError> {
        let policy = policy.clone();
        self.run(move |conn| enqueue(conn, task, &policy, now)).await
    }

    async fn claim_tasks(
        &self,
        agent_id: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        let agent_id = agent_id.to_string();
        self.run(move |conn| claim(conn, &agent_id, limit, lease, now)).await
    }

    async fn unacknowledged_tasks(&self, agent_id: &str) -> Result<Vec<Task>, StoreError> {
        let agent_id = agent_id.to_string();
        self.run(move |conn| {
            let rows = tasks::table
                .filter(tasks::agent_id.eq(&agent_id))
                .filter(tasks::status.eq(TaskStatus::Dispatched.as_str()))
                .order(tasks::created_at.asc())
                .load(conn)?;
            tasks_from_rows(rows)
        })
        .await
    }

    async fn mark_redelivered(&self, task_ids: &[String], now: DateTime<Utc>) -> Result<(), StoreError> {
        let ids = task_ids.to_vec();
        self.run(move |conn| {
            diesel::update(
                tasks::table.filter(tasks::id.eq_any(&ids)).filter(tasks::status.eq(TaskStatus::Dispatched.as_str())),
            )
            .set(tasks::dispatched_at.eq(Some(to_db_time(now))))
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn apply_task_report(
        &self,
        agent_id: &str,
        report: &TaskStatusReport,
        policy: &TaskPolicy,
        now: DateTime<Utc>,
    ) -> Result<ReportOutcome, StoreError> {
        let (agent_id, report, policy) = (agent_id.to_string(), report.clone(), policy.clone());
        self.run(move |conn| apply_report(conn, &agent_id, &report, &policy, now)).await
    }

    async fn reap_tasks(&self, now: DateTime<Utc>) -> Result<Vec<Task>, StoreError> {
        self.run(move |conn| reap(conn, now)).await
    }

    async fn cancel_task(&self, id: &str, now: DateTime<Utc>) -> Result<Task, StoreError> {
        let id = id.to_string();
        self.run(move |conn| cancel(conn, &id, now)).await
    }

    async fn get_task(&self, id: &str) -> Result<Task, StoreError> {
        let id = id.to_string();
        self.run(move |conn| task_from_row(tasks::table.find(&id).first(conn)?)).await
    }

    async fn tasks_with_key_prefix(&self, prefix: &str) -> Result<Vec<Task>, StoreError> {
        let pattern = format!("{}%", like_literal(prefix));
        self.run(move |conn| {
            let rows: Vec<TaskRow> = tasks::table
                .filter(tasks::idempotency_key.like(pattern).escape('\\'))
                .order(tasks::id.asc())
                .load(conn)?;
            tasks_from_rows(rows)
        })
        .await
    }

    async fn pipeline_hand_outs(&self, agent_id: &str, pipeline: &str) -> Result<Vec<Task>, StoreError> {
        // Payloads are stored as compact JSON, so `"pipeline":<the name as JSON>` narrows the rows down
        // in SQL (on the agent's rows of the claim index); the parsed payload then decides exactly.
        let named = serde_json::Value::from(pipeline).to_string();
        let pattern = format!("%\"pipeline\":{}%", like_literal(&named));
        let (agent_id, pipeline) = (agent_id.to_string(), pipeline.to_string());
        let received = [TaskStatus::Dispatched, TaskStatus::Running, TaskStatus::Succeeded].map(TaskStatus::as_str);
        self.run(move |conn| {
            let rows: Vec<TaskRow> = tasks::table
                .filter(tasks::agent_id.eq(&agent_id))
                .filter(tasks::status.eq_any(received))
                .filter(tasks::task_type.eq(types::PIPELINE_APPLY))
                .filter(tasks::payload.like(pattern).escape('\\'))
                .order(tasks::id.desc())
                .load(conn)?;
            let tasks = tasks_from_rows(rows)?;
            Ok(tasks.into_iter().filter(|task| task.payload["pipeline"].as_str() == Some(pipeline.as_str())).collect())
        })
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter, page: PageRequest) -> Result<Page<Task>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| list(conn, &filter, &page)).await
    }

    async fn agents_with_tasks_due_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            Ok(tasks::table
                .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
                .filter(tasks::not_before.gt(to_db_time(since)))
                .filter(tasks::not_before.le(to_db_time(until)))
                .select(tasks::agent_id)
                .distinct()
                .load(conn)?)
        })
        .await
    }

    async fn pending_task_count(&self, agent_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let agent_id = agent_id.to_string();
        self.run(move |conn| {
            let count: i64 = tasks::table
                .filter(tasks::agent_id.eq(&agent_id))
                .filter(tasks::status.eq(TaskStatus::Pending.as_str()))
                .filter(tasks::not_before.le(to_db_time(now)))
                .count()
                .get_result(conn)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats, StoreError> {
        self.run(move |conn| stats(conn, now)).await
    }
}
