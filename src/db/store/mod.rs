//! [`Store`] on Diesel, one file per area of the trait.

mod agents;
mod audit;
mod convert;
mod deployments;
mod experiments;
mod fleet;
mod leases;
mod metrics;
mod settings;
mod tasks;
mod templates;
mod users;

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::dsl::count_star;
use diesel::prelude::*;
use phoenix_actors::store::OverviewCounts;
use phoenix_actors::{Store, StoreError};

use super::{Database, DbConnection, DbError};

/// The Diesel implementation of the domain's [`Store`].
#[derive(Clone)]
pub struct DieselStore {
    db: Database,
}

impl DieselStore {
    pub fn new(db: Database) -> Self {
        DieselStore { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `work` on the blocking pool and converts its error for the domain.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.db.run(work).await.map_err(StoreError::from)
    }
}

#[async_trait]
impl Store for DieselStore {
    fn backend_name(&self) -> &'static str {
        self.db.backend().as_str()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from)).await
    }

    async fn overview_counts(&self) -> Result<OverviewCounts, StoreError> {
        use crate::db::schema::{agents, experiments, pipeline_deployments as deployments};
        fn counted(rows: Vec<(String, i64)>) -> std::collections::BTreeMap<String, u64> {
            rows.into_iter().map(|(key, n)| (key, u64::try_from(n).unwrap_or(0))).collect()
        }
        self.run(|conn| {
            let agents = agents::table.group_by(agents::state).select((agents::state, count_star())).load(conn)?;
            let experiments = experiments::table
                .group_by(experiments::phase)
                .select((experiments::phase, count_star()))
                .load(conn)?;
            let deployments = deployments::table
                .filter(deployments::status.ne("deleted"))
                .group_by(deployments::status)
                .select((deployments::status, count_star()))
                .load(conn)?;
            Ok(OverviewCounts {
                agents: counted(agents),
                experiments: counted(experiments),
                deployments: counted(deployments),
            })
        })
        .await
    }
}
