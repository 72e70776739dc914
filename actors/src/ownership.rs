//! Which server replica runs what. Several replicas may share one database; each experiment's actor
//! must run on exactly one of them. A replica runs it while it holds the experiment's lease
//! (`LeaseStore`), renewing the lease every third of its lifetime; a replica that dies stops renewing,
//! and once the lease expires another one takes it and rebuilds the actor from the database.
//!
//! A replica's id is stable across its restarts (by default its host name and port), so a replica that
//! restarts takes its own leases back at once instead of waiting for them to expire.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::store::Store;

/// This replica's side of the leases. Cheap to clone.
#[derive(Clone)]
pub struct Ownership {
    store: Arc<dyn Store>,
    replica: Arc<str>,
    ttl: Duration,
}

impl Ownership {
    pub fn new(store: Arc<dyn Store>, replica: &str, ttl: Duration) -> Ownership {
        Ownership { store, replica: replica.into(), ttl }
    }

    /// This replica's id in the leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// How often a holder renews: a third of the lease's lifetime, so two renewals may fail in a row
    /// (a slow database) before the lease is lost.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes or renews the lease `name`. False when another replica holds it, and when the database
    /// cannot say (the caller tries again later: working without the lease could run things twice).
    pub async fn hold(&self, name: &str) -> bool {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::seconds(15));
        match self.store.acquire_lease(name, &self.replica, ttl, Utc::now()).await {
            Ok(lease) => lease.is_some(),
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cannot renew a lease");
                false
            }
        }
    }

    /// Gives the lease up (the work is done, or this replica is stopping), so nobody waits for it.
    pub async fn release(&self, name: &str) {
        if let Err(e) = self.store.release_lease(name, &self.replica).await {
            tracing::debug!(lease = name, error = %e, "cannot release a lease; it will expire");
        }
    }
}

/// The lease of an experiment's actor.
pub fn experiment_lease(id: &str) -> String {
    format!("experiment:{id}")
}
