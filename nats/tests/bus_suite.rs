//! One behavioural suite, run against both buses: `local::*` uses [`LocalBus`], `nats::*` a
//! [`NatsBus`] on the real server named by `PHOENIX_TEST_NATS_URL`.
//!
//! Every test gets its own subject prefix (so its own JetStream stream) and deletes that stream
//! when it ends, so tests run in parallel on one server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use phoenix_nats::testing::StreamCleanup;
use phoenix_nats::{
    Bus, BusError, Bytes, DurableMessage, DurableSubscription, Envelope, LocalBus, Message, NatsBus, NatsBusOptions,
    SubjectError, Subjects, Subscription,
};
use serde_json::json;
use uuid::Uuid;

/// Short, so redelivery of unacknowledged messages is observable within a test.
const ACK_WAIT: Duration = Duration::from_secs(1);
/// Upper bound for anything that should arrive.
const ARRIVAL: Duration = Duration::from_secs(5);

/// A bus under test, plus whatever must be cleaned up after it.
struct Harness {
    bus: Arc<dyn Bus>,
    _stream: Option<StreamCleanup>,
}

fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        // Several tests share a process under `cargo test`; only the first one installs it.
        let _already_installed = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

fn unique_subjects() -> Subjects {
    Subjects::new(format!("t{}", Uuid::now_v7().simple())).expect("a uuid prefix is valid")
}

async fn local_bus() -> Harness {
    init_logging();
    let bus = LocalBus::new(unique_subjects()).with_durable_ack_wait(ACK_WAIT);
    Harness { bus: Arc::new(bus), _stream: None }
}

async fn nats_bus() -> Harness {
    init_logging();
    let Ok(url) = std::env::var("PHOENIX_TEST_NATS_URL") else {
        panic!("NATS tests need a server: set PHOENIX_TEST_NATS_URL or run ./scripts/test");
    };
    let subjects = unique_subjects();
    // Armed before connecting, which creates the stream.
    let cleanup = StreamCleanup { url: url.clone(), stream: subjects.agent_results_stream() };
    let options = NatsBusOptions { subjects, name: "phoenix-nats-tests".into(), ..Default::default() };
    let bus = NatsBus::connect(&url, options)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to NATS at {url}: {error:?}"));
    Harness { bus: Arc::new(bus.with_durable_ack_wait(ACK_WAIT)), _stream: Some(cleanup) }
}

