// A table keyed by entity id that live events can update row by row (replacing only the row that
// changed keeps the reader's place and focus elsewhere), with "Load more" paging over `next_cursor`.

import { h, table } from "../dom.js";

/**
 * `row(item)` builds a <tr>; rows are kept sorted by id (`newestFirst`: UUIDv7 ids grow with time).
 */
export function liveTable({ id, caption, columns, row, emptyText, newestFirst = true }) {
  const { wrapper, tbody } = table({ id, caption, columns });
  const rows = new Map();
  const empty = h("tr", { class: "empty-row" }, h("td", { colspan: columns.length }, emptyText));
  const moreButton = h("button", { type: "button", class: "button", hidden: true }, "Load more");
  const footer = h("div", { class: "table-footer" }, moreButton);
  let loadMore = null;
  moreButton.addEventListener("click", () => loadMore?.());

  const before = (a, b) => (newestFirst ? a > b : a < b);
  const insert = (item, tr) => {
    const next = [...rows.entries()].find(([other]) => before(item.id, other));
    if (next) next[1].before(tr);
    else tbody.append(tr);
  };
  const build = (item) => {
    const tr = row(item);
    tr.dataset.id = item.id;
    return tr;
  };
  const refreshEmpty = () => {
    if (rows.size === 0 && !empty.isConnected) tbody.append(empty);
    if (rows.size > 0) empty.remove();
  };

  return {
    el: h("div", {}, wrapper, footer),
    /** Replaces every row (a fresh first page). */
    set(items) {
      tbody.replaceChildren();
      rows.clear();
      this.add(items);
    },
    /** Adds rows of a further page (or a fresh one). */
    add(items) {
      for (const item of items) {
        if (rows.has(item.id)) continue;
        const tr = build(item);
        tbody.append(tr);
        rows.set(item.id, tr);
      }
      refreshEmpty();
    },
    /** Replaces the item's row, or inserts it in order. */
    upsert(item) {
      const tr = build(item);
      const old = rows.get(item.id);
      if (old) old.replaceWith(tr);
      else insert(item, tr);
      // Keep the map in document order for `insert`.
      rows.set(item.id, tr);
      if (!old) reorder();
      refreshEmpty();
    },
    remove(itemId) {
      rows.get(itemId)?.remove();
      rows.delete(itemId);
      refreshEmpty();
    },
    has: (itemId) => rows.has(itemId),
    /** Shows "Load more" while there is a cursor; `fn` loads the next page. */
    paging(cursor, fn) {
      moreButton.hidden = !cursor;
      loadMore = cursor ? fn : null;
    },
  };

  function reorder() {
    const ordered = [...tbody.querySelectorAll("tr[data-id]")].map((tr) => [tr.dataset.id, tr]);
    rows.clear();
    for (const [key, tr] of ordered) rows.set(key, tr);
  }
}
