DROP TABLE deployment_events;
DROP INDEX pipeline_deployments_live_name;
ALTER TABLE pipeline_deployments DROP COLUMN resumed_at;
ALTER TABLE pipeline_deployments DROP COLUMN status_detail;
