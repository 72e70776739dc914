//! How experiments, deployments and API calls name a pipeline: a template with parameters, or an
//! inline config.

use serde::{Deserialize, Serialize};

/// A pipeline as a user specifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PipelineSpec {
    /// A template (built-in or user) and its parameters.
    Template {
        /// The template's name.
        template: String,
        /// Parameter values; missing ones take the template's defaults.
        #[serde(default)]
        parameters: serde_json::Map<String, serde_json::Value>,
    },
    /// A complete config in YAML.
    Inline {
        /// The YAML text.
        config: String,
    },
}
