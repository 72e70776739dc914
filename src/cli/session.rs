//! Where the CLI keeps its sessions: `$XDG_CONFIG_HOME/phoenix/credentials.json` (else
//! `~/.config/phoenix/…`), mode 0600, one named context per server, and which one is in use.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        let dir = path.parent().expect("the file has a directory");
        let failed = |e: std::io::Error| CliError::Usage(format!("cannot write {}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(failed)?;
        let staging = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&staging)
            .map_err(failed)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| CliError::Usage(e.to_string()))?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&staging, &path).map_err(failed)
    }

    /// The context in use, if any.
    pub fn current(&self) -> Option<(&str, &Context)> {
        let name = self.current.as_deref()?;
        self.contexts.get(name).map(|c| (name, c))
    }
}
