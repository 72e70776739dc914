//! The audit log's storage: append, list, prune. No update: the API never changes an entry.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use crate::paging::{Page, PageRequest};

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry made at `at`.
    async fn record_audit(&self, entry: NewAuditEntry, at: DateTime<Utc>) -> Result<AuditEntry, StoreError>;

    /// Entries matching `filter`, newest first.
    async fn list_audit(&self, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>, StoreError>;

    /// Deletes the entries made before `before`; how many.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;
}
