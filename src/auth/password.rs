//! Argon2id password hashing. Verification of an unknown user's login runs against a dummy hash so a
//! failed login costs the same whether or not the user exists.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::Argon2;

/// Hashes and verifies passwords. CPU-heavy: call it from a blocking thread.
pub struct Passwords {
    dummy_hash: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

impl Passwords {
    pub fn new() -> Result<Passwords, HashError> {
        let dummy_hash = hash("phoenix-dummy-password-for-equal-time")?;
        Ok(Passwords { dummy_hash })
    }

    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        hash(password)
    }

    /// True when `password` matches `stored`; with no stored hash (unknown user) the dummy hash is
    /// checked anyway and the answer is false.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let matches = verify(password, stored.unwrap_or(&self.dummy_hash));
        matches && stored.is_some()
    }
}

fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| HashError(e.to_string()))
}

fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new().expect("hasher");
        let stored = passwords.hash("correct horse").expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("correct horse"));
        assert!(passwords.verify("correct horse", Some(&stored)));
        assert!(!passwords.verify("wrong horse", Some(&stored)));
        assert!(!passwords.verify("phoenix-dummy-password-for-equal-time", None));
    }
}
