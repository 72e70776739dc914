// The promote dialog: the candidate becomes a new deployment (named here) or a new version of an
// existing deployment (chosen from the list). Resolves with the promote request, or null if cancelled.

import { h, setText, field } from "../dom.js";
import { api, withQuery } from "../api.js";
import { errorText, openDialog } from "../ui.js";

const NEW = "";

export function promoteDialog() {
  const target = h("select", { id: "promote-deployment", name: "deployment_id" }, h("option", { value: NEW }, "A new deployment"));
  const name = h("input", { id: "promote-name", name: "name", maxlength: "200", autocomplete: "off" });
  const nameField = field({ label: "New deployment's name", control: name, hint: "Left empty, the experiment's name is used." });
  const notes = h("textarea", { id: "promote-notes", name: "notes", rows: "3" });
  // Always in the dialog (empty when there is nothing wrong), so a problem is read out when it appears.
  const error = h("p", { class: "form-error", role: "alert" });
  const cancel = h("button", { type: "button", class: "button" }, "Cancel");
  const submit = h("button", { type: "submit", id: "promote-confirm", class: "button primary" }, "Promote");
  const form = h(
    "form",
    { class: "dialog-body", novalidate: true },
    h("h2", { class: "dialog-title", id: "promote-title" }, "Promote the candidate"),
    h("p", {}, "The candidate pipeline is rolled out as a deployment on the experiment's target."),
    field({ label: "Deploy as", control: target }),
    nameField,
    field({ label: "Notes (optional)", control: notes }),
    error,
    h("div", { class: "dialog-actions" }, cancel, submit),
  );
  const dialog = h("dialog", { id: "promote-dialog", class: "dialog", "aria-labelledby": "promote-title" }, form);

  // A name only means something for a new deployment.
  const follow = () => {
    nameField.hidden = target.value !== NEW;
  };
  target.addEventListener("change", follow);
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    dialog.close("promote");
  });

  /** Offers the deployments there are now (keeping the one chosen, if it is still there). */
  const loadDeployments = async () => {
    try {
      const list = await api.get(withQuery("/api/v1/pipelines/deployments", { limit: 200 }));
      const chosen = target.value;
      const options = list.items.map((d) => h("option", { value: d.id, selected: d.id === chosen }, `a new version of “${d.name}” (now v${d.current_version})`));
      target.replaceChildren(h("option", { value: NEW }, "A new deployment"), ...options);
      follow();
    } catch (err) {
      setText(error, `Cannot list the deployments: ${errorText(err)}`);
    }
  };

  return {
    el: dialog,
    async ask(exp) {
      setText(error, "");
      name.placeholder = exp?.name ?? "";
      follow();
      loadDeployments();
      if ((await openDialog(dialog)) !== "promote") return null;
      const request = target.value === NEW ? {} : { deployment_id: target.value };
      if (target.value === NEW && name.value.trim()) request.name = name.value.trim();
      if (notes.value.trim()) request.notes = notes.value.trim();
      return request;
    },
  };
}
