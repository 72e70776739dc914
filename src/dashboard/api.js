// The REST client and the session. The access token lives only in memory; the refresh token is kept
// in sessionStorage so a reload (same tab) keeps the session without keeping it across browser restarts.
// Refresh tokens rotate and a reused one revokes the whole session, so refreshing is single-flight.

const REFRESH_KEY = "phoenix.refresh_token";
// Refresh this long before the access token expires, so requests and the WebSocket never see it lapse.
const EARLY_REFRESH_MS = 60_000;

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

const session = { token: null, expiresAt: 0, user: null };
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

/** `fn(event)` on "login", "refresh" and "logout" (event "expired" when the session was lost). */
export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify(event) {
  for (const fn of listeners) fn(event, session.user);
}

/** The access token as it is now (no refresh): for handing to the open WebSocket. */
export function accessToken() {
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

function store(answer) {
  session.token = answer.access_token;
  session.expiresAt = Date.now() + answer.expires_in * 1000;
  session.user = answer.user;
  try {
    sessionStorage.setItem(REFRESH_KEY, answer.refresh_token);
  } catch {
    // Storage can be disabled; the session then simply ends with the tab.
  }
  clearTimeout(refreshTimer);
  const wait = Math.max(answer.expires_in * 1000 - EARLY_REFRESH_MS, 10_000);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
}

function forget() {
  session.token = null;
  session.expiresAt = 0;
  session.user = null;
  clearTimeout(refreshTimer);
  try {
    sessionStorage.removeItem(REFRESH_KEY);
  } catch {
    // nothing stored
  }
}

export async function login(username, password) {
  const answer = await send("POST", "/api/v1/auth/login", { username, password }, { auth: false });
  store(answer);
  notify("login");
  return answer.user;
}

/** On page load: trades the stored refresh token for a session. False when there is none to restore. */
export async function restoreSession() {
  if (!storedRefreshToken()) return false;
  try {
    await refresh();
    return true;
  } catch (error) {
    if (error.status === 0) throw error;
    return false;
  }
}

function storedRefreshToken() {
  try {
    return sessionStorage.getItem(REFRESH_KEY);
  } catch {
    return null;
  }
}

/** Spends the refresh token for a new pair; concurrent callers share one request. */
export function refresh() {
  refreshing ??= (async () => {
    const refreshToken = storedRefreshToken();
    if (!refreshToken) throw new ApiError({ status: 401, detail: "not logged in" });
    try {
      store(await send("POST", "/api/v1/auth/refresh", { refresh_token: refreshToken }, { auth: false }));
      notify("refresh");
    } catch (error) {
      // A refused refresh token will never work again; a network failure might.
      if (error.status !== 0) {
        // The app says "session expired" and shows the login form; callers need not say more.
        error.sessionLost = true;
        const hadSession = session.user !== null;
        forget();
        if (hadSession) notify("expired");
      }
      throw error;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** The access token, refreshed first when it is about to expire (the WebSocket asks on each connect). */
export async function currentToken() {
  if (!session.token || Date.now() > session.expiresAt - EARLY_REFRESH_MS / 2) await refresh();
  return session.token;
}

export async function logout() {
  const token = session.token;
  forget();
  notify("logout");
  if (!token) return;
  try {
    await fetch("/api/v1/auth/logout", { method: "POST", headers: { authorization: `Bearer ${token}` } });
  } catch {
    // Logged out locally either way; the token expires on its own.
  }
}

/** A request with the session's token; on a 401 the token is refreshed once and the request retried. */
export async function request(method, path, body) {
  if (!session.token) await refresh();
  const used = session.token;
  try {
    return await send(method, path, body, { token: used });
  } catch (error) {
    if (error.status !== 401) throw error;
    // Another request may have refreshed meanwhile: then its new token is the one to retry with.
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

async function send(method, path, body, { token } = {}) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
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
