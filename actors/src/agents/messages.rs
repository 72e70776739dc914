//! What the agent actors can be asked.

use actix::prelude::*;
use phoenix_nats::wire::Heartbeat;
use tokio::sync::oneshot;

use super::session::AgentSession;
use super::{Agent, Transport};
use crate::store::StoreError;

/// Record a heartbeat (session). Answers the stored agent and whether it just came (back) online.
#[derive(Message)]
#[rtype(result = "Result<HeartbeatRecorded, StoreError>")]
pub struct RecordHeartbeat {
    /// What the agent sent.
    pub heartbeat: Heartbeat,
    /// How it arrived.
    pub transport: Transport,
}

/// The outcome of [`RecordHeartbeat`].
#[derive(Debug, Clone)]
pub struct HeartbeatRecorded {
    /// The agent as stored after the heartbeat.
    pub agent: Agent,
    /// True when the agent was offline (or unknown to this server) before this heartbeat.
    pub came_online: bool,
}

/// How the agent is reachable now: `None` when offline (session).
#[derive(Message)]
#[rtype(result = "Option<Transport>")]
pub struct GetTransport;

/// The session of an agent, started if needed (registry).
#[derive(Message)]
#[rtype(result = "Addr<AgentSession>")]
pub struct SessionFor {
    /// The agent.
    pub agent_id: String,
}

/// The session of an agent if there is one, without starting it (registry).
#[derive(Message)]
#[rtype(result = "Option<Addr<AgentSession>>")]
pub struct ExistingSession {
    /// The agent.
    pub agent_id: String,
}

/// Stop now (session); used when the agent is removed or its session replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSession;

/// Start sessions for agents loaded from the database (registry).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Rehydrate {
    /// Agents whose credentials are valid.
    pub agents: Vec<Agent>,
}

/// Wake `tx` when work arrives for the agent (registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddWaiter {
    /// The agent polling.
    pub agent_id: String,
    /// Fired once, on work.
    pub tx: oneshot::Sender<()>,
}

/// Work arrived for the agent: wake its long-poll waiters (registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkArrived {
    /// The agent.
    pub agent_id: String,
}

/// The agent was removed: stop its session (registry).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetAgent {
    /// The agent.
    pub agent_id: String,
}

/// How many sessions and long-poll waiters exist (registry).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct CountSessions;
