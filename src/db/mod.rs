//! Persistence: Diesel over PostgreSQL or SQLite through one connection type, an r2d2 pool, embedded
//! migrations and the [`phoenix_actors::Store`] implementation. Diesel is synchronous, so every query
//! runs on tokio's blocking pool ([`Database::run`]), never on the async worker threads.

mod connection;
mod error;
pub mod migrations;
pub mod models;
pub mod schema;
mod store;

use std::time::Duration;

use diesel::r2d2::Pool;

pub use connection::{establish, write_transaction, Backend, DbConnection, DbConnectionManager};
pub use error::{is_unique_violation, DbError};
pub use store::DieselStore;

use crate::config::DatabaseSettings;

/// The connection pool plus the backend it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool<DbConnectionManager>,
    backend: Backend,
}

/// A point-in-time view of the pool, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub max_size: u32,
    pub connections: u32,
    pub idle: u32,
}

impl Database {
    /// Creates the pool without opening a connection yet, so a server whose database is down still
    /// starts (and says so on `/readyz`) when migrations are skipped.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Database, DbError> {
        let backend = Backend::from_url(settings.url.expose()).map_err(DbError::InvalidUrl)?;
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .build_unchecked(DbConnectionManager::new(settings.url.expose()));
        Ok(Database { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool_usage(&self) -> PoolUsage {
        let state = self.pool.state();
        PoolUsage { max_size: self.pool.max_size(), connections: state.connections, idle: state.idle_connections }
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::Unavailable)?;
            work(&mut conn)
        })
        .await
        .map_err(|join| DbError::Worker(join.to_string()))?
    }

    /// Applies every pending embedded migration; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, DbError> {
        self.run(migrations::run_pending).await
    }
}
