//! `/api/v1/agent/*` with an agent credential: the HTTP transport of the agent protocol. Bodies and
//! answers are the same envelopes as on NATS, and every call goes through the same `AgentGateway`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use phoenix_actors::agents::Transport;
use phoenix_actors::gateway::Refusal;
use phoenix_actors::tasks::queue::assignment;
use phoenix_actors::tasks::ReportOutcome;
use phoenix_actors::tasks::TaskStatus;
use phoenix_nats::wire::{kinds, Heartbeat, HeartbeatAck, MetricsBatch, TaskAssignment, TaskStatusReport};
use phoenix_nats::{Envelope, ENVELOPE_VERSION};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::CurrentAgent;
use super::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Seconds to hold the request while there is no task (0 = answer at once; longer than the
    /// server's `agents.long_poll_max_wait_secs` is shortened to it).
    #[serde(default)]
    #[param(maximum = 3600)]
    wait: u64,
}

/// The longest `wait` a long-poll may ask for (it is shortened to the server's setting anyway).
const MAX_WAIT_SECS: u64 = 3600;

/// The tasks due now, each in a `task` envelope.
#[derive(Serialize, ToSchema)]
pub struct DueTasks {
    items: Vec<Envelope<TaskAssignment>>,
}

/// What became of a task status report.
#[derive(Serialize, ToSchema)]
pub struct ReportAnswer {
    task_id: String,
    /// The task's status now.
    status: TaskStatus,
    /// False when the report changed nothing (repeated, or behind the task's state).
    applied: bool,
}

/// What became of a metrics batch.
#[derive(Serialize, ToSchema)]
pub struct MetricsAnswer {
    /// False when this envelope id was stored before (the batch is not stored twice).
    stored: bool,
    /// Samples in the batch.
    samples: usize,
}

/// `POST /agent/heartbeat`: answers a `heartbeat_ack` envelope.
#[utoipa::path(post, path = "/api/v1/agent/heartbeat", tag = "agent", request_body = Envelope<Heartbeat>,
    responses((status = 200, description = "Acknowledged", body = Envelope<HeartbeatAck>)))]
pub async fn post_heartbeat(
    state: web::Data<AppState>,
    agent: CurrentAgent,
    body: web::Json<Envelope<Heartbeat>>,
) -> Result<HttpResponse, ApiError> {
    let envelope = body.into_inner();
    expect_kind(&envelope, kinds::HEARTBEAT)?;
    let ack = state.gateway.handle_heartbeat(&agent.0.id, envelope.body, Transport::Http).await.map_err(refused)?;
    Ok(HttpResponse::Ok().json(Envelope::new(kinds::HEARTBEAT_ACK, ack)))
}

/// `GET /agent/tasks?wait=30`: answers at once when a task is due, else holds the request until one
/// is enqueued or the wait ends (then `items` is empty).
#[utoipa::path(get, path = "/api/v1/agent/tasks", tag = "agent", params(PollQuery),
    responses((status = 200, description = "The tasks due (none when the wait ended)", body = DueTasks)))]
pub async fn poll_tasks(
    state: web::Data<AppState>,
    agent: CurrentAgent,
    query: web::Query<PollQuery>,
) -> Result<HttpResponse, ApiError> {
    // A longer wait than the server allows is shortened, not refused: agents need not know the setting.
    if query.wait > MAX_WAIT_SECS {
        return Err(ApiError::BadRequest(format!("wait must be at most {MAX_WAIT_SECS} seconds")));
    }
    let wait = query.wait.min(state.settings.agents.long_poll_max_wait_secs);
    let _held = state.gateway.enter_long_poll(&agent.0.id).map_err(refused)?;
    let tasks = state.queue.poll(&agent.0.id, Duration::from_secs(wait)).await?;
    let policy = state.queue.policy();
    let items: Vec<_> = tasks.iter().map(|task| Envelope::new(kinds::TASK, assignment(task, policy))).collect();
    Ok(HttpResponse::Ok().json(DueTasks { items }))
}

