//! Short-lived access tokens: HS256 JWTs with `sub`, `role`, `jti`, `exp`, `iat`, `iss` and `sid` (the
//! refresh-token family of the login, so logout can revoke it).

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use phoenix_actors::users::{Role, User};
use serde::{Deserialize, Serialize};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub role: Role,
    pub jti: String,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub sid: String,
}

impl AccessClaims {
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_else(Utc::now)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
    #[error("cannot sign the access token")]
    Signing,
}

/// How far ahead of this replica's clock another replica's `iat` may be.
const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// Signs and checks access tokens with one HMAC key.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], issuer: &str, ttl_secs: u64) -> TokenIssuer {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // One issuer checks its own tokens: no clock skew to allow for, expiry is exact.
        validation.leeway = 0;
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_string(),
            ttl: Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2)),
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl.num_seconds()
    }

    /// A new token for `user` in the login session `family_id`.
    pub fn issue(
        &self,
        user: &User,
        family_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, AccessClaims), TokenError> {
        let claims = AccessClaims {
            sub: user.id.clone(),
            role: user.role,
            jti: uuid::Uuid::now_v7().to_string(),
            exp: (now + self.ttl).timestamp(),
            iat: now.timestamp(),
            iss: self.issuer.clone(),
            sid: family_id.to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|_| TokenError::Signing)?;
        Ok((token, claims))
    }

    /// The claims of a token this issuer signed, that has not expired and was not issued in the future.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = decode::<AccessClaims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        // Replicas sign with their own clocks: a little skew is allowed, a token from the future is not.
        if claims.iat > Utc::now().timestamp() + MAX_CLOCK_SKEW_SECS {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            role: Role::Operator,
            active: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_token_verifies_with_its_issuer_and_key_only() {
        let issuer = TokenIssuer::new(&[7; 32], "phoenix", 900);
        let (token, claims) = issuer.issue(&user(), "fam", Utc::now()).expect("issue");
        assert_eq!(issuer.verify(&token), Ok(claims.clone()));
        assert_eq!(claims.role, Role::Operator);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(TokenIssuer::new(&[8; 32], "phoenix", 900).verify(&token), Err(TokenError::Invalid));
        assert_eq!(TokenIssuer::new(&[7; 32], "other", 900).verify(&token), Err(TokenError::Invalid));
        assert_eq!(issuer.verify("not-a-jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let issuer = TokenIssuer::new(&[7; 32], "phoenix", 900);
        let (later, _) = issuer.issue(&user(), "fam", Utc::now() + Duration::minutes(5)).expect("issue");
        assert_eq!(issuer.verify(&later), Err(TokenError::Invalid));
        let (skewed, _) = issuer.issue(&user(), "fam", Utc::now() + Duration::seconds(30)).expect("issue");
        assert!(issuer.verify(&skewed).is_ok(), "a little clock skew between replicas is fine");
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let issuer = TokenIssuer::new(&[7; 32], "phoenix", 900);
        let (token, _) = issuer.issue(&user(), "fam", Utc::now() - Duration::hours(1)).expect("issue");
        assert_eq!(issuer.verify(&token), Err(TokenError::Expired));
    }
}
