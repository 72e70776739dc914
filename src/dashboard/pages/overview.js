// The overview: counts of agents, experiments and deployments, the promoted experiments' savings, and
// what just happened. Counts are refetched (throttled) whenever a live event arrives.

import { h, throttle, setText } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { pageHeader, showError } from "../ui.js";
import { describeEvent, seedEvent } from "./events.js";
import { AGENT_STATES, PHASES, DEPLOYMENT_STATUSES } from "../constants.js";

const MAX_EVENTS = 50;
const SEED_EVENTS = 10;
// The lists are ordered by creation: this many of each are sorted by their last change for the seed.
const SEED_CANDIDATES = 100;
const COUNTS_INTERVAL_MS = 1000;
// The server counts deleted deployments too; the dashboard lists no deleted deployment.
const UNCOUNTED = { deployments: ["deleted"] };

export function render(container, ctx) {
  const agents = statGroup("agents", AGENT_STATES, (s) => `#/fleet?state=${s}`);
  const experiments = statGroup("experiments", PHASES, (p) => `#/experiments?phase=${p}`);
  const deployments = statGroup("deployments", DEPLOYMENT_STATUSES, null);
  const savings = savingsCard();
  const events = h("ol", { id: "recent-events", class: "event-list" });
  const names = new Map(); // deployment id → name, for events that carry only the id

  container.append(
    pageHeader("Overview"),
    h(
      "div",
      { id: "overview", class: "overview-grid" },
      card("Agents", agents.el, h("a", { href: "#/fleet" }, "Fleet")),
      card("Experiments", experiments.el, h("a", { href: "#/experiments" }, "All experiments")),
      card("Deployments", deployments.el, h("a", { href: "#/deployments" }, "All deployments")),
      savings.el,
    ),
    h("section", { class: "panel", "aria-labelledby": "recent-title" }, h("h2", { id: "recent-title" }, "Recent events"), events),
  );

  let gone = false;
  const isGone = () => gone;
  const loadCounts = async () => {
    try {
      const overview = await api.get("/api/v1/overview");
      if (gone) return;
      agents.update(overview.agents);
      experiments.update(overview.experiments);
      deployments.update(overview.deployments);
      savings.update(overview.savings);
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  const refetch = throttle(loadCounts, COUNTS_INTERVAL_MS);

  const addEvent = (item, { atEnd = false } = {}) => {
    if (!item) return;
    const li = eventItem(item);
    if (atEnd) events.append(li);
    else events.prepend(li);
    events.querySelector(".empty")?.remove();
    while (events.children.length > MAX_EVENTS) events.lastElementChild.remove();
  };

  const onMessage = (message) => {
    if (message.type === "event") {
      if (message.data?.deployment?.name) names.set(message.data.deployment.id, message.data.deployment.name);
      if (message.event === "deployment.created") names.set(message.data.id, message.data.name);
      addEvent(describeEvent(message, names));
    }
    refetch();
  };
  const unsubscribe = ["experiments", "deployments", "agents"].map((topic) => ctx.subscribe(topic, onMessage));

  loadCounts();
  seedEvents(names, isGone).then((items) => {
    if (gone) return;
    if (!items.length && !events.children.length) events.append(h("li", { class: "empty muted" }, "Nothing has happened yet."));
    for (const item of items) addEvent(item, { atEnd: true });
  });

  return () => {
    gone = true;
    refetch.cancel();
    unsubscribe.forEach((stop) => stop());
  };
}

/**
 * The most recently updated experiments and deployments, as events, newest first. The lists come newest
 * created first, so a page of each is fetched and sorted here by `updated_at`.
 */
async function seedEvents(names, isGone) {
  try {
    const [exps, deps] = await Promise.all([
      api.get(withQuery("/api/v1/experiments", { limit: SEED_CANDIDATES })),
      api.get(withQuery("/api/v1/pipelines/deployments", { limit: SEED_CANDIDATES })),
    ]);
    for (const d of deps.items) names.set(d.id, d.name);
    const entries = [...exps.items.map((e) => ["experiment", e]), ...deps.items.map((d) => ["deployment", d])];
    entries.sort((a, b) => Date.parse(b[1].updated_at) - Date.parse(a[1].updated_at));
    return entries.slice(0, SEED_EVENTS).map(([kind, entity]) => seedEvent(kind, entity));
  } catch (error) {
    if (!isGone()) showError(error);
    return [];
  }
}

function eventItem({ kind, text, href, ts, status }) {
  return h(
    "li",
    { class: "event", dataset: { kind } },
    h("span", { class: "event-kind" }, kind),
    h("span", { class: "event-text" }, href ? h("a", { href }, text) : text, status ? [" ", h("span", { class: ["badge", `status-${status}`] }, status)] : null),
    h("span", { class: "event-time" }, fmt.timeAgo(ts)),
  );
}

function card(title, body, link) {
  return h("section", { class: "panel card" }, h("div", { class: "card-head" }, h("h2", {}, title), link), body);
}

/**
 * A list of `label: count` rows, one per known key (zero when the API has none) plus any new key. Until
 * the counts arrive (or when they cannot be loaded) each reads "—", not a zero that is not known.
 */
function statGroup(family, keys, hrefFor) {
  const el = h("dl", { class: "stat-list" });
  const rows = new Map();
  const ignored = UNCOUNTED[family] ?? [];
  const row = (key) => {
    const value = h("span", { class: "stat-value", dataset: { stat: `${family}.${key}` } }, "—");
    const label = hrefFor ? h("a", { href: hrefFor(key) }, fmt.words(key)) : fmt.words(key);
    const div = h("div", { class: ["stat-row", `stat-${key}`] }, h("dt", {}, h("span", { class: ["dot", `status-${key}`] }), label), h("dd", {}, value));
    el.append(div);
    rows.set(key, { value, div });
  };
  keys.forEach(row);
  return {
    el,
    update(counts = {}) {
      for (const key of Object.keys(counts)) if (!rows.has(key) && !ignored.includes(key)) row(key);
      for (const [key, { value, div }] of rows) {
        const n = counts[key] ?? 0;
        setText(value, fmt.number(n));
        div.classList.toggle("zero", n === 0);
      }
    },
  };
}

function savingsCard() {
  const saving = h("span", { class: "big-number", dataset: { stat: "savings.monthly_saving" } }, "—");
  const before = h("dd", { dataset: { stat: "savings.monthly_cost_before" } }, "—");
  const after = h("dd", { dataset: { stat: "savings.monthly_cost_after" } }, "—");
  const count = h("dd", { dataset: { stat: "savings.promoted_experiments" } }, "—");
  const el = h(
    "section",
    { id: "savings", class: "panel card savings" },
    h("div", { class: "card-head" }, h("h2", {}, "Savings"), h("span", { class: "muted" }, "promoted experiments")),
    h("p", { class: "saving-line" }, saving, h("span", { class: "muted" }, " per month")),
    h(
      "dl",
      { class: "kv" },
      h("div", {}, h("dt", {}, "Monthly cost before"), before),
      h("div", {}, h("dt", {}, "Monthly cost after"), after),
      h("div", {}, h("dt", {}, "Promoted experiments"), count),
    ),
  );
  return {
    el,
    update(s) {
      if (!s) return;
      setText(saving, fmt.money(s.monthly_saving, s.currency));
      setText(before, fmt.money(s.monthly_cost_before, s.currency));
      setText(after, fmt.money(s.monthly_cost_after, s.currency));
      setText(count, fmt.number(s.promoted_experiments));
    },
  };
}
