//! Authentication and access control: password hashing, access tokens (JWT), refresh-token rotation,
//! login rate limiting, and agent credentials. HTTP-free; `http::access` applies it to routes.

pub mod password;
pub mod rate_limit;
pub mod secrets;
mod service;
pub mod tokens;

pub use service::{AuthError, AuthService, Enrollment, Session};
pub use tokens::AccessClaims;
