//! The audit log: who did what, when, from where, and how it ended — every mutating API request and
//! every security event (a failed login, a reused refresh token, a refused agent message). Appended
//! here, read by admins (`GET /api/v1/audit`), never changed through the API, pruned after
//! `audit.retention_days`. It never holds a secret: no bodies, no tokens, no passwords — the action
//! is the route, the target its `{id}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{AuditStore, StoreError};

/// Longest action, target or actor name kept.
pub const MAX_FIELD_CHARS: usize = 200;
/// Longest detail kept.
pub const MAX_DETAIL_CHARS: usize = 1000;
/// A refusal of the same kind by the same actor is recorded at most this often (the rest are counted
/// in metrics), so a hostile client cannot flood the log.
pub const REFUSAL_EVERY: Duration = Duration::from_secs(10);

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Agent,
    /// Not authenticated (a login, an enrolment, a refused token).
    Anonymous,
    /// Phoenix itself (an automatic promotion, a rollback).
    System,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Refused: not allowed, invalid, over a limit, not authenticated.
    Refused,
    /// Failed on the server's side.
    Failed,
}

impl Outcome {
    /// From an HTTP status: 2xx/3xx succeeded, 4xx refused, 5xx failed.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            500.. => Outcome::Failed,
            400.. => Outcome::Refused,
            _ => Outcome::Succeeded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        [Outcome::Succeeded, Outcome::Refused, Outcome::Failed].into_iter().find(|o| o.as_str() == text)
    }
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::Anonymous => "anonymous",
            ActorKind::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<ActorKind> {
        [ActorKind::User, ActorKind::Agent, ActorKind::Anonymous, ActorKind::System]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One entry to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAuditEntry {
    pub actor_kind: ActorKind,
    /// The user's or agent's id.
    pub actor_id: Option<String>,
    /// The username (or the name tried, for a failed login).
    pub actor_name: Option<String>,
    /// What: `POST /api/v1/experiments/{id}/start`, or an event such as `auth.login_failed`.
    pub action: String,
    /// What it was done to: the route's `{id}`, a task, an experiment.
    pub target: Option<String>,
    pub outcome: Outcome,
    /// The HTTP status answered, for requests.
    pub status: Option<u16>,
    /// The client's address.
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// Why, for a refusal or failure (never a secret).
    pub detail: Option<String>,
}

impl NewAuditEntry {
    /// An entry with only the essentials set.
    pub fn new(actor_kind: ActorKind, action: impl Into<String>, outcome: Outcome) -> NewAuditEntry {
        NewAuditEntry {
            actor_kind,
            actor_id: None,
            actor_name: None,
            action: action.into(),
            target: None,
            outcome,
            status: None,
            client: None,
            request_id: None,
            detail: None,
        }
    }

    /// Every field cut to its limit.
    fn bounded(mut self) -> NewAuditEntry {
        let cut = |text: &mut Option<String>, max: usize| {
            if let Some(text) = text.as_mut().filter(|t| t.chars().count() > max) {
                *text = text.chars().take(max).collect();
            }
        };
        self.action = self.action.chars().take(MAX_FIELD_CHARS).collect();
        cut(&mut self.actor_id, MAX_FIELD_CHARS);
        cut(&mut self.actor_name, MAX_FIELD_CHARS);
        cut(&mut self.target, MAX_FIELD_CHARS);
        cut(&mut self.client, MAX_FIELD_CHARS);
        cut(&mut self.request_id, MAX_FIELD_CHARS);
        cut(&mut self.detail, MAX_DETAIL_CHARS);
        self
    }
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// UUIDv7: entries sort by time.
    pub id: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// What to list (every field narrows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// The actor's id or name.
    pub actor: Option<String>,
    /// Actions starting with this.
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Records entries; a write that fails is logged, never the caller's failure.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn AuditStore>,
    last_refusal: Arc<Mutex<HashMap<String, Instant>>>,
}

/// Distinct refusal kinds remembered for rate limiting before the memory is cleared.
const MAX_REMEMBERED_REFUSALS: usize = 10_000;

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>) -> Audit {
        Audit { store, last_refusal: Arc::default() }
    }

    /// Appends `entry` (fields cut to their limits).
    pub async fn record(&self, entry: NewAuditEntry) {
        let action = entry.action.clone();
        if let Err(e) = self.store.record_audit(entry.bounded(), Utc::now()).await {
            tracing::error!(audit.action = %action, error = %e, "cannot write the audit log");
        }
    }

    /// Appends a refusal unless the same `(actor, client, action)` was recorded in the last
    /// [`REFUSAL_EVERY`].
    pub async fn record_refusal(&self, entry: NewAuditEntry) {
        if self.admits_refusal(&entry) {
            self.record(entry).await;
        }
    }

    /// Whether a refusal is to be recorded (and notes that it was): at most one per
    /// `(actor, client, action)` every [`REFUSAL_EVERY`]. Cheap, so a flood is turned away before any
    /// write is even scheduled.
    pub fn admits_refusal(&self, entry: &NewAuditEntry) -> bool {
        let actor = entry.actor_id.as_deref().unwrap_or("");
        let key = format!("{actor}|{}|{}", entry.client.as_deref().unwrap_or(""), entry.action);
        let now = Instant::now();
        let mut last = self.last_refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.get(&key).is_some_and(|at| now.duration_since(*at) < REFUSAL_EVERY) {
            return false;
        }
        if last.len() >= MAX_REMEMBERED_REFUSALS {
            last.clear();
        }
        last.insert(key, now);
        true
    }

    /// Deletes the entries older than `keep` (the retention), every `every`, for as long as it runs.
    pub async fn run_retention(self, keep: chrono::Duration, every: Duration) {
        loop {
            match self.store.prune_audit(Utc::now() - keep).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(audit.pruned = pruned, "old audit entries deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the audit log yet"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The store behind it (for listing).
    pub async fn list(
        &self,
        filter: &AuditFilter,
        page: crate::paging::PageRequest,
    ) -> Result<crate::paging::Page<AuditEntry>, StoreError> {
        self.store.list_audit(filter, page).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_status_and_fields_are_cut() {
        assert_eq!(Outcome::of_status(201), Outcome::Succeeded);
        assert_eq!(Outcome::of_status(403), Outcome::Refused);
        assert_eq!(Outcome::of_status(503), Outcome::Failed);
        let mut entry = NewAuditEntry::new(ActorKind::User, "x".repeat(500), Outcome::Succeeded);
        entry.detail = Some("d".repeat(5000));
        let entry = entry.bounded();
        assert_eq!(entry.action.len(), MAX_FIELD_CHARS);
        assert_eq!(entry.detail.map(|d| d.len()), Some(MAX_DETAIL_CHARS));
        assert_eq!(ActorKind::parse("agent"), Some(ActorKind::Agent));
        assert_eq!(Outcome::parse("refused"), Some(Outcome::Refused));
    }
}
