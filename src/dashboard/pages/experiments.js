// The experiments list, filtered by phase, with phases changing live (topic `experiments`).

import { h } from "../dom.js";
import { withQuery } from "../api.js";
import * as fmt from "../format.js";
import { badge, pageHeader } from "../ui.js";
import { liveTable } from "./live-table.js";
import { pagedLoader } from "./paged-list.js";
import { PHASES } from "../constants.js";

const PAGE_SIZE = 50;

export function render(container, ctx) {
  let phase = PHASES.includes(ctx.query.get("phase")) ? ctx.query.get("phase") : "";
  const filter = h(
    "select",
    { id: "phase-filter", on: { change: () => changeFilter() } },
    h("option", { value: "" }, "All phases"),
    PHASES.map((p) => h("option", { value: p, selected: p === phase }, fmt.words(p))),
  );
  const list = liveTable({
    id: "experiments-table",
    caption: "Experiments",
    columns: ["Name", "Phase", "Baseline", "Candidate", "Target", "Window", "Verdict", "Updated"],
    row: experimentRow,
    emptyText: "No experiments.",
  });
  const newButton = ctx.canOperate ? h("a", { id: "new-experiment", class: "button primary", href: "#/experiments/new" }, "New experiment") : null;

  container.append(
    pageHeader("Experiments", newButton),
    h("div", { class: "toolbar" }, h("label", { for: "phase-filter" }, "Phase"), filter),
    list.el,
  );

  let gone = false;
  const { load } = pagedLoader({
    list,
    url: (cursor) => withQuery("/api/v1/experiments", { phase, limit: PAGE_SIZE, cursor }),
    isGone: () => gone,
  });

  function changeFilter() {
    phase = filter.value;
    // Keep the filter in the address (shareable, survives reload) without a re-render.
    history.replaceState(null, "", phase ? `#/experiments?phase=${phase}` : "#/experiments");
    load();
  }

  const matches = (exp) => !phase || exp.phase === phase;
  const onMessage = (message) => {
    if (message.type === "resync") return load();
    if (message.type !== "event") return;
    const exp = message.event === "experiment.created" ? message.data : message.data?.experiment;
    if (message.event === "experiment.deleted") return list.remove(message.data?.id);
    if (!exp?.id) return;
    if (matches(exp)) list.upsert(exp);
    else list.remove(exp.id);
  };
  const unsubscribe = ctx.subscribe("experiments", onMessage);
  load();

  return () => {
    gone = true;
    unsubscribe();
  };
}

function experimentRow(exp) {
  const verdict = exp.results?.verdict;
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: `#/experiments/${exp.id}` }, exp.name)),
    h("td", { dataset: { field: "phase" } }, badge(exp.phase)),
    h("td", {}, fmt.pipeline(exp.baseline)),
    h("td", {}, fmt.pipeline(exp.candidate)),
    h("td", {}, fmt.target(exp.target)),
    h("td", { class: "num" }, fmt.duration(exp.duration_secs)),
    h("td", { dataset: { field: "verdict" } }, verdict ? badge(verdict) : h("span", { class: "muted" }, "—")),
    h("td", {}, fmt.timeAgo(exp.updated_at)),
  );
}
