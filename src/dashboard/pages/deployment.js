// One deployment: status and version, rollout progress per agent, version history, the diff between
// two versions, and Rollback / Pause / Resume. Live via `deployment:<id>`; while a rollout is in
// progress the per-agent status is also polled (agents applying a version raise no deployment event).

import { h, setText, debounce } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { loadFailed, showError, showMessage } from "../ui.js";
import { deploymentActions } from "./deployment-actions.js";
import { rolloutSection, versionsSection, diffSection } from "./deployment-parts.js";

const POLL_MS = 3000;

export function render(container, ctx) {
  const id = ctx.params[0];
  const base = `/api/v1/pipelines/deployments/${encodeURIComponent(id)}`;
  const page = h("div", { id: "deployment-detail", dataset: { id } }, h("p", { class: "loading" }, "Loading…"));
  container.append(page);

  let deployment = null;
  let view = null;
  let gone = false;
  const hostnames = new Map();
  const rollout = rolloutSection(hostnames);
  const versions = versionsSection();
  const diff = diffSection(base);
  const history = h("ol", { class: "timeline", id: "dep-history" });

  const guard = (fn) => async () => {
    try {
      await fn();
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  const loadStatus = guard(async () => {
    const status = await api.get(`${base}/status`);
    if (!gone) rollout.update(status);
  });
  const loadVersions = guard(async () => {
    const list = await api.get(withQuery(`${base}/versions`, { limit: 200 }));
    if (gone) return;
    versions.update(list.items, deployment);
    diff.setVersions(list.items, deployment?.current_version);
    actions.setVersions(list.items);
  });
  const loadHistory = guard(async () => {
    const events = await api.get(`${base}/events`);
    if (!gone) history.replaceChildren(...events.items.slice().reverse().map(historyItem));
  });
  const loadHostnames = guard(async () => {
    const agents = await api.get(withQuery("/api/v1/agents", { limit: 500 }));
    for (const a of agents.items) hostnames.set(a.id, a.hostname);
  });
  const refreshAll = debounce(() => {
    loadStatus();
    loadVersions();
    loadHistory();
  }, 300);

  const apply = (next) => {
    if (!next || gone) return;
    if (deployment && Date.parse(next.updated_at) < Date.parse(deployment.updated_at)) return;
    const versionChanged = deployment && deployment.current_version !== next.current_version;
    deployment = next;
    if (!view) view = buildView(page, { rollout, versions, diff, history, actions });
    view.update(next);
    actions.update(next);
    if (versionChanged) refreshAll();
  };

  const loadDeployment = async () => {
    try {
      apply(await api.get(base));
    } catch (error) {
      if (gone) return;
      if (!view) loadFailed(page, error, error.status === 404 ? null : loadDeployment);
      else showError(error);
    }
  };

  const actions = deploymentActions({ base, ctx, apply, afterChange: () => refreshAll(), reload: () => loadDeployment() });

  const onMessage = (message) => {
    if (message.type === "resync") {
      loadDeployment();
      return refreshAll();
    }
    if (message.type === "snapshot") {
      if (message.data === null && view) return showMessage("This deployment no longer exists.", "error");
      return apply(message.data);
    }
    if (message.data?.deployment) apply(message.data.deployment);
    if (message.event === "deployment.version_created") loadDeployment();
    refreshAll();
  };
  const stop = ctx.subscribe(`deployment:${id}`, onMessage);

  loadDeployment().then(async () => {
    if (gone || !view) return;
    await loadHostnames();
    loadStatus();
    loadVersions();
    loadHistory();
  });
  const poll = setInterval(() => {
    if (deployment?.status === "rolling_out") loadStatus();
  }, POLL_MS);

  return () => {
    gone = true;
    stop();
    clearInterval(poll);
    refreshAll.cancel();
    actions.destroy();
  };
}

function buildView(page, { rollout, versions, diff, history, actions }) {
  const title = h("h1", {});
  const status = h("span", { id: "dep-status", class: "badge" });
  const version = h("span", { id: "dep-version" });
  const detail = h("p", { class: "reason", hidden: true });
  const info = h("dl", { class: "kv info-grid" });
  const crumb = h("span", {});
  page.replaceChildren(
    h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, h("a", { href: "#/deployments" }, "Deployments"), " / ", crumb),
    h("div", { class: "page-header" }, h("div", { class: "title-line" }, title, status, h("span", { class: "version-tag" }, "v", version)), actions.el),
    detail,
    h("div", { class: "detail-grid" }, h("section", { class: "panel" }, h("h2", {}, "Deployment"), info), rollout.el),
    versions.el,
    diff.el,
    h("section", { class: "panel" }, h("h2", {}, "History"), history),
  );
  return {
    update(dep) {
      setText(title, dep.name);
      setText(crumb, dep.name);
      setText(status, dep.status);
      status.className = `badge status-${dep.status}`;
      setText(version, String(dep.current_version));
      const why = statusDetail(dep.status_detail);
      setText(detail, why);
      detail.hidden = !why;
      info.replaceChildren(
        ...[
          ["Current version", `v${dep.current_version}`],
          ["Pipeline", fmt.pipeline(dep.pipeline)],
          ["Target", fmt.target(dep.target)],
          ["Rollout", dep.rollout?.strategy === "waves" ? `waves: first ${dep.rollout.first_batch}, growth ×${dep.rollout.growth}, ${fmt.duration(dep.rollout.interval_secs)} apart, pause after ${dep.rollout.max_failures} failure(s)` : "all at once"],
          ["Name on the agents", h("code", {}, dep.agent_pipeline)],
          ["Created", fmt.timeAgo(dep.created_at)],
          ["Updated", fmt.timeAgo(dep.updated_at)],
        ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
      );
    },
  };
}

/** The `status_detail` JSON in words: its reason, and the agents that failed. */
function statusDetail(detail) {
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  const parts = [];
  if (detail.reason) parts.push(detail.reason);
  if (Array.isArray(detail.failed_agents) && detail.failed_agents.length) parts.push(`failed on: ${detail.failed_agents.map((a) => (a.error ? `${fmt.shortId(a.agent_id)} (${a.error})` : a.agent_id ?? a)).join(", ")}`);
  if (!parts.length) parts.push(Object.entries(detail).map(([k, v]) => `${fmt.words(k)}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; "));
  return parts.join(" — ");
}

function historyItem(e) {
  return h(
    "li",
    { class: "timeline-item" },
    h("span", { class: "timeline-time" }, fmt.timeAgo(e.created_at)),
    h("span", { class: "timeline-body" }, h("span", { class: "badge" }, fmt.words(e.event_type)), e.version ? h("span", { class: "muted" }, ` v${e.version}`) : null, e.message ? h("span", { class: "timeline-message" }, e.message) : null),
  );
}

