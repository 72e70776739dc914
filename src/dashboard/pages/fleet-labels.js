// The "Edit labels" dialog of the fleet page: the agent's labels as `key=value, …`, replaced on save
// (PATCH /agents/<id>); a refusal is shown in the dialog, which stays open to correct it.

import { h, setText, field } from "../dom.js";
import { api } from "../api.js";
import { errorText, isBusy, markBusy, openDialog } from "../ui.js";
import { parseSelector } from "./forms.js";
import { keyValues } from "../format.js";

export function labelsDialog() {
  const input = h("input", { id: "labels-input", name: "labels", autocomplete: "off", spellcheck: "false" });
  // Always in the dialog (empty when there is nothing wrong), so a problem is read out when it appears.
  const error = h("p", { id: "labels-error", class: "form-error", role: "alert" });
  const title = h("h2", { class: "dialog-title", id: "labels-title" }, "Edit labels");
  const cancel = h("button", { type: "button", class: "button" }, "Cancel");
  const save = h("button", { type: "submit", id: "labels-save", class: "button primary" }, "Save labels");
  const form = h(
    "form",
    { class: "dialog-body", novalidate: true },
    title,
    field({ label: "Labels", control: input, hint: "key=value pairs separated by commas; they replace all current labels." }),
    error,
    h("div", { class: "dialog-actions" }, cancel, save),
  );
  const dialog = h("dialog", { id: "labels-dialog", class: "dialog", "aria-labelledby": "labels-title" }, form);
  let agent = null;
  let saved = null;

  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (isBusy(save)) return undefined;
    const parsed = parseSelector(input.value);
    if (parsed.error) return fail(parsed.error);
    markBusy(save, true);
    try {
      saved = await api.patch(`/api/v1/agents/${encodeURIComponent(agent.id)}`, { labels: parsed.labels });
      dialog.close("saved");
    } catch (err) {
      fail(err.errors?.length ? err.errors.map((p) => p.message).join("; ") : errorText(err));
    } finally {
      markBusy(save, false);
    }
    return undefined;
  });

  const hintId = input.getAttribute("aria-describedby");
  function fail(text) {
    setText(error, text);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", `${hintId} labels-error`);
    input.focus();
  }
  function clearProblem() {
    setText(error, "");
    input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", hintId);
  }

  return {
    el: dialog,
    /** Resolves with the updated agent, or null when cancelled. */
    async edit(target) {
      agent = target;
      saved = null;
      setText(title, `Labels of ${target.hostname}`);
      input.value = keyValues(target.labels).join(", ");
      clearProblem();
      const answer = await openDialog(dialog);
      return answer === "saved" ? saved : null;
    },
  };
}
