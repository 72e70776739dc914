// One experiment: its phase and actions, what it runs, its phase history, live charts and results.
// Everything follows the topics `experiment:<id>` (snapshot, then phase changes) and `metrics:<id>`
// without reloading the page.

import { h, setText, debounce, throttle } from "../dom.js";
import { api } from "../api.js";
import * as fmt from "../format.js";
import { badge, loadFailed, showError, showMessage } from "../ui.js";
import { MetricsTimeline, experimentCharts } from "./experiment-metrics.js";
import { resultsPanel } from "./experiment-results.js";
import { experimentActions } from "./experiment-actions.js";

// Phases in which the agents are measuring, so live KPIs are worth asking for.
const MEASURING = ["running", "analyzing"];

export function render(container, ctx) {
  const id = ctx.params[0];
  const base = `/api/v1/experiments/${encodeURIComponent(id)}`;
  const page = h("div", { id: "experiment-detail", dataset: { id } }, h("p", { class: "loading" }, "Loading…"));
  container.append(page);

  const timeline = new MetricsTimeline();
  const charts = experimentCharts();
  const results = resultsPanel();
  let view = null;
  let experiment = null;
  let gone = false;
  const timers = [];

  // --- data ---
  const loadEvents = async () => {
    try {
      const events = await api.get(`${base}/events`);
      if (!gone && view) view.history(events.items);
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  const loadMetrics = async () => {
    try {
      const data = await api.get(`${base}/metrics`);
      if (gone) return;
      timeline.seed(data);
      if (view) charts.draw(timeline, experiment);
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  const loadKpis = async () => {
    if (!experiment) return;
    if (experiment.results) return results.update(experiment.results, { final: true });
    if (!MEASURING.includes(experiment.phase)) return results.update(null, { final: false, waiting: waitingText(experiment) });
    try {
      const kpis = await api.get(`${base}/kpis`);
      if (!gone && !experiment.results) results.update(kpis, { final: false });
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  // Samples arrive every second or so: live KPIs at most every few seconds.
  const refreshKpis = throttle(loadKpis, 3000);
  const refreshEvents = debounce(loadEvents, 300);

  /** Shows `next` unless what is shown is newer (the GET and the snapshot race). */
  const apply = (next) => {
    if (!next || gone) return;
    if (experiment && Date.parse(next.updated_at) < Date.parse(experiment.updated_at)) return;
    const phaseChanged = experiment?.phase !== next.phase;
    experiment = next;
    timeline.expect(next.target_agents?.length ?? 0);
    if (!view) {
      view = buildView(page, next, { charts, results, actions, ctx });
      charts.draw(timeline, next);
    }
    view.update(next);
    if (phaseChanged) {
      refreshEvents();
      loadKpis();
    }
  };

  const actions = experimentActions({ base, ctx, apply, reload: () => loadExperiment() });

  const loadExperiment = async () => {
    try {
      apply(await api.get(base));
    } catch (error) {
      if (gone) return;
      if (!view) loadFailed(page, error, error.status === 404 ? null : loadExperiment);
      else showError(error);
    }
  };

  // --- live ---
  const onExperiment = (message) => {
    if (message.type === "resync") {
      loadExperiment();
      loadMetrics();
      return loadEvents();
    }
    if (message.type === "snapshot") {
      if (message.data === null && view) return deleted();
      return apply(message.data);
    }
    if (message.event === "experiment.phase_changed") {
      apply(message.data.experiment);
      // The window's numbers are final now: take the server's own aligned timeline.
      if (["analyzing", "completed"].includes(message.data.to)) loadMetrics();
    }
    if (message.event === "experiment.deleted") deleted();
  };
  const onMetrics = (message) => {
    if (message.type === "resync") return loadMetrics();
    if (message.event !== "metrics.sample") return;
    if (timeline.add(message.data) && view) charts.draw(timeline, experiment);
    if (experiment && MEASURING.includes(experiment.phase)) refreshKpis();
  };
  const deleted = () => {
    showMessage("This experiment was deleted.", "info", { keep: true });
    ctx.navigate("#/experiments");
  };
  const stops = [ctx.subscribe(`experiment:${id}`, onExperiment), ctx.subscribe(`metrics:${id}`, onMetrics)];

  loadExperiment().then(() => {
    if (gone || !view) return;
    loadEvents();
    loadMetrics();
    loadKpis();
  });
  // The measurement window's progress moves with the clock, not with events.
  timers.push(setInterval(() => view?.tick(), 1000));

  return () => {
    gone = true;
    stops.forEach((stop) => stop());
    timers.forEach(clearInterval);
    refreshKpis.cancel();
    refreshEvents.cancel();
    charts.destroy();
    actions.destroy();
  };
}

function waitingText(exp) {
  if (exp.phase === "pending") return "Start the experiment to measure both pipelines.";
  if (exp.phase === "deploying") return "Waiting for both pipelines to run on the agents.";
  return "No results: the experiment ended before it was analysed.";
}

/** Builds the page once; `update(experiment)` refreshes what changes. */
function buildView(page, exp, { charts, results, actions }) {
  const phase = h("span", { id: "exp-phase", class: "badge" });
  const reason = h("p", { id: "exp-reason", class: "reason", hidden: true });
  const deploymentLine = h("p", { class: "deployment-line", hidden: true });
  const info = h("dl", { class: "kv info-grid" });
  const progress = h("progress", { max: "1", value: "0", class: "window-progress", "aria-label": "Measurement window" });
  const progressText = h("span", { class: "muted" });
  const progressLine = h("div", { class: "progress-line", hidden: true }, progress, progressText);
  const phases = h("ol", { id: "phase-timeline", class: "timeline" });
  const notes = h("ul", { id: "exp-notes", class: "event-list compact" });
  const notesSection = h("section", { class: "panel", hidden: true }, h("h2", {}, "Other events"), notes);
  const title = h("h1", {});

  page.replaceChildren(
    h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, h("a", { href: "#/experiments" }, "Experiments"), " / "),
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
      page.querySelector(".breadcrumb").lastChild.textContent = ` / ${next.name}`;
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

function showDeployment(line, deploymentId) {
  line.hidden = !deploymentId;
  if (!deploymentId) return line.replaceChildren();
  if (line.querySelector("#deployment-link")?.getAttribute("href") === `#/deployments/${deploymentId}`) return undefined;
  return line.replaceChildren("Promoted into deployment ", h("a", { id: "deployment-link", href: `#/deployments/${deploymentId}` }, fmt.shortId(deploymentId)), ".");
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

function historyItem(e) {
  return h(
    "li",
    { class: "timeline-item" },
    h("span", { class: "timeline-time" }, fmt.timeAgo(e.created_at)),
    h(
      "span",
      { class: "timeline-body" },
      e.to_phase ? badge(e.to_phase) : h("span", { class: "badge" }, fmt.words(e.event_type)),
      e.from_phase ? h("span", { class: "muted" }, ` from ${fmt.words(e.from_phase)}`) : null,
      e.message ? h("span", { class: "timeline-message" }, e.message) : null,
    ),
  );
}
