// Rollback (to the previous version or a chosen one, after confirmation), Pause and Resume of a
// deployment; shown to operators and admins only. Pause and Resume follow the status; Rollback is
// always offered (the server refuses one with nothing to go back to, and the refusal is shown).

import { h } from "../dom.js";
import { api } from "../api.js";
import { busy, confirm, showError, showMessage } from "../ui.js";

export function deploymentActions({ base, ctx, apply, afterChange, reload }) {
  if (!ctx.canOperate) return { el: null, update() {}, setVersions() {}, destroy() {} };
  let dep = null;
  let versions = [];
  const target = h("select", { id: "rollback-version", "aria-label": "Roll back to" });
  const rollback = h("button", { type: "button", id: "action-rollback", class: "button", disabled: true }, "Roll back");
  const pause = h("button", { type: "button", id: "action-pause", class: "button", disabled: true }, "Pause");
  const resume = h("button", { type: "button", id: "action-resume", class: "button primary", disabled: true }, "Resume");

  const post = async (path, body, done) => {
    try {
      const answer = await api.post(`${base}/${path}`, body);
      apply(answer.deployment ?? answer);
      afterChange();
      showMessage(done, "info");
    } catch (error) {
      showError(error);
      if (error.status === 409) reload();
    }
  };

  rollback.addEventListener("click", () =>
    busy(rollback, async () => {
      const chosen = target.value ? Number(target.value) : null;
      const to = chosen ?? previousVersion();
      const which = to ? `version ${to}` : "the previous version";
      const ok = await confirm({
        title: `Roll back “${dep.name}”?`,
        text: `Version ${dep.current_version + 1} will be created with the configuration of ${which} and rolled out to the target agents.`,
        yes: to ? `Roll back to v${to}` : "Roll back",
      });
      if (ok) await post("rollback", chosen ? { version: chosen } : {}, `Rolling back to the configuration of ${which}.`);
    }).then(refresh),
  );
  pause.addEventListener("click", () => busy(pause, () => post("pause", undefined, "Rollout paused: nothing more is sent until resumed.")).then(refresh));
  resume.addEventListener("click", () => busy(resume, () => post("resume", undefined, "Rollout resumed.")).then(refresh));

  /** The version a plain rollback restores (null when there is none: the server then says so). */
  function previousVersion() {
    const older = versions.map((v) => v.version).filter((n) => n < dep.current_version);
    if (older.length) return Math.max(...older);
    return dep.current_version > 1 ? dep.current_version - 1 : null;
  }

  function refresh() {
    if (!dep) return;
    const live = dep.status !== "deleted";
    // Rollback stays available even at version 1: the server explains what cannot be done.
    if (!rollback.getAttribute("aria-busy")) rollback.disabled = !live;
    if (!pause.getAttribute("aria-busy")) pause.disabled = !live || dep.status === "paused";
    if (!resume.getAttribute("aria-busy")) resume.disabled = dep.status !== "paused";
    target.disabled = rollback.disabled;
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
