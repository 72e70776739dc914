// A small SVG line chart: several series over time, y from zero (the comparisons are about size), a
// few ticks on each axis, optional vertical markers, and a legend with each series' latest value.
// Drawn at the container's real width (redrawn when it changes) so text stays crisp and readable.
// Each series also has its own dash pattern (CSS, by `series-<key>`, in the legend too), so the lines
// differ without colour. A long experiment has 100k+ points: extremes are found with loops (spreading
// them into Math.max overflows the stack) and each path keeps about two points per pixel.

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
  const svg = s("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": summary(title, series, format), class: "chart-svg" });
  svg.append(s("title", {}, title));
  const plot = { x0: MARGIN.left, x1: width - MARGIN.right, y0: HEIGHT - MARGIN.bottom, y1: MARGIN.top };
  const { tMin, tMax, vMax, count } = extent(series);
  const yTicks = niceTicks(vMax);
  const yMax = yTicks[yTicks.length - 1];
  const x = (t) => plot.x0 + ((t - tMin) / (tMax - tMin)) * (plot.x1 - plot.x0);
  const y = (v) => plot.y0 - (v / yMax) * (plot.y0 - plot.y1);

  for (const tick of yTicks) {
    svg.append(
      s("line", { class: "grid", x1: plot.x0, x2: plot.x1, y1: y(tick), y2: y(tick) }),
      s("text", { class: "tick", x: plot.x0 - 6, y: y(tick), "text-anchor": "end", "dominant-baseline": "middle" }, format(tick)),
    );
  }
  if (count) {
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
    if (!count || marker.t < tMin || marker.t > tMax) continue;
    svg.append(
      s("line", { class: "marker", x1: x(marker.t), x2: x(marker.t), y1: plot.y1, y2: plot.y0 }),
      s("text", { class: "marker-label", x: x(marker.t) + 4, y: plot.y1 + 10 }, marker.label),
    );
  }
  for (const sr of series) svg.append(seriesPath(sr, x, y, plot.x1 - plot.x0), ...dots(sr, x, y, format));
  return svg;
}

function seriesPath(sr, x, y, plotWidth) {
  const attrs = { class: ["line", `series-${sr.key}`].join(" "), "data-variant": sr.key, fill: "none" };
  const points = thin(sr.points, x, plotWidth);
  if (points.length) attrs.d = points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  return s("path", attrs);
}

/**
 * Keeps about two points per pixel column (points in time order): in each column its lowest and its
 * highest, in the order they came, so peaks and dips stay visible.
 */
function thin(points, x, plotWidth) {
  if (points.length <= plotWidth * 2) return points;
  const kept = [];
  let column = null;
  let low = null;
  let high = null;
  const keep = () => {
    if (!low) return;
    if (low === high) kept.push(low);
    else kept.push(...(low[0] <= high[0] ? [low, high] : [high, low]));
  };
  for (const point of points) {
    const c = Math.floor(x(point[0]));
    if (c !== column) {
      keep();
      column = c;
      low = point;
      high = point;
    } else if (point[1] < low[1]) low = point;
    else if (point[1] > high[1]) high = point;
  }
  keep();
  return kept;
}

/** Dots (with a native tooltip) while there are few points: a single measurement is visible too. */
function dots(sr, x, y, format) {
  if (sr.points.length > MAX_DOTS) return [];
  return sr.points.map(([t, v]) =>
    s("circle", { class: `dot series-${sr.key}`, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, s("title", {}, `${clock(t)} · ${sr.label}: ${format(v)}`)),
  );
}

/** The time range (a minute around a single time) and the largest value, over every series. */
function extent(series) {
  let tMin = Infinity;
  let tMax = -Infinity;
  let vMax = 0;
  let count = 0;
  for (const sr of series) {
    for (const [t, v] of sr.points) {
      if (t < tMin) tMin = t;
      if (t > tMax) tMax = t;
      if (v > vMax) vMax = v;
      count += 1;
    }
  }
  if (!count) return { tMin: 0, tMax: 1, vMax, count };
  if (tMax === tMin) return { tMin: tMin - 30_000, tMax: tMax + 30_000, vMax, count };
  return { tMin, tMax, vMax, count };
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
      return h("li", {}, swatch(sr.key), `${sr.label} `, h("strong", {}, last ? format(last[1]) : "—"));
    }),
  );
}

/** A short stretch of the series' line, in its colour and dash pattern. */
function swatch(key) {
  return s("svg", { class: "swatch", width: 24, height: 8, viewBox: "0 0 24 8", "aria-hidden": "true", focusable: "false" }, s("line", { class: `line series-${key}`, x1: 1, x2: 23, y1: 4, y2: 4 }));
}

function summary(title, series, format) {
  const parts = series.map((sr) => {
    const last = sr.points[sr.points.length - 1];
    return `${sr.label} ${last ? format(last[1]) : "no data"}`;
  });
  return `${title}: ${parts.join(", ")}`;
}
