//! The authentication use cases: register, log in, refresh, log out, check a bearer token, enrol an
//! agent and check an agent credential.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use phoenix_actors::labels::{validate_labels, Labels};
use phoenix_actors::store::{
    AccessStatus, AgentIdentity, EnrollmentToken, NewAgent, NewEnrollmentToken, NewRefreshToken, RefreshUse,
};
use phoenix_actors::users::{NewUser, Registration, Role, User};
use phoenix_actors::{Store, StoreError};
use serde::Serialize;

use super::password::Passwords;
use super::rate_limit::FailureLimiter;
use super::secrets::{
    random_token, sha256_hex, AGENT_CREDENTIAL_PREFIX, ENROLLMENT_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX,
};
use super::tokens::{AccessClaims, TokenError, TokenIssuer};
use crate::config::{AuthSettings, RegistrationMode};

/// Key under which a generated JWT secret is kept in the database.
const JWT_SECRET_SETTING: &str = "auth.jwt_secret";

/// Why an authentication step failed; each kind maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {} s", .retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("registration is closed: ask an admin to create your account")]
    RegistrationClosed,
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    /// A spent refresh token came back (it leaked): its whole family was revoked. Answered like an
    /// invalid token; the audit log records it.
    #[error("the refresh token is invalid, expired or revoked")]
    RefreshTokenReused { user_id: String },
    #[error("the enrolment token is invalid, expired, revoked or used up")]
    InvalidEnrollmentToken,
    #[error("the request is not valid")]
    Invalid(Vec<(String, String)>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal authentication failure: {0}")]
    Internal(String),
}

/// What a login or refresh hands out (the wire shape of DESIGN.md §1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    /// Sent as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Spent by `POST /api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    pub user: User,
}

/// What an agent gets at enrolment.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    pub agent_id: String,
    pub credential: String,
    pub labels: Labels,
}

pub struct AuthService {
    store: Arc<dyn Store>,
    tokens: TokenIssuer,
    passwords: Arc<Passwords>,
    /// Argon2 costs ~19 MiB and real CPU per call: at most this many run at once, whatever the load.
    hashing: tokio::sync::Semaphore,
    settings: AuthSettings,
    failures_by_user: FailureLimiter,
    failures_by_address: FailureLimiter,
}

impl AuthService {
    /// Uses the configured JWT secret, or the one stored in the database (generating it on first use).
    pub async fn new(store: Arc<dyn Store>, settings: &AuthSettings) -> anyhow::Result<AuthService> {
        let secret = match &settings.jwt_secret {
            Some(secret) => secret.expose().to_string(),
            None => store.get_or_init_setting(JWT_SECRET_SETTING, random_token("")?).await?,
        };
        let passwords = tokio::task::spawn_blocking(Passwords::new).await??;
        let window = Duration::from_secs(settings.login_window_secs);
        Ok(AuthService {
            tokens: TokenIssuer::new(secret.as_bytes(), &settings.issuer, settings.access_token_ttl_secs),
            passwords: Arc::new(passwords),
            hashing: tokio::sync::Semaphore::new(hashing_slots()),
            failures_by_user: FailureLimiter::new(settings.login_max_failures, window),
            failures_by_address: FailureLimiter::new(settings.login_max_failures, window),
            settings: settings.clone(),
            store,
        })
    }

