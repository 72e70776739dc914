//! Integration tests: the real server on port 0 against real services (SQLite files, a fresh
//! PostgreSQL database per test, a real NATS with a unique subject prefix per test). One test binary,
//! so the workspace links only once.

mod browser;
mod fleet_sim;
mod helpers;
#[path = "../../pipeline/tests/support/mod.rs"]
mod telemetry_support;

mod access;
mod agent;
mod agent_auth;
mod agent_nats;
mod api_fuzz;
mod audit;
mod auth;
mod cli;
mod compose;
mod crash;
mod dashboard;
mod deployments;
mod experiments;
mod exposition;
mod faults;
mod fleet;
mod input_handling;
mod leases;
mod leases_store;
mod limits;
mod migrations;
mod nats_agents;
mod nats_cluster;
mod nats_identity;
mod ops;
mod pipelines;
mod protocol;
mod provenance;
mod real_traffic;
mod replicas;
mod rollout_crash;
mod secrets;
mod shutdown;
mod soak;
mod storage;
mod ws;
