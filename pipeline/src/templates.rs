//! Templates: pipeline configs with parameters, rendered with minijinja in strict mode (a parameter
//! the template uses but nobody gave is an error, never an empty string). Rendering is deterministic
//! and the result carries a content hash.

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{config_hash, validate_text};
use super::Problem;

/// The type of a template parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Integer,
    Number,
    String,
    Boolean,
    StringList,
}

impl ParamType {
    fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::String => value.is_string(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::StringList => value.as_array().is_some_and(|items| items.iter().all(Value::is_string)),
        }
    }

    /// A value of this type, to try-render a template whose parameter has no default.
    fn example(self) -> Value {
        match self {
            ParamType::Integer => Value::from(1),
            ParamType::Number => Value::from(1.0),
            ParamType::String => Value::from("example"),
            ParamType::Boolean => Value::from(true),
            ParamType::StringList => Value::Array(Vec::new()),
        }
    }
}

/// One parameter of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Used when the caller does not give the parameter; without one the parameter is required.
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub description: String,
}

/// A template: a name, what it does, its parameters and its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub name: String,
    pub description: String,
    pub parameters: Vec<ParamSpec>,
    pub body: String,
    #[serde(default)]
    pub builtin: bool,
}

/// A rendered, valid config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    pub config: String,
    pub config_hash: String,
    pub warnings: Vec<Problem>,
}