    /// Self-registration: the first account becomes admin; later ones only when registration is open.
    pub async fn register(&self, username: &str, password: &str) -> Result<User, AuthError> {
        validate_credentials(username, password)?;
        // Refuse before hashing: a closed registration must not cost the server an Argon2 run.
        if self.settings.registration == RegistrationMode::Closed && self.store.any_user_exists().await? {
            return Err(AuthError::RegistrationClosed);
        }
        let hash = self.hash(password).await?;
        let registration = match self.settings.registration {
            RegistrationMode::Closed => Registration::FirstUserOnly,
            RegistrationMode::Open => Registration::Open(Role::Viewer),
        };
        match self.store.register_user(username.to_string(), hash, registration).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(AuthError::RegistrationClosed),
            Err(StoreError::Conflict(_)) => Err(username_taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// An admin creates an account with a role.
    pub async fn create_user(&self, username: &str, password: &str, role: Role) -> Result<User, AuthError> {
        validate_credentials(username, password)?;
        let password_hash = self.hash(password).await?;
        match self.store.create_user(NewUser { username: username.to_string(), password_hash, role }).await {
            Err(StoreError::Conflict(_)) => Err(username_taken()),
            other => Ok(other?),
        }
    }

    /// Checks the password and starts a session. Failures are rate-limited per username and per client
    /// address, and cost the same time whether or not the user exists.
    pub async fn login(&self, username: &str, password: &str, client: Option<IpAddr>) -> Result<Session, AuthError> {
        let address_key = client.map(|ip| ip.to_string());
        self.check_rate(username, address_key.as_deref())?;
        // Counted as a failure before the (slow) check, so many attempts sent at once cannot all pass
        // the limit; taken back if the password is right.
        self.failures_by_user.record_failure(username);
        if let Some(key) = &address_key {
            self.failures_by_address.record_failure(key);
        }
        let credentials = self.store.find_credentials(username).await?;
        let stored = credentials.as_ref().map(|c| c.password_hash.clone());
        let matches = self.verify(password, stored).await?;
        let user = match credentials {
            Some(c) if matches && c.user.active => c.user,
            _ => return Err(AuthError::InvalidCredentials),
        };
        self.failures_by_user.reset(username);
        if let Some(key) = &address_key {
            self.failures_by_address.forget_last(key);
        }
        self.start_session(user, uuid::Uuid::now_v7().to_string()).await
    }

    /// Rotates a refresh token: the presented one is spent and a new pair issued. Presenting a spent
    /// token again means it leaked, so its whole family is revoked.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        match self.store.use_refresh_token(&sha256_hex(refresh_token), Utc::now()).await? {
            RefreshUse::Fresh { user_id, family_id } => {
                let user = match self.store.get_user(&user_id).await {
                    Ok(user) if user.active => user,
                    Ok(_) | Err(StoreError::NotFound) => return Err(AuthError::InvalidRefreshToken),
                    Err(e) => return Err(e.into()),
                };
                self.start_session(user, family_id).await
            }
            RefreshUse::Reused { user_id, family_id } => {
                tracing::warn!(user.id = %user_id, "refresh token reused: revoking its family");
                self.store.revoke_refresh_family(&family_id).await?;
                Err(AuthError::RefreshTokenReused { user_id })
            }
            RefreshUse::Invalid => Err(AuthError::InvalidRefreshToken),
        }
    }

    /// Changes the user's password after checking the current one, ends every session of the user
    /// (the caller's too) and starts a new one, which is returned.
    pub async fn change_password(&self, user: &User, current: &str, new: &str) -> Result<Session, AuthError> {
        // A stolen access token must not be a way to guess the password: failures count against the
        // same per-username limit as failed logins.
        self.check_rate(&user.username, None)?;
        self.failures_by_user.record_failure(&user.username);
        let credentials = self.store.find_credentials(&user.username).await?;
        let stored = credentials.map(|c| c.password_hash);
        if !self.verify(current, stored).await? {
            return Err(AuthError::Invalid(vec![("current_password".into(), "is not the account's password".into())]));
        }
        self.failures_by_user.reset(&user.username);
        validate_credentials(&user.username, new)?;
        if new == current {
            return Err(AuthError::Invalid(vec![("new_password".into(), "is the current password".into())]));
        }
        let hash = self.hash(new).await?;
        // Tokens carry `iat` in whole seconds: every token issued up to now has one before the next
        // second, which is where the new session's starts.
        let cutoff = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(1);
        self.store.change_password(&user.id, hash, cutoff).await?;
        self.start_session_at(user.clone(), uuid::Uuid::now_v7().to_string(), cutoff).await
    }

