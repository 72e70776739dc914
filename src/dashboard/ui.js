// Shared bits of the interface: the global message area, announcements, dialogs, busy buttons, badges
// and error texts.

import { h, setText } from "./dom.js";

const INFO_TIMEOUT_MS = 10_000;
// What a dialog closed by leaving its page returns: read as "cancelled" by whoever opened it.
const CLOSED_BY_NAVIGATION = "cancelled";
// A live region is only read when its text changes after it was rendered; clearing it first and
// setting the text a moment later makes a repeated message read again.
const ANNOUNCE_DELAY_MS = 50;

let infoTimer = null;
let keepOnce = false;
const announceTimers = new Map();
// The live region the current message was read out by, so it is emptied with the message.
let messageRegion = null;

/**
 * Shows `content` (a string or nodes) in #message; errors stay until dismissed or the page changes.
 * #message is only seen: screen readers are told through the permanent live regions (see `announce`).
 */
export function showMessage(content, kind = "info", { keep = false } = {}) {
  const bar = document.getElementById("message-bar");
  const box = document.getElementById("message");
  clearTimeout(infoTimer);
  box.replaceChildren(...[content].flat());
  box.dataset.kind = kind;
  bar.dataset.kind = kind;
  bar.hidden = false;
  keepOnce = keep;
  messageRegion = announce(box.textContent, { urgent: kind === "error" });
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
  // A message that is gone should not be found later by someone reading the page.
  if (messageRegion && ["", box.textContent].includes(messageRegion.textContent)) silence(messageRegion);
  messageRegion = null;
  box.replaceChildren();
  delete box.dataset.kind;
}

/** Called by the router: a message shown just before navigating (e.g. "created") survives once. */
export function clearMessageOnNavigate() {
  if (keepOnce) keepOnce = false;
  else clearMessage();
}

/**
 * Has screen readers read `text`: politely (#live-status) or at once (#live-alert). Both regions are in
 * the page from the start and never hidden, which is what makes every reader notice the change.
 */
export function announce(text, { urgent = false } = {}) {
  const region = document.getElementById(urgent ? "live-alert" : "live-status");
  if (!region) return null;
  silence(region);
  announceTimers.set(
    region,
    setTimeout(() => {
      region.textContent = text;
    }, ANNOUNCE_DELAY_MS),
  );
  return region;
}

function silence(region) {
  clearTimeout(announceTimers.get(region));
  region.textContent = "";
}

/** The readable part of an error: the problem's detail, else its title. */
export function errorText(error) {
  if (!error) return "Something went wrong";
  if (error.status === 0) return "Cannot reach the server";
  return error.detail || error.title || error.message || "Something went wrong";
}

/**
 * Opens a <dialog> modally with its first control focused; resolves with what `close(value)` gave, or
 * null when dismissed (Escape, Cancel, or the page was left). The focus goes back where it was.
 */
export function openDialog(dialog) {
  const opener = findAgain(document.activeElement);
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      const value = dialog.returnValue;
      // After a page change the opener is gone, and the router has placed the focus already.
      if (value !== CLOSED_BY_NAVIGATION) restoreFocus(opener);
      resolve(value === "" || value === CLOSED_BY_NAVIGATION ? null : value);
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", done);
    dialog.showModal();
    const first = dialog.querySelector("input, select, textarea, button:not([disabled])");
    first?.focus();
  });
}

function restoreFocus(opener) {
  const el = opener();
  if (el && el !== document.body && typeof el.focus === "function") el.focus();
}

/**
 * A way back to `el`: itself while it is in the page, else (a live table rebuilt its row meanwhile) the
 * control with the same id, or with the same label in the row of the same id.
 */
function findAgain(el) {
  const id = el?.id;
  const label = el?.getAttribute?.("aria-label");
  const rowId = el?.closest?.("tr[data-id]")?.dataset.id;
  return () => {
    if (!el || el.isConnected) return el;
    if (id) return document.getElementById(id);
    if (label && rowId) return document.querySelector(`tr[data-id="${CSS.escape(rowId)}"] [aria-label="${CSS.escape(label)}"]`);
    return null;
  };
}

/** Closes every open dialog as cancelled: called by the router, so no dialog outlives its page. */
export function closeOpenDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close(CLOSED_BY_NAVIGATION);
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

/** What a page (or a part of it) shows when its data could not be loaded, with a Retry button. */
export function loadFailed(container, error, retry) {
  container.replaceChildren(
    h(
      "div",
      { class: "panel empty-state", role: "alert" },
      h("p", {}, errorText(error)),
      retry ? h("button", { type: "button", class: "button", on: { click: retry } }, "Retry") : null,
    ),
  );
}

/**
 * Marks a button busy. It stays focusable (aria-disabled, not `disabled`), so the keyboard focus stays
 * on it while its action runs; `isBusy` is the guard its click handler checks instead.
 */
export function markBusy(button, on) {
  if (!button) return;
  if (on) {
    button.setAttribute("aria-disabled", "true");
    button.setAttribute("aria-busy", "true");
  } else {
    button.removeAttribute("aria-disabled");
    button.removeAttribute("aria-busy");
  }
}

export function isBusy(button) {
  return button?.getAttribute("aria-busy") === "true";
}

/** Runs an action while its button shows it is busy (a second click meanwhile does nothing); errors go to the message area. */
export async function busy(button, action) {
  if (isBusy(button)) return undefined;
  markBusy(button, true);
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    markBusy(button, false);
  }
}

/**
 * Enables and disables action buttons (`[[button, enabled], …]`; a busy one is left as it is). The
 * enabled ones first: disabling the focused button would drop the focus to the page's start, so it
 * moves to the nearest usable button of its group (after it, else before it), or else to the main area.
 */
export function setButtonsEnabled(entries) {
  const idle = entries.filter(([button]) => !isBusy(button));
  for (const [button, enabled] of idle) if (enabled) button.disabled = false;
  for (const [button, enabled] of idle) if (!enabled) disable(button);
}

function disable(button) {
  if (button.disabled) return;
  if (document.activeElement === button) (nearestUsable(button) ?? document.getElementById("main")).focus();
  button.disabled = true;
}

function nearestUsable(button) {
  const group = [...(button.closest("[role=group]") ?? button.parentElement).querySelectorAll("button")];
  const at = group.indexOf(button);
  const usable = (b) => b !== button && !b.disabled;
  return group.slice(at + 1).find(usable) ?? group.slice(0, at).reverse().find(usable);
}
