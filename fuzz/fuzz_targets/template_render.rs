//! Fuzzed parameters through the built-in templates (what `POST /api/v1/templates/{name}/render` and
//! deployments do with a user's parameters). Input: one byte choosing the built-in template, then a
//! JSON object of parameters. Never panics, and:
//!
//! - rendering is deterministic; a refusal always says why;
//! - a rendered config carries the hash of its text, is valid, and has the warnings it was returned with;
//! - parameters cannot change the config's shape (all strings are written with `tojson`): its receiver
//!   and exporter are the `source` and `exporter` asked for, its one pipeline is `metrics`, and every
//!   parameter the template writes into the config (receiver endpoints, exporter destination, processor
//!   settings) reads back as the value given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phoenix_pipeline::config::{config_hash, parse, validate_text};
use phoenix_pipeline::templates::{builtins, render, resolve_parameters};
use serde_json::{Map, Value};
use serde_yaml_ng::Value as Yaml;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else { return };
    let templates = builtins();
    let template = &templates[usize::from(which) % templates.len()];
    let Ok(given) = serde_json::from_slice::<Map<String, Value>>(json) else { return };

    let result = render(template, &given);
    assert_eq!(render(template, &given), result, "rendering is not deterministic");
    let rendered = match result {
        Ok(rendered) => rendered,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            return;
        }
    };
    assert_eq!(rendered.config_hash, config_hash(&rendered.config));
    let (config, validation) = validate_text(&rendered.config);
    assert!(validation.is_valid(), "{validation:?}");
    assert_eq!(validation.warnings, rendered.warnings);
    assert_eq!(parse(&rendered.config).ok(), config);

    let config = config.expect("a valid config parses");
    let params = resolve_parameters(template, &given).expect("rendered, so the parameters resolve");
    let yaml = |name: &str| serde_yaml_ng::to_value(&params[name]).expect("JSON converts to YAML");
    let string = |name: &str| params[name].as_str().expect("a string parameter").to_string();

    let source = string("source");
    assert_eq!(config.receivers.keys().collect::<Vec<_>>(), [&source], "{}", rendered.config);
    let exporter = string("exporter");
    assert_eq!(config.exporters.keys().collect::<Vec<_>>(), [&exporter], "{}", rendered.config);
    assert_eq!(config.service.pipelines.keys().collect::<Vec<_>>(), ["metrics"], "{}", rendered.config);

    let mut expected: Vec<(&Yaml, Yaml)> = Vec::new();
    let receiver = &config.receivers[&source];
    match source.as_str() {
        "synthetic" => {
            for name in ["profile", "processes", "seed"] {
                expected.push((&receiver[name], yaml(name)));
            }
        }
        "otlp" => {
            expected.push((&receiver["protocols"]["grpc"]["endpoint"], yaml("otlp_grpc_endpoint")));
            expected.push((&receiver["protocols"]["http"]["endpoint"], yaml("otlp_http_endpoint")));
        }
        "prometheus_remote_write" => expected.push((&receiver["endpoint"], yaml("remote_write_endpoint"))),
        _ => {}
    }
    let exported = &config.exporters[&exporter];
    match exporter.as_str() {
        "prometheus" => expected.push((&exported["endpoint"], yaml("endpoint"))),
        "file" => expected.push((&exported["path"], yaml("path"))),
        "prometheusremotewrite" | "otlphttp" => expected.push((&exported["endpoint"], yaml("destination"))),
        "otlp" => {
            expected.push((&exported["endpoint"], yaml("destination")));
            expected.push((&exported["tls"]["insecure"], yaml("insecure")));
        }
        _ => {}
    }
    let processor = |id: &str| &config.processors[id];
    for (id, names) in [
        ("topk", &["k"][..]),
        ("adaptive_filter", &["target_series", "metric", "critical"][..]),
        ("cardinality_limit", &["max_series", "action"][..]),
        ("aggregate", &["labels", "gauge"][..]),
    ] {
        if config.processors.contains_key(id) {
            // Only what the template takes as a parameter (hybrid's cardinality_limit has no `action`).
            for &name in names.iter().filter(|name| params.contains_key(**name)) {
                expected.push((&processor(id)[name], yaml(name)));
            }
        }
    }
    // topk writes `metric` and `group_by` only when they are not empty (empty: their defaults).
    if config.processors.contains_key("topk") {
        for name in ["metric", "group_by"] {
            let given = &params[name];
            let empty = given.as_str() == Some("") || given.as_array().is_some_and(Vec::is_empty);
            let want = if empty { Yaml::Null } else { yaml(name) };
            let got = processor("topk").get(name).cloned().unwrap_or(Yaml::Null);
            assert_eq!(got, want, "topk's {name} did not arrive as given in:\n{}", rendered.config);
        }
    }
    if config.processors.contains_key("drop_labels") {
        expected.push((&processor("drop_labels")["labels"], yaml("drop_labels")));
    }
    if let Some(attributes) = config.processors.get("attributes") {
        let deleted: Vec<Yaml> = attributes["actions"]
            .as_sequence()
            .map(|actions| actions.iter().map(|action| action["key"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(Yaml::Sequence(deleted), yaml("attributes"), "the attributes deleted, as given");
    }
    for (got, want) in expected {
        assert_eq!(got, &want, "a parameter did not arrive as given in:\n{}", rendered.config);
    }
});
