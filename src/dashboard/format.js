// Number, money, size and time formatting. Uses the browser's locale (thousands separators and
// decimal marks as the reader expects them); every missing value reads as an em dash.

import { h } from "./dom.js";

const DASH = "—";
const missing = (value) => value === null || value === undefined || Number.isNaN(value);

/** 12,345 (at most `digits` decimals). */
export function number(value, digits = 0) {
  if (missing(value)) return DASH;
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** A count that may be large: 1,234 below 10,000; 12.3K, 4.5M above (for chart axes). */
export function compact(value) {
  if (missing(value)) return DASH;
  const abs = Math.abs(value);
  if (abs >= 10_000) return Number(value).toLocaleString(undefined, { notation: "compact", maximumFractionDigits: 1 });
  if (abs >= 100) return number(value, 0);
  if (abs >= 1) return number(value, 2);
  return number(value, 4);
}

/** $1,234.50 (always two decimals; an unknown currency code falls back to "1,234.50 XYZ"). */
export function money(value, currency = "USD") {
  if (missing(value)) return DASH;
  const options = { minimumFractionDigits: 2, maximumFractionDigits: 2 };
  try {
    return Number(value).toLocaleString(undefined, { style: "currency", currency, ...options });
  } catch {
    return `${Number(value).toLocaleString(undefined, options)} ${currency}`;
  }
}

/** 45.2 % (with a sign when `signed`). */
export function percent(value, { signed = false, digits = 1 } = {}) {
  if (missing(value)) return DASH;
  const text = Math.abs(value).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const sign = value < 0 ? "−" : signed && value > 0 ? "+" : "";
  return `${sign}${text} %`;
}

/** 1.5 GiB */
export function bytes(value) {
  if (missing(value)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(value);
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${number(n, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** 90 → "1 min 30 s" */
export function duration(secs) {
  if (missing(secs)) return DASH;
  const s = Math.round(secs);
  if (s < 60) return `${s} s`;
  const parts = [];
  const d = Math.floor(s / 86400);
  const hr = Math.floor((s % 86400) / 3600);
  const min = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) parts.push(`${d} d`);
  if (hr) parts.push(`${hr} h`);
  if (min) parts.push(`${min} min`);
  if (sec && !d) parts.push(`${sec} s`);
  return parts.join(" ");
}

/** "just now", "42 s ago", "2 min ago", "3 h ago", "5 d ago", or "in 10 s" for the future. */
export function relative(iso, now = Date.now()) {
  if (!iso) return DASH;
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return DASH;
  const diff = Math.round((now - then) / 1000);
  const abs = Math.abs(diff);
  if (abs < 5) return "just now";
  const text =
    abs < 60 ? `${abs} s` : abs < 3600 ? `${Math.floor(abs / 60)} min` : abs < 86400 ? `${Math.floor(abs / 3600)} h` : `${Math.floor(abs / 86400)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** A <time> showing a relative time, with the exact ISO time in its title; app.js keeps it fresh. */
export function timeAgo(iso) {
  if (!iso) return h("span", { class: "muted" }, DASH);
  return h("time", { datetime: iso, title: iso, dataset: { relative: "" } }, relative(iso));
}

/** Refreshes every relative time under `root` (called on a timer). */
export function refreshTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[data-relative]")) {
    const text = relative(el.getAttribute("datetime"), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

/** 14:05:09, for chart axes. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/**
 * `{env: "lab", region: "eu"}` → `["env=lab", "region=eu"]`: labels, selectors and parameters as the
 * `key=value` text people type (a list value reads `a|b`).
 */
export function keyValues(map) {
  return Object.entries(map ?? {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("|") : v}`);
}

/** "env=lab, region=eu" from a label map. */
export function labels(map) {
  const pairs = keyValues(map);
  return pairs.length ? pairs.join(", ") : DASH;
}

/** "rolled_back" → "rolled back" for prose (badges keep the API's word). */
export function words(value) {
  return String(value ?? "").replaceAll("_", " ");
}

/** Describes a target: "env=lab" for a selector, "3 agents" for a list. */
export function target(t) {
  if (!t) return DASH;
  if (t.selector) return Object.keys(t.selector).length ? labels(t.selector) : "all agents";
  if (t.agents) return `${number(t.agents.length)} agent${t.agents.length === 1 ? "" : "s"}`;
  return DASH;
}

/** Describes a pipeline spec: "topk (k=5)" or "inline config". */
export function pipeline(spec) {
  if (!spec) return DASH;
  if (spec.template) {
    const params = keyValues(spec.parameters);
    return params.length ? `${spec.template} (${params.join(", ")})` : spec.template;
  }
  return "inline config";
}

export function shortId(id) {
  return id ? String(id).slice(-8) : DASH;
}
