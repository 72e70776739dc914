// The experiment's measurements over time: seeded from GET …/metrics (per-interval sums over the agents,
// as the server aligns them), then extended by the live `metrics.sample` events, which arrive one per
// agent and variant. A live interval is added once every agent has reported both variants for it
// (like the server, only agents reporting both variants count). After a reconnect or a phase change the
// page seeds again, so the live approximation never drifts from the server's numbers for long. Samples
// that arrive while a seed is on its way are kept and merged in after it, by time.

import { h } from "../dom.js";
import { lineChart } from "../charts.js";
import { compact, number } from "../format.js";

const VARIANTS = ["baseline", "candidate"];
const LABELS = { baseline: "Baseline", candidate: "Candidate" };
// Live samples carry the agents' raw counters (per interval); the timeline has them as rates.
const METRIC = {
  series: "pipeline.output.series",
  points: "pipeline.output.points",
  cpu: "pipeline.cpu.seconds",
  memory: "pipeline.memory.bytes",
};
// Samples kept while a seed is on its way (bounded, should the seed keep failing).
const MAX_KEPT_SAMPLES = 2000;

export class MetricsTimeline {
  constructor() {
    this.intervals = [];
    this.agents = 0;
    this.targetAgents = 0;
    this.seeded = false;
    // The samples that arrived since a seed was asked for (from the start: the first seed is awaited).
    this.arrivedDuringSeed = [];
    this.reset();
  }

  reset() {
    this.round = new Map();
    this.seen = new Set();
    this.lastTs = new Map();
    this.cutoff = -Infinity;
  }

  /** A seed has been asked for: keep the samples arriving from now on, to merge them into it. */
  beginSeed() {
    this.arrivedDuringSeed ??= [];
  }

  /**
   * Replaces everything with the server's timeline, then adds the samples that arrived meanwhile and
   * are newer than its last interval. An interval's time is its first agent's sample, so a sample less
   * than half an interval after it belongs to that interval, which the server has already summed.
   */
  seed(timeline) {
    this.reset();
    this.intervals = (timeline.intervals ?? []).map((i) => ({ t: Date.parse(i.at), baseline: i.baseline, candidate: i.candidate }));
    this.agents = timeline.agents ?? 0;
    this.intervalSecs = spacing(this.intervals);
    const last = this.intervals[this.intervals.length - 1];
    this.cutoff = last ? last.t + ((this.intervalSecs ?? 0) * 1000) / 2 : -Infinity;
    this.seeded = true;
    const arrived = this.arrivedDuringSeed ?? [];
    this.arrivedDuringSeed = null;
    arrived.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts)).forEach((sample) => this.add(sample));
  }

  /** How many agents the experiment runs on (its `target_agents`): a round waits for all of them. */
  expect(count) {
    this.targetAgents = count;
  }

  /** Takes one `metrics.sample`; true when a new interval was added. */
  add(sample) {
    if (this.arrivedDuringSeed && this.arrivedDuringSeed.length < MAX_KEPT_SAMPLES) this.arrivedDuringSeed.push(sample);
    if (!this.seeded) return false;
    const { agent_id: agent, variant } = sample;
    const t = Date.parse(sample.ts);
    if (!VARIANTS.includes(variant) || !agent || Number.isNaN(t) || t <= this.cutoff) return false;
    this.learnInterval(agent, variant, t);
    this.seen.add(agent);
    let added = false;
    // An agent already in this round reporting again means the others are late: close the round.
    if (this.round.get(agent)?.[variant]) added = this.flush();
    const entry = this.round.get(agent) ?? {};
    entry[variant] = { t, samples: sample.samples ?? {} };
    this.round.set(agent, entry);
    const expected = Math.max(this.agents, this.targetAgents, this.seen.size);
    const complete = [...this.round.values()].filter((e) => e.baseline && e.candidate).length;
    if (complete >= expected) added = this.flush() || added;
    return added;
  }

  learnInterval(agent, variant, t) {
    const key = `${agent}/${variant}`;
    const last = this.lastTs.get(key);
    if (last !== undefined && t > last) this.intervalSecs = Math.max(1, Math.round((t - last) / 1000));
    this.lastTs.set(key, t);
  }

  flush() {
    const both = [...this.round.values()].filter((e) => e.baseline && e.candidate);
    this.round = new Map();
    if (!both.length) return false;
    const t = both.reduce((first, e) => Math.min(first, e.baseline.t, e.candidate.t), Infinity);
    const rate = this.intervalSecs ? 1 / this.intervalSecs : NaN;
    const sum = (variant, metric, scale = 1) => both.reduce((acc, e) => acc + (Number(e[variant].samples[metric]) || 0) * scale, 0);
    const interval = { t };
    for (const variant of VARIANTS) {
      interval[variant] = {
        series: sum(variant, METRIC.series),
        points_per_sec: sum(variant, METRIC.points, rate),
        cpu_seconds_per_sec: sum(variant, METRIC.cpu, rate),
        memory_bytes: sum(variant, METRIC.memory),
      };
    }
    this.intervals.push(interval);
    this.cutoff = Math.max(this.cutoff, t);
    return true;
  }

  /** The chart series of one field (`series`, `points_per_sec`, …), one per variant. */
  series(fieldName) {
    return VARIANTS.map((variant) => ({
      key: variant,
      label: LABELS[variant],
      points: this.intervals.map((i) => [i.t, i[variant]?.[fieldName]]).filter(([, v]) => Number.isFinite(v)),
    }));
  }
}

/** The most common gap between intervals, in whole seconds (the agents' measuring interval). */
function spacing(intervals) {
  const gaps = intervals.slice(1).map((i, k) => Math.round((i.t - intervals[k].t) / 1000)).filter((g) => g > 0);
  if (!gaps.length) return null;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

/** The three charts of the detail page, in their #chart-* containers. */
export function experimentCharts() {
  const specs = [
    { id: "chart-series", field: "series", title: "Active series", format: compact },
    { id: "chart-points", field: "points_per_sec", title: "Points per second", format: compact },
    { id: "chart-cpu", field: "cpu_seconds_per_sec", title: "CPU (cores busy)", format: (v) => number(v, 3) },
  ];
  const charts = specs.map((spec) => ({ ...spec, chart: lineChart({ title: spec.title, format: spec.format }) }));
  return {
    el: h("div", { class: "charts" }, charts.map((c) => h("div", { id: c.id, class: "panel chart-panel" }, c.chart.el))),
    draw(timeline, experiment) {
      const markers = [];
      if (experiment?.measuring_from) markers.push({ t: Date.parse(experiment.measuring_from), label: "measuring" });
      for (const c of charts) c.chart.update({ series: timeline.series(c.field), markers });
    },
    destroy: () => charts.forEach((c) => c.chart.destroy()),
  };
}
