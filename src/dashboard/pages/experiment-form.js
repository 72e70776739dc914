// "New experiment": two pipelines from templates (with their parameters), a target selector with a
// live count of the agents it matches, the measurement window and the success criteria. The server
// validates everything; its 422 problems are shown next to the fields they name.

import { h, field, debounce, setText } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { isBusy, loadFailed, markBusy, pageHeader, showError, showMessage } from "../ui.js";
import { parseSelector, selectorText, showFieldErrors, clearFieldErrors, splitList } from "./forms.js";
import { pipelinePicker } from "./pipeline-picker.js";

const COUNT_LIMIT = 500;

export function render(container, ctx) {
  container.append(pageHeader("New experiment"));
  if (!ctx.canOperate) {
    container.append(h("div", { class: "panel empty-state" }, h("p", {}, "Creating experiments needs the operator role."), h("a", { href: "#/experiments" }, "Back to the experiments")));
    return () => {};
  }
  const body = h("div", {}, h("p", { class: "loading" }, "Loading templates…"));
  container.append(body);
  let gone = false;
  const stops = [];
  const load = async () => {
    try {
      const templates = (await api.get("/api/v1/pipelines/templates")).items;
      if (gone) return;
      body.replaceChildren();
      stops.push(buildForm(body, templates, ctx));
    } catch (error) {
      if (!gone) loadFailed(body, error, load);
    }
  };
  load();
  return () => {
    gone = true;
    stops.forEach((stop) => stop());
  };
}

function buildForm(container, templates, ctx) {
  const fields = formFields(templates);
  const form = formLayout(fields);
  container.append(form);
  const counter = targetCounter(fields);
  form.addEventListener("submit", (event) => submitForm(event, form, fields, ctx));
  return () => counter.cancel();
}

/** Every control of the form, by what it sets. */
function formFields(templates) {
  return {
    summary: h("div", { id: "form-summary", class: "form-summary", role: "alert", tabindex: "-1", hidden: true }),
    name: h("input", { id: "exp-name", name: "name", required: true, maxlength: "200", autocomplete: "off" }),
    description: h("textarea", { id: "exp-description", name: "description", rows: "2" }),
    baseline: pipelinePicker("baseline", templates, "baseline"),
    candidate: pipelinePicker("candidate", templates, templates.find((t) => t.name !== "baseline")?.name),
    // No default target: an empty selector means every agent, which should be a choice, not an accident.
    target: h("input", { id: "exp-target", name: "target", placeholder: "env=lab", autocomplete: "off", spellcheck: "false" }),
    count: h("span", { id: "target-count", class: "target-count", "aria-live": "polite" }, "…"),
    countNote: h("span", { class: "muted" }),
    duration: h("input", { id: "exp-duration", name: "duration_secs", type: "number", min: "1", step: "1", value: "300", inputmode: "numeric", required: true }),
    warmup: h("input", { id: "exp-warmup", name: "warmup_secs", type: "number", min: "0", step: "1", value: "0", inputmode: "numeric" }),
    critical: h("input", { id: "exp-critical", name: "critical_processes", placeholder: "nginx, postgres", autocomplete: "off" }),
    criteria: criteriaInputs(),
    autoPromote: h("input", { id: "exp-auto-promote", name: "auto_promote", type: "checkbox" }),
    submit: h("button", { type: "submit", id: "exp-submit", class: "button primary" }, "Create experiment"),
  };
}

function formLayout(f) {
  return h(
    "form",
    { id: "experiment-form", class: "form", novalidate: true },
    f.summary,
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Experiment"),
      field({ label: "Name", control: f.name, errorFor: "name" }),
      field({ label: "Description (optional)", control: f.description, errorFor: "description" }),
    ),
    h("div", { class: "pipelines" }, f.baseline.el, f.candidate.el),
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Target"),
      field({ label: "Agent selector", control: f.target, hint: "Labels as key=value, separated by commas (env=lab,region=eu). Empty matches every agent.", errorFor: "target.selector" }),
      h("p", { class: "target-line" }, f.count, " ", f.countNote),
    ),
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Measurement"),
      h(
        "div",
        { class: "field-row" },
        field({ label: "Duration (seconds)", control: f.duration, hint: "How long both pipelines are measured.", errorFor: "duration_secs" }),
        field({ label: "Warm-up (seconds)", control: f.warmup, hint: "Time both run before measuring starts.", errorFor: "warmup_secs" }),
      ),
      field({ label: "Critical processes", control: f.critical, hint: "Executable names whose series the candidate must keep, separated by commas.", errorFor: "critical_processes" }),
      h(
        "details",
        { class: "criteria" },
        h("summary", {}, "Success criteria and promotion"),
        h("div", { class: "field-row" }, f.criteria.fields),
        h("div", { class: "field checkbox" }, f.autoPromote, h("label", { for: "exp-auto-promote" }, "Promote the candidate automatically when the verdict is pass")),
      ),
    ),
    h("div", { class: "form-actions" }, f.submit, h("a", { class: "button", href: "#/experiments" }, "Cancel")),
  );
}

