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

/// The family of the hub's own topics `session:<user id>`: each live session is on its user's, and
/// clients cannot subscribe to it (it is no topic of [`valid_topic`]).
pub const SESSION_FAMILY: &str = "session";

/// The event that ends a user's live sessions on every replica: all of them, or those of one login
/// session (`sid`). Published on `<prefix>.events.session.<user id>` by [`end_sessions`].
pub const SESSION_ENDED: &str = "session.ended";

/// The body of a [`SESSION_ENDED`] event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnded {
    /// Only the sessions opened with a token of this login session; all of the user's when absent.
    pub sid: Option<String>,
    /// Why, in words (the close frame's reason).
    pub reason: String,
}

/// The control topic of `user_id`'s live sessions.
pub fn session_topic(user_id: &str) -> String {
    format!("{SESSION_FAMILY}:{user_id}")
}

/// Ends the live sessions of `user_id` (of its login session `sid`, or all) on every replica: after a
/// logout, a deactivation or a role change, nobody keeps receiving events on an old right.
pub async fn end_sessions(events: &crate::events::Events, user_id: &str, sid: Option<&str>, reason: &str) {
    let ended = SessionEnded { sid: sid.map(str::to_string), reason: reason.to_string() };
    events.publish(SESSION_FAMILY, user_id, SESSION_ENDED, ended).await;
}

/// The topics an event about `kind`/`id` belongs to.
fn topics_of(kind: &str, id: &str) -> Vec<String> {
    match kind {
        SESSION_FAMILY => vec![session_topic(id)],
        "task" => vec!["tasks".into()],
        "metrics" => vec![format!("metrics:{id}")],
        // A rollout's progress is for the deployment's own page, not every list of deployments.
        "rollout" => vec![format!("deployment:{id}")],
        kind if FAMILIES.contains(&kind) => vec![format!("{kind}s"), format!("{kind}:{id}")],
        _ => Vec::new(),
    }
}

/// One `event` message as sent on the wire, rendered once for every session of its topic (shared by
/// all, like the topic's name).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub topic: Arc<str>,
    pub frame: bytestring::ByteString,
}

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

/// Forget every subscription of `session` (it closed): the topics it had.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: u64,
    pub topics: Vec<String>,
}

/// An event read from the bus.
#[derive(Message)]
#[rtype(result = "()")]
struct Published {
    subject: String,
    payload: phoenix_nats::Bytes,
}

/// Sessions by topic, and the sequence number of each topic. Only topics someone is subscribed to
/// are kept (and counted): a topic's `seq` starts again when it is subscribed to again.
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
        let topics: Vec<String> = topics_of(kind, id).into_iter().filter(|t| self.topics.contains_key(t)).collect();
        if topics.is_empty() {
            // Most events (every task change of a large rollout) have no one watching: not decoded.
            return;
        }
        let Ok(envelope) = Envelope::<serde_json::Value>::decode(payload) else {
            tracing::debug!(nats.subject = subject, "undecodable event ignored");
            return;
        };
        for topic in topics {
            let Some(sessions) = self.topics.get(&topic) else { continue };
            let seq = self.seq.entry(topic.clone()).or_default();
            *seq += 1;
            let frame = EventFrame {
                kind: "event",
                topic: &topic,
                event: &envelope.kind,
                data: &envelope.body,
                ts: envelope.ts,
                seq: *seq,
            };
            let Ok(text) = serde_json::to_string(&frame) else { continue };
            let deliver = Deliver { topic: Arc::from(topic.as_str()), frame: bytestring::ByteString::from(text) };
            for recipient in sessions.values() {
                recipient.do_send(deliver.clone());
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
        self.leave(msg.session, &msg.topic);
    }
}

impl Handler<Disconnect> for EventHub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        for topic in &msg.topics {
            self.leave(msg.session, topic);
        }
    }
}

impl EventHub {
    /// `session` no longer gets `topic`; a topic nobody gets any more is forgotten, count included.
    fn leave(&mut self, session: u64, topic: &str) {
        let Some(sessions) = self.topics.get_mut(topic) else { return };
        sessions.remove(&session);
        if sessions.is_empty() {
            self.topics.remove(topic);
            self.seq.remove(topic);
        }
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
        assert_eq!(topics_of("rollout", "d1"), ["deployment:d1"]);
        assert_eq!(topics_of("session", "u1"), ["session:u1"]);
        assert!(valid_topic("session:u1").is_err(), "no client may follow another's session");
        assert!(topics_of("user", "u").is_empty());
    }

    /// Keeps the frames delivered to it; `Frames` answers them once every earlier delivery is handled.
    struct Collector(Vec<String>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Collector {
        type Result = ();

        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.0.push(msg.frame.to_string());
        }
    }

    #[derive(Message)]
    #[rtype(result = "Vec<serde_json::Value>")]
    struct Frames;

    impl Handler<Frames> for Collector {
        type Result = Vec<serde_json::Value>;

        fn handle(&mut self, _: Frames, _: &mut Context<Self>) -> Self::Result {
            self.0.iter().map(|text| serde_json::from_str(text).unwrap()).collect()
        }
    }

    fn created(id: &str) -> Published {
        let payload = Envelope::new("experiment.created", serde_json::json!({"id": id})).encode().unwrap();
        Published { subject: format!("p.events.experiment.{id}"), payload }
    }

    #[actix::test]
    async fn only_watched_topics_are_counted_and_a_topic_everyone_left_counts_afresh() {
        let hub = EventHub { prefix: "p.events.".into(), topics: HashMap::new(), seq: HashMap::new() }.start();
        let collector = Collector(Vec::new()).start();
        let subscribe =
            || Subscribe { session: 1, topic: "experiments".into(), recipient: collector.clone().recipient() };
        hub.send(created("e0")).await.unwrap();
        hub.send(subscribe()).await.unwrap();
        hub.send(created("e1")).await.unwrap();
        hub.send(created("e2")).await.unwrap();
        hub.send(Disconnect { session: 1, topics: vec!["experiments".into()] }).await.unwrap();
        hub.send(created("e3")).await.unwrap();
        hub.send(subscribe()).await.unwrap();
        hub.send(created("e4")).await.unwrap();

        let frames = collector.send(Frames).await.unwrap();
        let seen: Vec<(&str, u64)> =
            frames.iter().map(|f| (f["data"]["id"].as_str().unwrap(), f["seq"].as_u64().unwrap())).collect();
        assert_eq!(seen, [("e1", 1), ("e2", 2), ("e4", 1)]);
        let counted = hub.send(CountedTopics).await.unwrap();
        assert_eq!(counted, 1, "only the watched topic is counted, not experiment:e0 … e4");
    }

    #[derive(Message)]
    #[rtype(result = "usize")]
    struct CountedTopics;

    impl Handler<CountedTopics> for EventHub {
        type Result = usize;

        fn handle(&mut self, _: CountedTopics, _: &mut Context<Self>) -> usize {
            self.seq.len()
        }
    }
}
