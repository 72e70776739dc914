// A table keyed by entity id that live events and refreshes update row by row, with "Load more" paging
// over `next_cursor`. A row is rebuilt only when its item changed, and a rebuilt row takes over the
// keyboard focus of the one it replaces, so the reader keeps their place while the table refreshes.

import { h, table } from "../dom.js";
import { loadFailed } from "../ui.js";

// What can hold the focus inside a row; a rebuilt row gets it on the control at the same position.
const CONTROLS = "a[href], button, input, select, textarea, [tabindex]";

/**
 * `row(item)` builds a <tr>; rows are kept sorted by id (`newestFirst`: UUIDv7 ids grow with time).
 */
export function liveTable(options) {
  return new LiveTable(options);
}

class LiveTable {
  constructor({ id, caption, columns, row, emptyText, newestFirst = true }) {
    const { wrapper, tbody } = table({ id, caption, columns });
    this.wrapper = wrapper;
    this.tbody = tbody;
    this.row = row;
    this.newestFirst = newestFirst;
    this.rows = new Map(); // id → {tr, json}, in document order
    this.empty = h("tr", { class: "empty-row" }, h("td", { colspan: columns.length }, emptyText));
    this.problem = h("div", { class: "table-problem", hidden: true });
    this.moreButton = h("button", { type: "button", class: "button", hidden: true }, "Load more");
    this.footer = h("div", { class: "table-footer" }, this.moreButton);
    this.loadMore = null;
    this.moreButton.addEventListener("click", () => this.loadMore?.());
    this.el = h("div", {}, this.problem, wrapper, this.footer);
  }

  /** Shows a fresh first page: unchanged rows stay as they are, the others are replaced or removed. */
  set(items) {
    this.showTable();
    const next = new Map();
    for (const item of items) if (!next.has(item.id)) next.set(item.id, this.entryFor(item));
    for (const [key, shown] of this.rows) {
      const fresh = next.get(key);
      if (!fresh) shown.tr.remove();
      else if (fresh !== shown) swap(shown, fresh);
    }
    this.placeInOrder([...next.values()].map((entry) => entry.tr));
    this.rows = next;
    this.refreshEmpty();
  }

  /** Adds the rows of a further page (items already shown are left alone). */
  add(items) {
    for (const item of items) {
      if (this.rows.has(item.id)) continue;
      const entry = this.entryFor(item);
      this.tbody.append(entry.tr);
      this.rows.set(item.id, entry);
    }
    this.refreshEmpty();
  }

  /** Replaces the item's row when the item changed, or inserts it in order. */
  upsert(item) {
    const shown = this.rows.get(item.id);
    const fresh = this.entryFor(item);
    if (fresh === shown) return;
    if (shown) {
      swap(shown, fresh);
      this.rows.set(item.id, fresh);
    } else {
      this.insert(item.id, fresh);
    }
    this.refreshEmpty();
  }

  remove(itemId) {
    this.rows.get(itemId)?.tr.remove();
    this.rows.delete(itemId);
    this.refreshEmpty();
  }

  has(itemId) {
    return this.rows.has(itemId);
  }

  /** Shows "Load more" while there is a cursor; `fn` loads the next page. */
  paging(cursor, fn) {
    this.moreButton.hidden = !cursor;
    this.loadMore = cursor ? fn : null;
  }

  /** In place of the table: why it could not be loaded, with a Retry button. */
  failed(error, retry) {
    loadFailed(this.problem, error, retry);
    this.problem.hidden = false;
    this.wrapper.hidden = true;
    this.footer.hidden = true;
  }

  // --- inside ---

  /** The entry for `item`: the row shown when the item did not change, else a new one. */
  entryFor(item) {
    const json = JSON.stringify(item);
    const shown = this.rows.get(item.id);
    if (shown?.json === json) return shown;
    const tr = this.row(item);
    tr.dataset.id = item.id;
    return { tr, json };
  }

  showTable() {
    if (this.problem.hidden) return;
    const hadFocus = this.problem.contains(document.activeElement);
    this.problem.hidden = true;
    this.problem.replaceChildren();
    this.wrapper.hidden = false;
    this.footer.hidden = false;
    // The Retry button that had the focus is gone: the reader goes on from the top of the page.
    if (hadFocus) document.getElementById("main")?.focus();
  }

  refreshEmpty() {
    if (this.rows.size === 0 && !this.empty.isConnected) this.tbody.append(this.empty);
    if (this.rows.size > 0) this.empty.remove();
  }

  /** Puts the rows in this order, moving only those out of place (a moved row would lose the focus). */
  placeInOrder(trs) {
    this.empty.remove();
    let at = this.tbody.firstElementChild;
    for (const tr of trs) {
      if (tr === at) at = at.nextElementSibling;
      else this.tbody.insertBefore(tr, at);
    }
  }

  /** Inserts a new row before the first with a later id (newest first: an earlier one). */
  insert(itemId, entry) {
    const goesBefore = (other) => (this.newestFirst ? itemId > other : itemId < other);
    const next = [...this.rows.keys()].find(goesBefore);
    if (next) this.rows.get(next).tr.before(entry.tr);
    else this.tbody.append(entry.tr);
    this.rows.set(itemId, entry);
    this.reorder();
  }

  /** Keeps the map in document order, which `insert` relies on. */
  reorder() {
    const ordered = new Map();
    for (const tr of this.tbody.querySelectorAll("tr[data-id]")) {
      const entry = this.rows.get(tr.dataset.id);
      if (entry) ordered.set(tr.dataset.id, entry);
    }
    this.rows = ordered;
  }
}

/** Puts `fresh` where `shown` is; the control that had the focus in the old row gets it in the new. */
function swap(shown, fresh) {
  const focused = focusedControl(shown.tr);
  shown.tr.replaceWith(fresh.tr);
  if (focused !== null) fresh.tr.querySelectorAll(CONTROLS)[focused]?.focus();
}

/** The position of the focused control among the row's controls, or null when the focus is elsewhere. */
function focusedControl(tr) {
  const active = document.activeElement;
  if (!active || !tr.contains(active)) return null;
  const index = [...tr.querySelectorAll(CONTROLS)].indexOf(active);
  return index >= 0 ? index : null;
}
