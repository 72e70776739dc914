//! `phoenix-actors`: the domain of Phoenix, independent of HTTP and SQL.
//!
//! - [`store`]: the [`Store`] trait through which the domain persists its state; `phoenix::db`
//!   implements it with Diesel over PostgreSQL or SQLite.
//!
//! The actors (experiments, the deployment supervisor, agent sessions, the event hub) live here too and
//! talk to the outside world only through a [`Store`] and a [`phoenix_nats::Bus`].

pub mod store;

pub use store::{Store, StoreError};
