// Start / Stop / Promote / Rollback / Delete of an experiment. Shown only to operators and admins, and
// enabled only when the experiment's `allowed_actions` allows them. Stop, Rollback and Delete ask for
// confirmation; Promote asks for the new deployment's name.

import { h, setText, field } from "../dom.js";
import { api } from "../api.js";
import { busy, confirm, openDialog, showMessage, showError } from "../ui.js";

export function experimentActions({ base, ctx, apply, reload }) {
  if (!ctx.canOperate) return { el: null, update() {}, destroy() {} };
  let exp = null;
  const promote = promoteDialog();
  const button = (action, label, className, run) => {
    const el = h("button", { type: "button", id: `action-${action}`, class: ["button", className], disabled: true }, label);
    // Afterwards the buttons follow the (possibly new) phase again, not their state before the click.
    el.addEventListener("click", () => busy(el, run).then(refresh));
    return { action, el };
  };

  // A refused action (409: the phase moved meanwhile) shows why, then the page catches up.
  const act = async (action, body, done) => {
    try {
      const next = await api.post(`${base}/${action}`, body);
      apply(next);
      showMessage(done, "info");
      return next;
    } catch (error) {
      showError(error);
      if (error.status === 409) reload();
      return null;
    }
  };

  const buttons = [
    button("start", "Start", "primary", () => act("start", undefined, "Experiment started: deploying both pipelines.")),
    button("stop", "Stop", null, async () => {
      const ok = await confirm({ title: "Stop this experiment?", text: "Both pipelines are removed from the agents. A stopped experiment cannot be started again.", yes: "Stop experiment" });
      if (ok) await act("stop", undefined, "Stopping the experiment.");
    }),
    button("promote", "Promote", "primary", async () => {
      const request = await promote.ask(exp);
      if (!request) return;
      const next = await act("promote", request, "Promoted: the candidate is now a deployment.");
      if (next?.deployment_id) document.getElementById("deployment-link")?.focus();
    }),
    button("rollback", "Roll back", null, async () => {
      const ok = await confirm({ title: "Roll back this experiment?", text: "The candidate is removed from the agents and the baseline kept.", yes: "Roll back" });
      if (ok) await act("rollback", undefined, "Rolled back: the baseline is kept.");
    }),
    button("delete", "Delete", "subtle", async () => {
      const ok = await confirm({ title: "Delete this experiment?", text: "Its history and results are deleted too. This cannot be undone.", yes: "Delete" });
      if (!ok) return;
      try {
        await api.del(base);
        showMessage("Experiment deleted.", "info", { keep: true });
        ctx.navigate("#/experiments");
      } catch (error) {
        showError(error);
      }
    }),
  ];

  function refresh() {
    const allowed = new Set(exp?.allowed_actions ?? []);
    for (const b of buttons) {
      if (!b.el.getAttribute("aria-busy")) b.el.disabled = !allowed.has(b.action);
    }
  }

  return {
    el: h("div", { class: "page-actions", role: "group", "aria-label": "Actions" }, buttons.map((b) => b.el)),
    dialog: promote.el,
    update(next) {
      exp = next;
      refresh();
    },
    destroy: () => promote.el.remove(),
  };
}

/** The promote dialog: resolves with `{name, notes}` (a new deployment) or null when cancelled. */
function promoteDialog() {
  const name = h("input", { id: "promote-name", name: "name", maxlength: "200", autocomplete: "off", required: true });
  const notes = h("textarea", { id: "promote-notes", name: "notes", rows: "3" });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const cancel = h("button", { type: "button", class: "button" }, "Cancel");
  const submit = h("button", { type: "submit", id: "promote-confirm", class: "button primary" }, "Create deployment");
  const form = h(
    "form",
    { class: "dialog-body", novalidate: true },
    h("h2", { class: "dialog-title", id: "promote-title" }, "Promote the candidate"),
    h("p", {}, "The candidate pipeline becomes a new deployment on the experiment's target."),
    field({ label: "Deployment name", control: name }),
    field({ label: "Notes (optional)", control: notes }),
    error,
    h("div", { class: "dialog-actions" }, cancel, submit),
  );
  const dialog = h("dialog", { id: "promote-dialog", class: "dialog", "aria-labelledby": "promote-title" }, form);
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      setText(error, "Enter a name for the deployment.");
      error.hidden = false;
      name.focus();
      return;
    }
    dialog.close("promote");
  });
  return {
    el: dialog,
    async ask(exp) {
      error.hidden = true;
      if (!name.value) name.placeholder = exp?.name ?? "";
      const answer = await openDialog(dialog);
      if (answer !== "promote") return null;
      const request = { name: name.value.trim() };
      if (notes.value.trim()) request.notes = notes.value.trim();
      return request;
    },
  };
}
