//! Leases: which server replica owns something (an experiment's actor, a deployment's rollout) for a
//! while. A holder keeps a lease by renewing it before it expires; once expired, any replica may take it.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::StoreError;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is owned, e.g. `experiment:<id>`.
    pub name: String,
    /// The replica holding it.
    pub holder: String,
    /// Goes up by one each time the lease changes hands (a fencing token): work stamped with an older
    /// token was done by a holder that has lost the lease since.
    pub token: i64,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes `name` for `holder` until `now + ttl` when it is free or expired, or renews it when
    /// `holder` has it already. `None` when another holder has it and it has not expired. Safe against
    /// replicas racing for the same lease: one wins.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError>;

    /// Gives `name` up if `holder` has it (so another replica can take it at once). Whether it did.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError>;

    /// Gives up every lease `holder` has (a replica stopping cleanly). How many.
    async fn release_leases_of(&self, holder: &str) -> Result<usize, StoreError>;

    /// The lease on `name`, whoever holds it, expired or not.
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
}