    /// Ends the session of this access token: the token itself and its refresh family.
    pub async fn logout(&self, claims: &AccessClaims) -> Result<(), AuthError> {
        self.store.revoke_access_token(&claims.jti, &claims.sub, claims.expires_at()).await?;
        self.store.revoke_refresh_family(&claims.sid).await?;
        Ok(())
    }

    /// The user behind a bearer access token, if the token is valid, unrevoked and the user active.
    pub async fn authenticate(&self, token: &str) -> Result<(User, AccessClaims), AuthError> {
        let claims = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => AuthError::Unauthenticated("the access token has expired"),
            _ => AuthError::Unauthenticated("the access token is invalid"),
        })?;
        let issued_at = DateTime::from_timestamp(claims.iat, 0).unwrap_or_else(Utc::now);
        match self.store.access_status(&claims.sub, &claims.jti, issued_at).await? {
            AccessStatus::Active(user) => Ok((user, claims)),
            AccessStatus::Revoked => Err(AuthError::Unauthenticated("the access token was revoked")),
            AccessStatus::Inactive => Err(AuthError::Unauthenticated("the account is deactivated")),
            AccessStatus::UnknownUser => Err(AuthError::Unauthenticated("the account no longer exists")),
        }
    }

    /// Deletes expired token records every `interval`, until the process ends (tables stay small).
    pub async fn run_token_cleanup(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            match self.store.prune_expired_tokens(Utc::now()).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(tokens.removed = removed, "expired token records removed"),
                Err(e) => tracing::warn!(error = %e, "cannot remove expired token records"),
            }
        }
    }

    /// A new enrolment token; the token itself is returned once and only its hash is kept.
    pub async fn create_enrollment_token(
        &self,
        uses: i32,
        ttl_secs: Option<u64>,
        labels: Labels,
        created_by: &str,
    ) -> Result<(String, EnrollmentToken), AuthError> {
        let mut problems = validate_labels(&labels);
        if !(1..=100_000).contains(&uses) {
            problems.push(("uses".into(), "must be between 1 and 100000".into()));
        }
        let ttl = ttl_secs.unwrap_or(self.settings.enrollment_token_ttl_secs);
        if ttl == 0 || ttl > 366 * 24 * 3600 {
            problems.push(("ttl_secs".into(), "must be between 1 and 31622400 (a year)".into()));
        }
        if !problems.is_empty() {
            return Err(AuthError::Invalid(problems));
        }
        let token = random_token(ENROLLMENT_TOKEN_PREFIX).map_err(internal)?;
        let record = NewEnrollmentToken {
            id: uuid::Uuid::now_v7().to_string(),
            token_hash: sha256_hex(&token),
            labels,
            uses,
            expires_at: Utc::now() + chrono::Duration::seconds(ttl as i64),
            created_by: Some(created_by.to_string()),
        };
        Ok((token, self.store.create_enrollment_token(record).await?))
    }

    /// Exchanges an enrolment token for an agent id and credential.
    pub async fn enroll(&self, token: &str, hostname: &str, labels: Labels) -> Result<Enrollment, AuthError> {
        let mut problems = validate_labels(&labels);
        if hostname.trim().is_empty() || hostname.chars().count() > 253 {
            problems.push(("hostname".into(), "must be 1 to 253 characters long".into()));
        }
        if !problems.is_empty() {
            return Err(AuthError::Invalid(problems));
        }
        let credential = random_token(AGENT_CREDENTIAL_PREFIX).map_err(internal)?;
        let agent = NewAgent {
            id: uuid::Uuid::now_v7().to_string(),
            hostname: hostname.to_string(),
            labels,
            credential_hash: sha256_hex(&credential),
        };
        let identity = self
            .store
            .enroll_agent(&sha256_hex(token), agent, Utc::now())
            .await?
            .ok_or(AuthError::InvalidEnrollmentToken)?;
        tracing::info!(agent.id = %identity.id, agent.hostname = %identity.hostname, "agent enrolled");
        Ok(Enrollment { agent_id: identity.id, credential, labels: identity.labels })
    }

    /// The agent a bearer credential belongs to.
    pub async fn agent_from_credential(&self, credential: &str) -> Result<AgentIdentity, AuthError> {
        self.store
            .authenticate_agent(&sha256_hex(credential))
            .await?
            .ok_or(AuthError::Unauthenticated("the agent credential is invalid or revoked"))
    }

    fn check_rate(&self, username: &str, address: Option<&str>) -> Result<(), AuthError> {
        let by_user = self.failures_by_user.check(username);
        let by_address = address.map_or(Ok(()), |a| self.failures_by_address.check(a));
        match (by_user, by_address) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(AuthError::RateLimited { retry_after: a.max(b) }),
            (Err(retry_after), _) | (_, Err(retry_after)) => Err(AuthError::RateLimited { retry_after }),
        }
    }

    async fn start_session(&self, user: User, family_id: String) -> Result<Session, AuthError> {
        self.start_session_at(user, family_id, Utc::now()).await
    }

    /// A session whose tokens are issued at `now`.
    async fn start_session_at(&self, user: User, family_id: String, now: DateTime<Utc>) -> Result<Session, AuthError> {
        let (access_token, _) = self.tokens.issue(&user, &family_id, now).map_err(internal)?;
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX).map_err(internal)?;
        let ttl = chrono::Duration::seconds(self.settings.refresh_token_ttl_secs.min(i64::MAX as u64 / 2) as i64);
        let stored = self
            .store
            .insert_refresh_token(NewRefreshToken {
                id: uuid::Uuid::now_v7().to_string(),
                user_id: user.id.clone(),
                family_id,
                token_hash: sha256_hex(&refresh_token),
                expires_at: now + ttl,
            })
            .await;
        match stored {
            // The session was ended (logout, reuse detected) while this token was being issued.
            Err(StoreError::Conflict(_)) => return Err(AuthError::InvalidRefreshToken),
            other => other?,
        }
        Ok(Session { access_token, refresh_token, token_type: "Bearer", expires_in: self.tokens.ttl_secs(), user })
    }

    async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let _slot = self.hashing.acquire().await.map_err(internal)?;
        let (passwords, password) = (self.passwords.clone(), password.to_string());
        tokio::task::spawn_blocking(move || passwords.hash(&password)).await.map_err(internal)?.map_err(internal)
    }

    async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, AuthError> {
        let _slot = self.hashing.acquire().await.map_err(internal)?;
        let (passwords, password) = (self.passwords.clone(), password.to_string());
        tokio::task::spawn_blocking(move || passwords.verify(&password, stored.as_deref())).await.map_err(internal)
    }
}

/// Two Argon2 runs per core at most.
fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

fn internal(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(e.to_string())
}

fn username_taken() -> AuthError {
    AuthError::Invalid(vec![("username".into(), "is already taken".into())])
}

/// Usernames: 1–64 of letters, digits, `.`, `_`, `-`, `@`. Passwords: 8–1024 bytes.
fn validate_credentials(username: &str, password: &str) -> Result<(), AuthError> {
    let mut problems = Vec::new();
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if username.is_empty() || username.len() > 64 || !username.chars().all(ok_char) {
        problems.push(("username".into(), "must be 1 to 64 letters, digits, '.', '_', '-' or '@'".into()));
    }
    if password.len() < 8 || password.len() > 1024 {
        problems.push(("password".into(), "must be 8 to 1024 bytes long".into()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AuthError::Invalid(problems))
    }
}

#[async_trait::async_trait]
impl phoenix_actors::gateway::AgentAuthenticator for AuthService {
    async fn authenticate_agent(&self, credential: &str) -> Result<Option<AgentIdentity>, StoreError> {
        self.store.authenticate_agent(&sha256_hex(credential)).await
    }
}
