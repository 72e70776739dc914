//! Who may call a route. Every route declares an [`Access`] in the route table; [`authorize`] enforces
//! it before the handler (and before the body is read), and leaves the caller in the request for the
//! [`CurrentUser`] / [`CurrentAgent`] extractors.

use std::future::{ready, Ready};

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest};
use phoenix_actors::store::AgentIdentity;
use phoenix_actors::users::{Role, User};

use super::{ApiError, AppState};
use crate::auth::AccessClaims;

/// What a caller must present to use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credential.
    Public,
    /// A user access token with at least this role.
    User(Role),
    /// The same, also taken from the query string as `?access_token=`: for WebSocket handshakes, on
    /// which browsers cannot set headers. (Proxies log query strings: only where there is no other way.)
    UserOrQueryToken(Role),
    /// An agent credential.
    Agent,
}

/// The authenticated user of this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub claims: AccessClaims,
}

/// The authenticated agent of this request.
#[derive(Debug, Clone)]
pub struct CurrentAgent(pub AgentIdentity);

/// Route middleware enforcing `access`.
pub async fn authorize(
    access: Access,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let checked = match access {
        Access::Public => Ok(()),
        Access::User(required) => admit_user(&req, required, false).await,
        Access::UserOrQueryToken(required) => admit_user(&req, required, true).await,
        Access::Agent => admit_agent(&req).await,
    };
    let audited = super::audit::RequestFacts::of(&req, access);
    let response = match checked {
        Ok(()) => next.call(req).await?,
        Err(refusal) => req.error_response(refusal),
    };
    if let Some(facts) = audited {
        facts.record(&response).await;
    }
    Ok(response)
}

async fn admit_user(req: &ServiceRequest, required: Role, query_token_too: bool) -> Result<(), ApiError> {
    let token = if query_token_too && !req.headers().contains_key(AUTHORIZATION) {
        query_token(req).ok_or_else(|| {
            ApiError::unauthorized("this needs a bearer token (Authorization: Bearer …) or ?access_token=")
        })?
    } else {
        bearer_token(req)?
    };
    let (user, claims) = state(req)?.auth.authenticate(token).await?;
    if !user.role.allows(required) {
        return Err(ApiError::Forbidden {
            code: "forbidden",
            detail: format!("this needs the {} role; you are {}", required.as_str(), user.role.as_str()),
        });
    }
    req.extensions_mut().insert(CurrentUser { user, claims });
    Ok(())
}

async fn admit_agent(req: &ServiceRequest) -> Result<(), ApiError> {
    let credential = bearer_token(req)?;
    let agent = state(req)?.auth.agent_from_credential(credential).await?;
    req.extensions_mut().insert(CurrentAgent(agent));
    Ok(())
}

fn state(req: &ServiceRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))
}

fn bearer_token(req: &ServiceRequest) -> Result<&str, ApiError> {
    let Some(header) = req.headers().get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized("this needs a bearer token (Authorization: Bearer …)"));
    };
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be 'Bearer <token>'"))
}

fn query_token(req: &ServiceRequest) -> Option<&str> {
    req.query_string().split('&').find_map(|pair| pair.strip_prefix("access_token=")).filter(|token| !token.is_empty())
}

/// Reads what [`authorize`] stored; a route without the matching `Access` gets 401, never a panic.
fn from_extensions<T: Clone + 'static>(req: &HttpRequest) -> Ready<Result<T, Error>> {
    ready(req.extensions().get::<T>().cloned().ok_or_else(|| ApiError::unauthorized("not authenticated").into()))
}

impl FromRequest for CurrentUser {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        from_extensions(req)
    }
}

impl FromRequest for CurrentAgent {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        from_extensions(req)
    }
}
