// Tiny helpers to build the DOM safely: text always goes in as text nodes (never innerHTML), so nothing
// the API returns can become markup. The CSP forbids inline styles, so `style` is refused here too.
// Also the timing helpers the pages share (debounce, throttle, latest-answer-only loaders).

const SVG_NS = "http://www.w3.org/2000/svg";

/** `h("a", {href: "#/", class: "nav"}, "Overview")`; children may be strings, nodes, arrays or null. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Like `h` for SVG elements (attributes are always set as attributes). */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) setAttr(el, name, value);
  append(el, children);
  return el;
}

function setAttr(el, name, value) {
  if (value === undefined || value === null || value === false) return;
  if (name === "style") throw new Error("inline styles are blocked by the CSP; use a class");
  if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
  else if (name === "dataset") Object.assign(el.dataset, value);
  else if (name === "on") for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
  else if (name === "text") el.textContent = String(value);
  else if (name in PROPERTIES && !(el instanceof SVGElement)) el[name] = value;
  else el.setAttribute(name, value === true ? "" : String(value));
}

// Set as properties so the live state (not just the initial attribute) follows.
const PROPERTIES = { value: 1, checked: 1, disabled: 1, selected: 1, hidden: 1 };

/** Appends children (strings become text nodes; null/false are skipped). */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Sets the text of `el` (when it changed, so screen readers are not told twice). */
export function setText(el, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (el && el.textContent !== value) el.textContent = value;
}

/**
 * Calls `fn` (with the last arguments) once calls have stopped for `ms`. A steady stream of calls
 * postpones it for ever: for "refetch when something happened" use `throttle`.
 */
export function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/**
 * Calls `fn` at once, then at most once per `ms` while calls keep coming (leading and trailing edge):
 * the last call is always followed by a run, so what `fn` fetches is never older than the last call.
 */
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  const endOfWindow = () => {
    timer = null;
    if (!again) return;
    again = false;
    fn();
    timer = setTimeout(endOfWindow, ms);
  };
  const throttled = () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(endOfWindow, ms);
  };
  throttled.cancel = () => {
    clearTimeout(timer);
    timer = null;
    again = false;
  };
  return throttled;
}

/**
 * Wraps a loader so that only its latest call may apply what it fetched: `load(isLatest)` checks
 * `isLatest()` after each await. Live events, resyncs and polling call loaders concurrently, and an
 * older answer arriving last must not replace a newer one.
 */
export function latestOnly(load) {
  let seq = 0;
  return (...args) => {
    seq += 1;
    const mine = seq;
    return load(() => mine === seq, ...args);
  };
}

/** A labelled form field: `<div class="field"><label>…</label>{control}<p hint/><p error/></div>`. */
export function field({ label, control, hint, errorFor, className }) {
  const id = control.id || (control.id = uniqueId("f"));
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  const errorEl = errorFor ? h("p", { class: "field-error", dataset: { errorFor }, id: `${id}-error`, hidden: true }) : null;
  const describedBy = [hintEl?.id, errorEl?.id].filter(Boolean).join(" ");
  if (describedBy) control.setAttribute("aria-describedby", describedBy);
  return h("div", { class: ["field", className] }, h("label", { for: id }, label), control, hintEl, errorEl);
}

let counter = 0;
export function uniqueId(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A table whose wrapper scrolls sideways on narrow screens. */
export function table({ id, caption, columns, className }) {
  const tbody = h("tbody");
  const el = h(
    "table",
    { id, class: ["data-table", className] },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.className }, c.label ?? c)))),
    tbody,
  );
  return { wrapper: h("div", { class: "table-scroll" }, el), table: el, tbody };
}
