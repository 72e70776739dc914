//! The agent's two transports to the server. Both carry the same envelopes (docs/PROTOCOL.md): NATS
//! (heartbeats as requests, reports and metrics through JetStream, tasks pushed) and HTTP (the same
//! as requests, tasks by long-poll).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use phoenix_nats::wire::{kinds, Heartbeat, HeartbeatAck, MetricsBatch, TaskAssignment, TaskStatusReport};
use phoenix_nats::{Bus, Envelope, NatsBus, NatsBusOptions, Subjects};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::identity::Identity;
use super::nats_auth::{IssuedCredential, NatsUserAuth};

/// How long a long-poll holds on the server.
const POLL_WAIT_SECS: u64 = 30;
/// How long a NATS heartbeat may wait for its answer before the server counts as unreachable there.
const NATS_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// The transport in use.
pub enum Link {
    Http(HttpLink),
    Nats(Box<NatsLink>),
}

impl Link {
    pub fn name(&self) -> &'static str {
        match self {
            Link::Http(_) => "http",
            Link::Nats(_) => "nats",
        }
    }

    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> anyhow::Result<HeartbeatAck> {
        match self {
            Link::Http(http) => http.heartbeat(heartbeat).await,
            Link::Nats(nats) => nats.heartbeat(heartbeat).await,
        }
    }

    pub async fn report(&self, report: &Envelope<TaskStatusReport>) -> anyhow::Result<()> {
        match self {
            Link::Http(http) => http.report(report).await,
            Link::Nats(nats) => nats.publish_result(nats.subjects.agent_task_status(&nats.agent_id)?, report).await,
        }
    }

    pub async fn send_metrics(&self, batch: &Envelope<MetricsBatch>) -> anyhow::Result<()> {
        match self {
            Link::Http(http) => http.send_metrics(batch).await,
            Link::Nats(nats) => nats.publish_result(nats.subjects.agent_metrics(&nats.agent_id)?, batch).await,
        }
    }

    /// Starts feeding the tasks this transport receives into `tasks`.
    pub async fn feed_tasks(&self, tasks: mpsc::Sender<TaskAssignment>) -> anyhow::Result<TaskFeed> {
        match self {
            Link::Http(http) => {
                let stop = Arc::new(AtomicBool::new(false));
                let handle = tokio::spawn(http.clone().poll_forever(tasks, stop.clone()));
                Ok(TaskFeed { handle, stop_after_poll: Some(stop) })
            }
            Link::Nats(nats) => Ok(TaskFeed { handle: nats.subscribe_tasks(tasks).await?, stop_after_poll: None }),
        }
    }
}

/// The tasks arriving on one transport, fed to the runner.
pub struct TaskFeed {
    handle: tokio::task::JoinHandle<()>,
    /// Set for a long-poll feed: ends it once the poll in flight has answered.
    stop_after_poll: Option<Arc<AtomicBool>>,
}

impl TaskFeed {
    /// Ends the feed because the agent moved to another transport. A long-poll in flight is let
    /// finish: the server cannot tell that the agent left it and may hand it a task, which would
    /// otherwise wait out its lease before being sent again.
    pub fn retire(self) {
        match self.stop_after_poll {
            Some(stop) => stop.store(true, Ordering::Relaxed),
            None => self.handle.abort(),
        }
    }

    /// Ends the feed at once (the agent is stopping).
    pub fn abort(&self) {
        self.handle.abort();
    }
}

/// An answer the server will give again to the same message: retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// True when `error` is a refusal that will not change (a 4xx other than 401, 408, 409 and 429).
pub fn is_permanent(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Refused>().is_some()
}

/// HTTP: `/api/v1/agent/*` with the credential as bearer token.
#[derive(Clone)]
pub struct HttpLink {
    http: reqwest::Client,
    base: String,
    credential: String,
}