/// `POST /agent/tasks/{id}/status`: a repeated or backwards report changes nothing and still answers
/// 200 (`applied: false`); a report on another agent's task is refused with 403.
#[utoipa::path(post, path = "/api/v1/agent/tasks/{id}/status", tag = "agent",
    params(("id" = String, Path, description = "Task id")), request_body = Envelope<TaskStatusReport>,
    responses((status = 200, description = "Recorded (or ignored: `applied` says)", body = ReportAnswer)))]
pub async fn post_task_status(
    state: web::Data<AppState>,
    agent: CurrentAgent,
    task_id: web::Path<String>,
    body: web::Json<Envelope<TaskStatusReport>>,
) -> Result<HttpResponse, ApiError> {
    let envelope = body.into_inner();
    expect_kind(&envelope, kinds::TASK_STATUS)?;
    if envelope.body.task_id != *task_id {
        return Err(ApiError::invalid(vec![(
            "body.task_id".into(),
            format!("must be the task of the path ({task_id})"),
        )]));
    }
    let outcome =
        state.gateway.handle_task_status(&agent.0.id, &envelope.body).await.map_err(|refusal| match refusal {
            Refusal::UnknownTask => ApiError::NotFound(format!("task {task_id} not found")),
            Refusal::Store(e) => ApiError::from(e).for_entity("task", &task_id),
            other => refused(other),
        })?;
    let (task, applied) = match outcome {
        ReportOutcome::Applied(task) => (task, true),
        ReportOutcome::Ignored(task) => (task, false),
        ReportOutcome::NotYours => {
            return Err(ApiError::Forbidden {
                code: "not_your_task",
                detail: "the task belongs to another agent".into(),
            })
        }
    };
    Ok(HttpResponse::Ok().json(ReportAnswer { task_id: task.id, status: task.status, applied }))
}

/// `POST /agent/metrics`: stored once per envelope id, however often it is sent; refused (403
/// `not_your_experiment` or `not_your_pipeline`) unless the agent was given the pipeline, and for an
/// experiment, that experiment's pipeline of that variant.
#[utoipa::path(post, path = "/api/v1/agent/metrics", tag = "agent", request_body = Envelope<MetricsBatch>,
    responses((status = 202, description = "Accepted", body = MetricsAnswer)))]
pub async fn post_metrics(
    state: web::Data<AppState>,
    agent: CurrentAgent,
    body: web::Json<Envelope<MetricsBatch>>,
) -> Result<HttpResponse, ApiError> {
    let envelope = body.into_inner();
    expect_kind(&envelope, kinds::METRICS)?;
    let stored =
        state.gateway.handle_metrics(&agent.0.id, &envelope.id, &envelope.body, Utc::now()).await.map_err(refused)?;
    Ok(HttpResponse::Accepted().json(MetricsAnswer { stored, samples: envelope.body.samples.len() }))
}

/// An agent message the gateway refused: 422 naming each field past its bounds, 403 when it is about
/// someone else's work (the problem's code is the reason NATS counts), 503 when the store failed, 400
/// otherwise.
fn refused(refusal: Refusal) -> ApiError {
    let (code, detail) = (refusal.reason(), refusal.to_string());
    match refusal {
        Refusal::NotYourTask | Refusal::NotGiven(_) | Refusal::WrongAgent => ApiError::Forbidden { code, detail },
        Refusal::Invalid(problems) => ApiError::invalid(problems),
        Refusal::Quota(exceeded) => {
            ApiError::TooManyRequests { code, detail, retry_after_secs: exceeded.retry_after_secs() }
        }
        Refusal::Store(e) => ApiError::from(e),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// The envelope checks NATS makes too: the version this server reads, and the kind the route expects.
fn expect_kind<T>(envelope: &Envelope<T>, expected: &str) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if envelope.v != ENVELOPE_VERSION {
        problems.push((
            "v".into(),
            format!("envelope version {} is not supported (this server reads {ENVELOPE_VERSION})", envelope.v),
        ));
    }
    if envelope.kind != expected {
        problems.push(("kind".into(), format!("must be '{expected}', not '{}'", envelope.kind)));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(problems))
    }
}
