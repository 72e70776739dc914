use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::paging::{Page, PageRequest};
use phoenix_actors::store::{AccessStatus, NewRefreshToken, RefreshUse, UserStore};
use phoenix_actors::users::{NewUser, Registration, Role, User, UserChanges, UserCredentials};
use phoenix_actors::StoreError;

use super::convert::{new_id, to_db_time, user_from_row};
use super::DieselStore;
use crate::db::models::{RefreshTokenRow, RevokedTokenRow, SystemSettingRow, UserRow};
use crate::db::schema::{refresh_tokens, revoked_tokens, system_settings, users};
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};

/// Marker row whose primary key lets exactly one registration become the first admin.
const FIRST_ADMIN_KEY: &str = "bootstrap.first_admin";

fn user_row(username: String, password_hash: String, role: Role) -> UserRow {
    let now = to_db_time(Utc::now());
    UserRow {
        id: new_id(),
        username,
        password_hash,
        role: role.as_str().into(),
        active: true,
        created_at: now,
        updated_at: now,
        sessions_valid_after: None,
    }
}

fn insert_user(conn: &mut DbConnection, row: &UserRow) -> Result<User, DbError> {
    let inserted: UserRow = diesel::insert_into(users::table).values(row).get_result(conn)?;
    user_from_row(inserted)
}

/// Why a first-admin registration did not happen.
enum FirstAdmin {
    AlreadyTaken,
    Failed(DbError),
}

impl From<diesel::result::Error> for FirstAdmin {
    fn from(e: diesel::result::Error) -> Self {
        FirstAdmin::Failed(e.into())
    }
}

/// Claims the first-admin marker and creates the admin in one transaction. The marker's primary key
/// makes a concurrent second claim fail (it waits for the first to commit, then sees the row).
fn register_first_admin(conn: &mut DbConnection, row: &UserRow) -> Result<User, FirstAdmin> {
    let already: Option<String> =
        system_settings::table.find(FIRST_ADMIN_KEY).select(system_settings::key).first(conn).optional()?;
    if already.is_some() {
        return Err(FirstAdmin::AlreadyTaken);
    }
    write_transaction(conn, |tx| {
        let marker =
            SystemSettingRow { key: FIRST_ADMIN_KEY.into(), value: row.id.clone(), updated_at: row.created_at };
        match diesel::insert_into(system_settings::table).values(&marker).execute(tx) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(FirstAdmin::AlreadyTaken),
            Err(e) => return Err(e.into()),
        }
        let admin = UserRow { role: Role::Admin.as_str().into(), ..row.clone() };
        insert_user(tx, &admin).map_err(FirstAdmin::Failed)
    })
}

fn register(
    conn: &mut DbConnection,
    username: String,
    password_hash: String,
    registration: Registration,
) -> Result<Option<User>, DbError> {
    let row = user_row(username, password_hash, Role::Viewer);
    match register_first_admin(conn, &row) {
        Ok(admin) => return Ok(Some(admin)),
        Err(FirstAdmin::Failed(e)) => return Err(e),
        Err(FirstAdmin::AlreadyTaken) => {}
    }
    match registration {
        Registration::FirstUserOnly => Ok(None),
        Registration::Open(role) => insert_user(conn, &UserRow { role: role.as_str().into(), ..row }).map(Some),
    }
}

fn spend_refresh_token(conn: &mut DbConnection, token_hash: &str, now: DateTime<Utc>) -> Result<RefreshUse, DbError> {
    let Some(row) = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .first::<RefreshTokenRow>(conn)
        .optional()?
    else {
        return Ok(RefreshUse::Invalid);
    };
    let now = to_db_time(now);
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Ok(RefreshUse::Invalid);
    }
    // Conditional update: of two concurrent uses exactly one sees `used_at IS NULL`.
    let spent = diesel::update(
        refresh_tokens::table
            .find(&row.id)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(Some(now)))
    .execute(conn)?;
    Ok(if spent == 1 {
        RefreshUse::Fresh { user_id: row.user_id, family_id: row.family_id }
    } else {
        RefreshUse::Reused { user_id: row.user_id, family_id: row.family_id }
    })
}

