// The deployments list with their status, live (topic `deployments`).

import { h } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { badge, pageHeader } from "../ui.js";
import { liveTable } from "./live-table.js";
import { pagedLoader } from "./paged-list.js";
import { DEPLOYMENT_STATUSES } from "../constants.js";

const PAGE_SIZE = 50;

export function render(container, ctx) {
  let status = DEPLOYMENT_STATUSES.includes(ctx.query.get("status")) ? ctx.query.get("status") : "";
  const filter = h(
    "select",
    { id: "status-filter", on: { change: () => changeFilter() } },
    h("option", { value: "" }, "All statuses"),
    DEPLOYMENT_STATUSES.map((st) => h("option", { value: st, selected: st === status }, fmt.words(st))),
  );
  const list = liveTable({
    id: "deployments-table",
    caption: "Deployments",
    columns: ["Name", "Status", "Version", "Pipeline", "Target", "Rollout", "Updated"],
    row: deploymentRow,
    emptyText: "No deployments. Promote an experiment to create one.",
  });
  container.append(pageHeader("Deployments"), h("div", { class: "toolbar" }, h("label", { for: "status-filter" }, "Status"), filter), list.el);

  let gone = false;
  const { load } = pagedLoader({
    list,
    url: (cursor) => withQuery("/api/v1/pipelines/deployments", { status, limit: PAGE_SIZE, cursor }),
    isGone: () => gone,
  });

  function changeFilter() {
    status = filter.value;
    history.replaceState(null, "", status ? `#/deployments?status=${status}` : "#/deployments");
    load();
  }

  // Events carrying the whole deployment replace its row; the others only say "something changed".
  const refetchOne = async (id) => {
    try {
      const dep = await api.get(`/api/v1/pipelines/deployments/${encodeURIComponent(id)}`);
      if (!gone) show(dep);
    } catch (error) {
      if (error.status === 404) list.remove(id);
    }
  };
  const show = (dep) => {
    if (dep.status !== "deleted" && (!status || dep.status === status)) list.upsert(dep);
    else list.remove(dep.id);
  };
  const onMessage = (message) => {
    if (message.type === "resync") return load();
    if (message.type !== "event") return;
    if (message.event === "deployment.created") return show(message.data);
    if (message.data?.deployment) return show(message.data.deployment);
    const id = message.data?.deployment_id ?? message.data?.id;
    if (id && list.has(id)) refetchOne(id);
  };
  const unsubscribe = ctx.subscribe("deployments", onMessage);
  load();

  return () => {
    gone = true;
    unsubscribe();
  };
}

function deploymentRow(dep) {
  const rollout = dep.rollout?.strategy === "waves" ? `waves (first ${dep.rollout.first_batch}, ×${dep.rollout.growth})` : "all at once";
  return h(
    "tr",
    {},
    h("td", {}, h("a", { href: `#/deployments/${dep.id}` }, dep.name)),
    h("td", { dataset: { field: "status" } }, badge(dep.status)),
    h("td", { class: "num", dataset: { field: "version" } }, `v${dep.current_version}`),
    h("td", {}, fmt.pipeline(dep.pipeline)),
    h("td", {}, fmt.target(dep.target)),
    h("td", {}, rollout),
    h("td", {}, fmt.timeAgo(dep.updated_at)),
  );
}
