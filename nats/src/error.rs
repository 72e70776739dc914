//! The one error type of the bus, with kinds a caller can match on.

use std::time::Duration;

use thiserror::Error;

use crate::subjects::SubjectError;

/// The underlying cause of a bus error (an async-nats error, usually).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong on a [`Bus`](crate::Bus).
#[derive(Debug, Error)]
pub enum BusError {
    /// The initial connection to the NATS server failed (wrong URL, refused, auth, timeout…).
    #[error("failed to connect to NATS at {url}")]
    Connect {
        /// The server URL, with any credentials removed.
        url: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A message could not be published (or, for a durable publish, was not acknowledged).
    #[error("failed to publish to {subject}")]
    Publish {
        /// The subject published to.
        subject: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A subscription could not be created.
    #[error("failed to subscribe to {subject}")]
    Subscribe {
        /// The subject subscribed to.
        subject: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A request failed for a reason other than no responders or a timeout.
    #[error("request to {subject} failed")]
    Request {
        /// The subject of the request.
        subject: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// Nobody listens on the subject of a request.
    #[error("no responders for request to {subject}")]
    NoResponders {
        /// The subject of the request.
        subject: String,
    },
    /// A request got no reply within its timeout.
    #[error("request to {subject} timed out after {timeout:?}")]
    Timeout {
        /// The subject of the request.
        subject: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// A JetStream stream or consumer operation failed.
    #[error("JetStream failed to {operation}")]
    JetStream {
        /// What was being done, e.g. `create consumer agent-results`.
        operation: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A subject, token or consumer name was rejected before anything was sent.
    #[error("invalid subject")]
    InvalidSubject(#[from] SubjectError),
    /// The bus was closed with [`Bus::close`](crate::Bus::close).
    #[error("the bus is closed")]
    Closed,
    /// A durable message could not be acknowledged; it will be redelivered.
    #[error("failed to acknowledge message on {subject}")]
    Ack {
        /// The subject of the message.
        subject: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
}
