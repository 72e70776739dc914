// The fleet: every agent with its state, labels, version, resource usage and last heartbeat; filtered
// by label selector and state. State changes arrive live (topic `agents`); heartbeats raise no event,
// so the visible rows are also refreshed every half minute for fresh resource figures.

import { h, debounce, setText } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { badge, busy, confirm, pageHeader, showError, showMessage } from "../ui.js";
import { liveTable } from "./live-table.js";
import { parseSelector, selectorText } from "./forms.js";
import { labelsDialog } from "./fleet-labels.js";
import { AGENT_STATES } from "../constants.js";

const PAGE_SIZE = 100;
const REFRESH_MS = 30_000;

export function render(container, ctx) {
  const labelFilter = h("input", { id: "label-filter", type: "search", placeholder: "env=prod", value: ctx.query.get("selector") ?? "", autocomplete: "off", spellcheck: "false", "aria-describedby": "label-filter-error" });
  const initialState = AGENT_STATES.includes(ctx.query.get("state")) ? ctx.query.get("state") : "";
  const stateFilter = h("select", { id: "state-filter" }, h("option", { value: "" }, "All states"), AGENT_STATES.map((st) => h("option", { value: st, selected: st === initialState }, st)));
  const filterError = h("p", { id: "label-filter-error", class: "field-error", hidden: true });
  const editor = ctx.canOperate ? labelsDialog() : null;
  const columns = ["Host", "State", "Labels", "Version", "Host CPU", "Host memory", "Agent memory", "Pipelines", "Last heartbeat"];
  if (ctx.canOperate) columns.push({ label: "Actions", className: "actions-col" });
  const list = liveTable({ id: "agents-table", caption: "Agents", columns, row: (agent) => agentRow(agent, ctx, { edit, decommission }), emptyText: "No agents match.", newestFirst: false });

  container.append(
    pageHeader("Fleet"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "label-filter" }, "Labels"),
      labelFilter,
      h("label", { for: "state-filter" }, "State"),
      stateFilter,
    ),
    filterError,
    list.el,
    editor?.el,
  );

  let gone = false;
  let generation = 0;
  const filters = () => {
    const parsed = parseSelector(labelFilter.value);
    setText(filterError, parsed.error ?? "");
    filterError.hidden = !parsed.error;
    return parsed.error ? null : { labels: parsed.labels, state: stateFilter.value };
  };
  const query = (f, cursor) => withQuery("/api/v1/agents", { selector: selectorText(f.labels), state: f.state, limit: PAGE_SIZE, cursor });

  const load = async (cursor) => {
    const f = filters();
    if (!f) return;
    const mine = cursor ? generation : ++generation;
    try {
      const page = await api.get(query(f, cursor));
      if (gone || mine !== generation) return;
      if (cursor) list.add(page.items);
      else list.set(page.items);
      list.paging(page.next_cursor, () => load(page.next_cursor));
    } catch (error) {
      if (!gone) showError(error);
    }
  };
  /** Fresh figures for the rows of the first page, without losing pages loaded further. */
  const refreshRows = async () => {
    const f = filters();
    if (!f || document.hidden) return;
    try {
      const page = await api.get(query(f));
      if (!gone) page.items.forEach((agent) => list.upsert(agent));
    } catch {
      // The next refresh (or a live event) will do; a failed background refresh is not worth a message.
    }
  };

  const applyFilters = () => {
    const f = filters();
    const params = new URLSearchParams();
    if (labelFilter.value.trim()) params.set("selector", labelFilter.value.trim());
    if (stateFilter.value) params.set("state", stateFilter.value);
    history.replaceState(null, "", params.toString() ? `#/fleet?${params}` : "#/fleet");
    if (f) load();
  };
  const onLabelInput = debounce(applyFilters, 300);
  labelFilter.addEventListener("input", onLabelInput);
  stateFilter.addEventListener("change", applyFilters);

  const matches = (agent) => {
    const f = filters();
    if (!f) return false;
    if (f.state && agent.state !== f.state) return false;
    return Object.entries(f.labels).every(([k, v]) => agent.labels?.[k] === v);
  };
  const show = (agent) => (matches(agent) ? list.upsert(agent) : list.remove(agent.id));
  const refetchOne = async (id) => {
    try {
      show(await api.get(`/api/v1/agents/${encodeURIComponent(id)}`));
    } catch (error) {
      if (error.status === 404) list.remove(id);
    }
  };
  const onMessage = (message) => {
    if (message.type === "resync") return load();
    if (message.type !== "event") return;
    if (message.event === "agent.deleted") return list.remove(message.data?.id);
    if (message.data?.hostname) return show(message.data);
    if (message.data?.id) refetchOne(message.data.id);
  };

  async function edit(agent) {
    const updated = await editor.edit(agent);
    if (updated) {
      show(updated);
      showMessage(`Labels of ${updated.hostname} saved.`, "info");
    }
  }
  async function decommission(agent, button) {
    const ok = await confirm({ title: `Decommission ${agent.hostname}?`, text: "Its record, credential and tasks are removed. The agent cannot connect again without a new enrolment.", yes: "Decommission" });
    if (!ok) return;
    await busy(button, async () => {
      await api.del(`/api/v1/agents/${encodeURIComponent(agent.id)}`);
      list.remove(agent.id);
      showMessage(`${agent.hostname} was decommissioned.`, "info");
    });
  }

  const stop = ctx.subscribe("agents", onMessage);
  const timer = setInterval(refreshRows, REFRESH_MS);
  load();

  return () => {
    gone = true;
    stop();
    clearInterval(timer);
    onLabelInput.cancel();
  };
}

function agentRow(agent, ctx, { edit, decommission }) {
  const r = agent.resources;
  const memory = r ? `${fmt.bytes(r.host_memory_used_bytes)} / ${fmt.bytes(r.host_memory_total_bytes)}` : "—";
  const actions = [];
  if (ctx.canOperate) actions.push(h("button", { type: "button", class: "button small", "aria-label": `Edit labels of ${agent.hostname}`, on: { click: () => edit(agent) } }, "Labels…"));
  if (ctx.isAdmin) {
    const button = h("button", { type: "button", class: "button small danger-text", "aria-label": `Decommission ${agent.hostname}` }, "Decommission");
    button.addEventListener("click", () => decommission(agent, button));
    actions.push(button);
  }
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
    ctx.canOperate ? h("td", {}, h("div", { class: "row-actions" }, actions)) : null,
  );
}

function labelChips(labels) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "chips" }, entries.map(([k, v]) => h("span", { class: "chip" }, `${k}=${v}`)));
}
