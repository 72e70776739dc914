//! One row type per table. JSON documents are kept as `String` here; the Store implementation turns
//! them into the domain types of `phoenix-actors`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = system_settings, primary_key(key))]
pub struct SystemSettingRow {
    pub key: String,
    pub value: String,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = leases, primary_key(name))]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub token: i64,
    pub expires_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Access tokens issued before this are refused (set by a password change).
    pub sessions_valid_after: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = refresh_tokens, treat_none_as_null = true)]
pub struct RefreshTokenRow {
    pub id: String,
    pub user_id: String,
    pub family_id: String,
    pub token_hash: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = revoked_tokens, primary_key(jti), treat_none_as_null = true)]
pub struct RevokedTokenRow {
    pub jti: String,
    pub user_id: Option<String>,
    pub expires_at: NaiveDateTime,
    pub revoked_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = experiments, treat_none_as_null = true)]
pub struct ExperimentRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub phase: String,
    /// The experiment as submitted (baseline, candidate, target, timings, criteria), JSON.
    pub spec: String,
    pub baseline_config: Option<String>,
    pub candidate_config: Option<String>,
    pub results: Option<String>,
    pub deployment_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub measuring_from: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    /// The agent ids the target resolved to at start, JSON.
    pub target_agents: Option<String>,
    /// Why the experiment is in its phase (a failure's reason).
    pub phase_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = experiment_events, treat_none_as_null = true)]
pub struct ExperimentEventRow {
    pub id: String,
    pub experiment_id: String,
    pub event_type: String,
    pub from_phase: Option<String>,
    pub to_phase: Option<String>,
    pub message: String,
    pub data: Option<String>,
    pub actor: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = pipeline_templates, treat_none_as_null = true)]
pub struct PipelineTemplateRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub body: String,
    pub parameters: String,
    pub builtin: bool,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = pipeline_deployments, treat_none_as_null = true)]
pub struct PipelineDeploymentRow {
    pub id: String,
    pub name: String,
    pub template: Option<String>,
    pub pipeline: String,
    pub target: String,
    pub rollout: String,
    pub status: String,
    pub current_version: i32,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
    /// Why it is in its status (JSON), e.g. the failing agents of a paused rollout.
    pub status_detail: Option<String>,
    /// When a paused rollout was last resumed: failures before it no longer count.
    pub resumed_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = deployment_versions, treat_none_as_null = true)]
pub struct DeploymentVersionRow {
    pub id: String,
    pub deployment_id: String,
    pub version: i32,
    pub pipeline: String,
    pub config: String,
    pub config_hash: String,
    pub status: String,
    pub rollback_from_version: Option<i32>,
    pub notes: String,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable)]
#[diesel(table_name = deployment_events, treat_none_as_null = true)]
pub struct DeploymentEventRow {
    pub id: String,
    pub deployment_id: String,
    pub event_type: String,
    pub version: Option<i32>,
    pub message: String,
    pub data: Option<String>,
    pub actor: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = agents, treat_none_as_null = true)]
pub struct AgentRow {
    pub id: String,
    pub hostname: String,
    pub labels: String,
    pub credential_hash: String,
    pub state: String,
    pub agent_version: Option<String>,
    pub last_heartbeat_at: Option<NaiveDateTime>,
    pub resources: Option<String>,
    pub pipelines: Option<String>,
    pub enrolled_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = agent_enrollment_tokens, treat_none_as_null = true)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub token_hash: String,
    pub labels: String,
    pub uses_left: i32,
    pub expires_at: NaiveDateTime,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = tasks, treat_none_as_null = true)]
pub struct TaskRow {
    pub id: String,
    pub agent_id: String,
    pub task_type: String,
    pub payload: String,
    pub priority: i32,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub idempotency_key: Option<String>,
    pub not_before: NaiveDateTime,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub progress: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub dispatched_at: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = metric_samples, treat_none_as_null = true)]
pub struct MetricSampleRow {
    pub id: String,
    pub experiment_id: Option<String>,
    pub agent_id: String,
    pub pipeline: String,
    pub variant: Option<String>,
    pub metric: String,
    pub value: f64,
    pub labels: String,
    pub sampled_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub batch_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Identifiable)]
#[diesel(table_name = cardinality_snapshots, treat_none_as_null = true)]
pub struct CardinalitySnapshotRow {
    pub id: String,
    pub experiment_id: Option<String>,
    pub agent_id: Option<String>,
    pub pipeline: String,
    pub variant: Option<String>,
    pub metric: String,
    pub series: i64,
    pub by_label: String,
    pub captured_at: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: String,
    pub at: NaiveDateTime,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub status: Option<i32>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}
