//! `phoenix-nats`: the message bus between the Phoenix server, its replicas and its agents.
//!
//! - [`bus`]: the [`Bus`] trait and its message and subscription types; callers depend only on it.
//! - [`nats_bus`]: [`NatsBus`], the bus over a NATS server, with a JetStream stream and durable
//!   pull consumers for agent results.
//! - [`local`]: [`LocalBus`], the in-process bus of the embedded default, with the same semantics.
//! - [`subjects`]: [`Subjects`], the only place subjects are built, from a configurable prefix.
//! - [`envelope`]: [`Envelope`], the versioned `{v, kind, id, ts, body}` wrapper of every payload.
//! - [`error`]: [`BusError`], with kinds a caller can match on.
//! - [`trust`]: per-agent NATS identities (operator mode): the keys, the JWTs Phoenix signs, and the
//!   account updates that revoke an agent on the NATS servers.
//! - [`wire`]: the messages between agents and the server (heartbeats, tasks, reports, metrics).
//!
//! This is the only crate in the workspace that names `async-nats`.

#![warn(missing_docs)]

pub mod bus;
pub mod envelope;
pub mod error;
pub mod local;
pub mod nats_bus;
pub mod subjects;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trust;
pub mod wire;

pub use bus::{Bus, BusHealth, DurableMessage, DurableSubscription, Message, Subscription};
pub use bytes::Bytes;
pub use envelope::{Envelope, EnvelopeError, ENVELOPE_VERSION};
pub use error::BusError;
pub use local::LocalBus;
pub use nats_bus::{NatsBus, NatsBusOptions};
pub use subjects::{SubjectError, Subjects};

/// Installs rustls's ring crypto provider for the process (once; later calls do nothing). HTTPS
/// clients of the workspace call it too, so NATS and HTTP agree on one provider.
pub fn install_tls_provider() {
    nats_bus::install_crypto_provider();
}
