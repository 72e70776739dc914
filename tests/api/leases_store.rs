//! Leases on both backends: one holder at a time, renewal by the holder, take-over after expiry with a
//! higher fencing token, release, and one winner among replicas racing for the same lease.

use std::sync::Arc;

use chrono::{Duration, Utc};
use phoenix::db::{Backend, Database, DieselStore};
use phoenix_actors::store::LeaseStore;

use crate::each_backend;
use crate::helpers::TestDb;

fn store(db: &TestDb) -> DieselStore {
    let settings = phoenix::config::DatabaseSettings {
        url: phoenix::config::SensitiveUrl::new(db.url.clone()),
        ..Default::default()
    };
    let database = Database::connect_lazy(&settings).expect("pool");
    let mut conn = phoenix::db::establish(&db.url).expect("connect");
    phoenix::db::migrations::run_pending(&mut conn).expect("migrations apply");
    DieselStore::new(database)
}

async fn a_lease_has_one_holder_until_it_expires_or_is_released(backend: Backend) {
    let db = TestDb::new(backend);
    let store = store(&db);
    let ttl = Duration::seconds(10);
    let t0 = Utc::now();
    let a = store.acquire_lease("experiment:1", "replica-a", ttl, t0).await.expect("acquire").expect("free: taken");
    assert_eq!((a.holder.as_str(), a.token), ("replica-a", 1));
    assert!(store.acquire_lease("experiment:1", "replica-b", ttl, t0).await.expect("acquire").is_none(), "held");
    assert!(store.acquire_lease("experiment:2", "replica-b", ttl, t0).await.expect("acquire").is_some(), "another");

    // The holder renews: same token, later expiry; the other replica still cannot take it in between.
    let t1 = t0 + Duration::seconds(8);
    let renewed = store.acquire_lease("experiment:1", "replica-a", ttl, t1).await.expect("renew").expect("ours");
    assert_eq!(renewed.token, 1);
    assert!(renewed.expires_at > a.expires_at);
    let t2 = t0 + Duration::seconds(15);
    assert!(store.acquire_lease("experiment:1", "replica-b", ttl, t2).await.expect("acquire").is_none(), "renewed");

    // Not renewed: once expired another replica takes it, with a higher token.
    let t3 = t1 + ttl + Duration::seconds(1);
    let b = store.acquire_lease("experiment:1", "replica-b", ttl, t3).await.expect("acquire").expect("expired: taken");
    assert_eq!((b.holder.as_str(), b.token), ("replica-b", 2));
    assert!(store.acquire_lease("experiment:1", "replica-a", ttl, t3).await.expect("acquire").is_none(), "lost");

    // Released: free at once for anyone, and the token still goes up.
    assert!(!store.release_lease("experiment:1", "replica-a").await.expect("release"), "not the holder");
    assert!(store.release_lease("experiment:1", "replica-b").await.expect("release"));
    let c = store.acquire_lease("experiment:1", "replica-c", ttl, t3).await.expect("acquire").expect("released: free");
    assert_eq!(c.token, 3);
    assert_eq!(store.get_lease("experiment:1").await.expect("get"), Some(c));

    // A replica stopping cleanly gives up all it holds at once (here: experiment:2 and deployment:9),
    // and nothing another replica holds.
    assert!(store.acquire_lease("deployment:9", "replica-b", ttl, t3).await.expect("acquire").is_some());
    assert_eq!(store.release_leases_of("replica-b").await.expect("release all"), 2);
    assert!(store.acquire_lease("experiment:2", "replica-c", ttl, t0).await.expect("acquire").is_some());
    assert!(store.acquire_lease("deployment:9", "replica-c", ttl, t3).await.expect("acquire").is_some());
    assert_eq!(store.get_lease("experiment:1").await.expect("get").map(|l| l.holder), Some("replica-c".into()));
}
each_backend!(a_lease_has_one_holder_until_it_expires_or_is_released);

async fn replicas_racing_for_a_lease_get_one_winner(backend: Backend) {
    let db = TestDb::new(backend);
    let store = Arc::new(store(&db));
    let ttl = Duration::seconds(30);
    for round in 0..5 {
        // Round 0 races for a free lease; later rounds (new replicas each) for one that has expired.
        let now = Utc::now() + Duration::seconds(round * 60);
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let holder = format!("round{round}-replica{i}");
                tokio::spawn(async move { store.acquire_lease("deployment:x", &holder, ttl, now).await })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            if let Some(lease) = racer.await.expect("join").expect("acquire") {
                winners.push(lease);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(winners[0].token, round + 1, "one hand-over per round");
    }
}
each_backend!(replicas_racing_for_a_lease_get_one_winner);
