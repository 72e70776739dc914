// A small SVG line chart: several series over time, y from zero (the comparisons are about size), a
// few ticks on each axis, optional vertical markers, and a legend with each series' latest value.
// Drawn at the container's real width (redrawn when it changes) so text stays crisp and readable.

import { h, s } from "./dom.js";
import { clock, compact } from "./format.js";

const HEIGHT = 200;
const MARGIN = { top: 12, right: 14, bottom: 26, left: 58 };
const MAX_DOTS = 40;

/**
 * `lineChart({title, format})` → `{el, update({series: [{key, label, points: [[ms, value]…]}], markers})}`.
 * Each series is a <path data-variant="<key>" class="line series-<key>">.
 */
export function lineChart({ title, format = compact }) {
  const holder = h("div", { class: "chart-canvas" });
  const legend = h("ul", { class: "chart-legend" });
  const el = h("figure", { class: "chart" }, h("figcaption", { class: "chart-title" }, title), holder, legend);
  let data = { series: [], markers: [] };
  let lastWidth = 0;

  const draw = () => {
    lastWidth = holder.clientWidth || 560;
    holder.replaceChildren(svgFor(data, lastWidth, title, format));
    drawLegend(legend, data.series, format);
  };
  const observer = typeof ResizeObserver === "function" ? new ResizeObserver(() => holder.clientWidth !== lastWidth && draw()) : null;
  observer?.observe(holder);

  return {
    el,
    update(next) {
      data = { series: next.series ?? [], markers: next.markers ?? [] };
      draw();
    },
    destroy: () => observer?.disconnect(),
  };
}

function svgFor({ series, markers }, width, title, format) {
  const all = series.flatMap((sr) => sr.points);
  const svg = s("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": summary(title, series, format), class: "chart-svg" });
  svg.append(s("title", {}, title));
  const plot = { x0: MARGIN.left, x1: width - MARGIN.right, y0: HEIGHT - MARGIN.bottom, y1: MARGIN.top };
  const [tMin, tMax] = timeDomain(all);
  const yTicks = niceTicks(Math.max(0, ...all.map((p) => p[1])));
  const yMax = yTicks[yTicks.length - 1];
  const x = (t) => plot.x0 + ((t - tMin) / (tMax - tMin)) * (plot.x1 - plot.x0);
  const y = (v) => plot.y0 - (v / yMax) * (plot.y0 - plot.y1);

  for (const tick of yTicks) {
    svg.append(
      s("line", { class: "grid", x1: plot.x0, x2: plot.x1, y1: y(tick), y2: y(tick) }),
      s("text", { class: "tick", x: plot.x0 - 6, y: y(tick), "text-anchor": "end", "dominant-baseline": "middle" }, format(tick)),
    );
  }
  if (all.length) {
    const ticks = timeTicks(tMin, tMax, width);
    ticks.forEach((t, i) => {
      // The outer labels align inwards so they never spill past the plot.
      const anchor = i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle";
      svg.append(s("text", { class: "tick", x: x(t), y: plot.y0 + 16, "text-anchor": anchor }, clock(t)));
    });
  } else {
    svg.append(s("text", { class: "chart-empty", x: (plot.x0 + plot.x1) / 2, y: (plot.y0 + plot.y1) / 2, "text-anchor": "middle" }, "No measurements yet"));
  }
  svg.append(s("line", { class: "axis", x1: plot.x0, x2: plot.x1, y1: plot.y0, y2: plot.y0 }));
  for (const marker of markers) {
    if (!all.length || marker.t < tMin || marker.t > tMax) continue;
    svg.append(
      s("line", { class: "marker", x1: x(marker.t), x2: x(marker.t), y1: plot.y1, y2: plot.y0 }),
      s("text", { class: "marker-label", x: x(marker.t) + 4, y: plot.y1 + 10 }, marker.label),
    );
  }
  for (const sr of series) svg.append(seriesPath(sr, x, y), ...dots(sr, x, y, format));
  return svg;
}

function seriesPath(sr, x, y) {
  const attrs = { class: ["line", `series-${sr.key}`].join(" "), "data-variant": sr.key, fill: "none" };
  if (sr.points.length) attrs.d = sr.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  return s("path", attrs);
}

/** Dots (with a native tooltip) while there are few points: a single measurement is visible too. */
function dots(sr, x, y, format) {
  if (sr.points.length > MAX_DOTS) return [];
  return sr.points.map(([t, v]) =>
    s("circle", { class: `dot series-${sr.key}`, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, s("title", {}, `${clock(t)} · ${sr.label}: ${format(v)}`)),
  );
}

function timeDomain(points) {
  if (!points.length) return [0, 1];
  const ts = points.map((p) => p[0]);
  const min = Math.min(...ts);
  const max = Math.max(...ts);
  return max > min ? [min, max] : [min - 30_000, max + 30_000];
}

/** 0 … a round maximum above `max`, in 4–5 steps of 1, 2, 2.5 or 5 × 10^k. */
export function niceTicks(max) {
  if (!(max > 0)) return [0, 1];
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= rough);
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Evenly spaced times, about one per 120 px. */
function timeTicks(min, max, width) {
  const count = Math.max(2, Math.min(6, Math.floor(width / 120)));
  return Array.from({ length: count }, (_, i) => min + ((max - min) * i) / (count - 1));
}

function drawLegend(legend, series, format) {
  legend.replaceChildren(
    ...series.map((sr) => {
      const last = sr.points[sr.points.length - 1];
      return h("li", {}, h("span", { class: `swatch series-${sr.key}`, "aria-hidden": "true" }), `${sr.label} `, h("strong", {}, last ? format(last[1]) : "—"));
    }),
  );
}

function summary(title, series, format) {
  const parts = series.map((sr) => {
    const last = sr.points[sr.points.length - 1];
    return `${sr.label} ${last ? format(last[1]) : "no data"}`;
  });
  return `${title}: ${parts.join(", ")}`;
}
