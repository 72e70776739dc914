// Loading a list page by page into a liveTable (the experiments, deployments and fleet pages).

import { api } from "../api.js";
import { showError } from "../ui.js";

/**
 * `load()` fetches a fresh first page (a newer call wins over an older one still on its way), and the
 * table's "Load more" the next ones. `url(cursor)` gives the address, or null when there is nothing to
 * ask (an invalid filter). Until a first page has been shown, a failure takes the table's place with a
 * Retry button; afterwards it goes to the message area and the rows shown stay.
 */
export function pagedLoader({ list, url, isGone }) {
  let generation = 0;
  let loadedOnce = false;

  const load = async (cursor) => {
    const address = url(cursor);
    if (address === null) return;
    if (!cursor) generation += 1;
    const mine = generation;
    try {
      const page = await api.get(address);
      if (isGone() || mine !== generation) return;
      if (cursor) list.add(page.items);
      else list.set(page.items);
      loadedOnce = true;
      list.paging(page.next_cursor, () => load(page.next_cursor));
    } catch (error) {
      if (isGone() || mine !== generation) return;
      if (loadedOnce) showError(error);
      else list.failed(error, () => load());
    }
  };

  return {
    load,
    /** A check that stays true until the next fresh load starts (a filter change, a resync) or the page is left. */
    unchangedSince() {
      const at = generation;
      return () => at === generation && !isGone();
    },
  };
}
