// One experiment: its phase and actions, what it runs, its phase history, live charts and results.
// Everything follows the topics `experiment:<id>` (snapshot, then phase changes) and `metrics:<id>`
// without reloading the page. Live events, resyncs and the page's own loads run concurrently: each
// loader applies only its latest answer, and the experiment itself only when it is newer.

import { h, latestOnly, throttle } from "../dom.js";
import { api } from "../api.js";
import { loadFailed, showError, showMessage } from "../ui.js";
import { MetricsTimeline, experimentCharts } from "./experiment-metrics.js";
import { resultsPanel } from "./experiment-results.js";
import { experimentActions } from "./experiment-actions.js";
import { buildView } from "./experiment-view.js";

// Phases in which the agents are measuring, so live KPIs are worth asking for.
const MEASURING = ["running", "analyzing"];
// Samples arrive every second or so: live KPIs at most every few seconds.
const KPI_INTERVAL_MS = 3000;
const HISTORY_INTERVAL_MS = 1000;

export function render(container, ctx) {
  const id = ctx.params[0];
  const page = h("div", { id: "experiment-detail", dataset: { id } }, h("p", { class: "loading" }, "Loading…"));
  container.append(page);
  const detail = new ExperimentPage(id, page, ctx);
  const stops = [ctx.subscribe(`experiment:${id}`, (m) => detail.onExperiment(m)), ctx.subscribe(`metrics:${id}`, (m) => detail.onMetrics(m))];
  detail.start();
  return () => {
    stops.forEach((stop) => stop());
    detail.destroy();
  };
}

class ExperimentPage {
  constructor(id, page, ctx) {
    this.ctx = ctx;
    this.page = page;
    this.base = `/api/v1/experiments/${encodeURIComponent(id)}`;
    this.experiment = null;
    this.view = null;
    this.gone = false;
    this.leaving = false;
    this.timeline = new MetricsTimeline();
    this.charts = experimentCharts();
    this.results = resultsPanel();
    this.actions = experimentActions({
      base: this.base,
      ctx,
      apply: (next) => this.apply(next),
      reload: () => this.loadExperiment(),
      onDeleted: () => this.deleted("Experiment deleted."),
    });
    this.loadExperiment = latestOnly((isLatest) => this.fetchExperiment(isLatest));
    this.loadEvents = latestOnly((isLatest) => this.fetchEvents(isLatest));
    this.loadMetrics = latestOnly((isLatest) => this.fetchMetrics(isLatest));
    this.loadKpis = latestOnly((isLatest) => this.fetchKpis(isLatest));
    this.refreshKpis = throttle(() => this.loadKpis(), KPI_INTERVAL_MS);
    this.refreshEvents = throttle(() => this.loadEvents(), HISTORY_INTERVAL_MS);
  }

  /** The first apply() loads the history and KPIs (as every phase change does); the charts need seeding. */
  start() {
    this.loadExperiment().then(() => {
      if (!this.gone && this.view) this.loadMetrics();
    });
    // The measurement window's progress moves with the clock, not with events.
    this.ticker = setInterval(() => this.view?.tick(), 1000);
  }

  destroy() {
    this.gone = true;
    clearInterval(this.ticker);
    this.refreshKpis.cancel();
    this.refreshEvents.cancel();
    this.charts.destroy();
    this.actions.destroy();
  }

  // --- loaders ---

  async fetchExperiment(isLatest) {
    try {
      const next = await api.get(this.base);
      if (isLatest()) this.apply(next);
    } catch (error) {
      if (this.gone || !isLatest()) return;
      if (!this.view) loadFailed(this.page, error, error.status === 404 ? null : () => this.loadExperiment());
      else showError(error);
    }
  }

  async fetchEvents(isLatest) {
    try {
      const events = await api.get(`${this.base}/events`);
      if (!this.gone && isLatest() && this.view) this.view.history(events.items);
    } catch (error) {
      if (!this.gone && isLatest()) showError(error);
    }
  }

  async fetchMetrics(isLatest) {
    // Live samples arriving while the server's timeline is on its way are kept and merged into it.
    this.timeline.beginSeed();
    try {
      const data = await api.get(`${this.base}/metrics`);
      if (this.gone || !isLatest()) return;
      this.timeline.seed(data);
      this.drawCharts();
    } catch (error) {
      if (!this.gone && isLatest()) showError(error);
    }
  }

  async fetchKpis(isLatest) {
    const exp = this.experiment;
    if (!exp) return;
    if (exp.results) return this.results.update(exp.results, { final: true });
    if (!MEASURING.includes(exp.phase)) return this.results.update(null, { final: false, waiting: waitingText(exp) });
    try {
      const kpis = await api.get(`${this.base}/kpis`);
      // The final results may have arrived meanwhile: provisional KPIs never replace them.
      if (!this.gone && isLatest() && !this.experiment.results) this.results.update(kpis, { final: false });
    } catch (error) {
      if (!this.gone && isLatest()) showError(error);
    }
    return undefined;
  }

  // --- showing ---

  /** Shows `next` unless what is shown is newer (the GET, the snapshot and the events race). */
  apply(next) {
    if (!next || this.gone) return;
    if (this.experiment && Date.parse(next.updated_at) < Date.parse(this.experiment.updated_at)) return;
    const phaseChanged = this.experiment?.phase !== next.phase;
    this.experiment = next;
    this.timeline.expect(next.target_agents?.length ?? 0);
    if (!this.view) {
      this.view = buildView(this.page, next, { charts: this.charts, results: this.results, actions: this.actions });
      this.drawCharts();
    }
    this.view.update(next);
    this.ctx.setTitle(next.name);
    if (phaseChanged) {
      this.refreshEvents();
      this.loadKpis();
    }
  }

  drawCharts() {
    if (this.view) this.charts.draw(this.timeline, this.experiment);
  }

  /** Deleted here (the action) or elsewhere (the event): either way, back to the list once. */
  deleted(text = "This experiment was deleted.") {
    if (this.leaving || this.gone) return;
    this.leaving = true;
    showMessage(text, "info", { keep: true });
    this.ctx.navigate("#/experiments");
  }

  // --- live ---

  onExperiment(message) {
    if (message.type === "resync") {
      this.loadExperiment();
      this.loadMetrics();
      this.loadEvents();
      return;
    }
    if (message.type === "snapshot") {
      if (message.data === null && this.view) this.deleted();
      else this.apply(message.data);
      return;
    }
    if (message.event === "experiment.phase_changed") {
      this.apply(message.data.experiment);
      // The window's numbers are final now: take the server's own aligned timeline.
      if (["analyzing", "completed"].includes(message.data.to)) this.loadMetrics();
    }
    if (message.event === "experiment.deleted") this.deleted();
  }

  onMetrics(message) {
    if (message.type === "resync") {
      this.loadMetrics();
      return;
    }
    if (message.event !== "metrics.sample") return;
    if (this.timeline.add(message.data)) this.drawCharts();
    if (this.experiment && MEASURING.includes(this.experiment.phase)) this.refreshKpis();
  }
}

function waitingText(exp) {
  if (exp.phase === "pending") return "Start the experiment to measure both pipelines.";
  if (exp.phase === "deploying") return "Waiting for both pipelines to run on the agents.";
  return "No results: the experiment ended before it was analysed.";
}
