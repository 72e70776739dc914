//! Where the CLI keeps its sessions: `$XDG_CONFIG_HOME/phoenix/credentials.json` (else
//! `~/.config/phoenix/…`), mode 0600, one named context per server, and which one is in use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::CliError;

/// One server and the session on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub server: String,
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// Every context, and the current one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    pub current: Option<String>,
    pub contexts: BTreeMap<String, Context>,
}

/// The credentials file.
pub fn path() -> Result<PathBuf, CliError> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or_else(|| {
            CliError::Usage("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the session".into())
        })?;
    Ok(base.join("phoenix").join("credentials.json"))
}

impl Credentials {
    /// Reads the file; no file is no contexts.
    pub fn load() -> Result<Credentials, CliError> {
        let path = path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!(
                    "{} is not a credentials file ({e}); remove it and log in again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(CliError::Usage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self) -> Result<(), CliError> {
        let path = path()?;
        let text = serde_json::to_string_pretty(self).map_err(|e| CliError::Usage(e.to_string()))?;
        crate::private_file::write(&path, &text)
            .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))
    }

    /// The context in use, if any.
    pub fn current(&self) -> Option<(&str, &Context)> {
        let name = self.current.as_deref()?;
        self.contexts.get(name).map(|c| (name, c))
    }
}
