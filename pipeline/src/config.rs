//! The pipeline config: parsing the YAML and checking it, collecting every problem.
//!
//! ```yaml
//! receivers:  { synthetic: { profile: high_cardinality, processes: 1000 } }
//! processors: { topk: { k: 10 } }
//! exporters:  { count: {} }
//! service:
//!   pipelines:
//!     metrics: { receivers: [synthetic], processors: [topk], exporters: [count] }
//! ```
//!
//! Component ids are `type` or `type/name` (`filter/critical`), as in the OpenTelemetry Collector. A
//! Collector config mostly works as it is: its `extensions`, `service.extensions`, `service.telemetry`
//! and its traces and logs pipelines are accepted and ignored, each with a warning that says so (the
//! components only those pipelines use are not checked).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{exporters, processors, sources, Problem};

/// A parsed config: components by id, and the pipelines wiring them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub receivers: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    pub processors: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    pub exporters: BTreeMap<String, serde_yaml_ng::Value>,
    /// Collector extensions (health checks, authenticators, …): accepted, not run.
    #[serde(default)]
    pub extensions: BTreeMap<String, serde_yaml_ng::Value>,
    pub service: Service,
}

/// The signals of Collector pipelines Phoenix does not run (`traces`, `traces/name`, …). Every other
/// pipeline is a metrics pipeline: `metrics` as in the Collector, or any name Phoenix configs used.
pub const IGNORED_SIGNALS: [&str; 3] = ["traces", "logs", "profiles"];

/// True for a pipeline id Phoenix runs.
pub fn is_metrics_pipeline(id: &str) -> bool {
    !IGNORED_SIGNALS.contains(&component_type(id))
}

