// Start / Stop / Promote / Rollback / Delete of an experiment. Shown only to operators and admins, and
// enabled only when the experiment's `allowed_actions` allows them. Stop, Rollback and Delete ask for
// confirmation; Promote asks where the candidate goes (a new deployment, or a version of one).

import { h } from "../dom.js";
import { api } from "../api.js";
import { busy, confirm, setButtonsEnabled, showError } from "../ui.js";
import { promoteDialog } from "./promote-dialog.js";
import { postAction } from "./actions.js";

export function experimentActions({ base, ctx, apply, reload, onDeleted }) {
  if (!ctx.canOperate) return { el: null, dialog: null, update() {}, destroy() {} };
  let exp = null;
  const promote = promoteDialog();
  const act = (action, body, done) => postAction({ url: `${base}/${action}`, body, done, apply, reload });

  const buttons = [
    actionButton("start", "Start", "primary", () => act("start", undefined, "Experiment started: deploying both pipelines.")),
    actionButton("stop", "Stop", null, async () => {
      const ok = await confirm({ title: "Stop this experiment?", text: "Both pipelines are removed from the agents. A stopped experiment cannot be started again.", yes: "Stop experiment" });
      if (ok) await act("stop", undefined, "Stopping the experiment.");
    }),
    actionButton("promote", "Promote", "primary", async () => {
      const request = await promote.ask(exp);
      if (!request) return;
      const next = await act("promote", request, "Promoted: the candidate is now a deployment.");
      if (next?.deployment_id) document.getElementById("deployment-link")?.focus();
    }),
    actionButton("rollback", "Roll back", null, async () => {
      const ok = await confirm({ title: "Roll back this experiment?", text: "The candidate is removed from the agents and the baseline kept.", yes: "Roll back" });
      if (ok) await act("rollback", undefined, "Rolled back: the baseline is kept.");
    }),
    actionButton("delete", "Delete", "subtle", async () => {
      const ok = await confirm({ title: "Delete this experiment?", text: "Its history and results are deleted too. This cannot be undone.", yes: "Delete" });
      if (!ok) return;
      try {
        await api.del(base);
        onDeleted();
      } catch (error) {
        showError(error);
      }
    }),
  ];
  // Afterwards the buttons follow the (possibly new) phase again, not their state before the click.
  for (const b of buttons) b.el.addEventListener("click", () => busy(b.el, b.run).then(refresh));

  function refresh() {
    const allowed = new Set(exp?.allowed_actions ?? []);
    setButtonsEnabled(buttons.map((b) => [b.el, allowed.has(b.action)]));
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

function actionButton(action, label, className, run) {
  const el = h("button", { type: "button", id: `action-${action}`, class: ["button", className], disabled: true }, label);
  return { action, el, run };
}
