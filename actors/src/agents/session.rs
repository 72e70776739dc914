//! One actor per agent: it records heartbeats in order, knows how the agent is reachable, and marks
//! it offline when heartbeats stop for longer than the timeout.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use phoenix_nats::wire::ReportedHealth;

use super::messages::{GetTransport, HeartbeatRecorded, RecordHeartbeat, StopSession};
use super::{Agent, AgentState, Transport};
use crate::events::Events;
use crate::store::{FleetStore, StoreError};

/// How long to wait before trying again to store an offline transition that failed.
const RETRY_OFFLINE_AFTER: Duration = Duration::from_secs(5);

/// The session of one agent.
pub struct AgentSession {
    agent_id: String,
    state: AgentState,
    transport: Option<Transport>,
    offline_after: Duration,
    timer: Option<SpawnHandle>,
    store: Arc<dyn FleetStore>,
    events: Events,
    /// The state and last heartbeat read from the database, for a session rebuilt at start-up.
    rehydrated_from: Option<Agent>,
    /// The last heartbeat this session knows of (it recorded it, or read it): a later one in the
    /// database was taken by another replica.
    heard_at: Option<DateTime<Utc>>,
}

impl AgentSession {
    /// A session for an agent not seen by this server yet: offline until its first heartbeat.
    pub fn new(agent_id: String, offline_after: Duration, store: Arc<dyn FleetStore>, events: Events) -> Self {
        AgentSession {
            agent_id,
            state: AgentState::Offline,
            transport: None,
            offline_after,
            timer: None,
            store,
            events,
            rehydrated_from: None,
            heard_at: None,
        }
    }

    /// A session rebuilt from the stored agent: it goes offline when the stored last heartbeat is
    /// older than the timeout, as if the server had never been away.
    pub fn rehydrated(agent: Agent, offline_after: Duration, store: Arc<dyn FleetStore>, events: Events) -> Self {
        let mut session = AgentSession::new(agent.id.clone(), offline_after, store, events);
        session.state = agent.state;
        session.heard_at = agent.last_heartbeat_at;
        session.rehydrated_from = Some(agent);
        session
    }

    fn schedule_offline(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.timer = Some(ctx.run_later(after, |session, ctx| session.go_offline(ctx)));
    }

    /// The timeout passed without a heartbeat here. With several replicas the agent's heartbeats are
    /// shared among them (a NATS queue group): when the database holds a later heartbeat than this
    /// session knows of, another replica heard from the agent, and the timeout runs from that one.
    fn go_offline(&mut self, ctx: &mut Context<Self>) {
        self.timer = None;
        if self.state == AgentState::Offline {
            return;
        }
        let (store, events, id, timeout, known) =
            (self.store.clone(), self.events.clone(), self.agent_id.clone(), self.offline_after, self.heard_at);
        let persist_then_announce = async move {
            let now = Utc::now();
            let stored = store.get_agent(&id).await?;
            if let Some(last) = stored.last_heartbeat_at.filter(|last| known.is_none_or(|known| *last > known)) {
                let silent_for = (now - last).to_std().unwrap_or_default();
                if silent_for < timeout {
                    return Ok(Some((timeout - silent_for, last)));
                }
            }
            let agent = store.set_agent_state(&id, AgentState::Offline, now).await?;
            events.publish("agent", &id, "agent.offline", &agent).await;
            Ok::<_, StoreError>(None)
        };
        ctx.wait(persist_then_announce.into_actor(self).map(|result, session, ctx| match result {
            // Another replica heard from it: look again when that heartbeat times out.
            Ok(Some((remaining, last))) => {
                session.heard_at = Some(last);
                session.schedule_offline(ctx, remaining);
            }
            Ok(None) => {
                tracing::info!(agent.id = %session.agent_id, "agent offline: no heartbeat within the timeout");
                session.state = AgentState::Offline;
                session.transport = None;
            }
            Err(StoreError::NotFound) => ctx.stop(),
            Err(e) => {
                tracing::warn!(agent.id = %session.agent_id, error = %e, "cannot store the offline state; retrying");
                session.schedule_offline(ctx, RETRY_OFFLINE_AFTER);
            }
        }));
    }
}

impl Actor for AgentSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(agent) = self.rehydrated_from.take() else { return };
        if agent.state == AgentState::Offline {
            return;
        }
        let silent_for =
            agent.last_heartbeat_at.map_or(self.offline_after, |last| (Utc::now() - last).to_std().unwrap_or_default());
        self.schedule_offline(ctx, self.offline_after.saturating_sub(silent_for));
    }
}

impl Handler<RecordHeartbeat> for AgentSession {
    type Result = AtomicResponse<Self, Result<HeartbeatRecorded, StoreError>>;

    fn handle(&mut self, msg: RecordHeartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let stopping = msg.heartbeat.stopping;
        let state = match msg.heartbeat.health {
            _ if stopping => AgentState::Offline,
            ReportedHealth::Healthy => AgentState::Online,
            ReportedHealth::Degraded => AgentState::Degraded,
        };
        let previous = self.state;
        let transport = msg.transport;
        let (store, events, id) = (self.store.clone(), self.events.clone(), self.agent_id.clone());
        let persist_then_announce = async move {
            let agent = store.record_heartbeat(&id, &msg.heartbeat, state, Utc::now()).await?;
            if previous != state {
                events.publish("agent", &id, &format!("agent.{}", state.as_str()), &agent).await;
            }
            Ok::<_, StoreError>(agent)
        };
        AtomicResponse::new(Box::pin(persist_then_announce.into_actor(self).map(move |result, session, ctx| {
            let agent = result?;
            session.state = state;
            session.heard_at = agent.last_heartbeat_at;
            if stopping {
                session.transport = None;
                if let Some(timer) = session.timer.take() {
                    ctx.cancel_future(timer);
                }
                return Ok(HeartbeatRecorded { agent, came_online: false });
            }
            session.transport = Some(transport);
            session.schedule_offline(ctx, session.offline_after);
            Ok(HeartbeatRecorded { agent, came_online: previous == AgentState::Offline })
        })))
    }
}

impl Handler<GetTransport> for AgentSession {
    type Result = Option<Transport>;

    fn handle(&mut self, _: GetTransport, _: &mut Context<Self>) -> Option<Transport> {
        (self.state != AgentState::Offline).then_some(self.transport).flatten()
    }
}

impl Handler<StopSession> for AgentSession {
    type Result = ();

    fn handle(&mut self, _: StopSession, ctx: &mut Context<Self>) {
        // A pending offline timer would keep the actor alive: stop explicitly.
        ctx.stop();
    }
}
