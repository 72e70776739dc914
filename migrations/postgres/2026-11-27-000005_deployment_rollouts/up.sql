-- Why a deployment is in its status (the failing agents of a paused rollout), when a paused rollout was
-- resumed (failures before it no longer count); names are unique among live deployments; and each
-- deployment's history of changes.
ALTER TABLE pipeline_deployments ADD COLUMN status_detail TEXT;
ALTER TABLE pipeline_deployments ADD COLUMN resumed_at TIMESTAMP;
CREATE UNIQUE INDEX pipeline_deployments_live_name ON pipeline_deployments (name) WHERE deleted_at IS NULL;

CREATE TABLE deployment_events (
    id            TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES pipeline_deployments (id) ON DELETE CASCADE,
    event_type    TEXT NOT NULL,
    version       INTEGER,
    message       TEXT NOT NULL,
    data          TEXT,
    actor         TEXT,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, created_at);
