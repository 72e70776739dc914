//! The versioned wire envelope every bus payload travels in: `{v, kind, id, ts, body}`.
//!
//! The version is read before the body so that a message from a newer peer is reported as
//! [`EnvelopeError::UnsupportedVersion`] even when its body has a shape this build cannot parse.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// The envelope version this build writes and the only one it reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Largest encoded envelope accepted or produced (1 MiB, the default NATS `max_payload`).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// Why an envelope could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// The envelope was written with a version this build does not understand.
    #[error("unsupported envelope version {0} (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
    /// The bytes are not a JSON envelope with the expected body.
    #[error("malformed envelope")]
    Malformed(#[source] serde_json::Error),
    /// The encoded envelope exceeds [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the encoded envelope in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The body could not be serialised to JSON.
    #[error("failed to encode envelope")]
    Encode(#[source] serde_json::Error),
}

/// A message on the bus: what it is (`kind`), a unique id, when it was made, and its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope<T = serde_json::Value> {
    /// Envelope format version, [`ENVELOPE_VERSION`] when written by this build.
    pub v: u32,
    /// What the body is, e.g. `heartbeat` or `task_status`.
    pub kind: String,
    /// Unique message id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// When the message was created.
    pub ts: DateTime<Utc>,
    /// The sender's credential, on agent messages that travel over NATS (over HTTP the credential is
    /// the bearer token instead). Absent from every other message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The payload.
    pub body: T,
}

/// Only the version field, read first so the body shape cannot mask a version mismatch.
#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

impl<T> Envelope<T> {
    /// Wraps `body` in a current-version envelope with a fresh id and the current time.
    pub fn new(kind: impl Into<String>, body: T) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            kind: kind.into(),
            id: Uuid::now_v7().to_string(),
            ts: Utc::now(),
            auth: None,
            body,
        }
    }

    /// The same envelope carrying the sender's credential.
    pub fn with_auth(mut self, credential: impl Into<String>) -> Self {
        self.auth = Some(credential.into());
        self
    }
}

impl<T: Serialize> Envelope<T> {
    /// Serialises the envelope to JSON, refusing results larger than [`MAX_ENVELOPE_BYTES`].
    pub fn encode(&self) -> Result<Bytes, EnvelopeError> {
        let bytes = serde_json::to_vec(self).map_err(EnvelopeError::Encode)?;
        check_size(bytes.len())?;
        Ok(Bytes::from(bytes))
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Parses an envelope, checking size, then version, then the full shape.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        check_size(bytes.len())?;
        let probe: VersionProbe = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
        if probe.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(probe.v));
        }
        serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)
    }
}

fn check_size(size: usize) -> Result<(), EnvelopeError> {
    if size > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge { size, max: MAX_ENVELOPE_BYTES });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Heartbeat {
        agent_id: String,
        cpu_percent: f64,
    }

    fn heartbeat() -> Envelope<Heartbeat> {
        Envelope::new("heartbeat", Heartbeat { agent_id: "a1".into(), cpu_percent: 12.5 })
    }

    #[test]
    fn new_fills_version_uuid_v7_id_and_timestamp() {
        let before = Utc::now();
        let env = heartbeat();
        assert_eq!(env.v, ENVELOPE_VERSION);
        assert_eq!(env.kind, "heartbeat");
        let id = Uuid::parse_str(&env.id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(env.ts >= before && env.ts <= Utc::now());
    }

    #[test]
    fn typed_envelope_round_trips_through_bytes() {
        let env = heartbeat();
        let decoded = Envelope::<Heartbeat>::decode(&env.encode().unwrap()).unwrap();
        assert_eq!(decoded, env);
    }

    #[test]
    fn wire_format_uses_exactly_the_documented_field_names() {
        let bytes = heartbeat().encode().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["body", "id", "kind", "ts", "v"]);
        assert_eq!(value["v"], 1);
        assert_eq!(value["body"]["agent_id"], "a1");
    }

    #[test]
    fn untyped_envelope_decodes_any_body() {
        let bytes = heartbeat().encode().unwrap();
        let env = Envelope::<serde_json::Value>::decode(&bytes).unwrap();
        assert_eq!(env.body["cpu_percent"], 12.5);
    }

    #[test]
    fn numbers_survive_encode_and_decode_bit_for_bit() {
        // Metric values and progress travel as JSON numbers; a decoder that rounds the last digit
        // turns one value into its neighbour on every hop (found by the envelope fuzz target).
        for text in
            ["7.777777777777777e+83", "2.2250738585072014e-308", "0.30000000000000004", "1.7976931348623157e308"]
        {
            let raw = format!(r#"{{"v":1,"kind":"x","id":"i","ts":"2026-01-01T00:00:00Z","body":{text}}}"#);
            let first = Envelope::<serde_json::Value>::decode(raw.as_bytes()).unwrap();
            let again = Envelope::<serde_json::Value>::decode(&first.encode().unwrap()).unwrap();
            assert_eq!(again.body, first.body, "{text}");
            assert_eq!(first.body.as_f64(), Some(text.parse::<f64>().unwrap()), "{text} decodes to its nearest double");
        }
    }

    #[test]
    fn decode_reports_the_version_before_looking_at_the_body() {
        let raw = json!({
            "v": 2, "kind": "heartbeat", "id": "x",
            "ts": "2026-01-01T00:00:00Z", "body": {"totally": ["different"]}
        });
        let err = Envelope::<Heartbeat>::decode(raw.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, EnvelopeError::UnsupportedVersion(2)), "{err:?}");
    }

    #[test]
    fn decode_rejects_malformed_json_and_wrong_shapes() {
        for raw in [
            "not json".to_owned(),
            json!({"kind": "x"}).to_string(),
            json!({"v": 1, "kind": "heartbeat", "id": "x", "ts": "2026-01-01T00:00:00Z",
                   "body": {"agent_id": 5}})
            .to_string(),
        ] {
            let err = Envelope::<Heartbeat>::decode(raw.as_bytes()).unwrap_err();
            assert!(matches!(err, EnvelopeError::Malformed(_)), "{raw}: {err:?}");
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn oversized_envelopes_are_refused_both_ways() {
        let big = Envelope::new("blob", "x".repeat(MAX_ENVELOPE_BYTES));
        let err = big.encode().unwrap_err();
        assert!(matches!(err, EnvelopeError::TooLarge { size, max } if size > max && max == MAX_ENVELOPE_BYTES));
        let raw = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        let err = Envelope::<serde_json::Value>::decode(&raw).unwrap_err();
        assert!(matches!(err, EnvelopeError::TooLarge { size, .. } if size == MAX_ENVELOPE_BYTES + 1));
    }
}
