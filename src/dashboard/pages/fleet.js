// The fleet: every agent with its state, labels, version, resource usage and last heartbeat; filtered
// by label selector and state. State changes arrive live (topic `agents`); heartbeats raise no event,
// so the visible rows are also refreshed every half minute for fresh resource figures.

import { h, debounce, setText } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { badge, busy, confirm, pageHeader, showMessage } from "../ui.js";
import { liveTable } from "./live-table.js";
import { pagedLoader } from "./paged-list.js";
import { parseSelector, selectorText } from "./forms.js";
import { labelsDialog } from "./fleet-labels.js";
import { AGENT_STATES } from "../constants.js";

const PAGE_SIZE = 100;
const REFRESH_MS = 30_000;

export function render(container, ctx) {
  const controls = filterControls(ctx.query);
  const editor = ctx.canOperate ? labelsDialog() : null;
  let gone = false;
  const isGone = () => gone;
  // The filter last read without a problem: what the table shows and what live updates are held to.
  let filter = controls.read().filter ?? null;
  const list = agentsTable(ctx, rowActionHandlers({ editor, isGone, show, remove }));
  container.append(pageHeader("Fleet"), controls.el, controls.problem, list.el, editor?.el);

  const loader = pagedLoader({ list, url: (cursor) => (filter ? agentsUrl(filter, cursor) : null), isGone });
  const updates = agentUpdates({ list, loader, show, currentFilter: () => filter, isGone });
  const applyFilters = () => {
    const { filter: next } = controls.read();
    history.replaceState(null, "", controls.address());
    if (!next) return;
    filter = next;
    loader.load();
  };
  const onLabelInput = debounce(applyFilters, 300);
  controls.onChange(onLabelInput, applyFilters);

  const stop = ctx.subscribe("agents", updates.onMessage);
  const timer = setInterval(updates.refreshRows, REFRESH_MS);
  loader.load();

  // Declarations (hoisted): the rows' buttons, built before these lines, call them once clicked.
  function show(agent) {
    if (filter && matches(agent, filter)) list.upsert(agent);
    else list.remove(agent.id);
  }
  function remove(agentId) {
    list.remove(agentId);
  }

  return () => {
    gone = true;
    stop();
    clearInterval(timer);
    onLabelInput.cancel();
  };
}

/** Live events (topic `agents`) and the periodic refresh of the rows shown. */
function agentUpdates({ list, loader, show, currentFilter, isGone }) {
  const refetchOne = async (agentId) => {
    try {
      const agent = await api.get(`/api/v1/agents/${encodeURIComponent(agentId)}`);
      if (!isGone()) show(agent);
    } catch (error) {
      if (!isGone() && error.status === 404) list.remove(agentId);
    }
  };
  return {
    onMessage(message) {
      if (message.type === "resync") return loader.load();
      if (message.type !== "event") return undefined;
      if (message.event === "agent.deleted") return list.remove(message.data?.id);
      if (message.data?.hostname) return show(message.data);
      if (message.data?.id) refetchOne(message.data.id);
      return undefined;
    },
    /** Fresh figures for the rows of the first page, without losing pages loaded further. */
    async refreshRows() {
      const filter = currentFilter();
      if (!filter || document.hidden) return;
      const unchanged = loader.unchangedSince();
      try {
        const page = await api.get(agentsUrl(filter));
        // A filter change (or a resync) meanwhile has loaded newer rows than these.
        if (unchanged()) page.items.forEach(show);
      } catch {
        // The next refresh (or a live event) will do; a failed background refresh is not worth a message.
      }
    },
  };
}

/** What the Labels… and Decommission buttons of a row do. */
function rowActionHandlers({ editor, isGone, show, remove }) {
  return {
    async edit(agent) {
      const updated = await editor.edit(agent);
      if (updated && !isGone()) {
        show(updated);
        showMessage(`Labels of ${updated.hostname} saved.`, "info");
      }
    },
    async decommission(agent, button) {
      const ok = await confirm({ title: `Decommission ${agent.hostname}?`, text: "Its record, credential and tasks are removed. The agent cannot connect again without a new enrolment.", yes: "Decommission" });
      if (!ok) return;
      await busy(button, async () => {
        await api.del(`/api/v1/agents/${encodeURIComponent(agent.id)}`);
        remove(agent.id);
        showMessage(`${agent.hostname} was decommissioned.`, "info");
      });
    },
  };
}

/** Whether `agent` belongs in the table under `filter` ({labels, state}): the server's rule, client-side. */
export function matches(agent, filter) {
  if (filter.state && agent.state !== filter.state) return false;
  return Object.entries(filter.labels).every(([k, v]) => agent.labels?.[k] === v);
}

