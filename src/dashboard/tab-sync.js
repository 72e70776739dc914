// Coordination between the tabs of one session. A duplicated tab starts with a copy of the original's
// sessionStorage, so both hold the same rotating refresh token, and the server revokes the whole session
// when a spent one is presented again. So tabs refresh one at a time (a Web Lock), and a tab that
// refreshed tells the others the new pair (a BroadcastChannel): a tab holding the token just spent adopts
// that pair instead of spending its copy. Tabs of one origin and user sharing a session is acceptable.
// Without these APIs each tab refreshes on its own, as before.

const LOCK_NAME = "phoenix-refresh";
const CHANNEL_NAME = "phoenix-session";
// The lock is kept this long after a broadcast: a message and a lock grant reach another tab in no
// guaranteed order, and a tab waiting for the lock must have adopted the new pair before it gets it.
const DELIVERY_GRACE_MS = 150;

const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL_NAME) : null;
const locks = typeof navigator !== "undefined" && navigator.locks?.request ? navigator.locks : null;

/** Runs `fn` while no other tab of this origin refreshes; resolves with its result. */
export function withRefreshLock(fn) {
  return locks ? locks.request(LOCK_NAME, fn) : fn();
}

/** Tells the other tabs `message`; resolves once they have had time to take it in. */
export function broadcastSession(message) {
  if (!channel) return Promise.resolve();
  channel.postMessage(message);
  return new Promise((resolve) => setTimeout(resolve, DELIVERY_GRACE_MS));
}

/** `fn(message)` for every message another tab broadcasts. */
export function onTabMessage(fn) {
  channel?.addEventListener("message", (event) => {
    if (event.data && typeof event.data === "object") fn(event.data);
  });
}
