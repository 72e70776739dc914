//! `/api/v1/users`: admins list, create, and change users.

use actix_web::{web, HttpResponse};
use phoenix_actors::hub::end_sessions;
use phoenix_actors::paging::Page;
use phoenix_actors::users::{Role, User, UserChanges};
use serde::Deserialize;
use utoipa::ToSchema;

use super::paging::PageQuery;
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    username: String,
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    role: Option<Role>,
    active: Option<bool>,
}

/// `GET /users?limit&cursor`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "A page of users", body = Page<User>)))]
pub async fn list_users(state: web::Data<AppState>, query: web::Query<PageQuery>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.list_users(query.page()?).await?))
}

/// `POST /users`.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, description = "The user", body = User)))]
pub async fn create_user(
    state: web::Data<AppState>,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state.auth.create_user(&body.username, &body.password, body.role).await?;
    tracing::info!(user.id = %user.id, user.role = user.role.as_str(), "user created");
    Ok(HttpResponse::Created().json(user))
}

/// `GET /users/{id}`.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = User)))]
pub async fn get_user(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.get_user(&id).await.map_err(|e| ApiError::from(e).for_entity("user", &id))?))
}

/// `PATCH /users/{id}`: change the role or (de)activate. A deactivated user's tokens stop working at once;
/// a deactivation or a new role also closes the user's live connections on every replica.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    request_body = UpdateUserRequest, responses((status = 200, description = "The user", body = User)))]
pub async fn update_user(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let not_found = |e| ApiError::from(e).for_entity("user", &id);
    let before = state.store.get_user(&id).await.map_err(not_found)?;
    let changes = UserChanges { role: body.role, active: body.active };
    let user = state.store.update_user(&id, changes).await.map_err(not_found)?;
    tracing::info!(user.id = %user.id, user.role = user.role.as_str(), user.active = user.active, "user changed");
    if let Some(reason) = user.sessions_end_reason(&before) {
        end_sessions(&state.events, &user.id, None, reason).await;
    }
    Ok(HttpResponse::Ok().json(user))
}
