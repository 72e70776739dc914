// The login form. On success the router goes back to where the user was headed.

import { h, setText } from "../dom.js";
import { login } from "../api.js";
import { errorText } from "../ui.js";

export function render(container, ctx) {
  const username = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", id: "login-submit", class: "button primary wide" }, "Log in");
  const error = h("p", { id: "login-error", class: "form-error", role: "alert", hidden: true });

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
    if (!username.value.trim() || !password.value) {
      showError("Enter your user name and password.");
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    setText(submit, "Logging in…");
    try {
      await login(username.value.trim(), password.value);
      ctx.afterLogin();
    } catch (err) {
      showError(errorText(err));
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      setText(submit, "Log in");
    }
  }

  function showError(text) {
    setText(error, text);
    error.hidden = false;
  }

  container.append(h("div", { class: "login-page" }, form));
  username.focus();
  return () => {};
}
