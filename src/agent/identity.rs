//! The agent's identity: enrolled once, kept in the state directory (`identity.json`, mode 0600), and
//! reused on every later start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::json;

const IDENTITY_FILE: &str = "identity.json";
const APPLIED_FILE: &str = "applied.json";

/// Who this agent is to the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub credential: String,
    /// The server it enrolled with.
    pub server: String,
    /// The NATS URL the server handed out at enrolment, if any.
    pub nats_url: Option<String>,
    /// The server's NATS subject prefix, from the enrolment answer (absent in older identities).
    #[serde(default)]
    pub nats_subject_prefix: Option<String>,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(IDENTITY_FILE)
}

/// The stored identity, if the agent enrolled before.
pub fn load(state_dir: &Path) -> anyhow::Result<Option<Identity>> {
    let file = path(state_dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| format!("Failed to read {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Failed to read {}", file.display())),
    }
}

/// Writes the identity readable by the agent's user only (it holds the credential).
pub fn save(state_dir: &Path, identity: &Identity) -> anyhow::Result<()> {
    write_private(state_dir, &path(state_dir), &serde_json::to_string_pretty(identity)?)
}

/// The pipelines applied when the agent last changed them (empty when none or unreadable).
pub fn load_applied(state_dir: &Path) -> Vec<super::runner::ApplyPayload> {
    let file = state_dir.join(APPLIED_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %file.display(), error = %e, "ignoring an unreadable list of applied pipelines");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Remembers the applied pipelines (their configs may describe the host: owner-only too).
pub fn save_applied(state_dir: &Path, applied: &[super::runner::ApplyPayload]) -> anyhow::Result<()> {
    write_private(state_dir, &state_dir.join(APPLIED_FILE), &serde_json::to_string(applied)?)
}

/// Writes `text` to `file` (in `state_dir`) readable by the agent's user only.
fn write_private(state_dir: &Path, file: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("Failed to create {}", state_dir.display()))?;
    crate::private_file::write(file, text).with_context(|| format!("Failed to write {}", file.display()))
}

/// Exchanges the enrolment token for an identity.
pub async fn enroll(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    hostname: &str,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<Identity> {
    let url = format!("{}/api/v1/agent/enroll", server.trim_end_matches('/'));
    let body = json!({"token": token, "hostname": hostname, "labels": labels});
    let res = http.post(&url).json(&body).send().await.with_context(|| format!("Failed to reach {url}"))?;
    let status = res.status();
    let answer: serde_json::Value = res.json().await.context("Failed to read the enrolment answer")?;
    if !status.is_success() {
        bail!("enrolment refused ({status}): {}", answer["detail"].as_str().unwrap_or("no detail"));
    }
    let text =
        |key: &str| answer[key].as_str().map(str::to_string).with_context(|| format!("enrolment answer lacks {key}"));
    Ok(Identity {
        agent_id: text("agent_id")?,
        credential: text("credential")?,
        server: server.trim_end_matches('/').to_string(),
        nats_url: answer["nats_url"].as_str().map(str::to_string),
        nats_subject_prefix: answer["nats_subject_prefix"].as_str().map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn an_identity_is_saved_for_the_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(load(dir.path()).expect("load").is_none());
        let identity = Identity {
            agent_id: "a1".into(),
            credential: "phx_agt_x".into(),
            server: "http://s".into(),
            nats_url: None,
            nats_subject_prefix: None,
        };
        save(dir.path(), &identity).expect("save");
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE)).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(dir.path()).expect("load").map(|i| i.agent_id), Some("a1".to_string()));
    }
}
