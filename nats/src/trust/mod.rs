//! Per-agent NATS identities: nats-server's operator mode (decentralised JWT auth) with Phoenix as the
//! issuer.
//!
//! One [`NatsTrust`] holds three nkeys: the operator (signs account JWTs), the system account (whose
//! users may push account updates to the NATS servers) and the Phoenix account (signs user JWTs; the
//! server replicas and every agent are its users). nats-server is given the operator and the two
//! account JWTs once ([`NatsTrust::server_config`], written by `phoenix nats init`); from then on:
//!
//! - each server replica connects as a user it mints for itself, with every permission;
//! - each agent makes its own user key, and Phoenix signs it a user JWT that allows only the agent's
//!   own subjects ([`NatsTrust::agent_user_jwt`]): publish its heartbeat, task status and metrics,
//!   receive its tasks and the replies below its own inbox prefix;
//! - revoking an agent puts its key in the account JWT's revocations, which [`resolver`] pushes to
//!   the NATS servers: they refuse that key from then on and close its open connections.

pub mod claims;
pub mod jwt;
pub mod resolver;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use nkeys::{KeyPair, KeyPairType};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::subjects::{SubjectError, Subjects};
use claims::{Account, AccountLimits, Claims, Operator, Permission, User, UNLIMITED};
pub use jwt::JwtError;

/// Subscriptions one agent connection may hold: its tasks, its reply inbox, and slack for reconnects.
const AGENT_MAX_SUBSCRIPTIONS: i64 = 16;

/// Why a trust could not be loaded or used.
#[derive(Debug, Error)]
pub enum TrustError {
    /// A seed is malformed or of the wrong kind.
    #[error("NATS {role} seed: {reason}")]
    BadSeed {
        /// Which of the three keys.
        role: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A public key offered by an agent is not a NATS user key.
    #[error("not a NATS user public key (U…): {0}")]
    BadUserKey(String),
    /// An agent id cannot be part of a subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// Signing failed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The NATS servers could not be reached or refused the request.
    #[error("NATS account update: {0}")]
    Resolver(String),
}

/// The three seeds, as kept in the trust file (`phoenix nats init`). Secrets: never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSeeds {
    /// `SO…`: signs account JWTs.
    pub operator: String,
    /// `SA…`: the system account, whose users push account updates.
    pub system_account: String,
    /// `SA…`: the Phoenix account, which signs the servers' and agents' user JWTs.
    pub account: String,
}

impl fmt::Debug for TrustSeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustSeeds(<redacted>)")
    }
}

/// A user's JWT with the key that proves it (signs the server's nonce on connect).
#[derive(Clone)]
pub struct UserCredential {
    /// The user JWT.
    pub jwt: String,
    /// The user's key pair.
    pub key: Arc<KeyPair>,
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredential").field("user", &self.key.public_key()).finish_non_exhaustive()
    }
}

/// The operator, system account and Phoenix account keys of one installation.
pub struct NatsTrust {
    operator: KeyPair,
    system_account: KeyPair,
    account: KeyPair,
}

impl fmt::Debug for NatsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsTrust").field("account", &self.account.public_key()).finish_non_exhaustive()
    }
}

impl NatsTrust {
    /// New random keys.
    pub fn generate() -> Self {
        NatsTrust {
            operator: KeyPair::new_operator(),
            system_account: KeyPair::new_account(),
            account: KeyPair::new_account(),
        }
    }

    /// The keys of `seeds`, each checked to be of its kind.
    pub fn from_seeds(seeds: &TrustSeeds) -> Result<Self, TrustError> {
        Ok(NatsTrust {
            operator: key_from_seed("operator", &seeds.operator, KeyPairType::Operator)?,
            system_account: key_from_seed("system account", &seeds.system_account, KeyPairType::Account)?,
            account: key_from_seed("account", &seeds.account, KeyPairType::Account)?,
        })
    }

    /// The seeds, to keep in the trust file.
    pub fn seeds(&self) -> TrustSeeds {
        let seed = |key: &KeyPair| key.seed().expect("keys made from seeds or generated have one");
        TrustSeeds {
            operator: seed(&self.operator),
            system_account: seed(&self.system_account),
            account: seed(&self.account),
        }
    }

    /// The Phoenix account's public key (`A…`).
    pub fn account_public_key(&self) -> String {
        self.account.public_key()
    }

