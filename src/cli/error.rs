//! What can go wrong in a CLI command, and the exit code each kind gives (listed in `phoenix --help`).

use std::process::ExitCode;

/// Exit codes: 0 success; 1 the thing checked is invalid (e.g. `validate`); 2 usage; 3 not found;
/// 4 conflict (not allowed now); 5 not logged in or not allowed; 6 the server failed or cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Server(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Invalid(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Conflict(_) => 4,
            CliError::Auth(_) => 5,
            CliError::Server(_) => 6,
        })
    }

    /// The error for an HTTP status and its problem document.
    pub fn from_problem(status: u16, problem: &serde_json::Value) -> CliError {
        let detail = problem["detail"].as_str().or_else(|| problem["title"].as_str()).unwrap_or("the server refused");
        let mut sentence = detail.to_string();
        if let Some(errors) = problem["errors"].as_array().filter(|e| !e.is_empty()) {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("  {}: {}", e["path"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("?")))
                .collect();
            sentence = format!("the request is not valid:\n{}", lines.join("\n"));
        }
        match status {
            401 | 403 => CliError::Auth(sentence),
            404 => CliError::NotFound(sentence),
            409 => CliError::Conflict(sentence),
            400 | 413 | 415 | 422 => CliError::Invalid(sentence),
            _ => CliError::Server(format!("the server failed ({status}): {sentence}")),
        }
    }
}
