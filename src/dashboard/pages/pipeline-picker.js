// A pipeline chosen from a template: the template select and one input per parameter of the chosen
// template (named `<side>.<param>`, prefilled with the template's default, described by its text).

import { h, field, setText } from "../dom.js";
import { splitList } from "./forms.js";

/** A template select and the inputs of the chosen template's parameters (named `<side>.<param>`). */
export function pipelinePicker(side, templates, initial) {
  const title = side === "baseline" ? "Baseline" : "Candidate";
  const select = h(
    "select",
    { id: `exp-${side}` },
    templates.map((t) => h("option", { value: t.name, selected: t.name === initial }, t.name)),
  );
  const about = h("p", { class: "hint template-description" });
  const params = h("div", { class: "params" });
  const general = h("p", { class: "field-error", dataset: { errorFor: side }, hidden: true });
  const show = () => {
    const template = templates.find((t) => t.name === select.value);
    setText(about, template?.description ?? "");
    params.replaceChildren(...(template?.parameters ?? []).map((p) => paramField(side, p)));
    if (!template?.parameters?.length) params.append(h("p", { class: "muted" }, "This template has no parameters."));
  };
  select.addEventListener("change", show);
  show();
  return {
    el: h("fieldset", { class: "panel pipeline" }, h("legend", {}, title), field({ label: "Template", control: select, errorFor: `${side}.template` }), about, params, general),
    spec(problems) {
      const template = templates.find((t) => t.name === select.value);
      const parameters = {};
      for (const p of template?.parameters ?? []) {
        const input = params.querySelector(`[name="${side}.${p.name}"]`);
        const value = paramValue(p, input);
        if (value.error) problems.push({ path: `${side}.parameters.${p.name}`, message: value.error });
        // Only what differs from the template's default: the stored spec then says what was chosen.
        else if (value.value !== undefined && JSON.stringify(value.value) !== JSON.stringify(p.default)) parameters[p.name] = value.value;
      }
      return { template: select.value, parameters };
    },
  };
}

function paramField(side, p) {
  const id = `exp-${side}-${p.name}`;
  const name = `${side}.${p.name}`;
  const def = p.default;
  const hintParts = [p.description, def === undefined || def === null ? "required" : `default: ${formatDefault(def)}`].filter(Boolean);
  let control;
  if (p.type === "boolean") {
    control = h("input", { id, name, type: "checkbox", checked: def === true });
    return h(
      "div",
      { class: "field checkbox" },
      control,
      h("label", { for: id }, p.name),
      h("p", { class: "hint" }, hintParts.join(" · ")),
      h("p", { class: "field-error", dataset: { errorFor: `${side}.parameters.${p.name}` }, hidden: true }),
    );
  }
  if (p.type === "integer" || p.type === "number") {
    control = h("input", { id, name, type: "number", step: p.type === "integer" ? "1" : "any", value: def ?? "", inputmode: "decimal" });
  } else {
    const value = Array.isArray(def) ? def.join(", ") : def ?? "";
    control = h("input", { id, name, value, autocomplete: "off", spellcheck: "false", placeholder: p.type === "string_list" ? "a, b, c" : null });
  }
  return field({ label: p.name, control, hint: hintParts.join(" · ") + (p.type === "string_list" ? " (comma-separated)" : ""), errorFor: `${side}.parameters.${p.name}` });
}

function formatDefault(value) {
  if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
  return String(value);
}

/** The typed value of a parameter input; undefined leaves it to the template's default. */
function paramValue(p, input) {
  if (!input) return { value: undefined };
  if (p.type === "boolean") return { value: input.checked };
  const text = input.value.trim();
  if (text === "") return { value: undefined };
  if (p.type === "integer" || p.type === "number") {
    const n = Number(text);
    if (Number.isNaN(n)) return { error: "must be a number" };
    return { value: n };
  }
  if (p.type === "string_list") return { value: splitList(text) };
  return { value: text };
}