impl HttpLink {
    pub fn new(http: reqwest::Client, identity: &Identity) -> HttpLink {
        HttpLink { http, base: format!("{}/api/v1/agent", identity.server), credential: identity.credential.clone() }
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl serde::Serialize) -> anyhow::Result<T> {
        let res =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.credential).json(body).send().await?;
        let status = res.status();
        if !status.is_success() {
            let detail: Value = res.json().await.unwrap_or_default();
            let message = format!("{path}: {status}: {}", detail["detail"].as_str().unwrap_or(""));
            let transient = [401, 408, 409, 429].contains(&status.as_u16());
            if status.is_client_error() && !transient {
                return Err(Refused(message).into());
            }
            bail!(message);
        }
        Ok(res.json().await?)
    }

    /// Asks the server to sign a NATS user JWT for the agent's key.
    pub async fn nats_credential(&self, public_key: &str) -> anyhow::Result<NatsCredentialAnswer> {
        let res = self
            .http
            .post(format!("{}/nats-credentials", self.base))
            .bearer_auth(&self.credential)
            .json(&serde_json::json!({"public_key": public_key}))
            .send()
            .await?;
        let status = res.status();
        if status.is_success() {
            return Ok(NatsCredentialAnswer::Issued(res.json().await?));
        }
        let detail: Value = res.json().await.unwrap_or_default();
        let detail = detail["detail"].as_str().unwrap_or("").to_string();
        match status.as_u16() {
            404 => Ok(NatsCredentialAnswer::NotOffered),
            409 | 422 => Ok(NatsCredentialAnswer::KeyRefused(detail)),
            _ => bail!("/nats-credentials: {status}: {detail}"),
        }
    }

    async fn heartbeat(&self, heartbeat: Heartbeat) -> anyhow::Result<HeartbeatAck> {
        let ack: Envelope<HeartbeatAck> = self.post("/heartbeat", &Envelope::new(kinds::HEARTBEAT, heartbeat)).await?;
        Ok(ack.body)
    }

    async fn report(&self, report: &Envelope<TaskStatusReport>) -> anyhow::Result<()> {
        let _: Value = self.post(&format!("/tasks/{}/status", report.body.task_id), report).await?;
        Ok(())
    }

    async fn send_metrics(&self, batch: &Envelope<MetricsBatch>) -> anyhow::Result<()> {
        let _: Value = self.post("/metrics", batch).await?;
        Ok(())
    }

    async fn poll(&self) -> anyhow::Result<Vec<TaskAssignment>> {
        let url = format!("{}/tasks?wait={POLL_WAIT_SECS}", self.base);
        let res = self.http.get(url).bearer_auth(&self.credential).send().await?;
        if !res.status().is_success() {
            bail!("poll: {}", res.status());
        }
        let body: Value = res.json().await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().map(|item| Ok(serde_json::from_value::<Envelope<TaskAssignment>>(item)?.body)).collect()
    }

    async fn poll_forever(self, tasks: mpsc::Sender<TaskAssignment>, stop: Arc<AtomicBool>) {
        let mut backoff = Backoff::default();
        while !stop.load(Ordering::Relaxed) {
            match self.poll().await {
                Ok(received) => {
                    backoff.reset();
                    for task in received {
                        if tasks.send(task).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "long-poll failed; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }
}

/// The server's answer when asked for a NATS credential.
pub enum NatsCredentialAnswer {
    /// A JWT for the key.
    Issued(IssuedCredential),
    /// The server gives agents no NATS identity of their own: the NATS URL is used as it is.
    NotOffered,
    /// The key was revoked or is someone else's: make a new one.
    KeyRefused(String),
}

/// NATS, with the credential in every envelope.
pub struct NatsLink {
    bus: NatsBus,
    subjects: Subjects,
    agent_id: String,
    credential: String,
}

impl NatsLink {
    /// Connects as the agent's own NATS user when `auth` is given, else with what the URL carries.
    pub async fn connect(
        url: &str,
        prefix: &str,
        identity: &Identity,
        auth: Option<NatsUserAuth>,
    ) -> anyhow::Result<NatsLink> {
        let subjects = Subjects::new(prefix)?;
        let (jwt, inbox_prefix) = match auth {
            Some(auth) => (Some(auth.credential), Some(auth.inbox_prefix)),
            None => (None, None),
        };
        let options = NatsBusOptions {
            subjects: subjects.clone(),
            name: format!("phoenix-agent-{}", identity.agent_id),
            connect_timeout: Duration::from_secs(5),
            manage_stream: false,
            jwt,
            inbox_prefix,
            ..Default::default()
        };
        let bus = NatsBus::connect(url, options).await.context("Failed to connect to NATS")?;
        Ok(NatsLink { bus, subjects, agent_id: identity.agent_id.clone(), credential: identity.credential.clone() })
    }

    async fn heartbeat(&self, heartbeat: Heartbeat) -> anyhow::Result<HeartbeatAck> {
        let payload = Envelope::new(kinds::HEARTBEAT, heartbeat).with_auth(self.credential.clone()).encode()?;
        let subject = self.subjects.agent_heartbeat(&self.agent_id)?;
        let answer = self.bus.request(&subject, payload, NATS_HEARTBEAT_TIMEOUT).await?;
        Ok(Envelope::<HeartbeatAck>::decode(&answer)?.body)
    }

    async fn publish_result<T: serde::Serialize + Clone>(
        &self,
        subject: String,
        envelope: &Envelope<T>,
    ) -> anyhow::Result<()> {
        let payload = envelope.clone().with_auth(self.credential.clone()).encode()?;
        self.bus.publish_durable(&subject, payload).await?;
        Ok(())
    }

    async fn subscribe_tasks(
        &self,
        tasks: mpsc::Sender<TaskAssignment>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut subscription = self.bus.subscribe(&self.subjects.agent_tasks(&self.agent_id)?).await?;
        Ok(tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                match Envelope::<TaskAssignment>::decode(&message.payload) {
                    Ok(envelope) => {
                        if tasks.send(envelope.body).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed task message"),
                }
            }
        }))
    }
}

/// Exponential backoff with jitter: 1 s doubling to 60 s, each wait randomised by ±20 %.
#[derive(Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub fn next_wait(&mut self) -> Duration {
        let base = 1u64 << self.attempt.min(6);
        self.attempt += 1;
        let mut jitter = [0u8; 1];
        // Jitter only spreads reconnects out; a failed random read just means none.
        let _ = getrandom::fill(&mut jitter);
        let factor = 0.8 + 0.4 * f64::from(jitter[0]) / 255.0;
        Duration::from_secs_f64((base.min(60) as f64) * factor)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_permanent() {
        assert!(is_permanent(&anyhow::Error::from(Refused("422".into()))));
        assert!(!is_permanent(&anyhow::anyhow!("connection refused")));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute_with_jitter() {
        let mut backoff = Backoff::default();
        let waits: Vec<f64> = (0..9).map(|_| backoff.next_wait().as_secs_f64()).collect();
        assert!((0.8..=1.2).contains(&waits[0]), "{waits:?}");
        assert!((1.6..=2.4).contains(&waits[1]), "{waits:?}");
        assert!(waits[8] <= 72.0 && waits[8] >= 48.0, "capped near 60 s: {waits:?}");
        backoff.reset();
        assert!(backoff.next_wait().as_secs_f64() <= 1.2);
    }
}
