use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::agents::{Agent, AgentFilter, AgentState};
use phoenix_actors::labels::Labels;
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::store::FleetStore;
use phoenix_actors::StoreError;
use phoenix_nats::wire::Heartbeat;

use super::convert::{from_db_time, from_json, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::AgentRow;
use crate::db::schema::agents;
use crate::db::{write_transaction, DbConnection, DbError};

pub fn agent_from_row(row: AgentRow) -> Result<Agent, DbError> {
    Ok(Agent {
        labels: from_json("agents.labels", &row.labels)?,
        state: row.state.parse().map_err(DbError::Corrupt)?,
        resources: row.resources.as_deref().map(|r| from_json("agents.resources", r)).transpose()?,
        pipelines: row.pipelines.as_deref().map(|p| from_json("agents.pipelines", p)).transpose()?.unwrap_or_default(),
        id: row.id,
        hostname: row.hostname,
        agent_version: row.agent_version,
        last_heartbeat_at: row.last_heartbeat_at.map(from_db_time),
        enrolled_at: from_db_time(row.enrolled_at),
        updated_at: from_db_time(row.updated_at),
        credential_revoked: row.revoked_at.is_some(),
    })
}

fn list(conn: &mut DbConnection, filter: &AgentFilter, page: &PageRequest) -> Result<Page<Agent>, DbError> {
    let mut query = agents::table.order(agents::id.asc()).limit(i64::from(page.limit) + 1).into_boxed();
    if let Some(after) = &page.after {
        query = query.filter(agents::id.gt(after.clone()));
    }
    if let Some(state) = filter.state {
        query = query.filter(agents::state.eq(state.as_str()));
    }
    // Labels are stored as compact JSON of a sorted map, and label parts cannot contain '"' or ':',
    // so `"key":"value"` occurs in the text exactly when the agent has that label.
    for (key, value) in &filter.selector.0 {
        query = query.filter(agents::labels.like(format!("%\"{key}\":\"{value}\"%")));
    }
    let mut rows: Vec<AgentRow> = query.load(conn)?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    let next_cursor = if more { rows.last().map(|row| row.id.clone()) } else { None };
    // LIKE is only a prefilter (SQLite's ignores case; '_' is a wildcard): the selector decides.
    let items = rows
        .into_iter()
        .map(agent_from_row)
        .filter(|agent| agent.as_ref().map_or(true, |a| filter.selector.matches(&a.labels)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next_cursor })
}

#[async_trait]
impl FleetStore for DieselStore {
    async fn get_agent(&self, id: &str) -> Result<Agent, StoreError> {
        let id = id.to_string();
        self.run(move |conn| agent_from_row(agents::table.find(&id).first(conn)?)).await
    }

    async fn list_agents(&self, filter: &AgentFilter, page: PageRequest) -> Result<Page<Agent>, StoreError> {
        let filter = filter.clone();
        self.run(move |conn| list(conn, &filter, &page)).await
    }

    async fn get_agents(&self, ids: &[String]) -> Result<Vec<Agent>, StoreError> {
        let ids = ids.to_vec();
        self.run(move |conn| {
            let mut found = Vec::with_capacity(ids.len());
            // Chunked: SQLite limits the number of bound parameters in one statement.
            for chunk in ids.chunks(500) {
                let rows: Vec<AgentRow> = agents::table.filter(agents::id.eq_any(chunk)).load(conn)?;
                found.extend(rows);
            }
            found.sort_by(|a, b| a.id.cmp(&b.id));
            found.into_iter().map(agent_from_row).collect()
        })
        .await
    }

    async fn active_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.run(|conn| {
            let rows: Vec<AgentRow> = agents::table.filter(agents::revoked_at.is_null()).load(conn)?;
            rows.into_iter().map(agent_from_row).collect()
        })
        .await
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        heartbeat: &Heartbeat,
        state: AgentState,
        now: DateTime<Utc>,
    ) -> Result<Agent, StoreError> {
        let id = id.to_string();
        let resources = to_json(&heartbeat.resources)?;
        let pipelines = to_json(&heartbeat.pipelines)?;
        let version = heartbeat.agent_version.clone();
        self.run(move |conn| {
            let now = to_db_time(now);
            let row: AgentRow = diesel::update(agents::table.find(&id))
                .set((
                    agents::state.eq(state.as_str()),
                    agents::agent_version.eq(Some(version)),
                    agents::last_heartbeat_at.eq(Some(now)),
                    agents::resources.eq(Some(resources)),
                    agents::pipelines.eq(Some(pipelines)),
                    agents::updated_at.eq(now),
                ))
                .get_result(conn)?;
            agent_from_row(row)
        })
        .await
    }

    async fn set_agent_state(&self, id: &str, state: AgentState, now: DateTime<Utc>) -> Result<Agent, StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            let row: AgentRow = diesel::update(agents::table.find(&id))
                .set((agents::state.eq(state.as_str()), agents::updated_at.eq(to_db_time(now))))
                .get_result(conn)?;
            agent_from_row(row)
        })
        .await
    }

    async fn set_agent_labels(&self, id: &str, labels: Labels) -> Result<Agent, StoreError> {
        let id = id.to_string();
        let labels = to_json(&labels)?;
        self.run(move |conn| {
            let row: AgentRow = diesel::update(agents::table.find(&id))
                .set((agents::labels.eq(labels), agents::updated_at.eq(to_db_time(Utc::now()))))
                .get_result(conn)?;
            agent_from_row(row)
        })
        .await
    }

    async fn delete_agent(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.run(move |conn| {
            write_transaction(conn, |tx| {
                // Its NATS keys stay, revoked: a removed agent must not keep a working NATS identity.
                super::agents::revoke_nats_keys(tx, &id, None, to_db_time(Utc::now()))?;
                match diesel::delete(agents::table.find(&id)).execute(tx)? {
                    0 => Err(DbError::Query(diesel::result::Error::NotFound)),
                    _ => Ok(()),
                }
            })
        })
        .await
    }
}
