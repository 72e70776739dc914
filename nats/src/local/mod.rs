//! [`LocalBus`]: the in-process bus of the embedded default, with the semantics of [`NatsBus`].
//!
//! Subjects, wildcards, queue groups, request/reply through `_INBOX.<uuid>` subjects and durable
//! consumers behave as on NATS, so code tested against one works against the other. The durable
//! store is in memory: what it holds survives a consumer restart but not a process restart.
//!
//! [`NatsBus`]: crate::NatsBus

mod durable;
mod router;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream;
use tokio::sync::mpsc;
use tracing::{debug, trace};
use uuid::Uuid;

use crate::bus::{Bus, BusHealth, DurableSubscription, Message, Subscription};
use crate::error::BusError;
use crate::subjects::{self, SubjectError, Subjects};
use durable::DurableStore;
use router::Router;

/// How long a durable message may stay unacknowledged before it is delivered again.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// The in-process bus. Cheap to clone; all clones share the same subscriptions and store.
#[derive(Debug, Clone)]
pub struct LocalBus {
    shared: Arc<Shared>,
    ack_wait: Duration,
}

#[derive(Debug)]
struct Shared {
    subjects: Subjects,
    router: Router,
    durable: Arc<DurableStore>,
}

impl LocalBus {
    /// A new, empty bus using `subjects`.
    pub fn new(subjects: Subjects) -> Self {
        let shared = Shared { subjects, router: Router::default(), durable: Arc::new(DurableStore::default()) };
        Self { shared: Arc::new(shared), ack_wait: DEFAULT_ACK_WAIT }
    }

    /// Uses `ack_wait` instead of [`DEFAULT_ACK_WAIT`] for consumers started from this handle
    /// (mainly so tests can watch redelivery quickly).
    pub fn with_durable_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    fn route(&self, subject: &str, payload: Bytes, reply: Option<String>) -> Result<usize, BusError> {
        let message = Message { subject: subject.to_owned(), payload, reply };
        let delivered = self.shared.router.route(&message)?;
        trace!(nats.subject = %subject, nats.receivers = delivered, "local message routed");
        Ok(delivered)
    }

    fn subscription(&self, subject: &str, group: Option<&str>) -> Result<Subscription, BusError> {
        subjects::validate_subscribe_subject(subject)?;
        if let Some(group) = group {
            subjects::token(group)?;
        }
        let receiver = self.shared.router.subscribe(subject, group)?;
        debug!(nats.subject = %subject, nats.queue_group = group, "local subscription started");
        Ok(Subscription::new(receiver_stream(receiver)))
    }

    fn require_durable_subject(&self, subject: &str) -> Result<(), BusError> {
        subjects::validate_publish_subject(subject)?;
        if !self.shared.subjects.is_agent_result(subject) {
            let subject = subject.to_owned();
            return Err(SubjectError::NotDurable { subject }.into());
        }
        Ok(())
    }
}

/// Turns the receiving end of a subscription into a stream.
fn receiver_stream(receiver: mpsc::Receiver<Message>) -> impl futures_util::Stream<Item = Message> {
    stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        Some((message, receiver))
    })
}

#[async_trait]
impl Bus for LocalBus {
    fn subjects(&self) -> &Subjects {
        &self.shared.subjects
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        subjects::validate_publish_subject(subject)?;
        // As on NATS, the results stream captures core publishes on its subjects too.
        if self.shared.subjects.is_agent_result(subject) {
            self.shared.durable.append(subject, payload.clone())?;
        }
        self.route(subject, payload, None).map(drop)
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.subscription(subject, None)
    }

    async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        self.subscription(subject, Some(group))
    }

    async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Bytes, BusError> {
        subjects::validate_publish_subject(subject)?;
        let inbox = format!("_INBOX.{}", Uuid::now_v7().simple());
        let mut replies = self.shared.router.subscribe(&inbox, None)?;
        if self.route(subject, payload, Some(inbox))? == 0 {
            let subject = subject.to_owned();
            return Err(BusError::NoResponders { subject });
        }
        match tokio::time::timeout(timeout, replies.recv()).await {
            Ok(Some(reply)) => Ok(reply.payload),
            Ok(None) => Err(BusError::Closed),
            Err(_elapsed) => Err(BusError::Timeout { subject: subject.to_owned(), timeout }),
        }
    }

    async fn publish_durable(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        self.require_durable_subject(subject)?;
        self.shared.durable.append(subject, payload.clone())?;
        self.route(subject, payload, None).map(drop)
    }

    async fn consume_durable(&self, consumer: &str) -> Result<DurableSubscription, BusError> {
        subjects::token(consumer)?;
        debug!(nats.consumer = %consumer, "local durable consumer started");
        self.shared.durable.consume(consumer, self.ack_wait)
    }

    async fn health(&self) -> BusHealth {
        let connected = !self.shared.router.is_closed();
        let detail = if connected { "in-process bus" } else { "in-process bus closed" };
        BusHealth { connected, detail: detail.to_owned() }
    }

    async fn close(&self) {
        self.shared.router.close();
        self.shared.durable.close();
        debug!("local bus closed");
    }
}
