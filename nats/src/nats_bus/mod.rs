//! [`NatsBus`]: the [`Bus`] over a NATS server, with JetStream for the agent results stream.
//!
//! Core messages are plain NATS publish/subscribe and request/reply. The agent results subjects
//! are captured by a file-backed JetStream stream (limits retention, 7 days) and read through
//! durable pull consumers with explicit, server-confirmed acks.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::client;
use async_nats::connection::State;
use async_nats::jetstream::{self, consumer};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::bus::{Acknowledge, Bus, BusHealth, DurableMessage, DurableSubscription, Message, Subscription};
use crate::error::{BoxError, BusError};
use crate::subjects::{self, SubjectError, Subjects};

mod connect;
pub(crate) use connect::{connect_client, install_crypto_provider};

pub use connect::{urls_carry_credentials, NatsBusOptions, RESULTS_MAX_AGE};

/// How long a durable message may stay unacknowledged before the server delivers it again.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// How long [`Bus::health`] and [`Bus::close`] wait for the server to answer a flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The bus over NATS. Cheap to clone; clones share one connection.
///
/// Core messages use plain NATS publish/subscribe. The agent results subjects are captured by a
/// JetStream stream (created or updated on connect) read through durable pull consumers.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    subjects: Subjects,
    ack_wait: Duration,
    closed: Arc<AtomicBool>,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("subjects", &self.subjects)
            .field("state", &self.client.connection_state())
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects to the server at `url` (or a comma-separated list of servers) and makes sure the
    /// agent results stream exists with the expected configuration. The initial connection is
    /// tried once; after that the client reconnects on its own.
    pub async fn connect(url: &str, options: NatsBusOptions) -> Result<Self, BusError> {
        let (client, jetstream) = connect::open(url, &options).await?;
        Ok(Self {
            client,
            jetstream,
            subjects: options.subjects,
            ack_wait: DEFAULT_ACK_WAIT,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Uses `ack_wait` instead of [`DEFAULT_ACK_WAIT`] for consumers started from this handle
    /// (mainly so tests can watch redelivery quickly). Starting a consumer updates its setting.
    pub fn with_durable_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        Ok(())
    }

    fn consumer_config(&self, consumer: &str) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(consumer.to_owned()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            ..Default::default()
        }
    }
}

fn jetstream_error(operation: String, source: impl Into<BoxError>) -> BusError {
    BusError::JetStream { operation, source: source.into() }
}

fn to_message(message: async_nats::Message) -> Message {
    Message {
        subject: message.subject.to_string(),
        payload: message.payload,
        reply: message.reply.map(|reply| reply.to_string()),
    }
}

fn request_error(subject: &str, timeout: Duration, error: client::RequestError) -> BusError {
    let subject = subject.to_owned();
    match error.kind() {
        client::RequestErrorKind::NoResponders => BusError::NoResponders { subject },
        client::RequestErrorKind::TimedOut => BusError::Timeout { subject, timeout },
        _ => BusError::Request { subject, source: error.into() },
    }
}

/// Turns a JetStream delivery into a [`DurableMessage`] acknowledged with a confirmed ack.
fn to_durable(message: jetstream::Message) -> DurableMessage {
    // Info only fails on a reply subject that is not a JetStream ack subject; count it as a
    // first delivery rather than losing the message.
    let info = message.info().ok();
    let delivered = info.as_ref().and_then(|info| u64::try_from(info.delivered).ok()).unwrap_or(1);
    // The stream's own time of the message; without info, now (the message is being delivered).
    let published_at = info
        .and_then(|info| i64::try_from(info.published.unix_timestamp_nanos()).ok())
        .map_or_else(Utc::now, DateTime::from_timestamp_nanos);
    let (message, acker) = message.split();
    let subject = message.subject.to_string();
    let acker = NatsAck { subject: subject.clone(), acker };
    DurableMessage::new(subject, message.payload, published_at, delivered, Box::new(acker))
}

/// Acknowledges one JetStream message and waits for the server to confirm.
struct NatsAck {
    subject: String,
    acker: jetstream::message::Acker,
}

