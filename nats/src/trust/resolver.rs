//! Keeping the Phoenix account JWT on the NATS servers up to date: its revocations are what refuses
//! a revoked agent on NATS. Talks to nats-server's account resolver as a system-account user
//! (`$SYS.REQ.ACCOUNT.<account>.CLAIMS.LOOKUP`, `$SYS.REQ.CLAIMS.UPDATE`); nats-server stores the
//! update in its resolver directory, passes it to its cluster, and closes the connections of every
//! user it revokes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::claims::{Account, Claims};
use super::{jwt, NatsTrust, TrustError};
use crate::nats_bus::{connect_client, NatsBusOptions};

/// What [`sync_revocations`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// The servers already held these revocations.
    Unchanged,
    /// A new account JWT was pushed and accepted.
    Pushed,
}

/// Makes the account JWT the NATS servers hold carry exactly `revocations` (user key -> seconds):
/// reads the one they hold and pushes a newer one when it differs. Each call connects as a fresh
/// system user and disconnects; revocations are rare.
pub async fn sync_revocations(
    urls: &str,
    trust: &NatsTrust,
    revocations: &BTreeMap<String, i64>,
    timeout: Duration,
) -> Result<Sync, TrustError> {
    let options = NatsBusOptions {
        name: "phoenix-resolver".to_owned(),
        jwt: Some(trust.system_user()?),
        connect_timeout: timeout,
        manage_stream: false,
        ..NatsBusOptions::default()
    };
    let (client, _) = connect_client(urls, &options).await.map_err(|e| TrustError::Resolver(format!("{e:#}")))?;
    let account = trust.account_public_key();
    let held = lookup(&client, &account, timeout).await?;
    if held.as_ref().is_some_and(|claims| &claims.nats.revocations == revocations) {
        return Ok(Sync::Unchanged);
    }
    // A server keeps the newer of two account JWTs: issue this one after the one it holds.
    let issued_at = held.map_or(0, |claims| claims.iat + 1).max(chrono::Utc::now().timestamp());
    let update = trust.account_jwt(revocations, issued_at)?;
    let answer = request(&client, "$SYS.REQ.CLAIMS.UPDATE".to_owned(), update, timeout).await?;
    check_update_answer(&answer)?;
    let _ = client.drain().await;
    Ok(Sync::Pushed)
}

/// The account's claims as the servers hold them, `None` when they hold none.
async fn lookup(
    client: &async_nats::Client,
    account: &str,
    timeout: Duration,
) -> Result<Option<Claims<Account>>, TrustError> {
    let subject = format!("$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP");
    let answer = request(client, subject, String::new(), timeout).await?;
    let text = String::from_utf8_lossy(&answer);
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(jwt::claims_unverified(&text).ok())
}

async fn request(
    client: &async_nats::Client,
    subject: String,
    payload: String,
    timeout: Duration,
) -> Result<Vec<u8>, TrustError> {
    let sent = client.request(subject.clone(), payload.into());
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(message)) => Ok(message.payload.to_vec()),
        Ok(Err(e)) => Err(TrustError::Resolver(format!("{subject}: {e}"))),
        Err(_) => Err(TrustError::Resolver(format!("{subject}: no answer within {timeout:?}"))),
    }
}

/// nats-server answers `{"data": {"code": 200, …}}` or `{"error": {"code": …, "description": …}}`.
fn check_update_answer(answer: &[u8]) -> Result<(), TrustError> {
    #[derive(Deserialize)]
    struct Answer {
        data: Option<Status>,
        error: Option<Status>,
    }
    #[derive(Deserialize)]
    struct Status {
        code: u16,
        #[serde(default, alias = "description")]
        message: String,
    }
    let parsed: Answer = serde_json::from_slice(answer)
        .map_err(|e| TrustError::Resolver(format!("unreadable answer to the account update: {e}")))?;
    match (parsed.data, parsed.error) {
        (_, Some(error)) => Err(TrustError::Resolver(format!("refused ({}): {}", error.code, error.message))),
        (Some(data), None) if data.code == 200 => Ok(()),
        (Some(data), None) => Err(TrustError::Resolver(format!("answered {}: {}", data.code, data.message))),
        (None, None) => Err(TrustError::Resolver("empty answer to the account update".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_answers_are_read_as_nats_server_writes_them() {
        let ok = br#"{"data":{"account":"A","code":200,"message":"jwt updated"},"server":{}}"#;
        assert!(check_update_answer(ok).is_ok());
        let refused = br#"{"error":{"account":"A","code":500,"description":"not trusted"},"server":{}}"#;
        let error = check_update_answer(refused).expect_err("refused").to_string();
        assert!(error.contains("not trusted"), "{error}");
        assert!(check_update_answer(b"garbage").is_err());
    }
}
