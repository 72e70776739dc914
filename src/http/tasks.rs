//! `/api/v1/tasks`: the queue as operators see it.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use phoenix_actors::paging::Page;
use phoenix_actors::tasks::{NewTask, QueueStats, Task, TaskFilter, TaskStatus};
use serde::Deserialize;
use utoipa::IntoParams;

use super::paging::PageQuery;
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    /// Only this agent's tasks.
    agent_id: Option<String>,
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    task_type: Option<String>,
    // Written out rather than flattened: serde_urlencoded cannot parse numbers inside a flattened struct.
    /// Most items on the page (1 to 500; 50 when not given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /tasks?agent_id=&status=&type=&limit=&cursor=` (newest first)
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskListQuery),
    responses((status = 200, description = "A page of tasks", body = Page<Task>)))]
pub async fn list_tasks(
    state: web::Data<AppState>,
    query: web::Query<TaskListQuery>,
) -> Result<HttpResponse, ApiError> {
    let filter = TaskFilter {
        agent_id: query.agent_id.clone(),
        status: query.status.as_deref().map(str::parse::<TaskStatus>).transpose().map_err(ApiError::BadRequest)?,
        task_type: query.task_type.clone(),
    };
    Ok(HttpResponse::Ok().json(
        state.store.list_tasks(&filter, PageQuery { limit: query.limit, cursor: query.cursor.clone() }.page()?).await?,
    ))
}

/// `GET /tasks/queue`: counts by status, oldest pending age, mean wait and run times.
#[utoipa::path(get, path = "/api/v1/tasks/queue", tag = "tasks", responses((status = 200, description = "The queue's figures", body = QueueStats)))]
pub async fn get_queue_stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.store.queue_stats(Utc::now()).await?))
}

/// Longest a task may wait for its agent.
const MAX_TASK_TTL_SECS: u64 = 366 * 24 * 3600;

/// `POST /tasks`: enqueues a task for an agent (an idempotency key makes a retry of this call safe).
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 201, description = "The task (the existing one for a known idempotency key)", body = Task)))]
pub async fn create_task(state: web::Data<AppState>, body: web::Json<NewTask>) -> Result<HttpResponse, ApiError> {
    let task = body.into_inner();
    let mut problems = Vec::new();
    if task.task_type.trim().is_empty() || task.task_type.chars().count() > phoenix_actors::limits::TASK_TYPE_CHARS {
        let max = phoenix_actors::limits::TASK_TYPE_CHARS;
        problems.push(("task_type".to_string(), format!("must be 1 to {max} characters")));
    }
    if task.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
        problems.push(("max_attempts".into(), "must be between 1 and 100".into()));
    }
    if task.ttl_secs.is_some_and(|ttl| ttl == 0 || ttl > MAX_TASK_TTL_SECS) {
        problems.push(("ttl_secs".into(), format!("must be between 1 and {MAX_TASK_TTL_SECS} (a year)")));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    let agent_id = task.agent_id.clone();
    let task = state.queue.enqueue(task).await.map_err(|e| ApiError::from(e).for_entity("agent", &agent_id))?;
    Ok(HttpResponse::Created().json(task))
}

/// `GET /tasks/{id}`
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")), responses((status = 200, description = "The task", body = Task)))]
pub async fn get_task(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = state.store.get_task(&id).await.map_err(|e| ApiError::from(e).for_entity("task", &id))?;
    Ok(HttpResponse::Ok().json(task))
}

/// `POST /tasks/{id}/cancel`: 409 when the task already ended.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")), responses((status = 200, description = "The cancelled task", body = Task)))]
pub async fn cancel_task(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task = state.queue.cancel(&id).await.map_err(|e| ApiError::from(e).for_entity("task", &id))?;
    Ok(HttpResponse::Ok().json(task))
}