/** The filter as the user typed it: `{filter: {labels, state}}`, or `{error}` for a selector that is not key=value. */
export function parseFilter(selectorInput, state) {
  const parsed = parseSelector(selectorInput);
  return parsed.error ? { error: parsed.error } : { filter: { labels: parsed.labels, state } };
}

function agentsUrl(filter, cursor) {
  return withQuery("/api/v1/agents", { selector: selectorText(filter.labels), state: filter.state, limit: PAGE_SIZE, cursor });
}

/** The label and state filters with their problem line; `read()` parses them and shows any problem. */
function filterControls(query) {
  const labelInput = h("input", { id: "label-filter", type: "search", placeholder: "env=prod", value: query.get("selector") ?? "", autocomplete: "off", spellcheck: "false", "aria-describedby": "label-filter-error" });
  const initialState = AGENT_STATES.includes(query.get("state")) ? query.get("state") : "";
  const stateSelect = h("select", { id: "state-filter" }, h("option", { value: "" }, "All states"), AGENT_STATES.map((st) => h("option", { value: st, selected: st === initialState }, st)));
  const problem = h("p", { id: "label-filter-error", class: "field-error", hidden: true });
  return {
    el: h("div", { class: "toolbar" }, h("label", { for: "label-filter" }, "Labels"), labelInput, h("label", { for: "state-filter" }, "State"), stateSelect),
    problem,
    read() {
      const parsed = parseFilter(labelInput.value, stateSelect.value);
      setText(problem, parsed.error ?? "");
      problem.hidden = !parsed.error;
      if (parsed.error) labelInput.setAttribute("aria-invalid", "true");
      else labelInput.removeAttribute("aria-invalid");
      return parsed;
    },
    /** The page's address with the filters as typed (shareable, survives a reload). */
    address() {
      const params = new URLSearchParams();
      if (labelInput.value.trim()) params.set("selector", labelInput.value.trim());
      if (stateSelect.value) params.set("state", stateSelect.value);
      return params.toString() ? `#/fleet?${params}` : "#/fleet";
    },
    onChange(onLabelInput, onStateChange) {
      labelInput.addEventListener("input", onLabelInput);
      stateSelect.addEventListener("change", onStateChange);
    },
  };
}

function agentsTable(ctx, handlers) {
  const columns = ["Host", "State", "Labels", "Version", "Host CPU", "Host memory", "Agent memory", "Pipelines", "Last heartbeat"];
  if (ctx.canOperate) columns.push({ label: "Actions", className: "actions-col" });
  return liveTable({ id: "agents-table", caption: "Agents", columns, row: (agent) => agentRow(agent, ctx, handlers), emptyText: "No agents match.", newestFirst: false });
}

function agentRow(agent, ctx, handlers) {
  const r = agent.resources;
  const memory = r ? `${fmt.bytes(r.host_memory_used_bytes)} / ${fmt.bytes(r.host_memory_total_bytes)}` : "—";
  return h(
    "tr",
    { class: agent.credential_revoked ? "revoked" : null },
    h("td", {}, h("span", { class: "host" }, agent.hostname), h("br"), h("code", { class: "muted small", title: agent.id }, fmt.shortId(agent.id))),
    h("td", { dataset: { field: "state" } }, badge(agent.state)),
    h("td", { dataset: { field: "labels" } }, labelChips(agent.labels)),
    h("td", {}, agent.agent_version ?? "—"),
    h("td", { class: "num" }, r ? fmt.percent(r.host_cpu_pct) : "—"),
    h("td", { class: "num" }, memory),
    h("td", { class: "num" }, r ? fmt.bytes(r.agent_rss_bytes) : "—"),
    h("td", { class: "num", title: (agent.pipelines ?? []).map((p) => p.name).join("\n") || null }, fmt.number(agent.pipelines?.length ?? 0)),
    h("td", {}, fmt.timeAgo(agent.last_heartbeat_at), agent.credential_revoked ? h("div", { class: "bad small" }, "credential revoked") : null),
    ctx.canOperate ? h("td", {}, h("div", { class: "row-actions" }, rowActions(agent, ctx, handlers))) : null,
  );
}

function rowActions(agent, ctx, { edit, decommission }) {
  const actions = [h("button", { type: "button", class: "button small", "aria-label": `Edit labels of ${agent.hostname}`, on: { click: () => edit(agent) } }, "Labels…")];
  if (ctx.isAdmin) {
    const button = h("button", { type: "button", class: "button small danger-text", "aria-label": `Decommission ${agent.hostname}` }, "Decommission");
    button.addEventListener("click", () => decommission(agent, button));
    actions.push(button);
  }
  return actions;
}

function labelChips(labels) {
  const pairs = fmt.keyValues(labels);
  if (!pairs.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "chips" }, pairs.map((pair) => h("span", { class: "chip" }, pair)));
}
