// The REST client and the session. The access token lives only in memory; the refresh token too, and is
// mirrored to sessionStorage so a reload (same tab) keeps the session without keeping it across browser
// restarts. Refresh tokens rotate and a reused one revokes the whole session, so refreshing is
// single-flight in a tab and, through tab-sync.js, one tab at a time across the tabs of the session.

import { broadcastSession, onTabMessage, withRefreshLock } from "./tab-sync.js";

const REFRESH_KEY = "phoenix.refresh_token";
// Refresh this long before the access token expires, so requests and the WebSocket never see it lapse.
const EARLY_REFRESH_MS = 60_000;
// A scheduled refresh that failed for a passing reason (network, 5xx, 429) is tried again this soon.
const RETRY_REFRESH_MS = 15_000;
// A refresh is given up after this long (as a network failure): the other tabs wait for its lock.
const REFRESH_TIMEOUT_MS = 20_000;

/** An API failure: `status` (0 when the server could not be reached), `detail`, field `errors`. */
export class ApiError extends Error {
  constructor({ status, title, detail, errors, code }) {
    super(detail || title || `Request failed (${status})`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.errors = Array.isArray(errors) ? errors : [];
    this.code = code;
  }
}

// `generation` changes whenever the session is forgotten (logout, expiry): an answer to a request made
// for an earlier generation belongs to a session that no longer exists and must not bring it back.
const session = { token: null, expiresAt: 0, user: null, refreshToken: null, generation: 0 };
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

/** `fn(event)` on "login", "refresh", "logout", "logout-elsewhere" and "expired" (the session was lost). */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify(event) {
  for (const fn of listeners) fn(event, session.user);
}

/** The access token as it is now, never refreshed: for handing to the open WebSocket. */
export function accessTokenNow() {
  return session.token;
}

/** The access token, refreshed first when it is about to expire or when `force` says it must be. */
export async function accessTokenRefreshedIfDue({ force = false } = {}) {
  if (force || !session.token || Date.now() > session.expiresAt - EARLY_REFRESH_MS / 2) await refresh();
  return session.token;
}

export function currentUser() {
  return session.user;
}

/** Has at least `role` (viewer < operator < admin). */
export function hasRole(role) {
  const rank = { viewer: 0, operator: 1, admin: 2 };
  return session.user ? (rank[session.user.role] ?? -1) >= rank[role] : false;
}

/** Takes a token pair: `expires_in` (seconds from now) from the server, `expires_at` (ms) from a tab. */
function store(pair) {
  session.token = pair.access_token;
  session.expiresAt = pair.expires_at ?? Date.now() + pair.expires_in * 1000;
  session.user = pair.user;
  session.refreshToken = pair.refresh_token;
  mirror(pair.refresh_token);
  scheduleRefresh(session.expiresAt - Date.now() - EARLY_REFRESH_MS);
}

function forget() {
  session.generation += 1;
  session.token = null;
  session.expiresAt = 0;
  session.user = null;
  session.refreshToken = null;
  clearTimeout(refreshTimer);
  mirror(null);
}

function scheduleRefresh(wait) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    // A passing failure keeps the token: try again soon (a lost session has cleared the timer).
    refresh().catch((error) => {
      if (!error.sessionLost) scheduleRefresh(RETRY_REFRESH_MS);
    });
  }, Math.max(wait, 10_000));
}

/** Copies the refresh token to sessionStorage (for a reload); storage may be disabled, which is fine. */
function mirror(refreshToken) {
  try {
    if (refreshToken) sessionStorage.setItem(REFRESH_KEY, refreshToken);
    else sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    // Without storage the session lives as long as the page.
  }
}

