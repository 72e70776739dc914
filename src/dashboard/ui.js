// Shared bits of the interface: the global message area, dialogs, badges and error texts.

import { h, setText } from "./dom.js";

const INFO_TIMEOUT_MS = 10_000;
let infoTimer = null;
let keepOnce = false;

/** Shows `text` (a string or nodes) in #message; errors stay until dismissed or the page changes. */
export function showMessage(content, kind = "info", { keep = false } = {}) {
  const bar = document.getElementById("message-bar");
  const box = document.getElementById("message");
  clearTimeout(infoTimer);
  box.replaceChildren(...[content].flat());
  box.dataset.kind = kind;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  bar.dataset.kind = kind;
  bar.hidden = false;
  keepOnce = keep;
  if (kind === "info") infoTimer = setTimeout(clearMessage, INFO_TIMEOUT_MS);
}

export function showError(error) {
  if (error?.sessionLost) return;
  showMessage(errorText(error), "error");
}

export function clearMessage() {
  clearTimeout(infoTimer);
  document.getElementById("message-bar").hidden = true;
  const box = document.getElementById("message");
  box.replaceChildren();
  delete box.dataset.kind;
}

/** Called by the router: a message shown just before navigating (e.g. "created") survives once. */
export function clearMessageOnNavigate() {
  if (keepOnce) keepOnce = false;
  else clearMessage();
}

/** The readable part of an error: the problem's detail, else its title. */
export function errorText(error) {
  if (!error) return "Something went wrong";
  if (error.status === 0) return "Cannot reach the server";
  return error.detail || error.title || error.message || "Something went wrong";
}

/**
 * Opens a <dialog> modally with its first control focused; resolves with what `close(value)` gave,
 * or null when dismissed (Escape, Cancel).
 */
export function openDialog(dialog) {
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      resolve(dialog.returnValue === "" ? null : dialog.returnValue);
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", done);
    dialog.showModal();
    const first = dialog.querySelector("input, select, textarea, button:not([disabled])");
    first?.focus();
  });
}

/** Asks for confirmation in #confirm-dialog; resolves true only when #confirm-yes was pressed. */
export async function confirm({ title = "Are you sure?", text = "", yes = "Confirm", danger = true } = {}) {
  const dialog = document.getElementById("confirm-dialog");
  const yesButton = document.getElementById("confirm-yes");
  const noButton = document.getElementById("confirm-no");
  setText(document.getElementById("confirm-title"), title);
  setText(document.getElementById("confirm-text"), text);
  setText(yesButton, yes);
  yesButton.classList.toggle("danger", danger);
  yesButton.classList.toggle("primary", !danger);
  const onYes = () => dialog.close("yes");
  const onNo = () => dialog.close("no");
  yesButton.addEventListener("click", onYes);
  noButton.addEventListener("click", onNo);
  try {
    return (await openDialog(dialog)) === "yes";
  } finally {
    yesButton.removeEventListener("click", onYes);
    noButton.removeEventListener("click", onNo);
  }
}

/** A status word as a coloured badge; the text is exactly the API's value. */
export function badge(value, attrs = {}) {
  return h("span", { class: ["badge", `status-${value ?? "unknown"}`], ...attrs }, value ?? "unknown");
}

/** The page title row: heading on the left, actions on the right. */
export function pageHeader(title, ...actions) {
  return h("div", { class: "page-header" }, h("h1", {}, title), h("div", { class: "page-actions" }, actions));
}

/** What a page shows when its data could not be loaded. */
export function loadFailed(container, error, retry) {
  container.replaceChildren(
    h(
      "div",
      { class: "panel empty-state", role: "alert" },
      h("p", {}, errorText(error)),
      retry ? h("button", { type: "button", class: "button", on: { click: retry } }, "Try again") : null,
    ),
  );
}

/** Runs an action while its button shows it is busy; errors go to the message area. */
export async function busy(button, action) {
  const wasDisabled = button?.disabled;
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    if (button) {
      button.disabled = wasDisabled;
      button.removeAttribute("aria-busy");
    }
  }
}