/** The live count of the agents the selector matches, as it is typed; returns the debounced updater. */
function targetCounter({ target, count, countNote }) {
  let countSeq = 0;
  const update = debounce(async () => {
    const seq = ++countSeq;
    const parsed = parseSelector(target.value);
    if (parsed.error) {
      setText(count, "—");
      setText(countNote, parsed.error);
      return;
    }
    try {
      const page = await api.get(withQuery("/api/v1/agents", { selector: selectorText(parsed.labels), limit: COUNT_LIMIT }));
      if (seq !== countSeq) return;
      const n = page.items.length;
      const offline = page.items.filter((a) => a.state === "offline").length;
      setText(count, `${fmt.number(n)}${page.next_cursor ? "+" : ""} matching agent${n === 1 ? "" : "s"}`);
      setText(countNote, offline ? `(${fmt.number(offline)} offline: they will not take part)` : "");
    } catch (error) {
      if (seq !== countSeq) return;
      setText(count, "—");
      setText(countNote, error.detail || error.message);
    }
  }, 300);
  target.addEventListener("input", () => {
    setText(count, "…");
    update();
  });
  update();
  return update;
}

async function submitForm(event, form, fields, ctx) {
  event.preventDefault();
  const { summary, submit } = fields;
  if (isBusy(submit)) return;
  clearFieldErrors(form, summary);
  const { body, problems } = collect(fields);
  if (problems.length) {
    showFieldErrors(form, summary, problems);
    return;
  }
  markBusy(submit, true);
  try {
    const created = await api.post("/api/v1/experiments", body);
    showMessage(`Experiment “${created.name}” created.`, "info", { keep: true });
    ctx.navigate(`#/experiments/${created.id}`);
  } catch (error) {
    if (error.status === 422 && error.errors.length) showFieldErrors(form, summary, error.errors);
    else showError(error);
  } finally {
    markBusy(submit, false);
  }
}

/** The request body from the fields, with the problems found before asking the server. */
function collect(f) {
  const problems = [];
  const selector = parseSelector(f.target.value);
  if (selector.error) problems.push({ path: "target.selector", message: selector.error });
  const seconds = (input, path, fallback) => {
    const text = input.value.trim();
    if (text === "") return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) problems.push({ path, message: "must be a whole number of seconds" });
    return n;
  };
  const body = {
    name: f.name.value.trim(),
    description: f.description.value.trim(),
    baseline: f.baseline.spec(problems),
    candidate: f.candidate.spec(problems),
    target: { selector: selector.labels ?? {} },
    duration_secs: seconds(f.duration, "duration_secs", 0),
    warmup_secs: seconds(f.warmup, "warmup_secs", 0),
    critical_processes: splitList(f.critical.value),
    success_criteria: f.criteria.values(problems),
    auto_promote: f.autoPromote.checked,
  };
  return { body, problems };
}

function criteriaInputs() {
  const specs = [
    ["min_cardinality_reduction_pct", "Minimum series reduction (%)", 50],
    ["max_cpu_overhead_pct", "Maximum CPU overhead (%)", 10],
    ["min_accuracy_pct", "Minimum accuracy (%)", 99],
  ];
  const inputs = specs.map(([key, , def]) => h("input", { id: `exp-${key.replaceAll("_", "-")}`, name: `success_criteria.${key}`, type: "number", step: "any", min: "0", value: String(def) }));
  return {
    fields: specs.map(([key, label], i) => field({ label, control: inputs[i], errorFor: `success_criteria.${key}` })),
    values(problems) {
      const out = {};
      specs.forEach(([key, , def], i) => {
        const text = inputs[i].value.trim();
        const n = text === "" ? def : Number(text);
        if (Number.isNaN(n)) problems.push({ path: `success_criteria.${key}`, message: "must be a number" });
        out[key] = n;
      });
      return out;
    },
  };
}
