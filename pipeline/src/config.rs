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
//! Component ids are `type` or `type/name` (`filter/critical`), as in the OpenTelemetry Collector.

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
    pub service: Service,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineDef>,
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
    for (id, section) in &config.receivers {
        v.errors.extend(sources::check(component_type(id), section, &format!("receivers.{id}")));
    }
    for (id, section) in &config.processors {
        if let Err(problems) = processors::build(component_type(id), section, &format!("processors.{id}")) {
            v.errors.extend(problems);
        }
    }
    for (id, section) in &config.exporters {
        v.errors.extend(exporters::check(component_type(id), section, &format!("exporters.{id}")));
    }
    check_pipelines(config, &mut v);
    v
}

fn check_pipelines(config: &PipelineConfig, v: &mut Validation) {
    if config.service.pipelines.is_empty() {
        v.errors.push(Problem::new("service.pipelines", "must define at least one pipeline"));
    }
    let mut used: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (name, pipeline) in &config.service.pipelines {
        let path = format!("service.pipelines.{name}");
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
    if config.service.pipelines.len() > 1 {
        let first = config.service.pipelines.keys().next().cloned().unwrap_or_default();
        v.warnings.push(Problem::new(
            "service.pipelines",
            format!("Phoenix runs one pipeline per config: only '{first}' (the first by name) runs"),
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
        let (_, v) = validate_text("extensions: {}\nservice: {pipelines: {}}");
        assert!(!v.is_valid());
        let (_, v) = validate_text("service: {pipelines: {}}");
        assert_eq!(v.errors[0].to_string(), "service.pipelines: must define at least one pipeline");
    }

    #[test]
    fn hashes_are_content_hashes() {
        assert_eq!(config_hash("a"), config_hash("a"));
        assert_ne!(config_hash("a"), config_hash("b"));
        assert!(config_hash("a").starts_with("sha256:"));
    }
}
