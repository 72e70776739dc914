// Boot, session, header, connection banner and the hash router. Each page module exports
// `render(container, ctx)` and returns a cleanup function (it unsubscribes the page's topics).

import * as session from "./api.js";
import { TopicHub } from "./hub.js";
import { refreshTimes } from "./format.js";
import { setText, h } from "./dom.js";
import { announce, clearMessage, clearMessageOnNavigate, closeOpenDialogs, showMessage, loadFailed } from "./ui.js";
import * as loginPage from "./pages/login.js";
import * as overviewPage from "./pages/overview.js";
import * as experimentsPage from "./pages/experiments.js";
import * as experimentFormPage from "./pages/experiment-form.js";
import * as experimentPage from "./pages/experiment.js";
import * as deploymentsPage from "./pages/deployments.js";
import * as deploymentPage from "./pages/deployment.js";
import * as fleetPage from "./pages/fleet.js";

const ROUTES = [
  { pattern: /^\/$/, page: overviewPage, nav: "#/", title: "Overview" },
  { pattern: /^\/login$/, page: loginPage, public: true, title: "Log in" },
  { pattern: /^\/experiments$/, page: experimentsPage, nav: "#/experiments", title: "Experiments" },
  { pattern: /^\/experiments\/new$/, page: experimentFormPage, nav: "#/experiments", title: "New experiment" },
  { pattern: /^\/experiments\/([^/]+)$/, page: experimentPage, nav: "#/experiments", title: "Experiment" },
  { pattern: /^\/deployments$/, page: deploymentsPage, nav: "#/deployments", title: "Deployments" },
  { pattern: /^\/deployments\/([^/]+)$/, page: deploymentPage, nav: "#/deployments", title: "Deployment" },
  { pattern: /^\/fleet$/, page: fleetPage, nav: "#/fleet", title: "Fleet" },
];

const RECONNECTED_NOTICE_MS = 3000;
// Restoring the session on load while the server cannot answer: wait this long before each new try.
const RESTORE_RETRY_MS = [1000, 2000, 5000, 10_000, 30_000];

// `page` counts the pages shown, so a page that is gone cannot change the title any more.
const state = { hub: null, cleanup: null, returnTo: null, page: 0 };

/**
 * `#/fleet?state=online` → `{path: "/fleet", query: URLSearchParams}` (the query decodes itself). The
 * path is null when it is not valid percent-encoding: such an address names no page.
 */
function parseHash() {
  const [pathText, queryText = ""] = location.hash.replace(/^#/, "").split("?");
  return { path: decodePath(pathText), query: new URLSearchParams(queryText) };
}

function decodePath(text) {
  try {
    return decodeURIComponent(text) || "/";
  } catch {
    return null;
  }
}

function route() {
  const { path, query } = parseHash();
  const match = path === null ? undefined : ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!session.currentUser() && !match?.r.public) {
    state.returnTo = location.hash && location.hash !== "#/login" ? location.hash : null;
    return navigate("#/login", { replace: true });
  }
  if (session.currentUser() && match?.r.public) return navigate("#/", { replace: true });
  show(match, query);
}

function show(match, query) {
  // A dialog left open would let its old page's action run after that page was cleaned up.
  closeOpenDialogs();
  state.cleanup?.();
  state.cleanup = null;
  state.page += 1;
  clearMessageOnNavigate();
  markNav(match?.r.nav);
  const container = document.getElementById("app");
  container.replaceChildren();
  if (match) renderPage(container, match, query);
  else notFound(container);
  moveFocus();
}

function renderPage(container, match, query) {
  document.title = `${match.r.title} · Phoenix`;
  const ctx = makeContext(match.m.slice(1), query, match.r.title);
  try {
    const cleanup = match.r.page.render(container, ctx);
    state.cleanup = typeof cleanup === "function" ? cleanup : null;
  } catch (error) {
    console.error(error);
    loadFailed(container, error);
  }
}

