//! One connection type over both backends, and an r2d2 manager that picks the backend from the URL
//! scheme and prepares every new SQLite connection (pragmas) before the pool hands it out.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::ManageConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};

/// A connection to either backend. SQLite must stay the last variant (a Diesel `MultiConnection` rule).
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Chooses the backend from the URL scheme: `postgres://` / `postgresql://` or `sqlite://`.
    pub fn from_url(url: &str) -> Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite://") {
            Ok(Backend::Sqlite)
        } else {
            Err("must start with postgres://, postgresql:// or sqlite://".to_string())
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// SQLite settings applied to every connection. `busy_timeout` must come before `journal_mode=WAL`,
/// or concurrent pool connections fail with "database is locked" while WAL is being switched on.
const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// The path part of a `sqlite://` URL (`sqlite://phoenix.db` -> `phoenix.db`,
/// `sqlite:///var/lib/phoenix.db` -> `/var/lib/phoenix.db`).
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

/// Opens one connection to the database `url` names.
pub fn establish(url: &str) -> Result<DbConnection, ConnectionError> {
    // libpq initialises OpenSSL on first use, which registers OpenSSL's exit-time cleanup; a pool
    // thread still inside libpq while the process exits then crashes. Initialising it ourselves first
    // (the openssl-sys way: without the exit handler) avoids that.
    openssl_sys::init();
    match Backend::from_url(url).map_err(ConnectionError::InvalidConnectionUrl)? {
        Backend::Postgres => PgConnection::establish(url).map(DbConnection::Pg),
        Backend::Sqlite => {
            let mut conn = SqliteConnection::establish(sqlite_path(url))?;
            conn.batch_execute(SQLITE_PRAGMAS).map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(DbConnection::Sqlite(conn))
        }
    }
}

/// r2d2 manager for [`DbConnection`]; Diesel's generic manager cannot choose the backend by scheme.
#[derive(Debug, Clone)]
pub struct DbConnectionManager {
    url: String,
}

impl DbConnectionManager {
    pub fn new(url: impl Into<String>) -> Self {
        DbConnectionManager { url: url.into() }
    }
}

impl ManageConnection for DbConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// Runs `work` in a transaction that takes the write lock when it begins. On SQLite a transaction that
/// reads first and writes later fails with "database is locked" when another writer committed in
/// between (the busy timeout cannot help a lock upgrade), so read-then-write transactions begin with
/// `BEGIN IMMEDIATE` there. On PostgreSQL this is a plain transaction: work that decides on what it
/// read must lock those rows itself (`SELECT … FOR UPDATE`), as `update_user` does.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    if !matches!(conn, DbConnection::Sqlite(_)) {
        return conn.transaction(work);
    }
    if let DbConnection::Sqlite(lite) = conn {
        AnsiTransactionManager::begin_transaction_sql(lite, "BEGIN IMMEDIATE")?;
    }
    let outcome = work(conn);
    if let DbConnection::Sqlite(lite) = conn {
        match &outcome {
            Ok(_) => AnsiTransactionManager::commit_transaction(lite)?,
            // The work's own error is the one to report; a failed rollback leaves the connection
            // marked broken, and the pool drops it.
            Err(_) => {
                let _ = AnsiTransactionManager::rollback_transaction(lite);
            }
        }
    }
    outcome
}
