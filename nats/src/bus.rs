//! The [`Bus`] trait and the message and subscription types both implementations share.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::error::BusError;
use crate::subjects::Subjects;

/// A core (fire-and-forget) message received from a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to.
    pub subject: String,
    /// Its bytes, usually an encoded [`Envelope`](crate::Envelope).
    pub payload: Bytes,
    /// Where to send the answer when the message is a request.
    pub reply: Option<String>,
}

/// A stream of core messages. It ends when the bus is closed; dropping it unsubscribes.
pub struct Subscription {
    inner: Pin<Box<dyn Stream<Item = Message> + Send>>,
}

impl Subscription {
    /// Wraps any stream of messages (used by the bus implementations and by test doubles).
    pub fn new(stream: impl Stream<Item = Message> + Send + 'static) -> Self {
        Self { inner: Box::pin(stream) }
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// How a bus implementation confirms that a durable message was processed.
#[async_trait]
pub(crate) trait Acknowledge: Send + Sync {
    /// Confirms processing; the message will not be delivered to this consumer again.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
}

/// A message from the agent results stream. Until [`ack`](Self::ack) succeeds it is redelivered:
/// after the consumer's ack wait, or (on the local bus) as soon as its subscription is dropped.
pub struct DurableMessage {
    /// The subject it was published to.
    pub subject: String,
    /// Its bytes, usually an encoded [`Envelope`](crate::Envelope).
    pub payload: Bytes,
    published_at: DateTime<Utc>,
    delivered: u64,
    acker: Box<dyn Acknowledge>,
}

impl DurableMessage {
    pub(crate) fn new(
        subject: String,
        payload: Bytes,
        published_at: DateTime<Utc>,
        delivered: u64,
        acker: Box<dyn Acknowledge>,
    ) -> Self {
        Self { subject, payload, published_at, delivered, acker }
    }

    /// When the bus took the message in (on NATS, the JetStream server's clock): when its sender sent
    /// it, however long it then waited for a consumer.
    pub fn published_at(&self) -> DateTime<Utc> {
        self.published_at
    }

    /// How many times this message has been delivered to this consumer, this time included
    /// (1 on first delivery).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Confirms the message was processed and waits until the bus has recorded that.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
}

impl fmt::Debug for DurableMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableMessage")
            .field("subject", &self.subject)
            .field("payload_len", &self.payload.len())
            .field("published_at", &self.published_at)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// A stream of durable messages for one named consumer. It ends when the bus is closed.
pub struct DurableSubscription {
    inner: Pin<Box<dyn Stream<Item = Result<DurableMessage, BusError>> + Send>>,
}

impl DurableSubscription {
    pub(crate) fn new(stream: impl Stream<Item = Result<DurableMessage, BusError>> + Send + 'static) -> Self {
        Self { inner: Box::pin(stream) }
    }
}

impl Stream for DurableSubscription {
    type Item = Result<DurableMessage, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSubscription").finish_non_exhaustive()
    }
}

/// What [`Bus::health`] reports, e.g. in the server's health endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusHealth {
    /// Whether the bus can deliver messages right now.
    pub connected: bool,
    /// A human-readable explanation (server version, last error…).
    pub detail: String,
}

/// The message bus between the server, its replicas and the agents (DESIGN.md §4).
///
/// Two implementations behave the same way and run the same test suite: [`NatsBus`] over a NATS
/// server with JetStream, and [`LocalBus`] inside one process.
///
/// Subjects use NATS syntax: dot-separated tokens; in subscriptions `*` matches one token and a
/// final `>` matches the rest. Build them with [`Subjects`].
///
/// [`NatsBus`]: crate::NatsBus
/// [`LocalBus`]: crate::LocalBus
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The subjects of this installation.
    fn subjects(&self) -> &Subjects;

    /// Which implementation this is: `"nats"` or `"local"`.
    fn kind(&self) -> &'static str;

    /// Publishes a core message, fire and forget: only current subscribers receive it.
    ///
    /// A publish on a subject of the agent results stream is also stored by that stream, as in
    /// NATS, but unlike [`publish_durable`](Self::publish_durable) nothing confirms it.
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;

    /// Receives every message published on a subject matching `subject` from now on.
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Like [`subscribe`](Self::subscribe), but each message goes to only one member of `group`.
    /// Subscribers outside the group still receive every message.
    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError>;

    /// Sends a request and waits up to `timeout` for the first reply.
    ///
    /// Responders answer by publishing to the request's [`Message::reply`] subject.
    /// Fails with [`BusError::NoResponders`] when nobody subscribes to `subject` and with
    /// [`BusError::Timeout`] when no reply arrives in time.
    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError>;

    /// Stores a message in the agent results stream and returns once the store confirmed it.
    ///
    /// Only subjects in [`Subjects::agent_results_subjects`] are accepted; others fail with
    /// [`BusError::InvalidSubject`]. Core subscribers of the subject receive it too.
    async fn publish_durable(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;

    /// Starts (or resumes) the durable consumer named `consumer` on the agent results stream.
    ///
    /// It delivers, in order, every stored message this consumer has not acknowledged, then new
    /// ones as they arrive. A message not acknowledged within the ack wait (30 s by default) is
    /// delivered again.
    async fn consume_durable(&self, consumer: &str) -> Result<DurableSubscription, BusError>;

    /// Reports whether the bus is connected.
    async fn health(&self) -> BusHealth;

    /// Flushes what is pending and closes the bus; subscriptions end and later calls fail with
    /// [`BusError::Closed`].
    async fn close(&self);
}
