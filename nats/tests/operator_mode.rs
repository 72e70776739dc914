//! Per-agent NATS identities on a real nats-server in operator mode (one of the test's own, trusting
//! a freshly generated operator): the server replica may do everything, an agent only what concerns
//! itself, and a revoked agent is cut off by the NATS server itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use phoenix_nats::testing::{ObservedClient, OperatorNats};
use phoenix_nats::trust::resolver::{sync_revocations, Sync};
use phoenix_nats::trust::{NatsTrust, UserCredential};
use phoenix_nats::{Bus, Bytes, NatsBus, NatsBusOptions, Subjects};

const WITHIN: Duration = Duration::from_secs(10);
/// How long one try of an exchange waits before the next.
const TRY_EVERY: Duration = Duration::from_millis(250);

/// Tries `exchange` until it gives a value; panics after [`WITHIN`].
async fn until<T>(mut exchange: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = exchange().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no answer within {WITHIN:?}");
}

/// An agent's bare connection with its own JWT, and its public key.
async fn connect_agent(url: &str, trust: &NatsTrust, subjects: &Subjects, agent_id: &str) -> (ObservedClient, String) {
    let key = Arc::new(nkeys::KeyPair::new_user());
    let jwt = trust.agent_user_jwt(subjects, agent_id, &key.public_key()).expect("agent jwt");
    let public_key = key.public_key();
    let inbox = subjects.agent_inbox_prefix(agent_id).expect("inbox");
    let client = ObservedClient::connect(url, &UserCredential { jwt, key }, &inbox).await.expect("the agent connects");
    (client, public_key)
}

async fn server_bus(nats: &OperatorNats, trust: &NatsTrust, subjects: &Subjects) -> NatsBus {
    let options = NatsBusOptions {
        subjects: subjects.clone(),
        name: "phoenix-operator-test".into(),
        jwt: Some(trust.server_user("test-server").expect("server user")),
        ..Default::default()
    };
    NatsBus::connect(&nats.url, options).await.unwrap_or_else(|e| panic!("server connects: {e:#}\n{}", nats.log()))
}

#[tokio::test]
async fn an_agent_may_use_its_own_subjects_and_nothing_of_another_agents() {
    let trust = NatsTrust::generate();
    let nats = OperatorNats::start(&trust);
    let subjects = Subjects::new("p").expect("prefix");
    let server = server_bus(&nats, &trust, &subjects).await;
    let (mut a, _) = connect_agent(&nats.url, &trust, &subjects, "a").await;

    // Its own tasks arrive, and its heartbeat request gets the server's answer on its own inbox. (Two
    // connections: a subscription is in place on the NATS server only some time after it is sent, so
    // each exchange is tried again until it works, within a deadline.)
    let mut tasks = a.client.subscribe(subjects.agent_tasks("a").expect("subject")).await.expect("subscribe");
    a.client.flush().await.expect("flush");
    let task = until(async || {
        server.publish(&subjects.agent_tasks("a").expect("subject"), Bytes::from_static(b"task")).await.ok()?;
        tokio::time::timeout(TRY_EVERY, tasks.next()).await.ok().flatten()
    })
    .await;
    assert_eq!(&task.payload[..], b"task");
    let server = Arc::new(server);
    let mut heartbeats = server.subscribe(&subjects.all_agent_heartbeats()).await.expect("server subscribes");
    let responder = server.clone();
    let answer_heartbeats = tokio::spawn(async move {
        while let Some(message) = heartbeats.next().await {
            let reply = message.reply.expect("a heartbeat asks for an answer");
            responder.publish(&reply, Bytes::from(reply.clone())).await.expect("answer");
        }
    });
    let answer = until(async || {
        let asked = a.client.request(subjects.agent_heartbeat("a").expect("subject"), "hb".into());
        tokio::time::timeout(TRY_EVERY, asked).await.ok()?.ok()
    })
    .await;
    let inbox = String::from_utf8_lossy(&answer.payload).to_string();
    assert!(inbox.starts_with("_INBOX.agent.a."), "the answer came to the agent's own inbox: {inbox}");
    answer_heartbeats.abort();

    // Its results go into the JetStream stream, acknowledged on its own inbox.
    let jetstream = async_nats::jetstream::new(a.client.clone());
    let ack = jetstream.publish(subjects.agent_metrics("a").expect("subject"), "m".into()).await.expect("publish");
    ack.await.expect("JetStream acknowledges the agent's own metrics");

    // Another agent's tasks and subjects: the NATS server refuses and says so.
    let _spy = a.client.subscribe(subjects.agent_tasks("b").expect("subject")).await.expect("sent");
    a.client.flush().await.expect("flush");
    let refused = a.expect_event("permissions violation", WITHIN).await;
    assert!(refused.contains("p.agent.b.tasks"), "{refused}");
    a.client.publish(subjects.agent_heartbeat("b").expect("subject"), "forged".into()).await.expect("sent");
    a.client.flush().await.expect("flush");
    let refused = a.expect_event("permissions violation", WITHIN).await;
    assert!(refused.contains("p.agent.b.heartbeat"), "{refused}");
    // Nor may it read the server's replies or use the JetStream API.
    let _ = a.client.subscribe("_INBOX.>").await.expect("sent");
    a.client.flush().await.expect("flush");
    let refused = a.expect_event("permissions violation", WITHIN).await;
    assert!(refused.contains("_INBOX.>"), "{refused}");
    drop(server);
}

#[tokio::test]
async fn a_revoked_agent_is_disconnected_and_cannot_come_back_while_others_stay() {
    let trust = NatsTrust::generate();
    let nats = OperatorNats::start(&trust);
    let subjects = Subjects::new("p").expect("prefix");
    let (mut a, a_key) = connect_agent(&nats.url, &trust, &subjects, "a").await;
    let (b, _) = connect_agent(&nats.url, &trust, &subjects, "b").await;

    // Nothing revoked yet: the account the server holds already says so.
    let none = BTreeMap::new();
    assert_eq!(sync_revocations(&nats.url, &trust, &none, WITHIN).await.expect("sync"), Sync::Unchanged);

    let revoked = BTreeMap::from([(a_key, chrono::Utc::now().timestamp())]);
    assert_eq!(sync_revocations(&nats.url, &trust, &revoked, WITHIN).await.expect("sync"), Sync::Pushed);
    a.expect_event("disconnected", WITHIN).await;
    // Its reconnects are refused by the server: its JWT is revoked.
    let refused = a.expect_event("authorization", WITHIN).await;
    assert!(!refused.is_empty());
    assert_eq!(b.client.connection_state(), async_nats::connection::State::Connected, "b is not affected");
    b.client.publish(subjects.agent_metrics("b").expect("subject"), "m".into()).await.expect("b publishes");
    b.client.flush().await.expect("b still connected");

    // The same revocations again: nothing to push.
    assert_eq!(sync_revocations(&nats.url, &trust, &revoked, WITHIN).await.expect("sync"), Sync::Unchanged);
}