    /// The nats-server configuration that trusts this operator (to `include` in nats-server.conf).
    /// `resolver_dir` is where nats-server keeps account JWTs, including the updates Phoenix pushes.
    pub fn server_config(&self, resolver_dir: &str) -> Result<String, TrustError> {
        let system = self.system_account.public_key();
        let account = self.account.public_key();
        Ok(format!(
            "# Generated by `phoenix nats init`: nats-server trusts Phoenix's operator, and Phoenix pushes\n\
             # its account's updates (revoked agents) into the resolver directory.\n\
             operator: {operator}\n\
             system_account: {system}\n\
             resolver: {{ type: full, dir: {dir}, allow_delete: false }}\n\
             resolver_preload: {{\n  {system}: {system_jwt}\n  {account}: {account_jwt}\n}}\n",
            operator = self.operator_jwt()?,
            dir = serde_json::to_string(resolver_dir).expect("a string serialises"),
            system_jwt = self.system_account_jwt()?,
            account_jwt = self.account_jwt(&BTreeMap::new(), now())?,
        ))
    }

    /// The operator JWT, naming the system account.
    pub fn operator_jwt(&self) -> Result<String, TrustError> {
        let nats = Operator { system_account: self.system_account.public_key(), kind: "operator".into(), version: 2 };
        sign(&self.operator, &self.operator, "phoenix", now(), nats)
    }

    /// The system account's JWT (no JetStream).
    pub fn system_account_jwt(&self) -> Result<String, TrustError> {
        let nats = Account {
            limits: AccountLimits::unlimited(false),
            revocations: BTreeMap::new(),
            kind: "account".into(),
            version: 2,
        };
        sign(&self.operator, &self.system_account, "SYS", now(), nats)
    }

    /// The Phoenix account's JWT with JetStream on and `revocations` (user key -> seconds), issued at
    /// `issued_at` (seconds; a NATS server keeps the newest it was given).
    pub fn account_jwt(&self, revocations: &BTreeMap<String, i64>, issued_at: i64) -> Result<String, TrustError> {
        let nats = Account {
            limits: AccountLimits::unlimited(true),
            revocations: revocations.clone(),
            kind: "account".into(),
            version: 2,
        };
        sign(&self.operator, &self.account, "phoenix", issued_at, nats)
    }

    /// A new user of the Phoenix account with every permission, for a server replica.
    pub fn server_user(&self, name: &str) -> Result<UserCredential, TrustError> {
        user_credential(&self.account, name)
    }

    /// A new user of the system account, for pushing account updates.
    pub fn system_user(&self) -> Result<UserCredential, TrustError> {
        user_credential(&self.system_account, "phoenix-resolver")
    }

    /// A user JWT for the agent `agent_id`, whose own key is `public_key`: it may publish its
    /// heartbeat, task status and metrics, and subscribe to its tasks and its own reply inbox; nothing
    /// else (no other agent's subjects, no JetStream API, no other client's replies).
    pub fn agent_user_jwt(&self, subjects: &Subjects, agent_id: &str, public_key: &str) -> Result<String, TrustError> {
        check_user_public_key(public_key)?;
        let user = User {
            publish: Some(Permission {
                allow: vec![
                    subjects.agent_heartbeat(agent_id)?,
                    subjects.agent_task_status(agent_id)?,
                    subjects.agent_metrics(agent_id)?,
                ],
            }),
            subscribe: Some(Permission {
                allow: vec![subjects.agent_tasks(agent_id)?, format!("{}.>", subjects.agent_inbox_prefix(agent_id)?)],
            }),
            subs: AGENT_MAX_SUBSCRIPTIONS,
            data: UNLIMITED,
            payload: UNLIMITED,
            kind: "user".into(),
            version: 2,
        };
        let subject = KeyPair::from_public_key(public_key).map_err(|e| TrustError::BadUserKey(e.to_string()))?;
        sign(&self.account, &subject, agent_id, now(), user)
    }
}

/// Checks that `public_key` is a NATS user public key (`U…`, valid checksum).
pub fn check_user_public_key(public_key: &str) -> Result<(), TrustError> {
    match KeyPair::from_public_key(public_key) {
        Ok(key) if key.key_pair_type() == KeyPairType::User => Ok(()),
        Ok(_) => Err(TrustError::BadUserKey("not a user key".into())),
        Err(e) => Err(TrustError::BadUserKey(e.to_string())),
    }
}

