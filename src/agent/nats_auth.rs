//! The agent's own NATS identity, for servers that give each agent one (`bus.nats_trust_file`): a
//! NATS user key made on this host and kept in the state directory (`nats-user.nk`, owner-only; the
//! seed never leaves the host), and a JWT for it that the server signs before every NATS connection.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use nkeys::KeyPair;
use phoenix_nats::trust::UserCredential;
use serde::Deserialize;

const KEY_FILE: &str = "nats-user.nk";

/// The server's answer to `POST /api/v1/agent/nats-credentials`.
#[derive(Debug, Deserialize)]
pub struct IssuedCredential {
    pub jwt: String,
    pub subject_prefix: String,
    pub inbox_prefix: String,
}

/// What the NATS link connects with.
pub struct NatsUserAuth {
    pub credential: UserCredential,
    pub subject_prefix: String,
    pub inbox_prefix: String,
}

/// The agent's NATS user key, made and saved on first use.
pub fn load_or_create_key(state_dir: &Path) -> anyhow::Result<Arc<KeyPair>> {
    let file = state_dir.join(KEY_FILE);
    match std::fs::read_to_string(&file) {
        Ok(seed) => {
            let key =
                KeyPair::from_seed(seed.trim()).with_context(|| format!("{} holds no NATS key", file.display()))?;
            Ok(Arc::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::new_user();
            let seed = key.seed().context("a new key has a seed")?;
            crate::private_file::write(&file, &seed).with_context(|| format!("Failed to write {}", file.display()))?;
            tracing::info!(nats.user = %key.public_key(), "made this agent's NATS user key");
            Ok(Arc::new(key))
        }
        Err(e) => Err(e).with_context(|| format!("Failed to read {}", file.display())),
    }
}

/// Forgets the key (the server refused it, e.g. revoked with an earlier credential): the next
/// connection attempt makes a new one.
pub fn forget_key(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(KEY_FILE));
}

impl NatsUserAuth {
    pub fn new(key: Arc<KeyPair>, issued: IssuedCredential) -> NatsUserAuth {
        NatsUserAuth {
            credential: UserCredential { jwt: issued.jwt, key },
            subject_prefix: issued.subject_prefix,
            inbox_prefix: issued.inbox_prefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_made_once_kept_owner_only_and_forgotten_on_demand() {
        let dir = tempfile::tempdir().expect("dir");
        let first = load_or_create_key(dir.path()).expect("made");
        assert!(first.public_key().starts_with('U'));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(dir.path()).expect("read").public_key(), first.public_key());
        forget_key(dir.path());
        assert_ne!(load_or_create_key(dir.path()).expect("new").public_key(), first.public_key());
    }
}