fn access_status(
    conn: &mut DbConnection,
    user_id: &str,
    jti: &str,
    issued_at: DateTime<Utc>,
) -> Result<AccessStatus, DbError> {
    let Some(row) = users::table.find(user_id).first::<UserRow>(conn).optional()? else {
        return Ok(AccessStatus::UnknownUser);
    };
    if !row.active {
        return Ok(AccessStatus::Inactive);
    }
    if row.sessions_valid_after.is_some_and(|after| to_db_time(issued_at) < after) {
        return Ok(AccessStatus::Revoked);
    }
    let revoked: Option<String> = revoked_tokens::table.find(jti).select(revoked_tokens::jti).first(conn).optional()?;
    if revoked.is_some() {
        return Ok(AccessStatus::Revoked);
    }
    user_from_row(row).map(AccessStatus::Active)
}

fn update_user(conn: &mut DbConnection, id: &str, changes: UserChanges) -> Result<User, DbError> {
    if let DbConnection::Pg(pg) = conn {
        // Two admins demoting each other at once must not both see "another admin is left": lock the
        // active admins first (SQLite's BEGIN IMMEDIATE already serialises the whole transaction).
        users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::active.eq(true))
            .select(users::id)
            .for_update()
            .load::<String>(pg)?;
    }
    let mut row: UserRow = users::table.find(id).first(conn)?;
    let was_active_admin = row.active && row.role == Role::Admin.as_str();
    if let Some(role) = changes.role {
        row.role = role.as_str().into();
    }
    if let Some(active) = changes.active {
        row.active = active;
    }
    let stays_active_admin = row.active && row.role == Role::Admin.as_str();
    if was_active_admin && !stays_active_admin {
        let active_admins: i64 = users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::active.eq(true))
            .count()
            .get_result(conn)?;
        if active_admins <= 1 {
            return Err(DbError::Conflict("this is the last active admin: make another admin first".into()));
        }
    }
    row.updated_at = to_db_time(Utc::now());
    user_from_row(diesel::update(users::table.find(id)).set(&row).get_result(conn)?)
}

#[async_trait]
impl UserStore for DieselStore {
    async fn register_user(
        &self,
        username: String,
        password_hash: String,
        registration: Registration,
    ) -> Result<Option<User>, StoreError> {
        self.run(move |conn| register(conn, username, password_hash, registration)).await
    }

