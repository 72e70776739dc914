//! Agent identity: enrolment tokens and agent credentials.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::labels::Labels;

/// An enrolment token to create (only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewEnrollmentToken {
    /// UUIDv7.
    pub id: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Labels every agent enrolled with it gets (they win over the agent's own).
    pub labels: Labels,
    /// How many agents may enrol with it.
    pub uses: i32,
    /// After this it is refused.
    pub expires_at: DateTime<Utc>,
    /// The admin who made it.
    pub created_by: Option<String>,
}

/// An enrolment token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    /// UUIDv7.
    pub id: String,
    /// Labels applied to agents enrolled with it.
    pub labels: Labels,
    /// Enrolments left.
    pub uses_left: i32,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// The admin who made it.
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// An agent to register at enrolment.
#[derive(Debug, Clone)]
pub struct NewAgent {
    /// UUIDv7, the agent's id from now on.
    pub id: String,
    /// The host it runs on.
    pub hostname: String,
    /// Labels the agent asked for.
    pub labels: Labels,
    /// SHA-256 of the agent credential, hex.
    pub credential_hash: String,
}

/// Who an authenticated agent is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentIdentity {
    /// The agent id.
    pub id: String,
    /// The host it runs on.
    pub hostname: String,
    /// Its labels (the agent's own, overridden by the enrolment token's).
    pub labels: Labels,
}

/// Enrolment and agent credentials.
#[async_trait]
pub trait AgentAuthStore: Send + Sync {
    /// Stores a new enrolment token.
    async fn create_enrollment_token(&self, token: NewEnrollmentToken) -> Result<EnrollmentToken, StoreError>;

    /// Spends one use of the token and registers the agent, atomically. `None` when the token is
    /// unknown, expired, revoked or used up.
    async fn enroll_agent(
        &self,
        token_hash: &str,
        agent: NewAgent,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentIdentity>, StoreError>;

    /// The agent a credential belongs to, unless it was revoked.
    async fn authenticate_agent(&self, credential_hash: &str) -> Result<Option<AgentIdentity>, StoreError>;

    /// Revokes the agent's credential, and its NATS keys with it: every later call with it is refused.
    /// `NotFound` if no such agent.
    async fn revoke_agent_credential(&self, agent_id: &str) -> Result<(), StoreError>;

    /// Records `public_key` as the agent's NATS user key (Phoenix is about to sign it a JWT) and
    /// revokes the agent's other keys, atomically, so an agent has one live NATS identity. A new key is
    /// refused when the agent registered [`MAX_NATS_KEYS_PER_DAY`] in the last day: every revoked key
    /// stays in the NATS account for good, so an agent must not be able to grow it at will. `Conflict`
    /// when the key was revoked or belongs to another agent.
    async fn register_nats_key(
        &self,
        agent_id: &str,
        public_key: &str,
        now: DateTime<Utc>,
    ) -> Result<NatsKeyRegistration, StoreError>;

    /// Every revoked NATS key, with when it was revoked (the NATS account's revocations).
    async fn revoked_nats_keys(&self) -> Result<Vec<RevokedNatsKey>, StoreError>;
}

/// New NATS keys one agent may register in a day (a legitimate agent keeps one; it makes a new one
/// only when it lost its state or the server refused its key).
pub const MAX_NATS_KEYS_PER_DAY: i64 = 5;

/// What registering an agent's NATS key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsKeyRegistration {
    /// The key is the agent's; `revoked_others` earlier keys were revoked (NATS must be told).
    Registered { revoked_others: usize },
    /// A new key, refused: the agent registered [`MAX_NATS_KEYS_PER_DAY`] in the last day.
    TooManyKeys,
}

/// A NATS user key that must no longer connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedNatsKey {
    /// The user public key (`U…`).
    pub public_key: String,
    /// JWTs issued for it up to this time are refused.
    pub revoked_at: DateTime<Utc>,
}

/// Agents as the fleet: listing, liveness, labels.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// One agent.
    async fn get_agent(&self, id: &str) -> Result<crate::agents::Agent, StoreError>;

    /// Agents matching the filter, in enrolment order.
    async fn list_agents(
        &self,
        filter: &crate::agents::AgentFilter,
        page: crate::paging::PageRequest,
    ) -> Result<crate::paging::Page<crate::agents::Agent>, StoreError>;

    /// These agents (those that exist), in enrolment order.
    async fn get_agents(&self, ids: &[String]) -> Result<Vec<crate::agents::Agent>, StoreError>;

    /// Every agent whose credential is not revoked (to rebuild sessions at start-up).
    async fn active_agents(&self) -> Result<Vec<crate::agents::Agent>, StoreError>;

    /// Stores a heartbeat: time, version, resources, pipelines and the state it implies.
    async fn record_heartbeat(
        &self,
        id: &str,
        heartbeat: &phoenix_nats::wire::Heartbeat,
        state: crate::agents::AgentState,
        now: DateTime<Utc>,
    ) -> Result<crate::agents::Agent, StoreError>;

    /// Sets the state (e.g. offline after the timeout).
    async fn set_agent_state(
        &self,
        id: &str,
        state: crate::agents::AgentState,
        now: DateTime<Utc>,
    ) -> Result<crate::agents::Agent, StoreError>;

    /// Replaces the labels.
    async fn set_agent_labels(&self, id: &str, labels: Labels) -> Result<crate::agents::Agent, StoreError>;

    /// Removes an agent and its tasks (decommission).
    async fn delete_agent(&self, id: &str) -> Result<(), StoreError>;
}