function notFound(container) {
  document.title = "Not found · Phoenix";
  container.append(h("div", { class: "panel empty-state" }, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview"))));
}

/**
 * A new page starts at the top, and keyboard and screen-reader users start reading it there too,
 * unless the page placed the focus itself (the login form focuses its first field).
 */
function moveFocus() {
  window.scrollTo(0, 0);
  const active = document.activeElement;
  const pageTookFocus = active && active !== document.body && document.getElementById("app").contains(active);
  if (!pageTookFocus) document.getElementById("main").focus({ preventScroll: true });
}

function makeContext(params, query, title) {
  const page = state.page;
  return {
    params,
    query,
    user: session.currentUser(),
    canOperate: session.hasRole("operator"),
    isAdmin: session.hasRole("admin"),
    subscribe: (topic, handler) => (state.hub ? state.hub.subscribe(topic, handler) : () => {}),
    navigate,
    /** Names the entity a detail page shows in the window's title (ignored once the page is left). */
    setTitle: (name) => {
      if (page === state.page) document.title = `${name} · ${title} · Phoenix`;
    },
    afterLogin: () => {
      const target = state.returnTo || "#/";
      state.returnTo = null;
      navigate(target, { replace: true });
    },
  };
}

/** Goes to `hash`; with `replace` the current history entry is replaced (redirects). */
export function navigate(hash, { replace = false } = {}) {
  if (location.hash === hash) return route();
  if (replace) {
    history.replaceState(null, "", hash);
    return route();
  }
  location.hash = hash;
  return undefined;
}

function markNav(active) {
  for (const link of document.querySelectorAll(".main-nav a")) {
    if (link.getAttribute("href") === active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// --- session ---

function onSession(event, user) {
  if (event === "login" || (event === "refresh" && !state.hub)) startLive();
  if (event === "refresh") state.hub?.reauthenticate(session.accessTokenNow());
  if (["logout", "logout-elsewhere", "expired"].includes(event)) stopLive();
  renderHeader(user);
  if (event === "expired") {
    showMessage("Your session has expired. Please log in again.", "error", { keep: true });
    state.returnTo = location.hash;
    navigate("#/login", { replace: true });
  }
  if (event === "logout-elsewhere") {
    showMessage("You were logged out in another tab.", "info", { keep: true });
    state.returnTo = null;
    navigate("#/login", { replace: true });
  }
}

function renderHeader(user) {
  document.getElementById("app-header").hidden = !user;
  setText(document.getElementById("user-name"), user?.username ?? "");
  const role = document.getElementById("user-role");
  setText(role, user?.role ?? "");
  role.className = `badge role role-${user?.role ?? "none"}`;
}

async function onLogout() {
  const done = session.logout();
  clearMessage();
  state.returnTo = null;
  navigate("#/login", { replace: true });
  await done;
}

// --- live connection and its banner ---

function startLive() {
  stopLive();
  // `force` comes from the connection after repeated refused connects: the token may have been revoked.
  const getToken = ({ force = false } = {}) => session.accessTokenRefreshedIfDue({ force });
  state.hub = new TopicHub({ getToken, onStatus: connectionStatus });
}

function stopLive() {
  state.hub?.close();
  state.hub = null;
  connectionBanner(null);
}

let lostShown = false;
let bannerTimer = null;

function connectionStatus(status, code) {
  if (status === "closed" && state.hub && code !== 4001 && code !== 1000) {
    lostShown = true;
    connectionBanner("Connection lost — reconnecting…", "error");
  } else if (status === "open" && lostShown) {
    lostShown = false;
    connectionBanner("Connected again", "ok");
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => connectionBanner(null), RECONNECTED_NOTICE_MS);
  }
}

function connectionBanner(text, kind) {
  clearTimeout(bannerTimer);
  const banner = document.getElementById("connection-banner");
  banner.hidden = !text;
  banner.dataset.kind = kind ?? "";
  setText(banner, text ?? "");
  if (text) announce(text);
}

// --- boot ---

async function boot() {
  session.onSession(onSession);
  document.getElementById("logout").addEventListener("click", onLogout);
  document.getElementById("message-close").addEventListener("click", clearMessage);
  setInterval(() => refreshTimes(), 10_000);
  await restoreSession();
  // Routing waits for the session: until then every page would be the login page.
  window.addEventListener("hashchange", route);
  route();
}

/** Restores the tab's session; while the server cannot answer, says so and tries again (the token is kept). */
async function restoreSession() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await session.restoreSession();
      if (attempt > 0) clearMessage();
      return;
    } catch {
      if (attempt === 0) showMessage("Cannot reach the server — retrying…", "error");
      await sleep(RESTORE_RETRY_MS[Math.min(attempt, RESTORE_RETRY_MS.length - 1)]);
    }
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

boot();
