//! `phoenix-actors`: the domain of Phoenix, independent of HTTP and SQL.
//!
//! - [`store`]: the [`Store`] trait through which the domain persists its state; `phoenix::db`
//!   implements it with Diesel over PostgreSQL or SQLite.
//! - [`users`]: accounts and roles; [`labels`]: agent labels; [`paging`]: cursor paging of lists.
//!
//! The actors (experiments, the deployment supervisor, agent sessions, the event hub) live here too and
//! talk to the outside world only through a [`Store`] and a [`phoenix_nats::Bus`].

pub mod labels;
pub mod paging;
pub mod store;
pub mod users;

pub use store::{Store, StoreError};