impl PipelineConfig {
    /// The metrics pipeline Phoenix runs: the first by id.
    pub fn metrics_pipeline(&self) -> Option<(&str, &PipelineDef)> {
        self.service.pipelines.iter().find(|(id, _)| is_metrics_pipeline(id)).map(|(k, v)| (k.as_str(), v))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineDef>,
    /// The Collector's enabled extensions: accepted, not run.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// The Collector's own telemetry settings: accepted, not used (the agent reports its own).
    #[serde(default)]
    pub telemetry: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDef {
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    #[serde(default)]
    pub exporters: Vec<String>,
}

/// The outcome of checking a config.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Validation {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The type of a component id: `filter/critical` -> `filter`.
pub fn component_type(id: &str) -> &str {
    id.split_once('/').map_or(id, |(kind, _)| kind)
}

/// Content hash of a rendered config: `sha256:<hex>`.
pub fn config_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The exporter id a shadowed pipeline exports to: measured, sent nowhere.
pub const SHADOW_EXPORTER: &str = "count/shadow";

/// `text` with its metrics pipelines' output sent nowhere (a `count` exporter) — or only to exporter
/// `keep` — for a candidate tried beside the live pipeline: measured the same, the backend not billed
/// twice. Exporters no pipeline uses any more are left out; everything else is kept as written.
pub fn shadowed(text: &str, keep: Option<&str>) -> Result<String, String> {
    use serde_yaml_ng::Value;
    let config =
        parse(text).map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    if let Some(keep) = keep {
        let named = config.metrics_pipeline().is_some_and(|(_, p)| p.exporters.iter().any(|e| e == keep));
        if !named {
            return Err(format!("the shadow exporter '{keep}' is not an exporter of the candidate's metrics pipeline"));
        }
    }
    let mut document: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let exporter = keep.unwrap_or(SHADOW_EXPORTER).to_string();
    let mut still_used = BTreeSet::new();
    if let Some(pipelines) =
        document.get_mut("service").and_then(|s| s.get_mut("pipelines")).and_then(Value::as_mapping_mut)
    {
        for (id, pipeline) in pipelines.iter_mut() {
            let metrics = id.as_str().is_some_and(is_metrics_pipeline);
            let Some(exporters) = pipeline.get_mut("exporters") else { continue };
            if metrics {
                *exporters = Value::Sequence(vec![Value::String(exporter.clone())]);
            }
            still_used
                .extend(exporters.as_sequence().into_iter().flatten().filter_map(|e| e.as_str().map(String::from)));
        }
    }
    let exporters = document
        .as_mapping_mut()
        .ok_or("a config is a mapping")?
        .entry(Value::String("exporters".into()))
        .or_insert_with(|| Value::Mapping(Default::default()));
    let exporters = exporters.as_mapping_mut().ok_or("exporters is a mapping")?;
    exporters.retain(|id, _| id.as_str().is_some_and(|id| still_used.contains(id)));
    if keep.is_none() {
        exporters.insert(Value::String(SHADOW_EXPORTER.into()), Value::Mapping(Default::default()));
    }
    serde_yaml_ng::to_string(&document).map_err(|e| e.to_string())
}

/// A Collector-style duration: a number and a unit (`ms`, `s`, `m`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration like 5s or 500ms"))?;
    let duration = match unit {
        "ms" => std::time::Duration::from_millis(number),
        "s" => std::time::Duration::from_secs(number),
        "m" => std::time::Duration::from_secs(number * 60),
        _ => return Err(format!("'{text}' is not a duration like 5s or 500ms")),
    };
    if duration.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(duration)
}

/// Parses YAML text; a syntax or shape error is one problem (with the line when known).
pub fn parse(text: &str) -> Result<PipelineConfig, Vec<Problem>> {
    serde_yaml_ng::from_str::<PipelineConfig>(text).map_err(|e| {
        let location = e.location().map(|l| format!(" (line {}, column {})", l.line(), l.column())).unwrap_or_default();
        vec![Problem::new("", format!("not a valid pipeline config: {e}{location}"))]
    })
}

/// Parses and checks a config, returning every problem and warning.
pub fn validate_text(text: &str) -> (Option<PipelineConfig>, Validation) {
    match parse(text) {
        Ok(config) => {
            let validation = validate(&config);
            (Some(config), validation)
        }
        Err(errors) => (None, Validation { errors, warnings: Vec::new() }),
    }
}

/// Checks every component's settings and every reference of the pipelines.
pub fn validate(config: &PipelineConfig) -> Validation {
    let mut v = Validation::default();
    let ignored = used_only_by_ignored_pipelines(config);
    let skip = |section: &str, id: &str| ignored.contains(&(section.to_string(), id.to_string()));
    for (id, section) in config.receivers.iter().filter(|(id, _)| !skip("receivers", id)) {
        v.errors.extend(sources::check(component_type(id), section, &format!("receivers.{id}")));
    }
    for (id, section) in config.processors.iter().filter(|(id, _)| !skip("processors", id)) {
        let path = format!("processors.{id}");
        match processors::build(component_type(id), section, &path) {
            Ok(_) => v.warnings.extend(processors::warnings(component_type(id), section, &path)),
            Err(problems) => v.errors.extend(problems),
        }
    }
    for (id, section) in config.exporters.iter().filter(|(id, _)| !skip("exporters", id)) {
        let path = format!("exporters.{id}");
        let problems = exporters::check(component_type(id), section, &path);
        if problems.is_empty() {
            v.warnings.extend(exporters::warnings(component_type(id), section, &path));
        }
        v.errors.extend(problems);
    }
    for (section, id) in &ignored {
        v.warnings.push(Problem::new(
            &format!("{section}.{id}"),
            "used only by pipelines Phoenix does not run (traces, logs): not checked",
        ));
    }
    check_collector_sections(config, &mut v);
    check_pipelines(config, &mut v);
    v
}

/// Components that only traces, logs or profiles pipelines use.
fn used_only_by_ignored_pipelines(config: &PipelineConfig) -> BTreeSet<(String, String)> {
    let mut by_metrics = BTreeSet::new();
    let mut by_others = BTreeSet::new();
    for (name, pipeline) in &config.service.pipelines {
        let target = if is_metrics_pipeline(name) { &mut by_metrics } else { &mut by_others };
        let sections = [
            ("receivers", &pipeline.receivers),
            ("processors", &pipeline.processors),
            ("exporters", &pipeline.exporters),
        ];
        for (section, ids) in sections {
            target.extend(ids.iter().map(|id| (section.to_string(), id.clone())));
        }
    }
    by_others.difference(&by_metrics).cloned().collect()
}

/// The Collector's sections Phoenix accepts and does not use.
fn check_collector_sections(config: &PipelineConfig, v: &mut Validation) {
    if !config.extensions.is_empty() || !config.service.extensions.is_empty() {
        v.warnings.push(Problem::new("extensions", "Collector extensions are not run by Phoenix: ignored"));
    }
    if config.service.telemetry.is_some() {
        v.warnings.push(Problem::new(
            "service.telemetry",
            "ignored: the agent reports its own telemetry on its metrics endpoint",
        ));
    }
}

/// Counts a pipeline's components as used (those of ignored pipelines are not "defined but not used").
fn mark_used<'a>(pipeline: &'a PipelineDef, used: &mut BTreeSet<(&'static str, &'a str)>) {
    let sections =
        [("receivers", &pipeline.receivers), ("processors", &pipeline.processors), ("exporters", &pipeline.exporters)];
    for (section, ids) in sections {
        used.extend(ids.iter().map(|id| (section, id.as_str())));
    }
}

