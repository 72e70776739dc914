use phoenix_actors::StoreError;

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("database unavailable")]
    Unavailable(#[source] diesel::r2d2::PoolError),
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("database worker failed: {0}")]
    Worker(String),
}

impl DbError {
    /// True when the database refused the row because of a UNIQUE constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Query(e) if is_unique_violation(e))
    }
}

impl DbError {
    /// Errors that say the database is momentarily out of reach rather than that the query is wrong:
    /// SQLite giving up on its write lock, a PostgreSQL connection that died mid-query.
    fn is_transient(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            DbError::Query(Error::DatabaseError(_, info)) => info.message().contains("database is locked"),
            _ => false,
        }
    }
}

/// True when the database refused the row because of a UNIQUE constraint.
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(err, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Query(diesel::result::Error::NotFound) => StoreError::NotFound,
            DbError::Conflict(detail) => StoreError::Conflict(detail),
            // SQLite gave up waiting for the write lock: a transient overload, worth retrying.
            e if e.is_transient() => StoreError::Unavailable(Box::new(e)),
            e if e.is_unique_violation() => StoreError::Conflict(e.to_string()),
            e @ (DbError::Unavailable(_) | DbError::InvalidUrl(_)) => StoreError::Unavailable(Box::new(e)),
            e => StoreError::Internal(Box::new(e)),
        }
    }
}
