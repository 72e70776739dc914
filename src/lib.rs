//! Phoenix: a control plane that cuts the cost of observability metrics by cutting their cardinality,
//! and proves every cut with a side-by-side experiment before it ships.
//!
//! - [`cli`]: the operator's commands (`login`, `experiment …`) over REST and WebSocket.
//! - [`config`]: layered settings (defaults, `phoenix.toml`, `PHOENIX_*` variables, flags).
//! - [`db`]: Diesel over PostgreSQL or SQLite, migrations, and the `Store` implementation.
//! - [`http`]: the actix-web server — route table, handlers, problem-document errors, middleware.
//! - [`live`]: a client of the live-updates WebSocket (`watch` commands, tests).
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`server`]: the `phoenix server` command; [`agent`]: the `phoenix agent` command; [`args`] the
//!   command line of the binary.
//! - [`telemetry`]: logging with `tracing`.
//!
//! The domain (actors, state machines, the `Store` trait) lives in `phoenix-actors`; the message bus
//! (NATS or in-process) in `phoenix-nats`; pipeline configs, templates and the engine that runs them
//! (server and agent) in `phoenix-pipeline`.

pub mod agent;
pub mod args;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod live;
pub mod metrics;
pub mod nats_identity;
pub mod private_file;
pub mod server;
pub mod telemetry;
