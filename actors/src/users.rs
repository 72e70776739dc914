//! People who use Phoenix, and what each may do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: every role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also creates, starts, stops, promotes, rolls back and deploys.
    Operator,
    /// Also manages users, enrolment tokens and settings.
    Admin,
}

impl Role {
    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// True when this role may do what `required` may.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}' (expected viewer, operator or admin)")),
        }
    }
}

/// A user account as the rest of the system sees it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// UUIDv7.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// What the user may do.
    pub role: Role,
    /// A deactivated user can neither log in nor use tokens issued before.
    pub active: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
}

/// A user with the stored password hash, for checking a login.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    /// The account.
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Unique login name.
    pub username: String,
    /// Argon2id PHC string (never the password).
    pub password_hash: String,
    /// The role the account gets.
    pub role: Role,
}

/// Changes an admin makes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

impl User {
    /// Why a change from `before` to this ends the user's live sessions, if it does: they were opened
    /// on a right the user no longer has (deactivated, or another role to be checked against).
    pub fn sessions_end_reason(&self, before: &User) -> Option<&'static str> {
        if before.active && !self.active {
            Some("the account was deactivated")
        } else if before.role != self.role {
            Some("the account's role changed")
        } else {
            None
        }
    }
}

/// What a self-registration becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Only the very first account may register itself (and becomes admin).
    FirstUserOnly,
    /// Anyone may register; accounts after the first get this role.
    Open(Role),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_rights_of_the_roles_below() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_deactivation_or_a_new_role_ends_the_live_sessions_and_nothing_else_does() {
        let now = Utc::now();
        let user = |role: Role, active: bool| User {
            id: "u1".into(),
            username: "ops".into(),
            role,
            active,
            created_at: now,
            updated_at: now,
        };
        let before = user(Role::Operator, true);
        assert_eq!(user(Role::Operator, false).sessions_end_reason(&before), Some("the account was deactivated"));
        assert_eq!(user(Role::Viewer, true).sessions_end_reason(&before), Some("the account's role changed"));
        assert_eq!(user(Role::Operator, true).sessions_end_reason(&before), None, "nothing changed");
        let inactive = user(Role::Operator, false);
        assert_eq!(user(Role::Operator, true).sessions_end_reason(&inactive), None, "a reactivation has none open");
    }
}
