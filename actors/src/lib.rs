//! `phoenix-actors`: the domain of Phoenix, independent of HTTP and SQL.
//!
//! - [`store`]: the [`Store`] trait through which the domain persists its state; `phoenix::db`
//!   implements it with Diesel over PostgreSQL or SQLite.
//! - [`agents`]: the fleet — one `AgentSession` actor per agent under the `AgentRegistry`.
//! - [`tasks`]: the task queue — leases, retries, reports — and its delivery to agents.
//! - [`gateway`]: the one way in for agent messages, over NATS or HTTP alike.
//! - [`audit`]: the audit log — every mutating request and security event, who, when, from where.
//! - [`events`]: domain events published on the bus for the WebSocket layer.
//! - [`experiments`]: what an experiment is, its phase machine, and the statistics of its verdict.
//! - [`deployments`]: a pipeline on a fleet as numbered versions (what a promotion creates).
//! - [`pipelines`]: how a pipeline is named (template + parameters, or inline config).
//! - [`users`]: accounts and roles; [`labels`]: agent labels; [`paging`]: cursor paging of lists.
//!
//! The actors (experiments, the deployment supervisor, agent sessions, the event hub) live here too and
//! talk to the outside world only through a [`Store`] and a [`phoenix_nats::Bus`].

pub mod agents;
pub mod audit;
pub mod deployments;
pub mod events;
pub mod experiments;
pub mod gateway;
pub mod hub;
pub mod labels;
pub mod limits;
pub mod ownership;
pub mod paging;
pub mod pipelines;
pub mod store;
pub mod tasks;
pub mod users;

pub use store::{Store, StoreError};

/// An error and its causes in one line (`outer: inner: root`), for logs and messages.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
