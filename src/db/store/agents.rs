use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::labels::Labels;
use phoenix_actors::store::{
    AgentAuthStore, AgentIdentity, EnrollmentToken, NatsKeyRegistration, NewAgent, NewEnrollmentToken, RevokedNatsKey,
    MAX_NATS_KEYS_PER_DAY,
};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, from_json, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::{AgentRow, EnrollmentTokenRow};
use crate::db::schema::{agent_enrollment_tokens, agent_nats_keys, agents};
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

fn register_nats_key(
    tx: &mut DbConnection,
    agent_id: &str,
    public_key: &str,
    now: DateTime<Utc>,
) -> Result<NatsKeyRegistration, DbError> {
    let known: Option<(String, Option<chrono::NaiveDateTime>)> = agent_nats_keys::table
        .find(public_key)
        .select((agent_nats_keys::agent_id, agent_nats_keys::revoked_at))
        .first(tx)
        .optional()?;
    match known {
        Some((owner, _)) if owner != agent_id => {
            return Err(DbError::Conflict("this NATS key belongs to another agent".into()));
        }
        Some((_, Some(_))) => return Err(DbError::Conflict("this NATS key was revoked; make a new one".into())),
        Some((_, None)) => {}
        None => {
            let issued_today: i64 = agent_nats_keys::table
                .filter(agent_nats_keys::agent_id.eq(agent_id))
                .filter(agent_nats_keys::issued_at.gt(to_db_time(now - chrono::Duration::days(1))))
                .count()
                .get_result(tx)?;
            if issued_today >= MAX_NATS_KEYS_PER_DAY {
                return Ok(NatsKeyRegistration::TooManyKeys);
            }
            diesel::insert_into(agent_nats_keys::table)
                .values((
                    agent_nats_keys::public_key.eq(public_key),
                    agent_nats_keys::agent_id.eq(agent_id),
                    agent_nats_keys::issued_at.eq(to_db_time(now)),
                ))
                .execute(tx)?;
        }
    }
    let revoked_others = revoke_nats_keys(tx, agent_id, Some(public_key), to_db_time(now))?;
    Ok(NatsKeyRegistration::Registered { revoked_others })
}

/// Revokes the agent's live NATS keys, but `keep`; how many.
pub(super) fn revoke_nats_keys(
    tx: &mut DbConnection,
    agent_id: &str,
    keep: Option<&str>,
    now: chrono::NaiveDateTime,
) -> Result<usize, DbError> {
    let live = agent_nats_keys::table
        .filter(agent_nats_keys::agent_id.eq(agent_id))
        .filter(agent_nats_keys::revoked_at.is_null())
        .filter(agent_nats_keys::public_key.ne(keep.unwrap_or("")));
    Ok(diesel::update(live).set(agent_nats_keys::revoked_at.eq(Some(now))).execute(tx)?)
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
            write_transaction(conn, |tx| {
                let now = to_db_time(Utc::now());
                let changed = diesel::update(agents::table.find(&agent_id))
                    .set((agents::revoked_at.eq(Some(now)), agents::updated_at.eq(now)))
                    .execute(tx)?;
                if changed == 0 {
                    return Err(DbError::Query(diesel::result::Error::NotFound));
                }
                revoke_nats_keys(tx, &agent_id, None, now)?;
                Ok(())
            })
        })
        .await
    }

    async fn register_nats_key(
        &self,
        agent_id: &str,
        public_key: &str,
        now: DateTime<Utc>,
    ) -> Result<NatsKeyRegistration, StoreError> {
        let (agent_id, public_key) = (agent_id.to_string(), public_key.to_string());
        self.run(move |conn| write_transaction(conn, |tx| register_nats_key(tx, &agent_id, &public_key, now))).await
    }

    async fn revoked_nats_keys(&self) -> Result<Vec<RevokedNatsKey>, StoreError> {
        self.run(move |conn| {
            let rows: Vec<(String, Option<chrono::NaiveDateTime>)> = agent_nats_keys::table
                .filter(agent_nats_keys::revoked_at.is_not_null())
                .select((agent_nats_keys::public_key, agent_nats_keys::revoked_at))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .filter_map(|(public_key, at)| Some(RevokedNatsKey { public_key, revoked_at: from_db_time(at?) }))
                .collect())
        })
        .await
    }
}
