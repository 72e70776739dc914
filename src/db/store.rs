//! [`Store`] on Diesel.

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use phoenix_actors::{Store, StoreError};

use super::{Database, DbError};

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
}

#[async_trait]
impl Store for DieselStore {
    fn backend_name(&self) -> &'static str {
        self.db.backend().as_str()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from))
            .await
            .map_err(StoreError::from)
    }
}
