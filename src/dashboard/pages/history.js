// One entry of an experiment's or a deployment's history (GET …/events), for their timelines.

import { h } from "../dom.js";
import * as fmt from "../format.js";
import { badge } from "../ui.js";

/** When, what (the phase reached, else the event's type), from which phase or at which version, and why. */
export function historyItem(e) {
  return h(
    "li",
    { class: "timeline-item" },
    h("span", { class: "timeline-time" }, fmt.timeAgo(e.created_at)),
    h(
      "span",
      { class: "timeline-body" },
      e.to_phase ? badge(e.to_phase) : h("span", { class: "badge" }, fmt.words(e.event_type)),
      e.from_phase ? h("span", { class: "muted" }, ` from ${fmt.words(e.from_phase)}`) : null,
      e.version ? h("span", { class: "muted" }, ` v${e.version}`) : null,
      e.message ? h("span", { class: "timeline-message" }, e.message) : null,
    ),
  );
}
