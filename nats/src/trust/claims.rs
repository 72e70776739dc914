//! The claims of NATS's operator, account and user JWTs (version 2), as far as Phoenix writes them.
//! Field names are nats-server's; omitted fields take nats-server's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// No limit, in nats-server's encoding.
pub const UNLIMITED: i64 = -1;

/// The fields every NATS JWT carries, with the type-specific part in `nats`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims<T> {
    /// A unique id of this JWT.
    pub jti: String,
    /// Issued at, seconds since the epoch. Revocations compare with it.
    pub iat: i64,
    /// The public key of the signer.
    pub iss: String,
    /// A name for people (the agent id for an agent).
    pub name: String,
    /// The public key the JWT is about.
    pub sub: String,
    /// The type-specific claims.
    pub nats: T,
}

/// `nats` of an operator JWT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Operator {
    /// The account whose users may make system requests (claims updates among them).
    pub system_account: String,
    /// Always `operator`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 2.
    pub version: u8,
}

/// `nats` of an account JWT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Account {
    /// The account's limits; JetStream is off for the account unless its storage limits are set.
    pub limits: AccountLimits,
    /// User public key -> seconds since the epoch: that user's JWTs issued at or before it are refused,
    /// and its open connections are closed when the account JWT arrives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    /// Always `account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 2.
    pub version: u8,
}

/// An account's limits (`-1`: none).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountLimits {
    /// Subscriptions.
    pub subs: i64,
    /// Bytes per second.
    pub data: i64,
    /// Largest message.
    pub payload: i64,
    /// Imports.
    pub imports: i64,
    /// Exports.
    pub exports: i64,
    /// Whether exports may contain wildcards.
    pub wildcards: bool,
    /// Connections.
    pub conn: i64,
    /// Leaf node connections.
    pub leaf: i64,
    /// JetStream memory storage (bytes); `0` disables JetStream memory streams.
    pub mem_storage: i64,
    /// JetStream file storage (bytes); `0` disables JetStream file streams.
    pub disk_storage: i64,
    /// JetStream streams.
    pub streams: i64,
    /// JetStream consumers.
    pub consumer: i64,
}

impl AccountLimits {
    /// No limits of the account's own (the server's limits still apply), JetStream on or off.
    pub fn unlimited(jetstream: bool) -> Self {
        let storage = if jetstream { UNLIMITED } else { 0 };
        AccountLimits {
            subs: UNLIMITED,
            data: UNLIMITED,
            payload: UNLIMITED,
            imports: UNLIMITED,
            exports: UNLIMITED,
            wildcards: true,
            conn: UNLIMITED,
            leaf: UNLIMITED,
            mem_storage: storage,
            disk_storage: storage,
            streams: if jetstream { UNLIMITED } else { 0 },
            consumer: if jetstream { UNLIMITED } else { 0 },
        }
    }
}

/// `nats` of a user JWT.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// What the user may publish; everything when absent.
    #[serde(rename = "pub", default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Permission>,
    /// What the user may subscribe to; everything when absent.
    #[serde(rename = "sub", default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Permission>,
    /// Subscriptions at once.
    pub subs: i64,
    /// Bytes per second.
    pub data: i64,
    /// Largest message.
    pub payload: i64,
    /// Always `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 2.
    pub version: u8,
}

/// The subjects a user may use (NATS wildcards allowed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Permission {
    /// Allowed subjects.
    pub allow: Vec<String>,
}
