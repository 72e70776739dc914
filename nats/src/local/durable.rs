//! The local bus's stand-in for the JetStream agent results stream.
//!
//! It lives in memory: durability lasts as long as the process. Each named consumer sees every
//! message stored after its first start (and every message still stored when it first starts), in
//! order, until it acknowledges it. A message is forgotten once every known consumer acknowledged
//! it; while no consumer exists, everything is kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::bus::{Acknowledge, DurableMessage, DurableSubscription};
use crate::error::BusError;

/// The in-memory durable store shared by every clone of a local bus.
#[derive(Debug)]
pub(crate) struct DurableStore {
    state: Mutex<StoreState>,
    /// Bumped on every change that may make a message deliverable.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct StoreState {
    closed: bool,
    next_seq: u64,
    next_subscriber: u64,
    log: BTreeMap<u64, Stored>,
    consumers: HashMap<String, ConsumerState>,
}

#[derive(Debug)]
struct Stored {
    subject: String,
    payload: Bytes,
    published_at: DateTime<Utc>,
}

/// Messages one consumer has not acknowledged yet, by sequence number.
#[derive(Debug, Default)]
struct ConsumerState {
    pending: BTreeMap<u64, Delivery>,
}

impl ConsumerState {
    /// The first message not leased or whose lease expired, else the earliest lease deadline.
    fn first_deliverable(&self, now: Instant) -> Result<u64, Option<Instant>> {
        let mut earliest: Option<Instant> = None;
        for (&seq, delivery) in &self.pending {
            match &delivery.lease {
                Some(lease) if lease.deadline > now => {
                    earliest = Some(earliest.map_or(lease.deadline, |e| e.min(lease.deadline)));
                }
                _ => return Ok(seq),
            }
        }
        Err(earliest)
    }
}

#[derive(Debug, Default)]
struct Delivery {
    delivered: u64,
    lease: Option<Lease>,
}

/// A message handed to one subscriber, waiting for its ack until `deadline`.
#[derive(Debug)]
struct Lease {
    subscriber: u64,
    deadline: Instant,
}

/// What a subscriber should do next.
enum Next {
    Deliver(DurableMessage),
    /// Nothing is deliverable; wait for a change, or until this lease deadline passes.
    Wait(Option<Instant>),
    Closed,
}

impl Default for DurableStore {
    fn default() -> Self {
        Self { state: Mutex::default(), changes: watch::Sender::new(0) }
    }
}

impl DurableStore {
    /// Stores a message for every consumer.
    pub(crate) fn append(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        let mut state = self.lock();
        if state.closed {
            return Err(BusError::Closed);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let stored = Stored { subject: subject.to_owned(), payload, published_at: Utc::now() };
        state.log.insert(seq, stored);
        for consumer in state.consumers.values_mut() {
            consumer.pending.insert(seq, Delivery::default());
        }
        drop(state);
        self.notify();
        Ok(())
    }

    /// Starts a subscription for `consumer`, creating the consumer on first use.
    pub(crate) fn consume(
        self: &Arc<Self>,
        consumer: &str,
        ack_wait: Duration,
    ) -> Result<DurableSubscription, BusError> {
        let mut state = self.lock();
        if state.closed {
            return Err(BusError::Closed);
        }
        let subscriber = state.next_subscriber;
        state.next_subscriber += 1;
        if !state.consumers.contains_key(consumer) {
            let pending = state.log.keys().map(|&seq| (seq, Delivery::default()));
            let created = ConsumerState { pending: pending.collect() };
            state.consumers.insert(consumer.to_owned(), created);
        }
        drop(state);
        let cursor = Cursor {
            store: Arc::clone(self),
            consumer: consumer.to_owned(),
            subscriber,
            ack_wait,
            changes: self.changes.subscribe(),
        };
        let messages = stream::unfold(cursor, |mut cursor| async move {
            let message = cursor.next().await?;
            Some((Ok(message), cursor))
        });
        Ok(DurableSubscription::new(messages))
    }

    /// Ends every subscription and refuses new work.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.notify();
    }

