//! The `EventHub` actor: it follows every domain event on the bus (`<prefix>.events.>`, so with NATS
//! every replica sees every event) and hands each to the live sessions subscribed to its topics. A
//! message is rendered once per topic and shared by all its sessions; delivery never waits for a
//! session (each has its own bounded queue and is closed when it cannot keep up).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use phoenix_nats::{Bus, Envelope};
use serde::Serialize;

/// The topics clients may subscribe to: a family, or a family and an id.
const FAMILIES: [&str; 4] = ["experiment", "deployment", "agent", "task"];

/// Checks a topic: `experiments`, `experiment:<id>`, `deployments`, `deployment:<id>`, `agents`,
/// `agent:<id>`, `tasks`, `metrics:<experiment id>`.
pub fn valid_topic(topic: &str) -> Result<(), String> {
    let known = match topic.split_once(':') {
        Some((family, id)) => {
            ["experiment", "deployment", "agent", "metrics"].contains(&family)
                && !id.is_empty()
                && id.len() <= 128
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        None => FAMILIES.iter().any(|family| topic == format!("{family}s")),
    };
    if known {
        Ok(())
    } else {
        Err(format!(
            "unknown topic '{topic}': use experiments, experiment:<id>, deployments, deployment:<id>, agents, \
             agent:<id>, tasks or metrics:<experiment id>"
        ))
    }
}

/// The topics an event about `kind`/`id` belongs to.
fn topics_of(kind: &str, id: &str) -> Vec<String> {
    match kind {
        "task" => vec!["tasks".into()],
        "metrics" => vec![format!("metrics:{id}")],
        kind if FAMILIES.contains(&kind) => vec![format!("{kind}s"), format!("{kind}:{id}")],
        _ => Vec::new(),
    }
}

/// One `event` message as sent on the wire, rendered once for every session of its topic.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<str>);

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    event: &'a str,
    data: &'a serde_json::Value,
    ts: DateTime<Utc>,
    seq: u64,
}

/// Register `recipient` (session `session`) for `topic`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session: u64,
    pub topic: String,
    pub recipient: Recipient<Deliver>,
}

/// Stop delivering `topic` to `session`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session: u64,
    pub topic: String,
}

/// Forget every subscription of `session` (it closed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: u64,
}

/// An event read from the bus.
#[derive(Message)]
#[rtype(result = "()")]
struct Published {
    subject: String,
    payload: phoenix_nats::Bytes,
}

/// Sessions by topic, and the sequence number of each topic.
pub struct EventHub {
    prefix: String,
    topics: HashMap<String, HashMap<u64, Recipient<Deliver>>>,
    seq: HashMap<String, u64>,
}

impl EventHub {
    /// Starts the hub once its bus subscription is in place, so no event published after start-up
    /// is missed.
    pub async fn start(bus: Arc<dyn Bus>) -> Result<Addr<EventHub>, phoenix_nats::BusError> {
        let prefix = format!("{}.events.", bus.subjects().prefix());
        let events = bus.subscribe(&bus.subjects().all_events()).await?;
        let hub = EventHub { prefix, topics: HashMap::new(), seq: HashMap::new() }.start();
        actix::spawn(follow(events, hub.clone()));
        Ok(hub)
    }

    fn publish(&mut self, subject: &str, payload: &[u8]) {
        let Some((kind, id)) = subject.strip_prefix(&self.prefix).and_then(|rest| rest.split_once('.')) else {
            return;
        };
        let Ok(envelope) = Envelope::<serde_json::Value>::decode(payload) else {
            tracing::debug!(nats.subject = subject, "undecodable event ignored");
            return;
        };
        for topic in topics_of(kind, id) {
            let seq = self.seq.entry(topic.clone()).or_default();
            *seq += 1;
            let Some(sessions) = self.topics.get(&topic).filter(|s| !s.is_empty()) else { continue };
            let frame = EventFrame {
                kind: "event",
                topic: &topic,
                event: &envelope.kind,
                data: &envelope.body,
                ts: envelope.ts,
                seq: *seq,
            };
            let Ok(text) = serde_json::to_string(&frame) else { continue };
            let text: Arc<str> = Arc::from(text);
            for recipient in sessions.values() {
                recipient.do_send(Deliver(text.clone()));
            }
        }
    }
}

impl Actor for EventHub {
    type Context = Context<Self>;
}

impl Handler<Subscribe> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.topics.entry(msg.topic).or_default().insert(msg.session, msg.recipient);
    }
}

impl Handler<Unsubscribe> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if let Some(sessions) = self.topics.get_mut(&msg.topic) {
            sessions.remove(&msg.session);
            if sessions.is_empty() {
                self.topics.remove(&msg.topic);
            }
        }
    }
}

impl Handler<Disconnect> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.topics.retain(|_, sessions| {
            sessions.remove(&msg.session);
            !sessions.is_empty()
        });
    }
}

impl Handler<Published> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Published, _: &mut Context<Self>) {
        self.publish(&msg.subject, &msg.payload);
    }
}

/// Feeds the hub every event on the bus, for as long as the bus runs.
async fn follow(mut events: phoenix_nats::Subscription, hub: Addr<EventHub>) {
    while let Some(message) = events.next().await {
        hub.do_send(Published { subject: message.subject, payload: message.payload });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_families_or_a_family_and_an_id() {
        for good in ["experiments", "experiment:01a2-b3", "deployments", "agents", "agent:x", "tasks", "metrics:e1"] {
            assert_eq!(valid_topic(good), Ok(()), "{good}");
        }
        for bad in ["", "experiment", "experiment:", "metrics", "task:1", "users", "agent:a.b", "agent:*"] {
            assert!(valid_topic(bad).is_err(), "{bad}");
        }
        assert_eq!(topics_of("experiment", "e1"), ["experiments", "experiment:e1"]);
        assert_eq!(topics_of("task", "t1"), ["tasks"]);
        assert_eq!(topics_of("metrics", "e1"), ["metrics:e1"]);
        assert!(topics_of("user", "u").is_empty());
    }
}
