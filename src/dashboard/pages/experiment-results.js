// The KPI table (baseline vs candidate), the verdict and the recommendation. The final KPIs are the
// experiment's `results`; while it runs, GET …/kpis gives provisional ones over the window so far.

import { h, setText } from "../dom.js";
import * as fmt from "../format.js";
import { badge } from "../ui.js";

const ROWS = [
  { label: "Active series (mean)", pick: (v) => v?.series?.mean, format: (n) => fmt.number(n, 1), change: (k) => negate(k.cardinality_reduction_pct) },
  { label: "Points per second (mean)", pick: (v) => v?.points_per_sec?.mean, format: (n) => fmt.number(n, 1), change: (k) => negate(k.ingest_reduction_pct) },
  { label: "CPU, cores busy (mean)", pick: (v) => v?.cpu_seconds_per_sec?.mean, format: (n) => fmt.number(n, 4), change: (k) => k.cpu_overhead_pct },
  { label: "Memory (mean)", pick: (v) => v?.memory_bytes?.mean, format: fmt.bytes, change: (k) => k.memory_overhead_pct },
];

const negate = (n) => (n === null || n === undefined ? n : -n);

export function resultsPanel() {
  // Empty until there is a verdict (the dash is drawn by CSS), so its text is only ever a verdict.
  const verdict = h("span", { id: "verdict", class: "verdict" });
  const recommendation = h("p", { id: "recommendation", class: "recommendation" });
  const note = h("p", { class: "muted results-note" });
  const tbody = h("tbody");
  const extra = h("tbody", { class: "kpi-summary" });
  const kpiTable = h(
    "table",
    { id: "kpi-table", class: "data-table kpi-table" },
    h("caption", { class: "visually-hidden" }, "Key performance indicators, baseline against candidate"),
    h("thead", {}, h("tr", {}, ["Measure", "Baseline", "Candidate", "Change"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
    tbody,
    extra,
  );
  const metricRows = h("tbody");
  const metricTable = h(
    "table",
    { id: "per-metric-table", class: "data-table kpi-table" },
    h("caption", { class: "visually-hidden" }, "Per metric: output series of each variant, and the share of the baseline's totals the candidate keeps"),
    h("thead", {}, h("tr", {}, ["Metric", "Baseline", "Candidate", "Change", "Totals kept"].map((c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
    metricRows,
  );
  const perMetric = h(
    "div",
    { hidden: true },
    h("h3", {}, "Per metric"),
    h("p", { class: "muted" }, "Output series of each variant, and the share of the baseline's totals (sums, histogram counts) the candidate keeps."),
    h("div", { class: "table-scroll" }, metricTable),
  );
  const el = h(
    "section",
    { class: "panel results", "aria-labelledby": "results-title" },
    h("h2", { id: "results-title" }, "Results"),
    h("div", { class: "verdict-line" }, h("span", { class: "muted" }, "Verdict "), verdict),
    recommendation,
    note,
    h("div", { class: "table-scroll" }, kpiTable),
    perMetric,
  );

  let showsFinal = false;
  return {
    el,
    /**
     * `kpis`: the results or live KPIs (or null); `final`: whether they are the experiment's results.
     * Once the final results are shown, provisional ones (a late answer) are ignored.
     */
    update(kpis, { final, waiting }) {
      if (showsFinal && !final) return;
      showsFinal = final;
      const v = final ? kpis?.verdict : null;
      verdict.replaceChildren(...(v ? [badge(v)] : []));
      verdict.dataset.verdict = v ?? "";
      setText(recommendation, final ? kpis?.recommendation ?? "" : "");
      setText(note, noteFor(kpis, final, waiting));
      fillRows(tbody, extra, kpis?.baseline ? kpis : null);
      const rows = kpis?.baseline ? kpis.per_metric ?? [] : [];
      metricRows.replaceChildren(...rows.map(metricRow));
      perMetric.hidden = rows.length === 0;
    },
  };
}

function noteFor(kpis, final, waiting) {
  if (!kpis) return waiting;
  if (kpis.insufficient_data) return `Not enough data${final ? "" : " yet"}: ${kpis.insufficient_data}.`;
  if (!final) {
    const w = kpis.window ?? {};
    return `Provisional: measured so far over ${fmt.number(w.intervals)} interval(s) on ${fmt.number(w.agents)} agent(s). The verdict comes when the window ends.`;
  }
  const w = kpis.window ?? {};
  return `Measured over ${fmt.number(w.intervals)} interval(s) on ${fmt.number(w.agents)} agent(s).`;
}

function fillRows(tbody, extra, k) {
  const dash = "—";
  tbody.replaceChildren(
    ...ROWS.map((row) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, row.label),
        h("td", { class: "num" }, k ? row.format(row.pick(k.baseline)) : dash),
        h("td", { class: "num" }, k ? row.format(row.pick(k.candidate)) : dash),
        h("td", { class: "num" }, k ? change(row.change(k)) : dash),
      ),
    ),
    costRow(k),
  );
  extra.replaceChildren(
    summaryRow("Series reduction", k ? fmt.percent(k.cardinality_reduction_pct) : dash),
    summaryRow("Accuracy (critical series kept)", k ? (k.accuracy_pct === null ? "no critical series" : fmt.percent(k.accuracy_pct, { digits: 2 })) : dash),
    summaryRow("p-value (Mann–Whitney U)", k && Number.isFinite(k.p_value) ? pValue(k.p_value) : dash),
    summaryRow("Yearly saving", k ? fmt.money(k.cost?.yearly_saving, k.cost?.currency) : dash),
  );
}

/** One metric of the traffic: series in each variant, the change, the share of the totals kept. */
function metricRow(m) {
  const kept = m.preserved_pct === null || m.preserved_pct === undefined ? "— (a gauge)" : fmt.percent(m.preserved_pct, { digits: 2 });
  return h(
    "tr",
    {},
    h("th", { scope: "row" }, m.metric),
    h("td", { class: "num" }, fmt.number(m.baseline_series, 1)),
    h("td", { class: "num" }, fmt.number(m.candidate_series, 1)),
    h("td", { class: "num" }, change(negate(m.reduction_pct))),
    h("td", { class: "num" }, kept),
  );
}

function costRow(k) {
  const currency = k?.cost?.currency;
  const saving = k?.cost?.monthly_saving;
  return h(
    "tr",
    {},
    h("th", { scope: "row" }, "Monthly cost"),
    h("td", { class: "num" }, k ? fmt.money(k.cost?.baseline_monthly, currency) : "—"),
    h("td", { class: "num" }, k ? fmt.money(k.cost?.candidate_monthly, currency) : "—"),
    h("td", { class: ["num", saving > 0 ? "good" : null] }, k ? `${fmt.money(saving, currency)} saved` : "—"),
  );
}

/** A change in percent; lower is better for every measure here. */
function change(pct) {
  if (pct === null || pct === undefined) return h("span", { class: "muted" }, "—");
  return h("span", { class: pct < 0 ? "good" : pct > 0 ? "bad" : null }, fmt.percent(pct, { signed: true }));
}

function pValue(p) {
  return p < 0.0001 ? "< 0.0001" : fmt.number(p, 4);
}

function summaryRow(label, value) {
  return h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "num", colspan: "3" }, value));
}
