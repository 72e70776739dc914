//! `AuditStore` over Diesel: the audit log is appended to, listed newest first, and pruned by age.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::audit::{ActorKind, AuditEntry, AuditFilter, NewAuditEntry, Outcome};
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::store::AuditStore;
use phoenix_actors::StoreError;

use super::convert::{from_db_time, to_db_time};
use super::DieselStore;
use crate::db::models::AuditRow;
use crate::db::schema::audit_log;
use crate::db::DbError;

fn row_of(entry: &NewAuditEntry, at: DateTime<Utc>) -> AuditRow {
    AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: to_db_time(at),
        actor_kind: entry.actor_kind.as_str().to_owned(),
        actor_id: entry.actor_id.clone(),
        actor_name: entry.actor_name.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        outcome: entry.outcome.as_str().to_owned(),
        status: entry.status.map(i32::from),
        client: entry.client.clone(),
        request_id: entry.request_id.clone(),
        detail: entry.detail.clone(),
    }
}

fn entry_of(row: AuditRow) -> Result<AuditEntry, DbError> {
    let corrupt = |what: &str, value: &str| DbError::Corrupt(format!("audit_log.{what} {value:?}"));
    Ok(AuditEntry {
        at: from_db_time(row.at),
        entry: NewAuditEntry {
            actor_kind: ActorKind::parse(&row.actor_kind).ok_or_else(|| corrupt("actor_kind", &row.actor_kind))?,
            actor_id: row.actor_id,
            actor_name: row.actor_name,
            action: row.action,
            target: row.target,
            outcome: Outcome::parse(&row.outcome).ok_or_else(|| corrupt("outcome", &row.outcome))?,
            status: row.status.and_then(|s| u16::try_from(s).ok()),
            client: row.client,
            request_id: row.request_id,
            detail: row.detail,
        },
        id: row.id,
    })
}

#[async_trait]
impl AuditStore for DieselStore {
    async fn record_audit(&self, entry: NewAuditEntry, at: DateTime<Utc>) -> Result<AuditEntry, StoreError> {
        self.run(move |conn| {
            let row = row_of(&entry, at);
            diesel::insert_into(audit_log::table).values(&row).execute(conn)?;
            entry_of(row)
        })
        .await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| {
            let mut query = audit_log::table.order(audit_log::id.desc()).limit(i64::from(page.limit) + 1).into_boxed();
            if let Some(before) = &page.after {
                query = query.filter(audit_log::id.lt(before.clone()));
            }
            if let Some(actor) = filter.actor {
                query = query.filter(audit_log::actor_id.eq(actor.clone()).or(audit_log::actor_name.eq(actor)));
            }
            if let Some(action) = filter.action {
                query = query
                    .filter(audit_log::action.like(format!("{}%", super::tasks::like_literal(&action))).escape('\\'));
            }
            if let Some(outcome) = filter.outcome {
                query = query.filter(audit_log::outcome.eq(outcome.as_str()));
            }
            if let Some(since) = filter.since {
                query = query.filter(audit_log::at.ge(to_db_time(since)));
            }
            if let Some(until) = filter.until {
                query = query.filter(audit_log::at.lt(to_db_time(until)));
            }
            let rows: Vec<AuditRow> = query.load(conn)?;
            let items = rows.into_iter().map(entry_of).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page.limit, |e| e.id.clone()))
        })
        .await
    }

    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.run(move |conn| {
            Ok(diesel::delete(audit_log::table.filter(audit_log::at.lt(to_db_time(before)))).execute(conn)?)
        })
        .await
    }
}
