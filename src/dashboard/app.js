// Boot, session, header, connection banner and the hash router. Each page module exports
// `render(container, ctx)` and returns a cleanup function (it unsubscribes the page's topics).

import * as session from "./api.js";
import { TopicHub } from "./hub.js";
import { refreshTimes } from "./format.js";
import { setText, h } from "./dom.js";
import { clearMessage, clearMessageOnNavigate, showMessage, loadFailed } from "./ui.js";
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

const state = { hub: null, cleanup: null, returnTo: null };

/** `#/fleet?state=online` → `{path: "/fleet", query: URLSearchParams}` (the query decodes itself). */
function parseHash() {
  const [pathText, queryText = ""] = location.hash.replace(/^#/, "").split("?");
  return { path: decodeURIComponent(pathText) || "/", query: new URLSearchParams(queryText) };
}

function route() {
  const { path, query } = parseHash();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!session.currentUser() && !match?.r.public) {
    state.returnTo = location.hash && location.hash !== "#/login" ? location.hash : null;
    return navigate("#/login", { replace: true });
  }
  if (session.currentUser() && match?.r.public) return navigate("#/", { replace: true });
  show(match, query);
}

function show(match, query) {
  state.cleanup?.();
  state.cleanup = null;
  clearMessageOnNavigate();
  markNav(match?.r.nav);
  const container = document.getElementById("app");
  container.replaceChildren();
  if (!match) {
    document.title = "Not found · Phoenix";
    container.append(h("div", { class: "panel empty-state" }, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview"))));
    return;
  }
  document.title = `${match.r.title} · Phoenix`;
  const ctx = makeContext(match.m.slice(1), query);
  try {
    const cleanup = match.r.page.render(container, ctx);
    state.cleanup = typeof cleanup === "function" ? cleanup : null;
  } catch (error) {
    console.error(error);
    loadFailed(container, error);
  }
  moveFocus();
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

function makeContext(params, query) {
  return {
    params,
    query,
    user: session.currentUser(),
    canOperate: session.hasRole("operator"),
    isAdmin: session.hasRole("admin"),
    subscribe: (topic, handler) => (state.hub ? state.hub.subscribe(topic, handler) : () => {}),
    navigate,
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
  if (event === "refresh") state.hub?.reauthenticate(session.accessToken());
  if (event === "logout" || event === "expired") stopLive();
  renderHeader(user);
  if (event === "expired") {
    showMessage("Your session has expired. Please log in again.", "error", { keep: true });
    state.returnTo = location.hash;
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
  await session.logout();
  clearMessage();
  state.returnTo = null;
  navigate("#/login", { replace: true });
}

// --- live connection and its banner ---

function startLive() {
  stopLive();
  state.hub = new TopicHub({ getToken: session.currentToken, onStatus: connectionStatus });
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
}

// --- boot ---

async function boot() {
  session.onSession(onSession);
  document.getElementById("logout").addEventListener("click", onLogout);
  document.getElementById("message-close").addEventListener("click", clearMessage);
  window.addEventListener("hashchange", route);
  setInterval(() => refreshTimes(), 10_000);
  try {
    await session.restoreSession();
  } catch (error) {
    showMessage("Cannot reach the server", "error", { keep: true });
  }
  route();
}

boot();
