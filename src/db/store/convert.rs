//! Conversions between rows and domain types: times, JSON columns, enums stored as text.

use chrono::{DateTime, NaiveDateTime, Utc};
use phoenix_actors::users::User;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::models::UserRow;
use crate::db::DbError;

/// Times are stored as UTC `TIMESTAMP` (no zone) on both backends.
pub fn to_db_time(time: DateTime<Utc>) -> NaiveDateTime {
    time.naive_utc()
}

pub fn from_db_time(time: NaiveDateTime) -> DateTime<Utc> {
    time.and_utc()
}

pub fn to_json<T: Serialize>(value: &T) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Corrupt(format!("cannot encode JSON column: {e}")))
}

pub fn from_json<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("{column}: {e}")))
}

pub fn user_from_row(row: UserRow) -> Result<User, DbError> {
    Ok(User {
        role: row.role.parse().map_err(|e| DbError::Corrupt(format!("users.role: {e}")))?,
        id: row.id,
        username: row.username,
        active: row.active,
        created_at: from_db_time(row.created_at),
        updated_at: from_db_time(row.updated_at),
    })
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
