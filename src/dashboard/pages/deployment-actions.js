// Rollback (to the previous version or a chosen one, after confirmation), Pause and Resume of a
// deployment; shown to operators and admins only. Pause and Resume follow the status; Rollback is
// always offered (the server refuses one with nothing to go back to, and the refusal is shown).

import { h } from "../dom.js";
import { busy, confirm, setButtonsEnabled } from "../ui.js";
import { postAction } from "./actions.js";

export function deploymentActions({ base, ctx, apply, afterChange, reload }) {
  if (!ctx.canOperate) return { el: null, update() {}, setVersions() {}, destroy() {} };
  let dep = null;
  let versions = [];
  const target = h("select", { id: "rollback-version", "aria-label": "Roll back to" });
  const rollback = h("button", { type: "button", id: "action-rollback", class: "button", disabled: true }, "Roll back");
  const pause = h("button", { type: "button", id: "action-pause", class: "button", disabled: true }, "Pause");
  const resume = h("button", { type: "button", id: "action-resume", class: "button primary", disabled: true }, "Resume");

  const post = (path, body, done) =>
    postAction({
      url: `${base}/${path}`,
      body,
      done,
      apply: (answer) => {
        apply(answer.deployment ?? answer);
        afterChange();
      },
      reload,
    });

  rollback.addEventListener("click", () => busy(rollback, confirmRollback).then(refresh));
  pause.addEventListener("click", () => busy(pause, () => post("pause", undefined, "Rollout paused: nothing more is sent until resumed.")).then(refresh));
  resume.addEventListener("click", () => busy(resume, () => post("resume", undefined, "Rollout resumed.")).then(refresh));

  /**
   * Names the version in the dialog and sends exactly that one: left to the server, "the previous
   * version" would be worked out when the request arrives, after a version created meanwhile.
   */
  async function confirmRollback() {
    const to = target.value ? Number(target.value) : previousVersion();
    const ok = await confirm({
      title: `Roll back “${dep.name}”?`,
      text: rollbackText(dep, to),
      yes: to >= 1 ? `Roll back to v${to}` : "Roll back",
    });
    if (ok) await post("rollback", { version: to }, `Rolling back to the configuration of version ${to}.`);
  }

  /** The newest version before the current one (the server refuses when there is none, and says why). */
  function previousVersion() {
    const older = versions.map((v) => v.version).filter((n) => n < dep.current_version);
    return older.length ? older.reduce((a, b) => Math.max(a, b)) : dep.current_version - 1;
  }

  function refresh() {
    if (!dep) return;
    const live = dep.status !== "deleted";
    // Rollback stays available even at version 1: the server explains what cannot be done.
    setButtonsEnabled([
      [rollback, live],
      [pause, live && dep.status !== "paused"],
      [resume, dep.status === "paused"],
    ]);
    target.disabled = !live;
  }

  function fillTargets() {
    const older = versions.filter((v) => dep && v.version !== dep.current_version).map((v) => v.version);
    const chosen = target.value;
    target.replaceChildren(
      h("option", { value: "" }, "previous version"),
      ...older.map((n) => h("option", { value: String(n), selected: String(n) === chosen }, `v${n}`)),
    );
  }

  return {
    el: h("div", { class: "page-actions", role: "group", "aria-label": "Actions" }, h("span", { class: "rollback-group" }, rollback, h("label", { for: "rollback-version", class: "muted" }, "to"), target), pause, resume),
    update(next) {
      dep = next;
      fillTargets();
      refresh();
    },
    setVersions(items) {
      versions = items;
      fillTargets();
    },
    destroy() {},
  };
}

function rollbackText(dep, to) {
  if (to < 1) return `v${dep.current_version} is the first version: there is no earlier one to restore.`;
  return `Version ${dep.current_version + 1} will be created with the configuration of version ${to} and rolled out to the target agents.`;
}
