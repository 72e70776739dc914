//! Per-agent NATS identities, the server's side (setting `bus.nats_trust_file`).
//!
//! The trust file holds the keys `phoenix nats init` made; nats-server trusts their operator. Here:
//! the server replica's own NATS user, the JWT an agent gets for the key it made
//! (`POST /api/v1/agent/nats-credentials`), and the account revocations kept in step with the database
//! — pushed at once when a credential is revoked or an agent removed, and re-checked every minute on
//! every replica, so an update lost to a NATS outage is made good.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use phoenix_actors::store::{NatsKeyRegistration, Store};
use phoenix_actors::StoreError;
use phoenix_nats::trust::resolver::{sync_revocations, Sync};
use phoenix_nats::trust::{NatsTrust, TrustError, TrustSeeds, UserCredential};
use phoenix_nats::Subjects;
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::ToSchema;

/// How long one exchange with the NATS account resolver may take.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The trust file's name in `phoenix nats init --dir`.
pub const TRUST_FILE: &str = "nats-trust.json";
/// The nats-server include's name in `phoenix nats init --dir`.
pub const SERVER_INCLUDE: &str = "nats-trust.conf";

/// `phoenix nats init`: new keys, written for Phoenix and for nats-server; never over existing ones.
pub fn init(args: &crate::args::NatsInitArgs) -> anyhow::Result<()> {
    let (trust_file, include) = (args.dir.join(TRUST_FILE), args.dir.join(SERVER_INCLUDE));
    for file in [&trust_file, &include] {
        if file.exists() {
            anyhow::bail!(
                "{} exists: new keys would lock out every agent and server that uses the old ones; \
                 remove both files first to start over",
                file.display()
            );
        }
    }
    let trust = NatsTrust::generate();
    let seeds = serde_json::to_string_pretty(&trust.seeds())?;
    crate::private_file::write(&trust_file, &seeds)
        .with_context(|| format!("Failed to write {}", trust_file.display()))?;
    let config = trust.server_config(&args.resolver_dir)?;
    std::fs::write(&include, config).with_context(|| format!("Failed to write {}", include.display()))?;
    println!("wrote {} (for Phoenix: bus.nats_trust_file; keep it secret)", trust_file.display());
    println!("wrote {} (for nats-server: include it in its configuration)", include.display());
    Ok(())
}

/// Reads the trust file (the three seeds, JSON, as `phoenix nats init` writes it).
pub fn load_trust(file: &Path) -> anyhow::Result<NatsTrust> {
    let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
    let seeds: TrustSeeds =
        serde_json::from_str(&text).with_context(|| format!("{} is not a Phoenix NATS trust file", file.display()))?;
    NatsTrust::from_seeds(&seeds).with_context(|| format!("Invalid NATS trust file {}", file.display()))
}

/// What an agent needs to connect to NATS as itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentNatsCredential {
    /// The user JWT for the agent's key; the agent proves the key by signing the server's nonce.
    pub jwt: String,
    /// Every subject starts with it.
    pub subject_prefix: String,
    /// The agent's reply inboxes must start with it (the only replies it may receive).
    pub inbox_prefix: String,
}

/// Why an agent got no NATS credential.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The key is not a NATS user public key.
    #[error("{0}")]
    BadKey(String),
    /// The key was revoked or belongs to another agent.
    #[error("{0}")]
    Refused(String),
    /// The agent registered as many new keys as it may in a day.
    #[error(
        "this agent registered {} NATS keys in the last day, as many as it may; keep using one",
        phoenix_actors::store::MAX_NATS_KEYS_PER_DAY
    )]
    TooManyKeys,
    /// The database failed.
    #[error(transparent)]
    Store(StoreError),
    /// Signing failed.
    #[error(transparent)]
    Trust(TrustError),
}

/// The installation's NATS trust, with the store that knows which keys are revoked.
pub struct NatsIdentities {
    trust: NatsTrust,
    store: Arc<dyn Store>,
    nats_url: String,
    subjects: Subjects,
    changed: Notify,
}

impl NatsIdentities {
    pub fn new(trust: NatsTrust, store: Arc<dyn Store>, nats_url: String, subjects: Subjects) -> Arc<Self> {
        Arc::new(NatsIdentities { trust, store, nats_url, subjects, changed: Notify::new() })
    }

    /// Signs the agent's key a JWT for its own subjects, after recording the key (which revokes the
    /// agent's earlier keys: those are pushed to NATS soon after).
    pub async fn issue(&self, agent_id: &str, public_key: &str) -> Result<AgentNatsCredential, IssueError> {
        phoenix_nats::trust::check_user_public_key(public_key).map_err(|e| IssueError::BadKey(e.to_string()))?;
        let registered = self.store.register_nats_key(agent_id, public_key, Utc::now()).await.map_err(|e| match e {
            StoreError::Conflict(detail) => IssueError::Refused(detail),
            other => IssueError::Store(other),
        })?;
        match registered {
            NatsKeyRegistration::TooManyKeys => return Err(IssueError::TooManyKeys),
            NatsKeyRegistration::Registered { revoked_others } if revoked_others > 0 => self.revocations_changed(),
            NatsKeyRegistration::Registered { .. } => {}
        }
        let jwt = self.trust.agent_user_jwt(&self.subjects, agent_id, public_key).map_err(IssueError::Trust)?;
        let inbox_prefix = self.subjects.agent_inbox_prefix(agent_id).map_err(|e| IssueError::Trust(e.into()))?;
        Ok(AgentNatsCredential { jwt, subject_prefix: self.subjects.prefix().to_owned(), inbox_prefix })
    }

    /// Asks the sync loop to push the revocations now (a credential was revoked, an agent removed).
    pub fn revocations_changed(&self) {
        self.changed.notify_one();
    }

    /// Makes the NATS servers hold exactly the database's revocations.
    pub async fn sync(&self) -> anyhow::Result<Sync> {
        let revoked = self.store.revoked_nats_keys().await.context("Failed to read the revoked NATS keys")?;
        let revocations: BTreeMap<String, i64> =
            revoked.into_iter().map(|key| (key.public_key, key.revoked_at.timestamp())).collect();
        let result = sync_revocations(&self.nats_url, &self.trust, &revocations, RESOLVER_TIMEOUT).await;
        let synced = result.context(
            "Failed to update the NATS account (does nats-server run in operator mode with the \
             configuration `phoenix nats init` wrote?)",
        )?;
        if synced == Sync::Pushed {
            tracing::info!(nats.revoked_keys = revocations.len(), "NATS account revocations pushed");
        }
        Ok(synced)
    }

    /// Keeps the revocations in step: at once when told, else every `every`.
    pub async fn run_sync(self: Arc<Self>, every: Duration) {
        loop {
            let _ = tokio::time::timeout(every, self.changed.notified()).await;
            if let Err(e) = self.sync().await {
                tracing::warn!(error = format!("{e:#}"), "cannot update the NATS account; retrying");
            }
        }
    }
}

/// The NATS user a server replica connects as: a new key each start, every permission.
pub fn server_user(trust: &NatsTrust, replica: &str) -> anyhow::Result<UserCredential> {
    trust.server_user(&format!("phoenix-server-{replica}")).context("Failed to sign the server's NATS user")
}
