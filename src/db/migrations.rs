//! The migrations of `migrations/postgres` and `migrations/sqlite`, embedded in the binary.

use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{DbConnection, DbError};

const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Key of the PostgreSQL advisory lock that serialises migrations of several starting replicas.
const MIGRATION_LOCK: i64 = 0x0050_484f_454e_4958;

/// Applies the pending migrations of the connection's backend; a no-op when none are pending. On
/// PostgreSQL, replicas starting together take turns (advisory lock), so each migration runs once.
pub fn run_pending(conn: &mut DbConnection) -> Result<usize, DbError> {
    let applied = match conn {
        DbConnection::Pg(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(pg)?;
            let applied = pg.run_pending_migrations(POSTGRES).map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(pg)?;
            applied
        }
        DbConnection::Sqlite(lite) => lite.run_pending_migrations(SQLITE).map(|v| v.len()),
    };
    applied.map_err(|e| DbError::Migration(e.to_string()))
}
