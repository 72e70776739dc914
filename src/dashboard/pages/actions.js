// Running an action of a detail page (start, rollback, pause, …) against the API.

import { api } from "../api.js";
import { showError, showMessage } from "../ui.js";

/**
 * POSTs `body` to `url`, hands the answer to `apply` and says `done`; resolves with the answer, or null
 * when refused. The refusal is shown; a 409 means the entity moved on meanwhile (another user, the
 * server's own progress), so the page also `reload`s it and its buttons follow the real state again.
 */
export async function postAction({ url, body, done, apply, reload }) {
  try {
    const answer = await api.post(url, body);
    apply(answer);
    showMessage(done, "info");
    return answer;
  } catch (error) {
    showError(error);
    if (error.status === 409) reload();
    return null;
  }
}