    /// Hands the first deliverable message to the cursor's subscriber, leased until the ack wait
    /// ends.
    fn next_for(self: &Arc<Self>, cursor: &Cursor, now: Instant) -> Next {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Next::Closed;
        }
        let Some(consumer) = state.consumers.get_mut(&cursor.consumer) else {
            return Next::Closed;
        };
        let seq = match consumer.first_deliverable(now) {
            Ok(seq) => seq,
            Err(earliest_deadline) => return Next::Wait(earliest_deadline),
        };
        let (Some(delivery), Some(stored)) = (consumer.pending.get_mut(&seq), state.log.get(&seq)) else {
            // Every pending sequence is in the log: entries leave it only once acked by all.
            return Next::Wait(None);
        };
        delivery.delivered += 1;
        delivery.lease = Some(Lease { subscriber: cursor.subscriber, deadline: now + cursor.ack_wait });
        let acker = LocalAck { store: Arc::clone(self), consumer: cursor.consumer.clone(), seq };
        Next::Deliver(DurableMessage::new(
            stored.subject.clone(),
            stored.payload.clone(),
            stored.published_at,
            delivery.delivered,
            Box::new(acker),
        ))
    }

    /// Records the ack and forgets the message once every consumer acknowledged it.
    fn ack(&self, consumer: &str, seq: u64) -> Result<(), BusError> {
        let mut state = self.lock();
        if state.closed {
            return Err(BusError::Closed);
        }
        if let Some(consumer) = state.consumers.get_mut(consumer) {
            consumer.pending.remove(&seq);
        }
        let still_pending = state.consumers.values().any(|consumer| consumer.pending.contains_key(&seq));
        if !still_pending {
            state.log.remove(&seq);
        }
        Ok(())
    }

    /// Makes the messages leased to a dropped subscriber deliverable again at once.
    fn release(&self, consumer: &str, subscriber: u64) {
        let mut state = self.lock();
        let Some(consumer) = state.consumers.get_mut(consumer) else {
            return;
        };
        for delivery in consumer.pending.values_mut() {
            if delivery.lease.as_ref().is_some_and(|lease| lease.subscriber == subscriber) {
                delivery.lease = None;
            }
        }
        drop(state);
        self.notify();
    }

    fn notify(&self) {
        self.changes.send_modify(|version| *version = version.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        // Nothing panics while holding the lock and every update leaves the state consistent,
        // so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One running subscription of a consumer. Dropping it releases its unacknowledged messages.
struct Cursor {
    store: Arc<DurableStore>,
    consumer: String,
    subscriber: u64,
    ack_wait: Duration,
    changes: watch::Receiver<u64>,
}

impl Cursor {
    async fn next(&mut self) -> Option<DurableMessage> {
        loop {
            // Mark the current version seen *before* looking, so no change can slip between.
            self.changes.borrow_and_update();
            let deadline = match self.store.next_for(self, Instant::now()) {
                Next::Deliver(message) => return Some(message),
                Next::Closed => return None,
                Next::Wait(deadline) => deadline,
            };
            let lease_expiry = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changes.changed() => changed.ok()?,
                () = lease_expiry => {}
            }
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.store.release(&self.consumer, self.subscriber);
    }
}

/// Acknowledges one message of one consumer in the local store.
struct LocalAck {
    store: Arc<DurableStore>,
    consumer: String,
    seq: u64,
}

#[async_trait]
impl Acknowledge for LocalAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.store.ack(&self.consumer, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    const ACK_WAIT: Duration = Duration::from_secs(30);

    async fn next(subscription: &mut DurableSubscription) -> DurableMessage {
        let item = tokio::time::timeout(Duration::from_secs(1), subscription.next()).await;
        item.expect("a message in time").expect("an open subscription").expect("no error")
    }

    async fn nothing_within(subscription: &mut DurableSubscription, wait: Duration) {
        let item = tokio::time::timeout(wait, subscription.next()).await;
        assert!(item.is_err(), "unexpected delivery: {item:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn unacked_message_is_redelivered_after_the_ack_wait() {
        let store = Arc::new(DurableStore::default());
        store.append("s", Bytes::from_static(b"1")).unwrap();
        let mut subscription = store.consume("c", ACK_WAIT).unwrap();

        let first = next(&mut subscription).await;
        assert_eq!(first.delivered(), 1);
        nothing_within(&mut subscription, ACK_WAIT - Duration::from_secs(1)).await;
        tokio::time::advance(Duration::from_secs(2)).await;

        let again = next(&mut subscription).await;
        assert_eq!((again.payload.as_ref(), again.delivered()), (&b"1"[..], 2));
        again.ack().await.unwrap();
        nothing_within(&mut subscription, ACK_WAIT * 2).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_consumer_gets_its_own_copy_and_acked_messages_are_forgotten() {
        let store = Arc::new(DurableStore::default());
        let mut a = store.consume("a", ACK_WAIT).unwrap();
        let mut b = store.consume("b", ACK_WAIT).unwrap();
        store.append("s", Bytes::from_static(b"1")).unwrap();

        next(&mut a).await.ack().await.unwrap();
        assert_eq!(store.lock().log.len(), 1, "b has not acked yet");
        next(&mut b).await.ack().await.unwrap();
        assert!(store.lock().log.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_subscriber_of_the_same_consumer_shares_the_work() {
        let store = Arc::new(DurableStore::default());
        for payload in [&b"1"[..], b"2"] {
            store.append("s", Bytes::copy_from_slice(payload)).unwrap();
        }
        let mut first = store.consume("c", ACK_WAIT).unwrap();
        let mut second = store.consume("c", ACK_WAIT).unwrap();
        assert_eq!(next(&mut first).await.payload.as_ref(), b"1");
        assert_eq!(next(&mut second).await.payload.as_ref(), b"2");
        nothing_within(&mut first, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn close_ends_subscriptions_and_refuses_acks() {
        let store = Arc::new(DurableStore::default());
        store.append("s", Bytes::from_static(b"1")).unwrap();
        let mut subscription = store.consume("c", ACK_WAIT).unwrap();
        let message = next(&mut subscription).await;
        store.close();
        assert!(subscription.next().await.is_none());
        assert!(matches!(message.ack().await, Err(BusError::Closed)));
        assert!(store.append("s", Bytes::new()).is_err());
    }
}
