// Live events (and list entries) as one line of prose for the overview's "Recent events".

import { shortId, words } from "../format.js";
import { AGENT_STATES } from "../constants.js";

/** `{kind, text, href, ts, status}` for a WebSocket event, or null for one not worth a line. */
export function describeEvent(message, deploymentNames = new Map()) {
  const { event, data = {}, ts } = message;
  const [family, what] = String(event).split(".");
  const line = (text, href, status) => ({ kind: family, text, href, ts, status });
  if (family === "experiment") return experimentLine(what, data, line);
  if (family === "deployment") return deploymentLine(what, data, line, deploymentNames);
  if (family === "agent") return agentLine(what, data, line);
  return null;
}

function experimentLine(what, data, line) {
  const exp = data.experiment ?? data;
  const name = exp.name ? `Experiment “${exp.name}”` : `Experiment ${shortId(data.id)}`;
  const href = `#/experiments/${data.id ?? exp.id}`;
  if (what === "created") return line(`${name} created`, href, exp.phase);
  if (what === "phase_changed") {
    const reason = data.reason ? `: ${data.reason}` : "";
    return line(`${name} ${words(data.from)} → ${words(data.to)}${reason}`, href, data.to);
  }
  if (what === "deleted") return line(`${name} deleted`, null);
  return line(`${name}: ${words(what)}`, href);
}

function deploymentLine(what, data, line, names) {
  const id = data.deployment?.id ?? data.deployment_id ?? data.id;
  const knownName = data.deployment?.name ?? (what === "created" ? data.name : null) ?? names.get(id);
  const name = knownName ? `Deployment “${knownName}”` : `Deployment ${shortId(id)}`;
  const href = `#/deployments/${id}`;
  if (what === "created") return line(`${name} created`, href, data.status);
  if (what === "status_changed") return line(`${name} ${words(data.from)} → ${words(data.to)}`, href, data.to);
  if (what === "version_created") {
    const from = data.rollback_from_version ? ` (rollback to the config of v${data.rollback_from_version})` : "";
    return line(`${name}: version ${data.version} created${from}`, href);
  }
  if (what === "wave_started") {
    const count = Array.isArray(data.agents) ? data.agents.length : 0;
    return line(`${name} v${data.version}: wave ${data.wave} started on ${count} agent${count === 1 ? "" : "s"}`, href);
  }
  return line(`${name}: ${words(what)}`, href);
}

function agentLine(what, data, line) {
  const name = data.hostname ? `Agent ${data.hostname}` : `Agent ${shortId(data.id)}`;
  const href = "#/fleet";
  if (AGENT_STATES.includes(what)) return line(`${name} is ${what}`, href, what);
  if (what === "enrolled") return line(`${name} enrolled`, href, data.state);
  if (what === "deleted") return line(`${name} decommissioned`, href);
  if (what === "credential_revoked") return line(`${name}: credential revoked`, href);
  return line(`${name}: ${words(what)}`, href);
}

/** A list entry (experiment or deployment) as the line of its latest change. */
export function seedEvent(kind, entity) {
  if (kind === "experiment") {
    return { kind, text: `Experiment “${entity.name}” is ${words(entity.phase)}`, href: `#/experiments/${entity.id}`, ts: entity.updated_at, status: entity.phase };
  }
  return { kind, text: `Deployment “${entity.name}” v${entity.current_version} is ${words(entity.status)}`, href: `#/deployments/${entity.id}`, ts: entity.updated_at, status: entity.status };
}
