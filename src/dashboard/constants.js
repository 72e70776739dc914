// The API's vocabularies, in the order the dashboard lists them.

export const AGENT_STATES = ["online", "degraded", "offline"];
export const PHASES = ["pending", "deploying", "running", "analyzing", "completed", "promoted", "stopping", "stopped", "rolled_back", "failed"];
// `deleted` deployments are never listed, so they are not offered as a filter or counted.
export const DEPLOYMENT_STATUSES = ["rolling_out", "active", "degraded", "paused", "failed"];
