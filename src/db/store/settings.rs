use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use phoenix_actors::store::SettingsStore;
use phoenix_actors::StoreError;

use super::convert::to_db_time;
use super::DieselStore;
use crate::db::models::SystemSettingRow;
use crate::db::schema::system_settings;
use crate::db::{is_unique_violation, DbConnection, DbError};

fn read(conn: &mut DbConnection, key: &str) -> Result<Option<String>, DbError> {
    Ok(system_settings::table.find(key).select(system_settings::value).first(conn).optional()?)
}

#[async_trait]
impl SettingsStore for DieselStore {
    async fn get_or_init_setting(&self, key: &str, candidate: String) -> Result<String, StoreError> {
        let key = key.to_string();
        self.run(move |conn| {
            if let Some(value) = read(conn, &key)? {
                return Ok(value);
            }
            let row = SystemSettingRow { key: key.clone(), value: candidate, updated_at: to_db_time(Utc::now()) };
            match diesel::insert_into(system_settings::table).values(&row).execute(conn) {
                Ok(_) => Ok(row.value),
                // Another server stored its value first: everyone uses that one.
                Err(e) if is_unique_violation(&e) => {
                    read(conn, &key)?.ok_or_else(|| DbError::Corrupt(format!("setting {key} vanished")))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}
