//! User pipeline templates (the built-in ones live in code).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A user template as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTemplate {
    /// Unique name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its parameter specs (JSON, as the pipeline module defines them).
    pub parameters: serde_json::Value,
    /// The template body.
    pub body: String,
    /// Who saved it.
    pub created_by: Option<String>,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
}

/// User templates.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Every user template, by name.
    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StoreError>;

    /// One user template.
    async fn get_template(&self, name: &str) -> Result<Option<StoredTemplate>, StoreError>;

    /// Saves a new template; `Conflict` when the name is taken.
    async fn create_template(&self, template: StoredTemplate) -> Result<StoredTemplate, StoreError>;
}