/// Checks the parameters against the specs: unknown ones, wrong types, missing required ones. Returns
/// the full set with defaults filled in.
pub fn resolve_parameters(template: &Template, given: &Map<String, Value>) -> Result<Map<String, Value>, Vec<Problem>> {
    let mut problems = Vec::new();
    for name in given.keys().filter(|name| !template.parameters.iter().any(|p| &p.name == *name)) {
        problems.push(Problem::new(
            &format!("parameters.{name}"),
            format!("'{}' has no parameter '{name}'", template.name),
        ));
    }
    let mut resolved = Map::new();
    for spec in &template.parameters {
        let path = format!("parameters.{}", spec.name);
        match given.get(&spec.name).or(spec.default.as_ref()) {
            Some(value) if spec.kind.accepts(value) => {
                resolved.insert(spec.name.clone(), value.clone());
            }
            Some(value) => problems.push(Problem::new(&path, format!("must be of type {:?}, got {value}", spec.kind))),
            None => problems.push(Problem::new(&path, "is required")),
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

/// Renders and validates: every problem of the parameters, the rendering or the resulting config.
pub fn render(template: &Template, given: &Map<String, Value>) -> Result<Rendered, Vec<Problem>> {
    let parameters = resolve_parameters(template, given)?;
    let text = render_body(&template.body, &parameters)?;
    let (_, validation) = validate_text(&text);
    if !validation.is_valid() {
        return Err(validation.errors);
    }
    Ok(Rendered { config_hash: config_hash(&text), config: text, warnings: validation.warnings })
}

/// Instructions one rendering may run; far beyond any real config, far below a runaway loop.
const RENDER_FUEL: u64 = 1_000_000;

/// `tojson` for YAML: every character outside ASCII escaped (`\uXXXX`, `\UXXXXXXXX`). Written raw, some
/// of them (U+0085, U+2028, U+2029) are line breaks to YAML and would fold a parameter's text into
/// something else (found by the template fuzzer, fuzz/fuzz_targets/template_render.rs).
fn tojson_ascii(value: minijinja::Value) -> Result<minijinja::Value, minijinja::Error> {
    let json = serde_json::to_string(&value)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        match u32::from(c) {
            0..=0x7f => escaped.push(c),
            code @ 0x80..=0xffff => escaped.push_str(&format!("\\u{code:04x}")),
            code => escaped.push_str(&format!("\\U{code:08x}")),
        }
    }
    Ok(minijinja::Value::from_safe_string(escaped))
}

fn render_body(body: &str, parameters: &Map<String, Value>) -> Result<String, Vec<Problem>> {
    let mut env = Environment::new();
    env.add_filter("tojson", tojson_ascii);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A template is user input: bound the work (and so the output) one rendering may do.
    env.set_fuel(Some(RENDER_FUEL));
    env.render_str(body, parameters).map_err(|e| {
        let line = e.line().map(|l| format!(" (template line {l})")).unwrap_or_default();
        vec![Problem::new("template", format!("cannot render: {e}{line}"))]
    })
}

/// Checks a template before it is saved: valid parameter specs, and a body that renders (with its
/// defaults, or an example value of the right type) into a valid config.
pub fn check_template(template: &Template) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ok_name = |n: &str| {
        !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !ok_name(&template.name) {
        problems.push(Problem::new("name", "must be 1 to 64 letters, digits, '_' or '-'"));
    }
    let mut samples = Map::new();
    for (i, spec) in template.parameters.iter().enumerate() {
        if !ok_name(&spec.name) || spec.name.contains('-') {
            problems.push(Problem::new(&format!("parameters[{i}].name"), "must be letters, digits and '_'"));
        }
        match &spec.default {
            Some(default) if !spec.kind.accepts(default) => problems
                .push(Problem::new(&format!("parameters[{i}].default"), format!("must be of type {:?}", spec.kind))),
            Some(default) => {
                samples.insert(spec.name.clone(), default.clone());
            }
            None => {
                samples.insert(spec.name.clone(), spec.kind.example());
            }
        }
    }
    if problems.is_empty() {
        let rendered = render_body(&template.body, &samples).and_then(|text| {
            let (_, validation) = validate_text(&text);
            if validation.is_valid() {
                Ok(())
            } else {
                Err(validation
                    .errors
                    .into_iter()
                    .map(|p| Problem::new(&format!("body.{}", p.path), p.message))
                    .collect())
            }
        });
        problems.extend(rendered.err().unwrap_or_default());
    }
    problems
}

fn param(name: &str, kind: ParamType, default: Value, description: &str) -> ParamSpec {
    ParamSpec { name: name.into(), kind, default: Some(default), description: description.into() }
}

/// Parameters every built-in template has: where the points come from and where they go.
fn common_parameters() -> Vec<ParamSpec> {
    vec![
        param(
            "source",
            ParamType::String,
            Value::from("process"),
            "receiver: process (this host's /proc), host, synthetic, otlp (your applications' OTLP) or prometheus_remote_write (a Prometheus's remote write)",
        ),
        param(
            "otlp_grpc_endpoint",
            ParamType::String,
            Value::from(crate::otlp::DEFAULT_GRPC_ENDPOINT),
            "otlp only: where OTLP/gRPC is taken (0.0.0.0:4317 for every interface)",
        ),
        param(
            "otlp_http_endpoint",
            ParamType::String,
            Value::from(crate::otlp::DEFAULT_HTTP_ENDPOINT),
            "otlp only: where OTLP/HTTP is taken",
        ),
        param(
            "remote_write_endpoint",
            ParamType::String,
            Value::from(crate::sources::remote_write::DEFAULT_ENDPOINT),
            "prometheus_remote_write only: where remote write is taken",
        ),
        param(
            "profile",
            ParamType::String,
            Value::from("realistic"),
            "synthetic only: steady, high_cardinality, spike, realistic",
        ),
        param("processes", ParamType::Integer, Value::from(1000), "synthetic only: simulated processes"),
        param("seed", ParamType::Integer, Value::from(1), "synthetic only: seed of the simulation"),
        param(
            "exporter",
            ParamType::String,
            Value::from("count"),
            "exporter: count, prometheus, file, prometheusremotewrite, otlp or otlphttp",
        ),
        param(
            "destination",
            ParamType::String,
            Value::from(""),
            "prometheusremotewrite and otlphttp: the backend's URL; otlp: its host:port",
        ),
        param(
            "insecure",
            ParamType::Boolean,
            Value::from(false),
            "otlp only: plain text to the destination instead of TLS",
        ),
        param(
            "endpoint",
            ParamType::String,
            Value::from(crate::exporters::DEFAULT_PROMETHEUS_ENDPOINT),
            "prometheus only: where to serve /metrics (0.0.0.0:9464 for every interface)",
        ),
        param(
            "path",
            ParamType::String,
            Value::from("metrics.jsonl"),
            "file only: file name in the agent's export directory",
        ),
    ]
}

const RECEIVER: &str = r#"receivers:
  {{ source | tojson }}:
{%- if source == "synthetic" %}
    profile: {{ profile | tojson }}
    processes: {{ processes }}
    seed: {{ seed }}
{%- elif source == "otlp" %}
    protocols:
      grpc: {endpoint: {{ otlp_grpc_endpoint | tojson }}}
      http: {endpoint: {{ otlp_http_endpoint | tojson }}}
{%- elif source == "prometheus_remote_write" %}
    endpoint: {{ remote_write_endpoint | tojson }}
{%- else %} {}
{%- endif %}
"#;

const EXPORTER: &str = r#"exporters:
  {{ exporter | tojson }}:
{%- if exporter == "prometheus" %}
    endpoint: {{ endpoint | tojson }}
{%- elif exporter == "file" %}
    path: {{ path | tojson }}
{%- elif exporter == "prometheusremotewrite" or exporter == "otlphttp" %}
    endpoint: {{ destination | tojson }}
{%- elif exporter == "otlp" %}
    endpoint: {{ destination | tojson }}
    tls: {insecure: {{ insecure | tojson }}}
{%- else %} {}
{%- endif %}
"#;

fn body(processors: &str, chain: &str) -> String {
    format!(
        "{RECEIVER}processors:{processors}\n{EXPORTER}service:\n  pipelines:\n    metrics:\n      receivers: [{{{{ source | tojson }}}}]\n      processors: [{chain}]\n      exporters: [{{{{ exporter | tojson }}}}]\n"
    )
}

/// The built-in templates.
pub fn builtins() -> Vec<Template> {
    let with = |extra: Vec<ParamSpec>| common_parameters().into_iter().chain(extra).collect::<Vec<_>>();
    let metric =
        || param("metric", ParamType::String, Value::from("process.cpu.time"), "the metric that ranks processes");
    let critical = || {
        param("critical", ParamType::StringList, Value::Array(Vec::new()), "processes always kept (executable names)")
    };
    vec![
        Template {
            name: "baseline".into(),
            description: "Pass-through: every series the source produces, unchanged. The reference to compare against.".into(),
            parameters: common_parameters(),
            body: body(" {}", ""),
            builtin: true,
        },
        Template {
            name: "topk".into(),
            description: "Keeps the k biggest groups (processes by default; any attributes with `group_by`) by `metric` (empty: each metric ranks its own) and aggregates all others into one `other` series per metric.".into(),
            parameters: with(vec![
                param("k", ParamType::Integer, Value::from(10), "groups kept"),
                metric(),
                param("group_by", ParamType::StringList, serde_json::json!([]), "the attributes that make a group (route, customer, …); empty: processes"),
            ]),
            body: body(
                "\n  topk:\n    k: {{ k }}\n{%- if group_by %}\n    group_by: {{ group_by | tojson }}\n{%- endif %}\n{%- if metric %}\n    metric: {{ metric | tojson }}\n{%- endif %}",
                "topk",
            ),
            builtin: true,
        },
        Template {
            name: "drop_attributes".into(),
            description: "Deletes the named attributes from every point; the series that then collide merge by type (sums add, histograms merge bucket by bucket).".into(),
            parameters: with(vec![param(
                "attributes",
                ParamType::StringList,
                serde_json::json!(["pid", "command", "owner"]),
                "the attributes deleted (user_id, request_id, …)",
            )]),
            body: body(
                "\n  attributes:\n    actions:\n{%- for key in attributes %}\n      - {key: {{ key | tojson }}, action: delete}\n{%- endfor %}",
                "attributes",
            ),
            builtin: true,
        },
        Template {
            name: "aggregate".into(),
            description: "Removes the named labels and re-aggregates each metric by type: cumulative totals are kept across restarts, deltas add, histograms merge bucket by bucket, gauges by `gauge`.".into(),
            parameters: with(vec![
                param("labels", ParamType::StringList, serde_json::json!(["pid", "command", "owner"]), "the labels removed (user_id, …)"),
                param("gauge", ParamType::String, Value::from("mean"), "how gauges combine: last, sum, min, max, mean"),
            ]),
            body: body("\n  aggregate:\n    labels: {{ labels | tojson }}\n    gauge: {{ gauge | tojson }}", "aggregate"),
            builtin: true,
        },
        Template {
            name: "cardinality_limit".into(),
            description: "At most `max_series` series per metric, first come; the rest fold into one overflow series per metric (or are dropped), counted.".into(),
            parameters: with(vec![
                param("max_series", ParamType::Integer, Value::from(20), "series per metric at most"),
                param("action", ParamType::String, Value::from("overflow"), "overflow (one series keeps their totals) or drop"),
            ]),
            body: body(
                "\n  cardinality_limit:\n    max_series: {{ max_series }}\n    action: {{ action | tojson }}",
                "cardinality_limit",
            ),
            builtin: true,
        },
        Template {
            name: "adaptive_filter".into(),
            description: "Keeps the processes above a threshold that adapts each interval to reach `target_series`; critical processes are always kept.".into(),
            parameters: with(vec![param("target_series", ParamType::Integer, Value::from(50), "process series per metric to aim for"), metric(), critical()]),
            body: body(
                "\n  adaptive_filter:\n    target_series: {{ target_series }}\n    metric: {{ metric | tojson }}\n    critical: {{ critical | tojson }}",
                "adaptive_filter",
            ),
            builtin: true,
        },
        Template {
            name: "hybrid".into(),
            description: "Adaptive filter (critical processes kept), then merges the kept processes by dropping per-process labels (pid, command, owner: the processes of one executable become one series), then caps series per metric.".into(),
            parameters: with(vec![
                param("target_series", ParamType::Integer, Value::from(50), "process series per metric to aim for"),
                metric(),
                critical(),
                param("drop_labels", ParamType::StringList, serde_json::json!(["pid", "command", "owner"]), "labels removed after filtering (series that then collide merge)"),
                param("max_series", ParamType::Integer, Value::from(1000), "series per metric at most (the rest overflows)"),
            ]),
            body: body(
                "\n  adaptive_filter:\n    target_series: {{ target_series }}\n    metric: {{ metric | tojson }}\n    critical: {{ critical | tojson }}\n  drop_labels:\n    labels: {{ drop_labels | tojson }}\n  cardinality_limit:\n    max_series: {{ max_series }}",
                "adaptive_filter, drop_labels, cardinality_limit",
            ),
            builtin: true,
        },
    ]
}

/// The built-in template called `name`.
pub fn builtin(name: &str) -> Option<Template> {
    builtins().into_iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn every_builtin_renders_with_its_defaults_into_a_valid_config() {
        for template in builtins() {
            let rendered = render(&template, &Map::new()).unwrap_or_else(|e| panic!("{}: {e:?}", template.name));
            assert!(rendered.config_hash.starts_with("sha256:"));
            assert!(check_template(&template).is_empty(), "{}", template.name);
        }
    }

    /// Every built-in template but the pass-through cuts series on this machine's own `/proc`, with
    /// its defaults: a real host is mostly idle (most processes at 0 s of CPU), which once let an
    /// adaptive filter keep everything through ties.
    #[test]
    fn every_reducing_builtin_cuts_on_this_real_host_with_its_defaults() {
        for template in builtins().into_iter().filter(|t| t.name != "baseline") {
            let rendered = render(&template, &Map::new()).expect("render");
            let config = crate::config::parse(&rendered.config).expect("parse");
            let dir = tempfile::tempdir().expect("dir");
            let mut pipeline = crate::engine::Pipeline::build(&config, None, Vec::new(), dir.path()).expect("build");
            // Two intervals: the adaptive threshold starts from the first one's ranking.
            pipeline.run_interval(1);
            let (stats, errors) = pipeline.run_interval(2);
            assert!(errors.is_empty(), "{}: {errors:?}", template.name);
            assert!(stats.input_series > 0, "{}: /proc yields series", template.name);
            assert!(
                stats.output_series < stats.input_series,
                "{} cut nothing on this host: {} of {} series",
                template.name,
                stats.output_series,
                stats.input_series
            );
        }
    }

    #[test]
    fn rendering_is_deterministic_and_parameters_change_the_hash() {
        let topk = builtin("topk").expect("topk");
        let a = render(&topk, &params(json!({"k": 5}))).expect("render");
        assert_eq!(a, render(&topk, &params(json!({"k": 5}))).expect("render"));
        assert_ne!(a.config_hash, render(&topk, &params(json!({"k": 6}))).expect("render").config_hash);
        assert!(a.config.contains("k: 5"), "{}", a.config);
    }

    #[test]
    fn synthetic_and_exporter_settings_are_rendered() {
        let hybrid = builtin("hybrid").expect("hybrid");
        let given = params(
            json!({"source": "synthetic", "processes": 500, "exporter": "file", "path": "x.jsonl", "critical": ["nginx"]}),
        );
        let rendered = render(&hybrid, &given).expect("render");
        let config = crate::config::parse(&rendered.config).expect("parse");
        assert_eq!(config.receivers["synthetic"]["processes"], serde_yaml_ng::Value::from(500));
        assert_eq!(config.exporters["file"]["path"], serde_yaml_ng::Value::from("x.jsonl"));
        assert_eq!(config.processors["adaptive_filter"]["critical"][0], serde_yaml_ng::Value::from("nginx"));
    }

    #[test]
    fn templates_render_for_real_traffic_with_the_receiver_and_exporter_as_parameters() {
        let given = params(json!({
            "source": "otlp", "otlp_grpc_endpoint": "0.0.0.0:4317",
            "exporter": "prometheusremotewrite", "destination": "http://prometheus:9090/api/v1/write",
            "labels": ["user_id"],
        }));
        let rendered = render(&builtin("aggregate").expect("aggregate"), &given).expect("render");
        let config = crate::config::parse(&rendered.config).expect("parse");
        assert_eq!(
            config.receivers["otlp"]["protocols"]["grpc"]["endpoint"],
            serde_yaml_ng::Value::from("0.0.0.0:4317")
        );
        assert_eq!(config.processors["aggregate"]["labels"][0], serde_yaml_ng::Value::from("user_id"));
        let remote_write = &config.exporters["prometheusremotewrite"]["endpoint"];
        assert_eq!(*remote_write, serde_yaml_ng::Value::from("http://prometheus:9090/api/v1/write"));
        let given = params(json!({
            "source": "prometheus_remote_write", "exporter": "otlp", "destination": "collector:4317",
            "insecure": true, "group_by": ["route"], "metric": "",
        }));
        let config = crate::config::parse(&render(&builtin("topk").expect("topk"), &given).expect("render").config)
            .expect("parse");
        assert_eq!(config.exporters["otlp"]["tls"]["insecure"], serde_yaml_ng::Value::from(true));
        assert!(config.processors["topk"].get("metric").is_none(), "each metric ranks its own");
        let missing = crate::processors::test_support::problems(render(
            &builtin("drop_attributes").expect("drop_attributes"),
            &params(json!({"exporter": "otlphttp"})),
        ));
        assert_eq!(missing[0].path, "exporters.otlphttp.endpoint", "a destination is needed");
    }

    #[test]
    fn text_parameters_arrive_as_given_whatever_their_characters() {
        let hybrid = builtin("hybrid").expect("hybrid");
        // U+0085 and U+2028 are line breaks to YAML; the others need no escape but get one.
        for text in ["a\u{85}b", "a\u{2028}b", "caf\u{e9}", "\u{1f600}", "quote\"and\\back", "plain"] {
            let given = params(json!({"exporter": "file", "path": text, "critical": [text], "metric": text}));
            let rendered = render(&hybrid, &given).expect("render");
            let config = crate::config::parse(&rendered.config).expect("parse");
            assert_eq!(config.exporters["file"]["path"], serde_yaml_ng::Value::from(text), "{}", rendered.config);
            assert_eq!(config.processors["adaptive_filter"]["critical"][0], serde_yaml_ng::Value::from(text));
            assert_eq!(config.processors["adaptive_filter"]["metric"], serde_yaml_ng::Value::from(text));
        }
    }

    #[test]
    fn bad_parameters_are_reported_by_path() {
        let topk = builtin("topk").expect("topk");
        let problems = crate::processors::test_support::problems(render(&topk, &params(json!({"k": "ten", "kk": 1}))));
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["parameters.kk", "parameters.k"]);
        let zero = crate::processors::test_support::problems(render(&topk, &params(json!({"k": 0}))));
        assert_eq!(zero[0].to_string(), "processors.topk.k: must be ≥ 1");
    }

    #[test]
    fn a_variable_nobody_declared_is_an_error_not_an_empty_string() {
        let template = Template {
            name: "mine".into(),
            description: String::new(),
            parameters: vec![],
            body: "receivers: {process: {}}\nprocessors: {topk: {k: {{ k }}}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [process], processors: [topk], exporters: [count]}}}".into(),
            builtin: false,
        };
        let problems = crate::processors::test_support::problems(render(&template, &Map::new()));
        assert_eq!(problems[0].path, "template");
        assert!(problems[0].message.contains("undefined"), "{problems:?}");
        assert!(!check_template(&template).is_empty());
    }

    #[test]
    fn a_runaway_template_is_stopped() {
        let template = Template {
            name: "loop".into(),
            description: String::new(),
            parameters: vec![],
            body: "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}".into(),
            builtin: false,
        };
        let problems = crate::processors::test_support::problems(render(&template, &Map::new()));
        assert_eq!(problems[0].path, "template");
    }

    #[test]
    fn a_required_parameter_without_default_must_be_given() {
        let mut template = builtin("topk").expect("topk");
        template.parameters.iter_mut().find(|p| p.name == "k").expect("k").default = None;
        let problems = crate::processors::test_support::problems(render(&template, &Map::new()));
        assert_eq!(problems[0].to_string(), "parameters.k: is required");
        assert!(render(&template, &params(json!({"k": 3}))).is_ok());
    }
}
