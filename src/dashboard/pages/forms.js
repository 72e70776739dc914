// Form helpers: a 422's `errors[]` shown next to the fields they name, label selectors and lists.

import { h, setText } from "../dom.js";
import { keyValues } from "../format.js";

/**
 * The element for an error path: the field itself (`[data-error-for="<path>"]`), else the nearest
 * enclosing one (`candidate.processors[0].k` → `candidate`), else the first inside it (`target` →
 * `target.selector`).
 */
export function errorSlot(form, path) {
  const find = (p) => form.querySelector(`[data-error-for="${CSS.escape(p)}"]`);
  const parts = path.split(/(?=[.[])/);
  for (let n = parts.length; n > 0; n -= 1) {
    const slot = find(parts.slice(0, n).join(""));
    if (slot) return slot;
  }
  return form.querySelector(`[data-error-for^="${CSS.escape(path)}."]`);
}

/** Shows each problem by its field and all of them in the summary, which takes the focus. */
export function showFieldErrors(form, summary, problems) {
  const items = [];
  for (const { path, message } of problems) {
    const slot = errorSlot(form, path ?? "");
    if (slot) {
      const previous = slot.textContent;
      setText(slot, previous ? `${previous} ${message}` : message);
      slot.hidden = false;
      markInvalid(slot);
    }
    items.push(h("li", {}, path && path !== "body" ? h("code", {}, path) : null, path && path !== "body" ? ": " : null, message));
  }
  const count = problems.length;
  summary.replaceChildren(h("p", {}, `Please correct ${count === 1 ? "this problem" : `these ${count} problems`}:`), h("ul", {}, items));
  summary.hidden = false;
  summary.focus();
}

function markInvalid(slot) {
  const control = slot.closest(".field")?.querySelector("input, select, textarea");
  control?.setAttribute("aria-invalid", "true");
}

export function clearFieldErrors(form, summary) {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  if (summary) {
    summary.replaceChildren();
    summary.hidden = true;
  }
}

/** `env=lab, region=eu` → `{labels: {env: "lab", region: "eu"}}`, or `{error}`. Empty → `{labels: {}}`. */
export function parseSelector(text) {
  const labels = {};
  for (const pair of String(text).split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    const key = at > 0 ? pair.slice(0, at).trim() : "";
    const value = at > 0 ? pair.slice(at + 1).trim() : "";
    if (!key || !value) return { error: `“${pair}” is not key=value` };
    labels[key] = value;
  }
  return { labels };
}

/** The selector as the API's query parameter (`env=lab,region=eu`). */
export function selectorText(labels) {
  return keyValues(labels).join(",");
}

/** "a, b,, c" → ["a", "b", "c"] */
export function splitList(text) {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
}
