// The login form. On success the router goes back to where the user was headed.

import { h, setText } from "../dom.js";
import { login } from "../api.js";
import { errorText, isBusy, markBusy } from "../ui.js";

export function render(container, ctx) {
  const username = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", id: "login-submit", class: "button primary wide" }, "Log in");
  // Always in the form (empty until something is wrong), so the problem is read out when it appears.
  const error = h("p", { id: "login-error", class: "form-error", role: "alert" });

  const form = h(
    "form",
    { class: "login-form", novalidate: true, on: { submit: (event) => onSubmit(event) } },
    h("h1", {}, "Log in to Phoenix"),
    h("div", { class: "field" }, h("label", { for: "login-username" }, "User name"), username),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
    error,
    submit,
  );

  async function onSubmit(event) {
    event.preventDefault();
    if (isBusy(submit)) return;
    if (!username.value.trim() || !password.value) {
      const missing = username.value.trim() ? [password] : [username, ...(password.value ? [] : [password])];
      showProblem("Enter your user name and password.", missing);
      missing[0].focus();
      return;
    }
    clearProblem();
    markBusy(submit, true);
    setText(submit, "Logging in…");
    try {
      await login(username.value.trim(), password.value);
      ctx.afterLogin();
    } catch (err) {
      // Which of the two was wrong is not said (on purpose, by the server): both are marked.
      showProblem(errorText(err), err.status === 401 ? [username, password] : []);
      password.select();
      password.focus();
    } finally {
      markBusy(submit, false);
      setText(submit, "Log in");
    }
  }

  function showProblem(text, fields) {
    setText(error, text);
    for (const input of [username, password]) {
      if (fields.includes(input)) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", "login-error");
      } else {
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      }
    }
  }

  function clearProblem() {
    showProblem("", []);
  }

  container.append(h("div", { class: "login-page" }, form));
  username.focus();
  return () => {};
}
