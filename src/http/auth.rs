//! `/api/v1/auth/*`: register, log in, refresh, log out, and who am I.

use actix_web::{web, HttpRequest, HttpResponse};
use phoenix_actors::hub::end_sessions;
use phoenix_actors::users::User;
use serde::Deserialize;
use utoipa::ToSchema;

use super::access::CurrentUser;
use super::{ApiError, AppState};
use crate::auth::{AuthError, Session};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    username: String,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// `POST /auth/register`: the first user becomes admin; later ones only when registration is open.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses((status = 201, description = "The user", body = User)))]
pub async fn register_user(state: web::Data<AppState>, body: web::Json<Credentials>) -> Result<HttpResponse, ApiError> {
    let user = state.auth.register(&body.username, &body.password).await?;
    tracing::info!(user.id = %user.id, user.role = user.role.as_str(), "user registered");
    Ok(HttpResponse::Created().json(user))
}

/// `POST /auth/login`: `{access_token, refresh_token, token_type, expires_in, user}`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "A session", body = Session)))]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let client = super::client_addr::client_address(&req, &state.settings.server.trusted_proxies);
    let session = state.auth.login(&body.username, &body.password, client).await;
    super::audit::record_login(&state, &req, &body.username, &session).await;
    Ok(HttpResponse::Ok().json(session?))
}

/// `POST /auth/refresh`: spends the refresh token and answers a new pair.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "A new session; the refresh token given is spent", body = Session)))]
pub async fn refresh_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let session = state.auth.refresh(&body.refresh_token).await;
    if let Err(AuthError::RefreshTokenReused { user_id }) = &session {
        super::audit::record_security_event(&state, &req, "auth.refresh_token_reused", Some(user_id.clone())).await;
    }
    Ok(HttpResponse::Ok().json(session?))
}

/// `POST /auth/logout`: revokes this access token and its refresh family, and closes the live
/// connections opened in this login session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204, description = "Logged out")))]
pub async fn logout(state: web::Data<AppState>, caller: CurrentUser) -> Result<HttpResponse, ApiError> {
    state.auth.logout(&caller.claims).await?;
    end_sessions(&state.events, &caller.claims.sub, Some(&caller.claims.sid), "logged out").await;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /auth/me`.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", responses((status = 200, description = "The caller", body = User)))]
pub async fn get_me(caller: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(caller.user)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    current_password: String,
    /// The new one (8 to 1,024 bytes).
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

/// `POST /auth/password`: changes the caller's password. Every session of the user ends — other
/// logins' tokens are refused, their refresh tokens revoked, their live connections closed — and the
/// answer is a new session for the caller.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, description = "A new session; every earlier one has ended", body = Session),
        (status = 422, description = "The current password is wrong, or the new one is not allowed")))]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: CurrentUser,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let session = state.auth.change_password(&caller.user, &body.current_password, &body.new_password).await?;
    end_sessions(&state.events, &caller.user.id, None, "the account's password changed").await;
    Ok(HttpResponse::Ok().json(session))
}