    async fn any_user_exists(&self) -> Result<bool, StoreError> {
        self.run(|conn| Ok(users::table.select(users::id).first::<String>(conn).optional()?.is_some())).await
    }

    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        self.run(move |conn| insert_user(conn, &user_row(new.username, new.password_hash, new.role))).await
    }

    async fn find_credentials(&self, username: &str) -> Result<Option<UserCredentials>, StoreError> {
        let username = username.to_string();
        self.run(move |conn| {
            let Some(row) = users::table.filter(users::username.eq(&username)).first::<UserRow>(conn).optional()?
            else {
                return Ok(None);
            };
            let password_hash = row.password_hash.clone();
            Ok(Some(UserCredentials { user: user_from_row(row)?, password_hash }))
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        let id = id.to_string();
        self.run(move |conn| user_from_row(users::table.find(&id).first(conn)?)).await
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.run(move |conn| {
            let mut query = users::table.order(users::id.asc()).limit(i64::from(page.limit) + 1).into_boxed();
            if let Some(after) = &page.after {
                query = query.filter(users::id.gt(after.clone()));
            }
            let rows: Vec<UserRow> = query.load(conn)?;
            let items = rows.into_iter().map(user_from_row).collect::<Result<Vec<_>, _>>()?;
            Ok(Page::from_overfetch(items, page.limit, |u| u.id.clone()))
        })
        .await
    }

    async fn update_user(&self, id: &str, changes: UserChanges) -> Result<User, StoreError> {
        let id = id.to_string();
        self.run(move |conn| write_transaction(conn, |tx| update_user(tx, &id, changes))).await
    }

    async fn insert_refresh_token(&self, token: NewRefreshToken) -> Result<(), StoreError> {
        self.run(move |conn| {
            let row = RefreshTokenRow {
                id: token.id,
                user_id: token.user_id,
                family_id: token.family_id,
                token_hash: token.token_hash,
                expires_at: to_db_time(token.expires_at),
                created_at: to_db_time(Utc::now()),
                used_at: None,
                revoked_at: None,
            };
            let family = row.family_id.clone();
            diesel::insert_into(refresh_tokens::table).values(&row).execute(conn)?;
            // A logout (or reuse detection) may have revoked the family while this token was being
            // issued: then the new token is revoked too, so no token outlives its family.
            let revoked: i64 = refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(&family))
                .filter(refresh_tokens::revoked_at.is_not_null())
                .count()
                .get_result(conn)?;
            if revoked > 0 {
                diesel::update(refresh_tokens::table.find(&row.id))
                    .set(refresh_tokens::revoked_at.eq(Some(row.created_at)))
                    .execute(conn)?;
                return Err(DbError::Conflict("the session was ended while the token was issued".into()));
            }
            Ok(())
        })
        .await
    }

    async fn use_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<RefreshUse, StoreError> {
        let token_hash = token_hash.to_string();
        self.run(move |conn| spend_refresh_token(conn, &token_hash, now)).await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<(), StoreError> {
        let family_id = family_id.to_string();
        self.run(move |conn| {
            diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::family_id.eq(&family_id))
                    .filter(refresh_tokens::revoked_at.is_null()),
            )
            .set(refresh_tokens::revoked_at.eq(Some(to_db_time(Utc::now()))))
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn revoke_access_token(&self, jti: &str, user_id: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        let row = RevokedTokenRow {
            jti: jti.to_string(),
            user_id: Some(user_id.to_string()),
            expires_at: to_db_time(expires_at),
            revoked_at: to_db_time(Utc::now()),
        };
        self.run(move |conn| match diesel::insert_into(revoked_tokens::table).values(&row).execute(conn) {
            // Revoking twice (logout twice) is not an error.
            Err(e) if !is_unique_violation(&e) => Err(e.into()),
            _ => Ok(()),
        })
        .await
    }

    async fn prune_expired_tokens(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.run(move |conn| {
            let now = to_db_time(now);
            let revocations =
                diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now))).execute(conn)?;
            let refresh =
                diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.lt(now))).execute(conn)?;
            Ok((revocations + refresh) as u64)
        })
        .await
    }

    async fn access_status(
        &self,
        user_id: &str,
        jti: &str,
        issued_at: DateTime<Utc>,
    ) -> Result<AccessStatus, StoreError> {
        let (user_id, jti) = (user_id.to_string(), jti.to_string());
        self.run(move |conn| access_status(conn, &user_id, &jti, issued_at)).await
    }

    async fn change_password(
        &self,
        user_id: &str,
        password_hash: String,
        cutoff: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        let now = Utc::now();
        self.run(move |conn| {
            write_transaction(conn, |tx| {
                let after = to_db_time(cutoff);
                let changed = diesel::update(users::table.find(&user_id))
                    .set((
                        users::password_hash.eq(password_hash),
                        users::sessions_valid_after.eq(Some(after)),
                        users::updated_at.eq(to_db_time(now)),
                    ))
                    .execute(tx)?;
                if changed == 0 {
                    return Err(DbError::Query(diesel::result::Error::NotFound));
                }
                diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::user_id.eq(&user_id))
                        .filter(refresh_tokens::revoked_at.is_null()),
                )
                .set(refresh_tokens::revoked_at.eq(Some(to_db_time(now))))
                .execute(tx)?;
                Ok(())
            })
        })
        .await
    }
}
