// "New experiment": two pipelines from templates (with their parameters), a target selector with a
// live count of the agents it matches, the measurement window and the success criteria. The server
// validates everything; its 422 problems are shown next to the fields they name.

import { h, field, debounce, setText } from "../dom.js";
import { api, withQuery } from "../api.js";
import * as fmt from "../format.js";
import { pageHeader, showError, showMessage, loadFailed } from "../ui.js";
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
  const summary = h("div", { id: "form-summary", class: "form-summary", role: "alert", tabindex: "-1", hidden: true });
  const name = h("input", { id: "exp-name", name: "name", required: true, maxlength: "200", autocomplete: "off" });
  const description = h("textarea", { id: "exp-description", name: "description", rows: "2" });
  const baseline = pipelinePicker("baseline", templates, "baseline");
  const candidate = pipelinePicker("candidate", templates, templates.find((t) => t.name !== "baseline")?.name);
  // No default target: an empty selector means every agent, which should be a choice, not an accident.
  const targetInput = h("input", { id: "exp-target", name: "target", placeholder: "env=lab", autocomplete: "off", spellcheck: "false" });
  const count = h("span", { id: "target-count", class: "target-count", "aria-live": "polite" }, "…");
  const countNote = h("span", { class: "muted" });
  const duration = h("input", { id: "exp-duration", name: "duration_secs", type: "number", min: "1", step: "1", value: "300", inputmode: "numeric", required: true });
  const warmup = h("input", { id: "exp-warmup", name: "warmup_secs", type: "number", min: "0", step: "1", value: "0", inputmode: "numeric" });
  const critical = h("input", { id: "exp-critical", name: "critical_processes", placeholder: "nginx, postgres", autocomplete: "off" });
  const criteria = criteriaInputs();
  const autoPromote = h("input", { id: "exp-auto-promote", name: "auto_promote", type: "checkbox" });
  const submit = h("button", { type: "submit", id: "exp-submit", class: "button primary" }, "Create experiment");

  const form = h(
    "form",
    { id: "experiment-form", class: "form", novalidate: true },
    summary,
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Experiment"),
      field({ label: "Name", control: name, errorFor: "name" }),
      field({ label: "Description (optional)", control: description, errorFor: "description" }),
    ),
    h("div", { class: "pipelines" }, baseline.el, candidate.el),
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Target"),
      field({ label: "Agent selector", control: targetInput, hint: "Labels as key=value, separated by commas (env=lab,region=eu). Empty matches every agent.", errorFor: "target.selector" }),
      h("p", { class: "target-line" }, count, " ", countNote),
    ),
    h(
      "fieldset",
      { class: "panel" },
      h("legend", {}, "Measurement"),
      h(
        "div",
        { class: "field-row" },
        field({ label: "Duration (seconds)", control: duration, hint: "How long both pipelines are measured.", errorFor: "duration_secs" }),
        field({ label: "Warm-up (seconds)", control: warmup, hint: "Time both run before measuring starts.", errorFor: "warmup_secs" }),
      ),
      field({ label: "Critical processes", control: critical, hint: "Executable names whose series the candidate must keep, separated by commas.", errorFor: "critical_processes" }),
      h(
        "details",
        { class: "criteria" },
        h("summary", {}, "Success criteria and promotion"),
        h("div", { class: "field-row" }, criteria.fields),
        h("div", { class: "field checkbox" }, autoPromote, h("label", { for: "exp-auto-promote" }, "Promote the candidate automatically when the verdict is pass")),
      ),
    ),
    h("div", { class: "form-actions" }, submit, h("a", { class: "button", href: "#/experiments" }, "Cancel")),
  );
  container.append(form);

  // --- live count of the agents the selector matches ---
  let countSeq = 0;
  const updateCount = debounce(async () => {
    const seq = ++countSeq;
    const parsed = parseSelector(targetInput.value);
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
  targetInput.addEventListener("input", () => {
    setText(count, "…");
    updateCount();
  });
  updateCount();

  // --- submit ---
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form, summary);
    const { body, problems } = collect();
    if (problems.length) return showFieldErrors(form, summary, problems);
    submit.disabled = true;
    try {
      const created = await api.post("/api/v1/experiments", body);
      showMessage(`Experiment “${created.name}” created.`, "info", { keep: true });
      ctx.navigate(`#/experiments/${created.id}`);
    } catch (error) {
      if (error.status === 422 && error.errors.length) showFieldErrors(form, summary, error.errors);
      else showError(error);
    } finally {
      submit.disabled = false;
    }
  });

  function collect() {
    const problems = [];
    const selector = parseSelector(targetInput.value);
    if (selector.error) problems.push({ path: "target.selector", message: selector.error });
    const seconds = (input, path, fallback) => {
      const text = input.value.trim();
      if (text === "") return fallback;
      const n = Number(text);
      if (!Number.isInteger(n) || n < 0) problems.push({ path, message: "must be a whole number of seconds" });
      return n;
    };
    const body = {
      name: name.value.trim(),
      description: description.value.trim(),
      baseline: baseline.spec(problems),
      candidate: candidate.spec(problems),
      target: { selector: selector.labels ?? {} },
      duration_secs: seconds(duration, "duration_secs", 0),
      warmup_secs: seconds(warmup, "warmup_secs", 0),
      critical_processes: splitList(critical.value),
      success_criteria: criteria.values(problems),
      auto_promote: autoPromote.checked,
    };
    return { body, problems };
  }

  return () => updateCount.cancel();
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
