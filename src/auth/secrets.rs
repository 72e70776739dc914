//! Random tokens and their stored form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefixes make a leaked token recognisable (and greppable by secret scanners).
pub const REFRESH_TOKEN_PREFIX: &str = "phx_rt_";
pub const ENROLLMENT_TOKEN_PREFIX: &str = "phx_enr_";
pub const AGENT_CREDENTIAL_PREFIX: &str = "phx_agt_";

/// `prefix` + 256 random bits, URL-safe.
pub fn random_token(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Tokens are high-entropy, so a fast hash is enough to make the stored form useless to a thief.
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed_deterministically() {
        let a = random_token(REFRESH_TOKEN_PREFIX).expect("random");
        let b = random_token(REFRESH_TOKEN_PREFIX).expect("random");
        assert!(a.starts_with("phx_rt_") && a.len() == 7 + 43);
        assert_ne!(a, b);
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