fn check_pipelines(config: &PipelineConfig, v: &mut Validation) {
    if config.service.pipelines.is_empty() {
        v.errors.push(Problem::new("service.pipelines", "must define at least one pipeline"));
    }
    let mut used: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (name, pipeline) in &config.service.pipelines {
        let path = format!("service.pipelines.{name}");
        if !is_metrics_pipeline(name) {
            let signal = component_type(name);
            v.warnings.push(Problem::new(
                &path,
                format!("Phoenix runs metrics pipelines: this {signal} pipeline is ignored"),
            ));
            mark_used(pipeline, &mut used);
            continue;
        }
        let sections = [
            ("receivers", &pipeline.receivers, &config.receivers),
            ("processors", &pipeline.processors, &config.processors),
            ("exporters", &pipeline.exporters, &config.exporters),
        ];
        for (section, ids, defined) in sections {
            for (i, id) in ids.iter().enumerate() {
                if defined.contains_key(id) {
                    used.insert((section, id.as_str()));
                } else {
                    v.errors.push(Problem::new(&format!("{path}.{section}[{i}]"), format!("'{id}' is not defined")));
                }
            }
        }
        if pipeline.receivers.is_empty() {
            v.errors.push(Problem::new(&format!("{path}.receivers"), "needs at least one receiver"));
        }
        if pipeline.exporters.is_empty() {
            v.errors.push(Problem::new(&format!("{path}.exporters"), "needs at least one exporter"));
        }
        if pipeline.processors.is_empty() {
            v.warnings.push(Problem::new(&format!("{path}.processors"), "no processors: every series passes through"));
        }
    }
    let metrics = config.service.pipelines.keys().filter(|id| is_metrics_pipeline(id)).count();
    if metrics == 0 && !config.service.pipelines.is_empty() {
        v.errors.push(Problem::new("service.pipelines", "needs a metrics pipeline (e.g. metrics or metrics/<name>)"));
    }
    if metrics > 1 {
        let first = config.metrics_pipeline().map(|(id, _)| id).unwrap_or_default();
        v.warnings.push(Problem::new(
            "service.pipelines",
            format!("Phoenix runs one metrics pipeline per config: only '{first}' (the first by name) runs"),
        ));
    }
    let defined =
        [("receivers", &config.receivers), ("processors", &config.processors), ("exporters", &config.exporters)];
    for (section, components) in defined {
        for id in components.keys().filter(|id| !used.contains(&(section, id.as_str()))) {
            v.warnings.push(Problem::new(&format!("{section}.{id}"), "defined but not used by any pipeline"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "
receivers: {synthetic: {profile: high_cardinality, processes: 100}}
processors: {topk: {k: 10}, filter/critical: {include: {labels: {executable: nginx}}}}
exporters: {count: {}}
service:
  pipelines:
    metrics: {receivers: [synthetic], processors: [topk, filter/critical], exporters: [count]}
";

    #[test]
    fn a_valid_config_has_no_errors() {
        let (config, v) = validate_text(VALID);
        assert!(v.is_valid(), "{:?}", v.errors);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        assert_eq!(config.map(|c| c.processors.len()), Some(2));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = "
receivers: {synthetic: {profile: steady, processes: 0}, synthetic/typo: {profile: nope, processes: 5}, smoke: {}}
processors: {topk: {k: 0}, unused/drop: {labels: [pid]}}
exporters: {count: {}}
service:
  pipelines:
    metrics: {receivers: [synthetic], processors: [topk, topk, foo], exporters: []}
";
        let (_, v) = validate_text(text);
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        for expected in [
            "receivers.synthetic.processes: must be between 1 and",
            "receivers.synthetic/typo.profile: unknown variant `nope`",
            "receivers.smoke: unknown receiver type 'smoke'",
            "processors.topk.k: must be ≥ 1",
            "service.pipelines.metrics.processors[2]: 'foo' is not defined",
            "service.pipelines.metrics.exporters: needs at least one exporter",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(expected)), "missing {expected:?} in {errors:#?}");
        }
        let warnings: Vec<String> = v.warnings.iter().map(ToString::to_string).collect();
        assert!(warnings.iter().any(|w| w.starts_with("processors.unused/drop: defined but not used")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.starts_with("exporters.count: defined but not used")), "{warnings:?}");
    }

    #[test]
    fn yaml_errors_and_unknown_sections_are_problems_not_panics() {
        let (_, v) = validate_text("receivers: [unclosed");
        assert!(v.errors[0].message.contains("line"), "{:?}", v.errors);
        let (_, v) = validate_text("connectors: {}\nservice: {pipelines: {}}");
        assert!(!v.is_valid());
        let (_, v) = validate_text("service: {pipelines: {}}");
        assert_eq!(v.errors[0].to_string(), "service.pipelines: must define at least one pipeline");
    }

    /// A Collector config as teams write them (the contrib distribution's example, trimmed).
    const COLLECTOR: &str = "
extensions:
  health_check: {}
  pprof: {endpoint: 0.0.0.0:1777}
receivers:
  otlp:
    protocols:
      grpc:
      http:
  prometheus:
    config:
      scrape_configs:
        - job_name: otel-collector
          scrape_interval: 10s
          static_configs: [{targets: ['0.0.0.0:8888']}]
  jaeger:
    protocols: {grpc: }
processors:
  batch:
  memory_limiter: {check_interval: 5s, limit_mib: 4000, spike_limit_mib: 500}
exporters:
  otlphttp: {endpoint: https://otlp.example.com:4318}
  debug: {verbosity: detailed}
service:
  extensions: [health_check, pprof]
  telemetry: {logs: {level: debug}}
  pipelines:
    traces: {receivers: [otlp, jaeger], processors: [batch], exporters: [otlphttp]}
    metrics: {receivers: [otlp, prometheus], processors: [memory_limiter, batch], exporters: [otlphttp, debug]}
";

    #[test]
    fn a_collector_config_is_accepted_with_warnings_for_what_phoenix_ignores() {
        let (config, v) = validate_text(COLLECTOR);
        assert!(v.is_valid(), "{:#?}", v.errors);
        let warnings: Vec<String> = v.warnings.iter().map(ToString::to_string).collect();
        for expected in [
            "receivers.jaeger: used only by pipelines Phoenix does not run",
            "extensions: Collector extensions are not run by Phoenix",
            "service.telemetry: ignored",
            "service.pipelines.traces: Phoenix runs metrics pipelines: this traces pipeline is ignored",
        ] {
            assert!(warnings.iter().any(|w| w.starts_with(expected)), "missing {expected:?} in {warnings:#?}");
        }
        let config = config.expect("parsed");
        assert_eq!(config.metrics_pipeline().map(|(id, _)| id), Some("metrics"));
        let (_, v) = validate_text(&COLLECTOR.replace("    metrics:", "    logs/app:"));
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors, ["service.pipelines: needs a metrics pipeline (e.g. metrics or metrics/<name>)"]);
    }

    #[test]
    fn a_shadowed_pipeline_exports_nowhere_or_to_the_exporter_kept() {
        let text = "receivers: {otlp: {protocols: {grpc: }}}\nprocessors: {aggregate: {labels: [user_id]}}\n\
            exporters: {prometheusremotewrite: {endpoint: 'http://backend:9090/api/v1/write'}, debug: {}}\n\
            service: {pipelines: {metrics: {receivers: [otlp], processors: [aggregate], exporters: [prometheusremotewrite, debug]},\
            traces: {receivers: [otlp], exporters: [debug]}}}";
        let shadow = shadowed(text, None).expect("shadowed");
        let (config, v) = validate_text(&shadow);
        assert!(v.is_valid(), "{:?}", v.errors);
        let config = config.expect("parsed");
        assert_eq!(
            config.metrics_pipeline().map(|(_, p)| p.exporters.clone()),
            Some(vec![SHADOW_EXPORTER.to_string()])
        );
        assert!(!config.exporters.contains_key("prometheusremotewrite"), "the backend is not written to");
        assert!(config.exporters.contains_key("debug"), "the traces pipeline still names it");
        assert_eq!(config.processors, parse(text).expect("parsed").processors, "the rest as written");
        let kept = parse(&shadowed(text, Some("debug")).expect("shadowed")).expect("parsed");
        assert_eq!(kept.metrics_pipeline().map(|(_, p)| p.exporters.clone()), Some(vec!["debug".to_string()]));
        assert!(shadowed(text, Some("nowhere")).expect_err("unknown").contains("'nowhere'"));
    }

    #[test]
    fn hashes_are_content_hashes() {
        assert_eq!(config_hash("a"), config_hash("a"));
        assert_ne!(config_hash("a"), config_hash("b"));
        assert!(config_hash("a").starts_with("sha256:"));
    }
}
