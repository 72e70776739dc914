// One experiment: its phase and actions, what it runs, its phase history, live charts and results.
// Everything follows the topics `experiment:<id>` (snapshot, then phase changes) and `metrics:<id>`
// without reloading the page.

import { h, debounce, throttle } from "../dom.js";
import { api } from "../api.js";
import { loadFailed, showError, showMessage } from "../ui.js";
import { MetricsTimeline, experimentCharts } from "./experiment-metrics.js";
import { resultsPanel } from "./experiment-results.js";
import { experimentActions } from "./experiment-actions.js";
import { buildView } from "./experiment-view.js";

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

  const actions = experimentActions({ base, ctx, apply, reload: () => loadExperiment(), onDeleted: () => deleted("Experiment deleted.") });

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
  // Deleted here (the action) or elsewhere (the event): either way, back to the list once.
  let leaving = false;
  const deleted = (text = "This experiment was deleted.") => {
    if (leaving || gone) return;
    leaving = true;
    showMessage(text, "info", { keep: true });
    ctx.navigate("#/experiments");
  };
  const stops = [ctx.subscribe(`experiment:${id}`, onExperiment), ctx.subscribe(`metrics:${id}`, onMetrics)];

  // The first apply() loads the history and KPIs (as every phase change does); the charts need seeding.
  loadExperiment().then(() => {
    if (!gone && view) loadMetrics();
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
