-- Phoenix initial schema (PostgreSQL). migrations/sqlite holds the same tables with the same column
-- types: ids are TEXT (UUIDv7), JSON documents are TEXT, times are UTC TIMESTAMP (see DESIGN.md §5).

CREATE TABLE system_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    active        BOOLEAN NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TIMESTAMP NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    used_at     TIMESTAMP,
    revoked_at  TIMESTAMP
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    user_id    TEXT,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP NOT NULL
);

CREATE TABLE experiments (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL,
    phase              TEXT NOT NULL,
    spec               TEXT NOT NULL,
    baseline_config    TEXT,
    candidate_config   TEXT,
    results            TEXT,
    deployment_id      TEXT,
    created_by         TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    started_at         TIMESTAMP,
    measuring_from     TIMESTAMP,
    completed_at       TIMESTAMP
);
CREATE INDEX experiments_phase ON experiments (phase, created_at);

CREATE TABLE experiment_events (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL,
    from_phase    TEXT,
    to_phase      TEXT,
    message       TEXT NOT NULL,
    data          TEXT,
    actor         TEXT,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX experiment_events_experiment ON experiment_events (experiment_id, created_at);

CREATE TABLE pipeline_templates (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    body        TEXT NOT NULL,
    parameters  TEXT NOT NULL,
    builtin     BOOLEAN NOT NULL,
    created_by  TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE pipeline_deployments (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    template        TEXT,
    pipeline        TEXT NOT NULL,
    target          TEXT NOT NULL,
    rollout         TEXT NOT NULL,
    status          TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    created_by      TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    deleted_at      TIMESTAMP
);
CREATE INDEX pipeline_deployments_status ON pipeline_deployments (status, created_at);

CREATE TABLE deployment_versions (
    id                    TEXT PRIMARY KEY,
    deployment_id         TEXT NOT NULL REFERENCES pipeline_deployments (id) ON DELETE CASCADE,
    version               INTEGER NOT NULL,
    pipeline              TEXT NOT NULL,
    config                TEXT NOT NULL,
    config_hash           TEXT NOT NULL,
    status                TEXT NOT NULL,
    rollback_from_version INTEGER,
    notes                 TEXT NOT NULL,
    created_by            TEXT,
    created_at            TIMESTAMP NOT NULL,
    UNIQUE (deployment_id, version)
);

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    hostname          TEXT NOT NULL,
    labels            TEXT NOT NULL,
    credential_hash   TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL,
    agent_version     TEXT,
    last_heartbeat_at TIMESTAMP,
    resources         TEXT,
    pipelines         TEXT,
    enrolled_at       TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    revoked_at        TIMESTAMP
);
CREATE INDEX agents_state ON agents (state);

CREATE TABLE agent_enrollment_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    labels     TEXT NOT NULL,
    uses_left  INTEGER NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    agent_id         TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    task_type        TEXT NOT NULL,
    payload          TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    idempotency_key  TEXT UNIQUE,
    not_before       TIMESTAMP NOT NULL,
    lease_expires_at TIMESTAMP,
    progress         TEXT,
    result           TEXT,
    error            TEXT,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    dispatched_at    TIMESTAMP,
    started_at       TIMESTAMP,
    finished_at      TIMESTAMP
);
CREATE INDEX tasks_claim ON tasks (agent_id, status, priority, created_at);
CREATE INDEX tasks_lease ON tasks (status, lease_expires_at);

-- The CacheMetric store: one row per measured value, per experiment, agent, pipeline and variant.
CREATE TABLE metric_samples (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT,
    agent_id      TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    variant       TEXT,
    metric        TEXT NOT NULL,
    value         DOUBLE PRECISION NOT NULL,
    labels        TEXT NOT NULL,
    sampled_at    TIMESTAMP NOT NULL,
    received_at   TIMESTAMP NOT NULL
);
CREATE INDEX metric_samples_experiment ON metric_samples (experiment_id, variant, sampled_at);
CREATE INDEX metric_samples_time ON metric_samples (sampled_at);

CREATE TABLE cardinality_snapshots (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT,
    agent_id      TEXT,
    pipeline      TEXT NOT NULL,
    variant       TEXT,
    metric        TEXT NOT NULL,
    series        BIGINT NOT NULL,
    by_label      TEXT NOT NULL,
    captured_at   TIMESTAMP NOT NULL
);
CREATE INDEX cardinality_snapshots_scope ON cardinality_snapshots (experiment_id, pipeline, captured_at);