#[async_trait]
impl Acknowledge for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.acker.double_ack().await.map_err(|source| BusError::Ack { subject: self.subject, source })
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.ensure_open()?;
        subjects::validate_publish_subject(subject)?;
        self.client
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|source| BusError::Publish { subject: subject.to_owned(), source: source.into() })
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        subjects::validate_subscribe_subject(subject)?;
        let subscriber = self
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(|source| BusError::Subscribe { subject: subject.to_owned(), source: source.into() })?;
        debug!(nats.subject = %subject, "NATS subscription started");
        Ok(Subscription::new(subscriber.map(to_message)))
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        subjects::validate_subscribe_subject(subject)?;
        subjects::token(group)?;
        let subscriber = self
            .client
            .queue_subscribe(subject.to_owned(), group.to_owned())
            .await
            .map_err(|source| BusError::Subscribe { subject: subject.to_owned(), source: source.into() })?;
        debug!(nats.subject = %subject, nats.queue_group = %group, "NATS queue subscription started");
        Ok(Subscription::new(subscriber.map(to_message)))
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        self.ensure_open()?;
        subjects::validate_publish_subject(subject)?;
        let request = client::Request::new().payload(payload).timeout(Some(timeout));
        self.client
            .send_request(subject.to_owned(), request)
            .await
            .map(|reply| reply.payload)
            .map_err(|error| request_error(subject, timeout, error))
    }

    async fn publish_durable(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.ensure_open()?;
        subjects::validate_publish_subject(subject)?;
        if !self.subjects.is_agent_result(subject) {
            let subject = subject.to_owned();
            return Err(SubjectError::NotDurable { subject }.into());
        }
        let publish_error = |source: BoxError| BusError::Publish { subject: subject.to_owned(), source };
        // The first await sends the message, the second waits for the stream's ack.
        let ack =
            self.jetstream.publish(subject.to_owned(), payload).await.map_err(|error| publish_error(error.into()))?;
        ack.await.map_err(|error| publish_error(error.into()))?;
        Ok(())
    }

    async fn consume_durable(&self, consumer: &str) -> Result<DurableSubscription, BusError> {
        self.ensure_open()?;
        subjects::token(consumer)?;
        let stream = self.subjects.agent_results_stream();
        let pull: consumer::PullConsumer = self
            .jetstream
            .create_consumer_on_stream(self.consumer_config(consumer), stream.as_str())
            .await
            .map_err(|error| jetstream_error(format!("create consumer {consumer} on {stream}"), error))?;
        let messages =
            pull.messages().await.map_err(|error| jetstream_error(format!("pull from consumer {consumer}"), error))?;
        debug!(nats.stream = %stream, nats.consumer = %consumer, "durable consumer started");
        let consumer = consumer.to_owned();
        Ok(DurableSubscription::new(messages.map(move |item| {
            item.map(to_durable).map_err(|error| jetstream_error(format!("receive from consumer {consumer}"), error))
        })))
    }

    async fn health(&self) -> BusHealth {
        let state = self.client.connection_state();
        if self.closed.load(Ordering::Acquire) || state != State::Connected {
            let detail = format!("NATS connection {state}");
            return BusHealth { connected: false, detail };
        }
        match tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => BusHealth {
                connected: true,
                detail: format!("connected to nats-server {}", self.client.server_info().version),
            },
            Ok(Err(error)) => BusHealth { connected: false, detail: format!("NATS flush failed: {error}") },
            Err(_elapsed) => {
                BusHealth { connected: false, detail: format!("NATS server did not answer within {FLUSH_TIMEOUT:?}") }
            }
        }
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Bounded: while disconnected a flush would wait for the reconnect.
        match tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(error = %error, "NATS flush before close failed"),
            Err(_elapsed) => warn!("NATS flush before close timed out"),
        }
        if let Err(error) = self.client.drain().await {
            warn!(error = %error, "NATS drain failed");
        }
        info!("NATS connection drained and closed");
    }
}
