use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use phoenix_actors::store::{StoredTemplate, TemplateStore};
use phoenix_actors::StoreError;

use super::convert::{from_db_time, from_json, new_id, to_db_time, to_json};
use super::DieselStore;
use crate::db::models::PipelineTemplateRow;
use crate::db::schema::pipeline_templates;
use crate::db::DbError;

fn template_from_row(row: PipelineTemplateRow) -> Result<StoredTemplate, DbError> {
    Ok(StoredTemplate {
        parameters: from_json("pipeline_templates.parameters", &row.parameters)?,
        name: row.name,
        description: row.description,
        body: row.body,
        created_by: row.created_by,
        created_at: from_db_time(row.created_at),
    })
}

#[async_trait]
impl TemplateStore for DieselStore {
    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StoreError> {
        self.run(|conn| {
            let rows: Vec<PipelineTemplateRow> =
                pipeline_templates::table.order(pipeline_templates::name.asc()).load(conn)?;
            rows.into_iter().map(template_from_row).collect()
        })
        .await
    }

    async fn get_template(&self, name: &str) -> Result<Option<StoredTemplate>, StoreError> {
        let name = name.to_string();
        self.run(move |conn| {
            pipeline_templates::table
                .filter(pipeline_templates::name.eq(&name))
                .first::<PipelineTemplateRow>(conn)
                .optional()?
                .map(template_from_row)
                .transpose()
        })
        .await
    }

    async fn create_template(&self, template: StoredTemplate) -> Result<StoredTemplate, StoreError> {
        let now = to_db_time(Utc::now());
        let row = PipelineTemplateRow {
            id: new_id(),
            name: template.name,
            description: template.description,
            body: template.body,
            parameters: to_json(&template.parameters)?,
            builtin: false,
            created_by: template.created_by,
            created_at: now,
            updated_at: now,
        };
        self.run(move |conn| {
            template_from_row(diesel::insert_into(pipeline_templates::table).values(&row).get_result(conn)?)
        })
        .await
    }
}
