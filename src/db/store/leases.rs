use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::prelude::*;
use phoenix_actors::store::{Lease, LeaseStore};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, to_db_time};
use super::DieselStore;
use crate::db::models::LeaseRow;
use crate::db::schema::leases;
use crate::db::{is_unique_violation, DbConnection, DbError};

fn to_lease(row: LeaseRow) -> Lease {
    Lease { name: row.name, holder: row.holder, token: row.token, expires_at: from_db_time(row.expires_at) }
}

fn read(conn: &mut DbConnection, name: &str) -> Result<Option<LeaseRow>, DbError> {
    Ok(leases::table.find(name).select(LeaseRow::as_select()).first(conn).optional()?)
}

/// One attempt: insert a free lease, or take over an expired one / renew our own with a
/// compare-and-set on the row as read (holder and token), so of two racing replicas one wins.
fn try_acquire(
    conn: &mut DbConnection,
    name: &str,
    holder: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, DbError> {
    let Some(current) = read(conn, name)? else {
        let row =
            LeaseRow { name: name.to_string(), holder: holder.to_string(), token: 1, expires_at: to_db_time(until) };
        return match diesel::insert_into(leases::table).values(&row).execute(conn) {
            Ok(_) => Ok(Some(to_lease(row))),
            // Another replica inserted it first: it holds it now.
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        };
    };
    let ours = current.holder == holder;
    if !ours && from_db_time(current.expires_at) > now {
        return Ok(None);
    }
    let token = if ours { current.token } else { current.token + 1 };
    let changed = diesel::update(
        leases::table
            .filter(leases::name.eq(name))
            .filter(leases::holder.eq(&current.holder))
            .filter(leases::token.eq(current.token)),
    )
    .set((leases::holder.eq(holder), leases::token.eq(token), leases::expires_at.eq(to_db_time(until))))
    .execute(conn)?;
    Ok((changed == 1).then(|| Lease { name: name.to_string(), holder: holder.to_string(), token, expires_at: until }))
}

#[async_trait]
impl LeaseStore for DieselStore {
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        // Microseconds, as both databases keep them: the lease answered is the lease stored.
        let until = (now + ttl).trunc_subsecs(6);
        self.run(move |conn| try_acquire(conn, &name, &holder, until, now)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        // Expired rather than deleted: the row keeps its token, so the next holder's is still higher.
        self.run(move |conn| {
            let expired = to_db_time(DateTime::UNIX_EPOCH);
            let released =
                diesel::update(leases::table.filter(leases::name.eq(&name)).filter(leases::holder.eq(&holder)))
                    .set(leases::expires_at.eq(expired))
                    .execute(conn)?;
            Ok(released == 1)
        })
        .await
    }

    async fn release_leases_of(&self, holder: &str) -> Result<usize, StoreError> {
        let holder = holder.to_string();
        self.run(move |conn| {
            let expired = to_db_time(DateTime::UNIX_EPOCH);
            Ok(diesel::update(leases::table.filter(leases::holder.eq(&holder)))
                .set(leases::expires_at.eq(expired))
                .execute(conn)?)
        })
        .await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let name = name.to_string();
        self.run(move |conn| Ok(read(conn, &name)?.map(to_lease))).await
    }
}
