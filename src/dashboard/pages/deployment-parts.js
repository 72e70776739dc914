// Sections of the deployment page: rollout per agent, version history, and the diff of two versions.

import { h, setText, table } from "../dom.js";
import { api } from "../api.js";
import * as fmt from "../format.js";
import { badge, errorText } from "../ui.js";

/** Per agent: desired vs applied version, state and last error, with an "n of m applied" summary. */
export function rolloutSection(hostnames) {
  const { wrapper, tbody } = table({ id: "rollout-table", caption: "Rollout per agent", columns: ["Agent", "Desired", "Applied", "State", "Last error"] });
  const bar = h("progress", { max: "1", value: "0", class: "rollout-progress", "aria-label": "Agents on the current version" });
  const summary = h("span", { class: "muted" }, "Loading…");
  return {
    el: h("section", { class: "panel" }, h("h2", {}, "Rollout"), h("div", { class: "progress-line" }, bar, summary), wrapper),
    update(status) {
      const agents = status.agents ?? [];
      const applied = agents.filter((a) => a.state === "applied").length;
      const failed = agents.filter((a) => a.state === "failed").length;
      bar.max = Math.max(agents.length, 1);
      bar.value = applied;
      setText(summary, agents.length ? `${applied} of ${agents.length} agent${agents.length === 1 ? "" : "s"} on v${status.current_version}${failed ? `, ${failed} failed` : ""}` : "No agent matches the target.");
      if (!agents.length) return tbody.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: 5 }, "No agents.")));
      return tbody.replaceChildren(
        ...agents.map((a) =>
          h(
            "tr",
            { dataset: { agent: a.agent_id } },
            h("td", {}, hostnames.get(a.agent_id) ?? h("code", { title: a.agent_id }, fmt.shortId(a.agent_id))),
            h("td", { class: "num" }, a.desired_version ? `v${a.desired_version}` : "—"),
            h("td", { class: "num" }, a.applied_version ? `v${a.applied_version}` : "—"),
            h("td", { dataset: { field: "state" } }, badge(a.state)),
            h("td", { class: "error-text" }, a.last_error ?? ""),
          ),
        ),
      );
    },
  };
}

/** Every version, newest first. */
export function versionsSection() {
  const { wrapper, tbody } = table({ id: "versions-table", caption: "Versions", columns: ["Version", "Status", "Pipeline", "Config", "Notes", "Created"] });
  return {
    el: h("section", { class: "panel" }, h("h2", {}, "Versions"), wrapper),
    update(items) {
      tbody.replaceChildren(
        ...items.map((v) =>
          h(
            "tr",
            { dataset: { version: String(v.version) }, class: v.status === "active" ? "current" : null },
            h("td", {}, `v${v.version}`),
            h("td", {}, badge(v.status)),
            h("td", {}, fmt.pipeline(v.pipeline), v.rollback_from_version ? h("span", { class: "muted" }, ` (config of v${v.rollback_from_version})`) : null),
            h("td", {}, h("code", { title: v.config_hash }, String(v.config_hash ?? "").replace(/^sha256:/, "").slice(0, 12))),
            h("td", { class: "notes" }, v.notes || "—"),
            h("td", {}, fmt.timeAgo(v.created_at)),
          ),
        ),
      );
    },
  };
}

/** Two version selects and the unified diff between them (what changed from "from" to "to"). */
export function diffSection(base) {
  const from = h("select", { id: "diff-from" });
  const to = h("select", { id: "diff-to" });
  const output = h("pre", { id: "diff-output", class: "diff", tabindex: "0", "aria-describedby": "diff-summary" }, "Choose two versions.");
  // The diff itself is not live (a screen reader would read it all): one line says what it shows.
  const summary = h("p", { id: "diff-summary", class: "visually-hidden", role: "status" });
  let seq = 0;
  let known = "";
  // Until the reader picks versions, the diff follows the latest change (previous → current).
  let picked = false;

  const load = async () => {
    const mine = ++seq;
    if (!from.value || !to.value) return;
    setText(output, "Loading…");
    try {
      const diff = await api.get(`${base}/versions/${to.value}/diff?against=${from.value}`);
      if (mine !== seq) return;
      if (!diff.changed) setText(output, `No differences between v${diff.from} and v${diff.to}.`);
      else renderDiff(output, diff.unified);
      setText(summary, diffSummary(diff));
    } catch (error) {
      if (mine !== seq) return;
      setText(output, errorText(error));
      setText(summary, `Cannot compare the versions: ${errorText(error)}`);
    }
  };
  const onPick = () => {
    picked = true;
    load();
  };
  from.addEventListener("change", onPick);
  to.addEventListener("change", onPick);

  return {
    el: h(
      "section",
      { class: "panel" },
      h("h2", {}, "Compare versions"),
      h("div", { class: "toolbar" }, h("label", { for: "diff-from" }, "From"), from, h("label", { for: "diff-to" }, "To"), to),
      summary,
      output,
    ),
    /** New version list: keeps the reader's choice, else shows previous → current. */
    setVersions(items, current) {
      const numbers = items.map((v) => v.version).sort((a, b) => b - a);
      const signature = numbers.join(",");
      if (signature === known) return;
      known = signature;
      const options = (select, preferred) => {
        const chosen = picked && numbers.includes(Number(select.value)) ? Number(select.value) : preferred;
        select.replaceChildren(...numbers.map((n) => h("option", { value: String(n), selected: n === chosen }, `v${n}`)));
      };
      const latest = current ?? numbers[0];
      options(to, latest);
      options(from, numbers.find((n) => n < latest) ?? latest);
      load();
    },
  };
}

/** "v1 → v2: 3 lines added, 1 removed", for the summary read out when a diff is shown. */
function diffSummary(diff) {
  if (!diff.changed) return `No differences between v${diff.from} and v${diff.to}.`;
  const lines = String(diff.unified ?? "").split("\n");
  const added = lines.filter((l) => l.startsWith("+") && !l.startsWith("+++")).length;
  const removed = lines.filter((l) => l.startsWith("-") && !l.startsWith("---")).length;
  const count = (n, what) => `${n} line${n === 1 ? "" : "s"} ${what}`;
  return `Differences from v${diff.from} to v${diff.to}: ${count(added, "added")}, ${count(removed, "removed")}.`;
}

/** The unified text, each line classed by its first character so additions and removals stand out. */
function renderDiff(pre, text) {
  const lines = String(text ?? "").split("\n");
  pre.replaceChildren(
    ...lines.map((line, i) => {
      const kind = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : null;
      return h("span", { class: kind ? `diff-${kind}` : null }, i < lines.length - 1 ? `${line}\n` : line);
    }),
  );
}
