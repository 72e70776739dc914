use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::labels::Labels;
use phoenix_actors::store::{AgentAuthStore, AgentIdentity, EnrollmentToken, NewAgent, NewEnrollmentToken};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, from_json, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::{AgentRow, EnrollmentTokenRow};
use crate::db::schema::{agent_enrollment_tokens, agents};
use crate::db::{write_transaction, DbConnection, DbError};

fn token_from_row(row: EnrollmentTokenRow) -> Result<EnrollmentToken, DbError> {
    Ok(EnrollmentToken {
        labels: from_json("agent_enrollment_tokens.labels", &row.labels)?,
        id: row.id,
        uses_left: row.uses_left,
        expires_at: from_db_time(row.expires_at),
        created_by: row.created_by,
        created_at: from_db_time(row.created_at),
    })
}

fn identity_from_row(row: AgentRow) -> Result<AgentIdentity, DbError> {
    Ok(AgentIdentity { labels: from_json("agents.labels", &row.labels)?, id: row.id, hostname: row.hostname })
}

/// Takes one use of a live token; the labels it applies, or `None` when it cannot be used.
fn spend_enrollment_token(
    conn: &mut DbConnection,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<Labels>, DbError> {
    let Some(row) = agent_enrollment_tokens::table
        .filter(agent_enrollment_tokens::token_hash.eq(token_hash))
        .first::<EnrollmentTokenRow>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    if row.revoked_at.is_some() || row.expires_at <= to_db_time(now) {
        return Ok(None);
    }
    // Conditional decrement: concurrent enrolments never take more uses than the token has.
    let taken =
        diesel::update(agent_enrollment_tokens::table.find(&row.id).filter(agent_enrollment_tokens::uses_left.gt(0)))
            .set(agent_enrollment_tokens::uses_left.eq(agent_enrollment_tokens::uses_left - 1))
            .execute(conn)?;
    if taken == 0 {
        return Ok(None);
    }
    from_json("agent_enrollment_tokens.labels", &row.labels).map(Some)
}

fn enroll(
    conn: &mut DbConnection,
    token_hash: &str,
    agent: NewAgent,
    now: DateTime<Utc>,
) -> Result<Option<AgentIdentity>, DbError> {
    write_transaction(conn, |tx| {
        let Some(token_labels) = spend_enrollment_token(tx, token_hash, now)? else {
            return Ok(None);
        };
        let mut labels = agent.labels;
        labels.extend(token_labels);
        let now = to_db_time(now);
        let row = AgentRow {
            id: agent.id,
            hostname: agent.hostname,
            labels: to_json(&labels)?,
            credential_hash: agent.credential_hash,
            // Enrolling is a sign of life; without heartbeats the agent goes offline after the timeout.
            state: "online".into(),
            agent_version: None,
            last_heartbeat_at: Some(now),
            resources: None,
            pipelines: None,
            enrolled_at: now,
            updated_at: now,
            revoked_at: None,
        };
        let inserted: AgentRow = diesel::insert_into(agents::table).values(&row).get_result(tx)?;
        identity_from_row(inserted).map(Some)
    })
}

#[async_trait]
impl AgentAuthStore for DieselStore {
    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<EnrollmentToken, StoreError> {
        self.run(move |conn| {
            let row = EnrollmentTokenRow {
                id: token.id,
                token_hash: token.token_hash,
                labels: to_json(&token.labels)?,
                uses_left: token.uses,
                expires_at: to_db_time(token.expires_at),
                created_by: token.created_by,
                created_at: to_db_time(Utc::now()),
                revoked_at: None,
            };
            token_from_row(diesel::insert_into(agent_enrollment_tokens::table).values(&row).get_result(conn)?)
        })
        .await
    }

    async fn enroll_agent(
        &self,
        token_hash: &str,
        agent: NewAgent,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentIdentity>, StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |conn| enroll(conn, &token_hash, agent, now)).await
    }

    async fn authenticate_agent(&self, credential_hash: &str) -> Result<Option<AgentIdentity>, StoreError> {
        let credential_hash = credential_hash.to_string();
        self.run(move |conn| {
            agents::table
                .filter(agents::credential_hash.eq(&credential_hash))
                .filter(agents::revoked_at.is_null())
                .first::<AgentRow>(conn)
                .optional()?
                .map(identity_from_row)
                .transpose()
        })
        .await
    }

    async fn revoke_agent_credential(&self, agent_id: &str) -> Result<(), StoreError> {
        let agent_id = agent_id.to_string();
        self.run(move |conn| {
            let changed = diesel::update(agents::table.find(&agent_id))
                .set((
                    agents::revoked_at.eq(Some(to_db_time(Utc::now()))),
                    agents::updated_at.eq(to_db_time(Utc::now())),
                ))
                .execute(conn)?;
            if changed == 0 {
                return Err(DbError::Query(diesel::result::Error::NotFound));
            }
            Ok(())
        })
        .await
    }
}
