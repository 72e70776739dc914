// One deployment: status and version, rollout progress per agent, version history, the diff between
// two versions, and Rollback / Pause / Resume. Live via `deployment:<id>`: `deployment.progress`
// (agents applying the version) reloads the per-agent status, other events every section.
// Events and resyncs run concurrently: each loader applies only its latest answer.

import { h, latestOnly, setText, throttle } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { loadFailed, showError, showMessage } from "../ui.js";
import { deploymentActions } from "./deployment-actions.js";
import { rolloutSection, versionsSection, diffSection } from "./deployment-parts.js";
import { historyItem } from "./history.js";

// Under a stream of events the sections are refetched at most this often (and once after the last).
const REFRESH_INTERVAL_MS = 1000;

export function render(container, ctx) {
  const id = ctx.params[0];
  const page = h("div", { id: "deployment-detail", dataset: { id } }, h("p", { class: "loading" }, "Loading…"));
  container.append(page);
  const detail = new DeploymentPage(id, page, ctx);
  const stop = ctx.subscribe(`deployment:${id}`, (message) => detail.onMessage(message));
  detail.start();
  return () => {
    stop();
    detail.destroy();
  };
}

class DeploymentPage {
  constructor(id, page, ctx) {
    this.ctx = ctx;
    this.page = page;
    this.base = `/api/v1/pipelines/deployments/${encodeURIComponent(id)}`;
    this.deployment = null;
    this.view = null;
    this.gone = false;
    this.hostnames = new Map();
    this.rollout = rolloutSection(this.hostnames);
    this.versions = versionsSection();
    this.diff = diffSection(this.base);
    this.history = h("ol", { class: "timeline", id: "dep-history" });
    this.actions = deploymentActions({
      base: this.base,
      ctx,
      apply: (next) => this.apply(next),
      afterChange: () => this.refreshAll(),
      reload: () => this.loadDeployment(),
    });
    this.loadDeployment = latestOnly((isLatest) => this.fetchDeployment(isLatest));
    this.loadStatus = this.loader((status) => this.rollout.update(status), () => `${this.base}/status`);
    this.loadVersions = this.loader((list) => this.showVersions(list.items), () => withQuery(`${this.base}/versions`, { limit: 200 }));
    this.loadHistory = this.loader((events) => this.history.replaceChildren(...events.items.slice().reverse().map(historyItem)), () => `${this.base}/events`);
    this.refreshAll = throttle(() => this.loadSections(), REFRESH_INTERVAL_MS);
    this.refreshStatus = throttle(() => this.loadStatus(), REFRESH_INTERVAL_MS);
  }

  start() {
    this.loadDeployment().then(async () => {
      if (this.gone || !this.view) return;
      await this.loadHostnames();
      this.loadSections();
    });
  }

  destroy() {
    this.gone = true;
    this.refreshAll.cancel();
    this.refreshStatus.cancel();
    this.actions.destroy();
  }

  // --- loaders ---

  /** A loader of one section: GET `url()`, and `show` the answer if it is the latest and the page is still here. */
  loader(show, url) {
    return latestOnly(async (isLatest) => {
      try {
        const answer = await api.get(url());
        if (!this.gone && isLatest()) show(answer);
      } catch (error) {
        if (!this.gone && isLatest()) showError(error);
      }
    });
  }

  loadSections() {
    this.loadStatus();
    this.loadVersions();
    this.loadHistory();
  }

  async fetchDeployment(isLatest) {
    try {
      const next = await api.get(this.base);
      if (isLatest()) this.apply(next);
    } catch (error) {
      if (this.gone || !isLatest()) return;
      if (!this.view) loadFailed(this.page, error, error.status === 404 ? null : () => this.loadDeployment());
      else showError(error);
    }
  }

  /** Agent names for the rollout table (it shows ids until then). */
  async loadHostnames() {
    try {
      const agents = await api.get(withQuery("/api/v1/agents", { limit: 500 }));
      for (const a of agents.items) this.hostnames.set(a.id, a.hostname);
    } catch (error) {
      if (!this.gone) showError(error);
    }
  }

  // --- showing ---

  /** Shows `next` unless what is shown is newer (the GET, the snapshot and the events race). */
  apply(next) {
    if (!next || this.gone) return;
    if (this.deployment && Date.parse(next.updated_at) < Date.parse(this.deployment.updated_at)) return;
    const versionChanged = this.deployment && this.deployment.current_version !== next.current_version;
    this.deployment = next;
    if (!this.view) this.view = buildView(this.page, this);
    this.view.update(next);
    this.actions.update(next);
    this.ctx.setTitle(next.name);
    if (versionChanged) this.refreshAll();
  }

  showVersions(items) {
    this.versions.update(items);
    this.diff.setVersions(items, this.deployment?.current_version);
    this.actions.setVersions(items);
  }

  // --- live ---

  onMessage(message) {
    if (message.type === "resync") {
      this.loadDeployment();
      this.refreshAll();
      return;
    }
    if (message.type === "snapshot") {
      if (message.data === null && this.view) showMessage("This deployment no longer exists.", "error");
      else this.apply(message.data);
      return;
    }
    if (message.event === "deployment.progress") {
      this.refreshStatus();
      return;
    }
    if (message.data?.deployment) this.apply(message.data.deployment);
    if (message.event === "deployment.version_created") this.loadDeployment();
    this.refreshAll();
  }
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
      info.replaceChildren(...infoRows(dep).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
    },
  };
}

function infoRows(dep) {
  return [
    ["Current version", `v${dep.current_version}`],
    ["Pipeline", fmt.pipeline(dep.pipeline)],
    ["Target", fmt.target(dep.target)],
    ["Rollout", rolloutText(dep.rollout)],
    ["Name on the agents", h("code", {}, dep.agent_pipeline)],
    ["Created", fmt.timeAgo(dep.created_at)],
    ["Updated", fmt.timeAgo(dep.updated_at)],
  ];
}

function rolloutText(rollout) {
  if (rollout?.strategy !== "waves") return "all at once";
  return `waves: first ${rollout.first_batch}, growth ×${rollout.growth}, ${fmt.duration(rollout.interval_secs)} apart, pause after ${rollout.max_failures} failure(s)`;
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
