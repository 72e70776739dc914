// The experiment page's layout: header with phase and actions, setup, results, charts and the phase
// timeline. Built once; `update(experiment)` refreshes what changes.

import { h, setText } from "../dom.js";
import { api } from "../api.js";
import * as fmt from "../format.js";
import { historyItem } from "./history.js";

/** Builds the page once; `update(experiment)` refreshes what changes. */
export function buildView(page, exp, { charts, results, actions }) {
  const phase = h("span", { id: "exp-phase", class: "badge" });
  const reason = h("p", { id: "exp-reason", class: "reason", hidden: true });
  const deploymentLine = h("p", { class: "deployment-line", hidden: true });
  const info = h("dl", { class: "kv info-grid" });
  const progress = h("progress", { max: "1", value: "0", class: "window-progress", "aria-label": "Measurement window" });
  const progressText = h("span", { class: "muted" });
  const progressLine = h("div", { class: "progress-line", hidden: true }, progress, progressText);
  const phases = h("ol", { id: "phase-timeline", class: "timeline" });
  const notes = h("ol", { id: "exp-notes", class: "timeline" });
  const notesSection = h("section", { class: "panel", hidden: true }, h("h2", {}, "Other events"), notes);
  const title = h("h1", {});
  const crumb = h("span", {});

  page.replaceChildren(
    h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, h("a", { href: "#/experiments" }, "Experiments"), " / ", crumb),
    h("div", { class: "page-header" }, h("div", { class: "title-line" }, title, phase), actions.el),
    reason,
    deploymentLine,
    progressLine,
    h(
      "div",
      { class: "detail-grid" },
      h("section", { class: "panel", "aria-labelledby": "about-title" }, h("h2", { id: "about-title" }, "Setup"), info),
      results.el,
    ),
    charts.el,
    h("section", { class: "panel", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Phase timeline"), phases),
    notesSection,
    actions.dialog,
  );

  let current = exp;
  return {
    update(next) {
      current = next;
      setText(title, next.name);
      setText(crumb, next.name);
      setText(phase, next.phase);
      phase.className = `badge status-${next.phase}`;
      setText(reason, next.reason ?? "");
      reason.hidden = !next.reason;
      showDeployment(deploymentLine, next.deployment_id);
      fillInfo(info, next);
      actions.update(next);
      this.tick();
    },
    history(items) {
      const changes = items.filter((e) => e.to_phase && e.to_phase !== e.from_phase);
      phases.replaceChildren(...changes.map(historyItem));
      if (!changes.length) phases.append(h("li", { class: "muted" }, "No history yet."));
      const others = items.filter((e) => !changes.includes(e));
      notes.replaceChildren(...others.map(historyItem));
      notesSection.hidden = others.length === 0;
    },
    tick() {
      const from = Date.parse(current.measuring_from);
      const until = Date.parse(current.measuring_until);
      const running = current.phase === "running" && from && until;
      progressLine.hidden = !running;
      if (!running) return;
      const now = Date.now();
      progress.value = Math.min(1, Math.max(0, (now - from) / (until - from)));
      setText(progressText, now < from ? `Warming up: measuring starts in ${fmt.duration((from - now) / 1000)}` : now < until ? `Measuring: ${fmt.duration((until - now) / 1000)} left` : "Window complete: analysing shortly");
    },
  };
}

/** "Promoted into deployment <name>": the link shows the id at once and the name once fetched. */
function showDeployment(line, deploymentId) {
  line.hidden = !deploymentId;
  if (!deploymentId) return line.replaceChildren();
  if (line.querySelector("#deployment-link")?.getAttribute("href") === `#/deployments/${deploymentId}`) return undefined;
  const link = h("a", { id: "deployment-link", href: `#/deployments/${deploymentId}` }, fmt.shortId(deploymentId));
  line.replaceChildren("Promoted into deployment ", link, ".");
  api.get(`/api/v1/pipelines/deployments/${encodeURIComponent(deploymentId)}`).then(
    (dep) => setText(link, dep.name),
    () => {}, // the id is shown already; the name is a nicety
  );
  return undefined;
}

function fillInfo(dl, exp) {
  const c = exp.success_criteria ?? {};
  const rows = [
    ["Baseline", fmt.pipeline(exp.baseline)],
    ["Candidate", fmt.pipeline(exp.candidate)],
    ["Target", `${fmt.target(exp.target)}${exp.target_agents?.length ? ` (${fmt.number(exp.target_agents.length)} agents)` : ""}`],
    ["Window", `${fmt.duration(exp.duration_secs)}${exp.warmup_secs ? ` after ${fmt.duration(exp.warmup_secs)} warm-up` : ""}`],
    ["Critical processes", exp.critical_processes?.length ? exp.critical_processes.join(", ") : "none"],
    ["Success criteria", `series −${fmt.number(c.min_cardinality_reduction_pct, 1)} %, CPU +${fmt.number(c.max_cpu_overhead_pct, 1)} % at most, accuracy ≥ ${fmt.number(c.min_accuracy_pct, 1)} %`],
    ["Auto-promote", exp.auto_promote ? "yes, on a pass" : "no"],
    ["Created", fmt.timeAgo(exp.created_at)],
    ["Started", fmt.timeAgo(exp.started_at)],
    ["Measuring", exp.measuring_from ? [fmt.timeAgo(exp.measuring_from), " → ", fmt.timeAgo(exp.measuring_until)] : "—"],
    ["Completed", fmt.timeAgo(exp.completed_at)],
  ];
  if (exp.description) rows.unshift(["Description", exp.description]);
  dl.replaceChildren(...rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}
