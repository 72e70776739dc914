//! Which server replica runs what. Several replicas may share one database; each experiment's actor
//! and each deployment's rollout must run on exactly one of them. A replica runs it while it holds its
//! lease (`LeaseStore`), renewing the lease every third of its lifetime; a replica that dies stops
//! renewing, and once the lease expires another one takes it and carries on from the database.
//!
//! A replica's id is stable across its restarts (by default its host name and port), so a replica that
//! restarts takes its own leases back at once instead of waiting for them to expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Gives up every lease of this replica (it is stopping cleanly): the others take its work over at
    /// once instead of after the leases' lifetime.
    pub async fn release_all(&self) {
        match self.store.release_leases_of(&self.replica).await {
            Ok(n) => tracing::info!(replica = %self.replica, leases = n, "leases released"),
            Err(e) => {
                tracing::warn!(replica = %self.replica, error = %e, "cannot release the leases; they will expire")
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

/// The lease of a deployment's rollout.
pub fn deployment_lease(id: &str) -> String {
    format!("deployment:{id}")
}

/// Leases this replica holds, asked for often (every rollout pass looks at every deployment):
/// the database hears of a lease only when it is due for renewal. A lease known held is held, since it
/// was renewed less than a third of its lifetime ago. Cheap to clone.
#[derive(Clone)]
pub struct HeldLeases {
    ownership: Ownership,
    renewed: Arc<Mutex<HashMap<String, Instant>>>,
}

impl HeldLeases {
    pub fn new(ownership: Ownership) -> HeldLeases {
        HeldLeases { ownership, renewed: Arc::default() }
    }

    /// Whether this replica holds `name` (taking or renewing it when due).
    pub async fn hold(&self, name: &str) -> bool {
        let fresh = self.lock().get(name).is_some_and(|at| at.elapsed() < self.ownership.renew_every());
        if fresh {
            return true;
        }
        let held = self.ownership.hold(name).await;
        let mut renewed = self.lock();
        if held {
            renewed.insert(name.to_string(), Instant::now());
        } else {
            renewed.remove(name);
        }
        held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.renewed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
