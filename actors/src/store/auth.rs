//! Users, their refresh and access tokens, and server-wide settings.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::paging::{Page, PageRequest};
use crate::users::{NewUser, Registration, User, UserChanges, UserCredentials};

/// A refresh token to remember (only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// UUIDv7.
    pub id: String,
    /// Whose token it is.
    pub user_id: String,
    /// Every token rotated from one login shares a family; reuse revokes the family.
    pub family_id: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
}

/// What presenting a refresh token amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use of a valid token: it is now spent, and a successor may be issued.
    Fresh {
        /// Whose token it was.
        user_id: String,
        /// Its family, for the successor.
        family_id: String,
    },
    /// The token was already spent: someone replayed it. The caller revokes the family.
    Reused {
        /// Whose token it was.
        user_id: String,
        /// The family to revoke.
        family_id: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Whether an access token may still be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessStatus {
    /// The user exists, is active, and the token was not revoked.
    Active(User),
    /// The token was revoked (logout).
    Revoked,
    /// The user was deactivated.
    Inactive,
    /// The user no longer exists.
    UnknownUser,
}

/// Users and their tokens.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Self-registration: the first account ever becomes admin; later ones get the role `registration`
    /// allows, or `None` when registration is closed. Atomic, so two first users cannot both be admin.
    async fn register_user(
        &self,
        username: String,
        password_hash: String,
        registration: Registration,
    ) -> Result<Option<User>, StoreError>;

    /// Whether any account exists (a cheap check before the costly work of a registration).
    async fn any_user_exists(&self) -> Result<bool, StoreError>;

    /// Creates a user with the given role (admins creating accounts). `Conflict` if the name is taken.
    async fn create_user(&self, new: NewUser) -> Result<User, StoreError>;

    /// The user and password hash for a login name, if it exists.
    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError>;

    /// One user by id.
    async fn get_user(&self, id: &str) -> Result<User, StoreError>;

    /// Users in creation order.
    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError>;

    /// Changes role and/or active flag. Refuses (`Conflict`) a change that would leave no active admin.
    async fn update_user(&self, id: &str, changes: UserChanges) -> Result<User, StoreError>;

    /// Remembers a refresh token.
    async fn insert_refresh_token(&self, token: NewRefreshToken) -> Result<(), StoreError>;

    /// Spends a refresh token (atomically: two concurrent uses give one `Fresh` and one `Reused`).
    async fn use_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<RefreshUse, StoreError>;

    /// Revokes every refresh token of a family.
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError>;

    /// Refuses the access token `jti` from now until it would have expired anyway.
    async fn revoke_access_token(&self, jti: &str, user_id: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Deletes revocations of access tokens that have expired anyway, and refresh tokens past their
    /// expiry; returns how many rows went.
    async fn prune_expired_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Whether the access token `jti` of `user_id`, issued at `issued_at`, may be used now.
    async fn access_status(
        &self,
        user_id: &str,
        jti: &str,
        issued_at: DateTime<Utc>,
    ) -> Result<AccessStatus, StoreError>;

    /// Sets a new password hash and ends every session of the user: access tokens issued before `now`
    /// (whole seconds) are refused from then on and every refresh token is revoked, atomically.
    async fn change_password(&self, user_id: &str, password_hash: String, now: DateTime<Utc>)
        -> Result<(), StoreError>;
}

/// Server-wide settings kept in the database (e.g. a generated JWT secret).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The stored value of `key`; if there is none, stores `candidate` and returns it. When several
    /// servers race, all of them get the one value that was stored first.
    async fn get_or_init_setting(&self, key: &str, candidate: String) -> Result<String, StoreError>;
}