fn key_from_seed(role: &'static str, seed: &str, kind: KeyPairType) -> Result<KeyPair, TrustError> {
    let key = KeyPair::from_seed(seed.trim()).map_err(|e| TrustError::BadSeed { role, reason: e.to_string() })?;
    if key.key_pair_type() != kind {
        return Err(TrustError::BadSeed { role, reason: format!("expected a {kind:?} seed") });
    }
    Ok(key)
}

/// A new user of `account` with every permission.
fn user_credential(account: &KeyPair, name: &str) -> Result<UserCredential, TrustError> {
    let key = KeyPair::new_user();
    let nats = User {
        publish: None,
        subscribe: None,
        subs: UNLIMITED,
        data: UNLIMITED,
        payload: UNLIMITED,
        kind: "user".into(),
        version: 2,
    };
    let jwt = sign(account, &key, name, now(), nats)?;
    Ok(UserCredential { jwt, key: Arc::new(key) })
}

fn sign<T: Serialize>(
    issuer: &KeyPair,
    subject: &KeyPair,
    name: &str,
    issued_at: i64,
    nats: T,
) -> Result<String, TrustError> {
    let claims = Claims {
        jti: uuid::Uuid::now_v7().simple().to_string().to_uppercase(),
        iat: issued_at,
        iss: issuer.public_key(),
        name: name.to_owned(),
        sub: subject.public_key(),
        nats,
    };
    Ok(jwt::encode(issuer, &claims)?)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_round_trip_and_are_checked_by_kind() {
        let trust = NatsTrust::generate();
        let again = NatsTrust::from_seeds(&trust.seeds()).expect("seeds");
        assert_eq!(again.account_public_key(), trust.account_public_key());
        let mut swapped = trust.seeds();
        swapped.operator = trust.seeds().account;
        let error = NatsTrust::from_seeds(&swapped).expect_err("an account seed is no operator");
        assert!(error.to_string().contains("operator"), "{error}");
        assert!(!format!("{:?}", trust.seeds()).contains(&trust.seeds().account));
    }

    #[test]
    fn an_agent_may_use_its_own_subjects_only() {
        let trust = NatsTrust::generate();
        let subjects = Subjects::new("p").expect("prefix");
        let agent = KeyPair::new_user();
        let jwt = trust.agent_user_jwt(&subjects, "a1", &agent.public_key()).expect("jwt");
        let claims: Claims<User> = jwt::verify(&jwt, &trust.account_public_key()).expect("signed by the account");
        assert_eq!(claims.sub, agent.public_key());
        assert_eq!(claims.name, "a1");
        let publish = claims.nats.publish.expect("publish").allow;
        assert_eq!(publish, ["p.agent.a1.heartbeat", "p.agent.a1.task_status", "p.agent.a1.metrics"]);
        let subscribe = claims.nats.subscribe.expect("subscribe").allow;
        assert_eq!(subscribe, ["p.agent.a1.tasks", "_INBOX.agent.a1.>"]);
    }

    #[test]
    fn only_user_keys_and_subject_safe_ids_get_a_jwt() {
        let trust = NatsTrust::generate();
        let subjects = Subjects::default();
        let user = KeyPair::new_user().public_key();
        assert!(trust.agent_user_jwt(&subjects, "a1", &KeyPair::new_account().public_key()).is_err());
        assert!(trust.agent_user_jwt(&subjects, "a1", "UNOTAKEY").is_err());
        assert!(trust.agent_user_jwt(&subjects, "a.>", &user).is_err());
    }

    #[test]
    fn the_account_carries_revocations_and_jetstream() {
        let trust = NatsTrust::generate();
        let revoked = BTreeMap::from([(KeyPair::new_user().public_key(), 1_700_000_000)]);
        let jwt = trust.account_jwt(&revoked, 1_700_000_001).expect("jwt");
        let claims: Claims<Account> = jwt::verify(&jwt, &trust.operator.public_key()).expect("signed by the operator");
        assert_eq!(claims.iat, 1_700_000_001);
        assert_eq!(claims.nats.revocations, revoked);
        assert_eq!(claims.nats.limits.disk_storage, UNLIMITED);
        let config = trust.server_config("/data/jwt").expect("config");
        assert!(config.contains(&format!("system_account: {}", trust.system_account.public_key())), "{config}");
        assert!(config.contains("dir: \"/data/jwt\""), "{config}");
    }
}