function storedRefreshToken() {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

export async function login(username, password) {
  const answer = await send("POST", "/api/v1/auth/login", { username, password });
  forget(); // whatever session this tab had is replaced
  store(answer);
  notify("login");
  return answer.user;
}

/**
 * On page load: trades the stored refresh token for a session. False when there is none (or it was
 * refused); throws when the server could not answer (the caller retries: the token is still good).
 */
export async function restoreSession() {
  session.refreshToken ??= storedRefreshToken();
  if (!session.refreshToken) return false;
  try {
    await refresh();
    return true;
  } catch (error) {
    if (error.sessionLost) return false;
    throw error;
  }
}

/** Spends the refresh token for a new pair; concurrent callers share one request. */
export function refresh() {
  refreshing ??= refreshOnce().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function refreshOnce() {
  const generation = session.generation;
  const held = session.refreshToken;
  if (!held) throw loseSession(new ApiError({ status: 401, code: "no_refresh_token", detail: "not logged in" }));
  await withRefreshLock(async () => {
    // Waiting for the lock, this tab may have adopted the pair another tab got for the same token (or
    // been logged out): then there is nothing to spend, and spending it would revoke the session.
    if (session.generation !== generation || session.refreshToken !== held) return;
    const answer = await spend(held, generation);
    if (session.generation !== generation) return discard(answer);
    store(answer);
    notify("refresh");
    await broadcastSession({ type: "rotated", old_refresh_token: held, pair: { ...answer, expires_at: session.expiresAt } });
    return undefined;
  });
  if (session.generation !== generation) throw loggedOutMeanwhile();
}

/** POST /auth/refresh. Only a 401 loses the session; a network failure, 5xx or 429 keeps the token. */
async function spend(refreshToken, generation) {
  try {
    return await send("POST", "/api/v1/auth/refresh", { refresh_token: refreshToken }, { timeoutMs: REFRESH_TIMEOUT_MS });
  } catch (error) {
    if (error.status === 401 && session.generation === generation) throw loseSession(error);
    if (error.status === 401) throw loggedOutMeanwhile();
    throw error;
  }
}

/** Forgets the session and says so ("expired": the app asks to log in again); returns `error`, marked. */
function loseSession(error) {
  // The app says "session expired" and shows the login form; callers need not say more.
  error.sessionLost = true;
  const hadSession = session.user !== null;
  forget();
  if (hadSession) notify("expired");
  return error;
}

function loggedOutMeanwhile() {
  const error = new ApiError({ status: 401, code: "logged_out", detail: "logged out" });
  error.sessionLost = true;
  return error;
}

/** A pair that arrived after logging out: revoke it on the server rather than leave it valid. */
function discard(answer) {
  postLogout(answer.access_token);
}

export async function logout() {
  const token = session.token;
  const refreshToken = session.refreshToken;
  forget();
  notify("logout");
  // The server revokes the whole session, so the other tabs sharing it are logged out too: tell them.
  if (refreshToken) broadcastSession({ type: "logout", refresh_token: refreshToken });
  if (token) await postLogout(token);
}

async function postLogout(token) {
  try {
    await fetch("/api/v1/auth/logout", { method: "POST", headers: { authorization: `Bearer ${token}` } });
  } catch {
    // Logged out locally either way; the token expires on its own.
  }
}

// --- what other tabs of the same session say ---

onTabMessage((message) => {
  if (message.type === "rotated") adoptRotated(message);
  if (message.type === "logout") endedElsewhere(message);
});

/** Another tab spent the refresh token this tab holds: the new pair is this tab's too. */
function adoptRotated({ old_refresh_token: old, pair }) {
  if (!session.refreshToken || session.refreshToken !== old || !pair?.refresh_token) return;
  store(pair);
  notify("refresh");
}

function endedElsewhere({ refresh_token: refreshToken }) {
  if (!session.refreshToken || session.refreshToken !== refreshToken) return;
  forget();
  notify("logout-elsewhere");
}

// --- requests ---

/** A request with the session's token; on a 401 the token is refreshed once and the request retried. */
export async function request(method, path, body) {
  if (!session.token) await refresh();
  const used = session.token;
  try {
    return await send(method, path, body, { token: used });
  } catch (error) {
    if (error.status !== 401) throw error;
    // Another request (or tab) may have refreshed meanwhile: then its new token is the one to retry with.
    if (session.token === used) await refresh();
    return send(method, path, body, { token: session.token });
  }
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
};

/** Builds `path?key=value` leaving out empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, path, body, { token, timeoutMs } = {}) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const signal = timeoutMs && typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(timeoutMs) : undefined;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch {
    throw new ApiError({ status: 0, detail: "Cannot reach the server" });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  const data = parse(text);
  if (response.ok) return data;
  throw problem(response, data);
}

function parse(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** An RFC 7807 problem document (or anything else a proxy answers) as an ApiError. */
function problem(response, data) {
  if (data && typeof data === "object" && (data.detail || data.title)) {
    return new ApiError({ ...data, status: response.status });
  }
  const status = response.status;
  const detail = status >= 502 && status <= 504 ? "Cannot reach the server" : `${status} ${response.statusText || "error"}`;
  return new ApiError({ status, title: response.statusText, detail });
}