fn payload(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn next_message(subscription: &mut Subscription) -> Message {
    tokio::time::timeout(ARRIVAL, subscription.next())
        .await
        .expect("a message should arrive in time")
        .expect("the subscription should still be open")
}

async fn next_durable(subscription: &mut DurableSubscription) -> DurableMessage {
    tokio::time::timeout(ARRIVAL, subscription.next())
        .await
        .expect("a durable message should arrive in time")
        .expect("the subscription should still be open")
        .expect("the subscription should not fail")
}

/// Collects what arrives until nothing has come for `quiet`.
async fn collect_until_quiet(subscription: &mut Subscription, quiet: Duration) -> Vec<Message> {
    let mut messages = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(quiet, subscription.next()).await {
        messages.push(message);
    }
    messages
}

fn numbered(n: u64) -> Bytes {
    Envelope::new("task_status", json!({ "n": n })).encode().expect("a small envelope encodes")
}

fn number_of(payload: &[u8]) -> u64 {
    let envelope = Envelope::<serde_json::Value>::decode(payload).expect("a valid envelope");
    envelope.body["n"].as_u64().expect("a numbered body")
}

/// The suite, written once against `dyn Bus`.
mod cases {
    use super::*;

    pub async fn publish_reaches_exact_and_wildcard_subscribers_only(h: &Harness) {
        let (bus, s) = (&h.bus, h.bus.subjects());
        let mine = s.agent_heartbeat("a1").unwrap();
        let mut exact = bus.subscribe(&mine).await.unwrap();
        let mut one_token = bus.subscribe(&s.all_agent_heartbeats()).await.unwrap();
        let mut tail = bus.subscribe(&s.all_events()).await.unwrap();

        let event = Envelope::new("experiment_started", json!({ "id": "e1" }));
        bus.publish(&s.agent_heartbeat("a2").unwrap(), payload("a2")).await.unwrap();
        bus.publish(&s.agent_tasks("a1").unwrap(), payload("task")).await.unwrap();
        bus.publish(&format!("{}.events", s.prefix()), payload("too short")).await.unwrap();
        bus.publish(&s.event("experiment", "e1").unwrap(), event.encode().unwrap()).await.unwrap();
        bus.publish(&mine, payload("a1")).await.unwrap();

        // Each subscription's first message shows that the earlier, non-matching ones were skipped.
        assert_eq!(next_message(&mut exact).await.payload, payload("a1"));
        assert_eq!(next_message(&mut one_token).await.payload, payload("a2"));
        assert_eq!(next_message(&mut one_token).await.payload, payload("a1"));
        let received = next_message(&mut tail).await;
        assert_eq!(received.subject, s.event("experiment", "e1").unwrap());
        assert_eq!(received.reply, None);
        assert_eq!(Envelope::decode(&received.payload).unwrap(), event);
    }

    pub async fn queue_group_delivers_each_message_to_exactly_one_member(h: &Harness) {
        let bus = &h.bus;
        let subject = bus.subjects().agent_heartbeat("queued").unwrap();
        let mut first = bus.queue_subscribe(&subject, "workers").await.unwrap();
        let mut second = bus.queue_subscribe(&subject, "workers").await.unwrap();
        let mut everything = bus.subscribe(&subject).await.unwrap();

        let count = 20;
        for n in 0..count {
            bus.publish(&subject, numbered(n)).await.unwrap();
        }
        for n in 0..count {
            assert_eq!(number_of(&next_message(&mut everything).await.payload), n);
        }
        let quiet = Duration::from_millis(300);
        let to_first = collect_until_quiet(&mut first, quiet).await;
        let to_second = collect_until_quiet(&mut second, quiet).await;

        assert!(!to_first.is_empty() && !to_second.is_empty(), "both members get work");
        let mut seen: Vec<u64> = to_first.iter().chain(&to_second).map(|message| number_of(&message.payload)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..count).collect::<Vec<_>>());
    }

    pub async fn request_gets_the_reply_of_a_responder(h: &Harness) {
        let subject = format!("{}.rpc.upper", h.bus.subjects().prefix());
        let mut requests = h.bus.subscribe(&subject).await.unwrap();
        let responder = Arc::clone(&h.bus);
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let answer = String::from_utf8_lossy(&request.payload).to_uppercase();
                let reply = request.reply.expect("a request carries a reply subject");
                responder.publish(&reply, payload(&answer)).await.unwrap();
            }
        });

        let reply = h.bus.request(&subject, payload("ping"), ARRIVAL).await.unwrap();
        assert_eq!(reply, payload("PING"));
    }

    pub async fn request_without_responders_fails_fast(h: &Harness) {
        let subject = format!("{}.rpc.nobody", h.bus.subjects().prefix());
        let started = Instant::now();
        let error = h.bus.request(&subject, payload("hello?"), ARRIVAL).await.unwrap_err();
        assert!(matches!(&error, BusError::NoResponders { subject: s } if *s == subject), "{error:?}");
        assert!(started.elapsed() < ARRIVAL, "no-responders must not wait for the timeout");
    }

    pub async fn request_to_a_silent_responder_times_out(h: &Harness) {
        let subject = format!("{}.rpc.silent", h.bus.subjects().prefix());
        let _silent = h.bus.subscribe(&subject).await.unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let error = h.bus.request(&subject, payload("hello?"), timeout).await.unwrap_err();
        assert!(matches!(error, BusError::Timeout { .. }), "{error:?}");
        assert!(started.elapsed() >= timeout);
    }

    pub async fn durable_messages_wait_for_a_consumer_and_are_delivered_once(h: &Harness) {
        let (bus, s) = (&h.bus, h.bus.subjects());
        let status = s.agent_task_status("a1").unwrap();
        for n in 1..=3 {
            bus.publish_durable(&status, numbered(n)).await.unwrap();
        }

        let mut consumer = bus.consume_durable("c1").await.unwrap();
        for n in 1..=3 {
            let message = next_durable(&mut consumer).await;
            assert_eq!((number_of(&message.payload), message.delivered()), (n, 1));
            assert_eq!(message.subject, status);
            message.ack().await.unwrap();
        }
        drop(consumer);

        let mut restarted = bus.consume_durable("c1").await.unwrap();
        let redelivered = tokio::time::timeout(ACK_WAIT + Duration::from_millis(500), restarted.next()).await;
        assert!(redelivered.is_err(), "acked message redelivered: {redelivered:?}");
        // Still live, and metrics are captured by the same stream.
        bus.publish_durable(&s.agent_metrics("a1").unwrap(), numbered(4)).await.unwrap();
        let fourth = next_durable(&mut restarted).await;
        assert_eq!((number_of(&fourth.payload), fourth.delivered()), (4, 1));
        fourth.ack().await.unwrap();
    }

    /// The gateway judges sample times against this: a message that waited for a consumer (a server
    /// down for an hour) keeps the time it was sent, not the time it was taken.
    pub async fn a_durable_message_keeps_the_time_it_was_published(h: &Harness) {
        let bus = &h.bus;
        let metrics = bus.subjects().agent_metrics("a1").unwrap();
        let before = chrono::Utc::now();
        bus.publish_durable(&metrics, numbered(9)).await.unwrap();
        let after = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut consumer = bus.consume_durable("c3").await.unwrap();
        let message = next_durable(&mut consumer).await;
        let slack = chrono::Duration::milliseconds(100);
        let published = message.published_at();
        assert!(published >= before - slack && published <= after + slack, "{before} <= {published} <= {after}");
        message.ack().await.unwrap();
    }

    pub async fn unacked_durable_message_is_redelivered_to_a_restarted_consumer(h: &Harness) {
        let bus = &h.bus;
        let metrics = bus.subjects().agent_metrics("a1").unwrap();
        bus.publish_durable(&metrics, numbered(7)).await.unwrap();

        let mut consumer = bus.consume_durable("c2").await.unwrap();
        let first = next_durable(&mut consumer).await;
        assert_eq!((number_of(&first.payload), first.delivered()), (7, 1));
        drop(first);
        drop(consumer);

        let mut restarted = bus.consume_durable("c2").await.unwrap();
        let again = next_durable(&mut restarted).await;
        assert_eq!((number_of(&again.payload), again.delivered()), (7, 2));
        again.ack().await.unwrap();
    }

    pub async fn invalid_and_non_durable_subjects_are_rejected(h: &Harness) {
        let (bus, s) = (&h.bus, h.bus.subjects());
        let heartbeat = s.agent_heartbeat("a1").unwrap();
        let error = bus.publish_durable(&heartbeat, payload("x")).await.unwrap_err();
        assert!(matches!(error, BusError::InvalidSubject(SubjectError::NotDurable { .. })), "{error:?}");
        let wildcard = s.all_agent_heartbeats();
        let error = bus.publish(&wildcard, payload("x")).await.unwrap_err();
        assert!(matches!(error, BusError::InvalidSubject(_)), "{error:?}");
        let error = bus.subscribe("a.>.b").await.unwrap_err();
        assert!(matches!(error, BusError::InvalidSubject(_)), "{error:?}");
        let error = bus.consume_durable("bad.name").await.unwrap_err();
        assert!(matches!(error, BusError::InvalidSubject(_)), "{error:?}");
    }

    pub async fn close_ends_subscriptions_and_health_reports_it(h: &Harness) {
        let bus = &h.bus;
        assert!(["local", "nats"].contains(&bus.kind()));
        let health = bus.health().await;
        assert!(health.connected, "{health:?}");

        let subject = bus.subjects().agent_heartbeat("a1").unwrap();
        let mut subscription = bus.subscribe(&subject).await.unwrap();
        bus.close().await;

        let end = tokio::time::timeout(ARRIVAL, subscription.next()).await;
        assert!(matches!(end, Ok(None)), "subscription should end: {end:?}");
        let error = bus.publish(&subject, payload("late")).await.unwrap_err();
        assert!(matches!(error, BusError::Closed), "{error:?}");
        assert!(!bus.health().await.connected);
    }
}

/// Instantiates every case for one bus.
macro_rules! bus_suite {
    ($module:ident, $make:ident: $($case:ident),+ $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = $make().await;
                    cases::$case(&harness).await;
                }
            )+
        }
    };
}

/// Instantiates the whole suite for both buses.
macro_rules! for_each_bus {
    ($($case:ident),+ $(,)?) => {
        bus_suite!(local, local_bus: $($case),+);
        bus_suite!(nats, nats_bus: $($case),+);
    };
}

for_each_bus!(
    publish_reaches_exact_and_wildcard_subscribers_only,
    queue_group_delivers_each_message_to_exactly_one_member,
    request_gets_the_reply_of_a_responder,
    request_without_responders_fails_fast,
    request_to_a_silent_responder_times_out,
    durable_messages_wait_for_a_consumer_and_are_delivered_once,
    unacked_durable_message_is_redelivered_to_a_restarted_consumer,
    a_durable_message_keeps_the_time_it_was_published,
    invalid_and_non_durable_subjects_are_rejected,
    close_ends_subscriptions_and_health_reports_it,
);
