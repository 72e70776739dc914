//! NATS's JWTs: a JSON claims set signed with an ed25519 nkey (`alg: ed25519-nkey`), as nats-server
//! reads them in operator mode. Only what Phoenix issues is written here: no generic JWT library fits,
//! since the algorithm name and the key encoding are NATS's own.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nkeys::KeyPair;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// The header of every NATS JWT.
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Why a JWT could not be made or read.
#[derive(Debug, Error)]
pub enum JwtError {
    /// The key cannot sign (a public key only) or the claims do not serialise.
    #[error("cannot sign a NATS JWT: {0}")]
    Sign(String),
    /// The text is not three base64url parts with a JSON claims set.
    #[error("malformed NATS JWT: {0}")]
    Malformed(String),
    /// The signature does not match the expected issuer.
    #[error("the NATS JWT is not signed by {issuer}")]
    BadSignature {
        /// The public key the signature was checked against.
        issuer: String,
    },
}

/// `header.claims.signature`, each base64url without padding, signed by `issuer`.
pub fn encode(issuer: &KeyPair, claims: &impl Serialize) -> Result<String, JwtError> {
    let claims = serde_json::to_vec(claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims));
    let signature = issuer.sign(signed.as_bytes()).map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// The claims of `jwt`, read without checking the signature (for comparing what a NATS server holds
/// with what Phoenix would write; never for deciding who someone is).
pub fn claims_unverified<T: DeserializeOwned>(jwt: &str) -> Result<T, JwtError> {
    let mut parts = jwt.trim().split('.');
    let (Some(_), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed("expected three parts".into()));
    };
    let bytes = URL_SAFE_NO_PAD.decode(claims).map_err(|e| JwtError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Malformed(e.to_string()))
}

/// Checks that `jwt` was signed by the key whose public half is `issuer`, and returns its claims.
pub fn verify<T: DeserializeOwned>(jwt: &str, issuer: &str) -> Result<T, JwtError> {
    let (signed, signature) = jwt.trim().rsplit_once('.').ok_or_else(|| JwtError::Malformed("no signature".into()))?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let key = KeyPair::from_public_key(issuer).map_err(|e| JwtError::Malformed(e.to_string()))?;
    key.verify(signed.as_bytes(), &signature).map_err(|_| JwtError::BadSignature { issuer: issuer.to_owned() })?;
    claims_unverified(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_jwt_verifies_against_its_issuer_only() {
        let issuer = KeyPair::new_account();
        let jwt = encode(&issuer, &serde_json::json!({"sub": "U1", "n": 1})).expect("sign");
        assert_eq!(jwt.split('.').count(), 3);
        let claims: serde_json::Value = verify(&jwt, &issuer.public_key()).expect("verify");
        assert_eq!(claims["sub"], "U1");
        let other = KeyPair::new_account();
        assert!(matches!(verify::<serde_json::Value>(&jwt, &other.public_key()), Err(JwtError::BadSignature { .. })));
        let header = URL_SAFE_NO_PAD.decode(jwt.split('.').next().expect("header")).expect("b64");
        assert_eq!(header, HEADER.as_bytes());
    }

    #[test]
    fn a_tampered_jwt_is_refused() {
        let issuer = KeyPair::new_account();
        let jwt = encode(&issuer, &serde_json::json!({"sub": "U1"})).expect("sign");
        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"U2"}"#);
        parts[1] = &forged;
        assert!(verify::<serde_json::Value>(&parts.join("."), &issuer.public_key()).is_err());
        assert!(claims_unverified::<serde_json::Value>("a.b").is_err());
    }

    #[test]
    fn a_public_key_alone_cannot_sign() {
        let public = KeyPair::from_public_key(&KeyPair::new_account().public_key()).expect("public");
        assert!(matches!(encode(&public, &serde_json::json!({})), Err(JwtError::Sign(_))));
    }
}
