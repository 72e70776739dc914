//! The registry of agent sessions and of long-poll waiters. Callers use [`AgentRegistryHandle`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use phoenix_nats::wire::Heartbeat;
use tokio::sync::oneshot;

use super::messages::{
    AddWaiter, CountSessions, ExistingSession, ForgetAgent, GetTransport, HeartbeatRecorded, RecordHeartbeat,
    Rehydrate, SessionFor, StopSession, WorkArrived,
};
use super::session::AgentSession;
use super::{Agent, Transport};
use crate::events::Events;
use crate::store::{FleetStore, StoreError};

/// The map agent id -> session, and the long-poll waiters per agent.
pub struct AgentRegistry {
    sessions: HashMap<String, Addr<AgentSession>>,
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
    offline_after: Duration,
    store: Arc<dyn FleetStore>,
    events: Events,
}

impl Actor for AgentRegistry {
    type Context = Context<Self>;
}

impl AgentRegistry {
    fn session(&mut self, agent_id: &str) -> Addr<AgentSession> {
        if let Some(addr) = self.sessions.get(agent_id).filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let session =
            AgentSession::new(agent_id.to_string(), self.offline_after, self.store.clone(), self.events.clone());
        let addr = session.start();
        self.sessions.insert(agent_id.to_string(), addr.clone());
        addr
    }
}

impl Handler<SessionFor> for AgentRegistry {
    type Result = MessageResult<SessionFor>;

    fn handle(&mut self, msg: SessionFor, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.session(&msg.agent_id))
    }
}

impl Handler<Rehydrate> for AgentRegistry {
    type Result = usize;

    /// Starts sessions from stored agents; an agent that already has a live session (it heartbeated
    /// before the rebuild finished) keeps it, since that session knows more than the database did.
    fn handle(&mut self, msg: Rehydrate, _: &mut Context<Self>) -> usize {
        let mut started = 0;
        for agent in msg.agents {
            if self.sessions.get(&agent.id).is_some_and(|addr| addr.connected()) {
                continue;
            }
            let id = agent.id.clone();
            let session = AgentSession::rehydrated(agent, self.offline_after, self.store.clone(), self.events.clone());
            if let Some(old) = self.sessions.insert(id, session.start()) {
                old.do_send(StopSession);
            }
            started += 1;
        }
        started
    }
}

impl Handler<ExistingSession> for AgentRegistry {
    type Result = Option<Addr<AgentSession>>;

    fn handle(&mut self, msg: ExistingSession, _: &mut Context<Self>) -> Self::Result {
        self.sessions.get(&msg.agent_id).filter(|addr| addr.connected()).cloned()
    }
}

impl Handler<AddWaiter> for AgentRegistry {
    type Result = ();

    fn handle(&mut self, msg: AddWaiter, _: &mut Context<Self>) {
        let waiters = self.waiters.entry(msg.agent_id).or_default();
        waiters.retain(|tx| !tx.is_closed());
        waiters.push(msg.tx);
    }
}

impl Handler<WorkArrived> for AgentRegistry {
    type Result = ();

    fn handle(&mut self, msg: WorkArrived, _: &mut Context<Self>) {
        for tx in self.waiters.remove(&msg.agent_id).unwrap_or_default() {
            // A waiter whose poll already ended has dropped its receiver; nothing to do for it.
            let _ = tx.send(());
        }
    }
}

impl Handler<ForgetAgent> for AgentRegistry {
    type Result = ();

    fn handle(&mut self, msg: ForgetAgent, _: &mut Context<Self>) {
        if let Some(session) = self.sessions.remove(&msg.agent_id) {
            session.do_send(StopSession);
        }
        self.waiters.remove(&msg.agent_id);
    }
}

impl Handler<CountSessions> for AgentRegistry {
    type Result = MessageResult<CountSessions>;

    fn handle(&mut self, _: CountSessions, _: &mut Context<Self>) -> Self::Result {
        // A waiter whose poll ended stays in its list until the agent's next poll or work: not counted.
        let waiting = self.waiters.values().flatten().filter(|tx| !tx.is_closed()).count();
        MessageResult((self.sessions.len(), waiting))
    }
}

/// A cloneable handle to the registry and, through it, to every agent session.
#[derive(Clone)]
pub struct AgentRegistryHandle {
    addr: Addr<AgentRegistry>,
}

fn stopped(e: MailboxError) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl AgentRegistryHandle {
    /// Starts the registry. An agent without a heartbeat for `offline_after` goes offline.
    pub fn start(store: Arc<dyn FleetStore>, events: Events, offline_after: Duration) -> Self {
        let registry =
            AgentRegistry { sessions: HashMap::new(), waiters: HashMap::new(), offline_after, store, events };
        AgentRegistryHandle { addr: registry.start() }
    }

    /// Rebuilds a session for every agent in the database; returns how many.
    pub async fn rehydrate(&self, agents: Vec<Agent>) -> Result<usize, StoreError> {
        self.addr.send(Rehydrate { agents }).await.map_err(stopped)
    }

    /// Records a heartbeat through the agent's session (started if needed).
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        heartbeat: Heartbeat,
        transport: Transport,
    ) -> Result<HeartbeatRecorded, StoreError> {
        let session = self.addr.send(SessionFor { agent_id: agent_id.to_string() }).await.map_err(stopped)?;
        session.send(RecordHeartbeat { heartbeat, transport }).await.map_err(stopped)?
    }

    /// How the agent is reachable now (`None` when offline or unknown). Never starts a session: only
    /// a heartbeat or the rebuild at start-up does.
    pub async fn transport(&self, agent_id: &str) -> Option<Transport> {
        let session = self.addr.send(ExistingSession { agent_id: agent_id.to_string() }).await.ok()??;
        session.send(GetTransport).await.ok().flatten()
    }

    /// Registers interest in work for the agent. Register before looking for work, then wait: work
    /// that arrives in between still wakes the waiter.
    pub async fn register_waiter(&self, agent_id: &str) -> Option<WorkWaiter> {
        let (tx, rx) = oneshot::channel();
        self.addr.send(AddWaiter { agent_id: agent_id.to_string(), tx }).await.ok()?;
        Some(WorkWaiter(rx))
    }

    /// Waits until work arrives for the agent or `timeout` passes; true when woken by work.
    pub async fn wait_for_work(&self, agent_id: &str, timeout: Duration) -> bool {
        match self.register_waiter(agent_id).await {
            Some(waiter) => waiter.wait(timeout).await,
            None => false,
        }
    }

    /// Wakes the agent's long-poll waiters.
    pub fn work_arrived(&self, agent_id: &str) {
        self.addr.do_send(WorkArrived { agent_id: agent_id.to_string() });
    }

    /// Stops the session of a removed agent.
    pub fn forget(&self, agent_id: &str) {
        self.addr.do_send(ForgetAgent { agent_id: agent_id.to_string() });
    }

    /// (sessions, long-poll waiters), for metrics.
    pub async fn counts(&self) -> (usize, usize) {
        self.addr.send(CountSessions).await.unwrap_or_default()
    }
}

/// A registered long-poll waiter (see [`AgentRegistryHandle::register_waiter`]).
pub struct WorkWaiter(oneshot::Receiver<()>);

impl WorkWaiter {
    /// True when woken by work before `timeout`.
    pub async fn wait(self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.0).await, Ok(Ok(())))
    }
}
