//! Arbitrary text through the pipeline config parser and validator (what `POST /api/v1/pipelines`,
//! config validation and templates feed it). Never panics, and the outcome is self-consistent:
//!
//! - deterministic: validating the same text twice gives the same config and the same problems;
//! - `validate_text` agrees with `parse` + `validate`;
//! - a text that does not parse is exactly one error, with no path, and no warnings;
//! - every problem of a parsed config names where it is (`receivers.`, `processors.`, `exporters.`,
//!   `service.pipelines`);
//! - a valid config has a pipeline, each with a receiver and an exporter, and names only components
//!   it defines; an unused component is warned about;
//! - the agent can build the processor chain of every pipeline of a valid config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phoenix_pipeline::config::{parse, validate, validate_text};
use phoenix_pipeline::engine::ProcessorChain;

const PROBLEM_PREFIXES: [&str; 4] = ["receivers.", "processors.", "exporters.", "service.pipelines"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (config, validation) = validate_text(text);
    assert_eq!(validate_text(text), (config.clone(), validation.clone()), "validation is not deterministic");

    let Some(config) = config else {
        assert!(parse(text).is_err());
        assert_eq!(validation.errors.len(), 1, "{:?}", validation.errors);
        assert!(validation.errors[0].path.is_empty(), "{:?}", validation.errors);
        assert!(validation.warnings.is_empty(), "{:?}", validation.warnings);
        return;
    };
    assert_eq!(parse(text).as_ref(), Ok(&config));
    assert_eq!(validate(&config), validation);
    for problem in validation.errors.iter().chain(&validation.warnings) {
        assert!(PROBLEM_PREFIXES.iter().any(|p| problem.path.starts_with(p)), "problem without a place: {problem:?}");
    }

    let sections =
        [("receivers", &config.receivers), ("processors", &config.processors), ("exporters", &config.exporters)];
    for (section, components) in sections {
        for id in components.keys() {
            let used = config.service.pipelines.values().any(|p| {
                let ids = match section {
                    "receivers" => &p.receivers,
                    "processors" => &p.processors,
                    _ => &p.exporters,
                };
                ids.contains(id)
            });
            let path = format!("{section}.{id}");
            let warned = validation.warnings.iter().any(|w| w.path == path && w.message.contains("not used"));
            assert_eq!(warned, !used, "{path}: used {used}, warned {warned}");
        }
    }

    if !validation.is_valid() {
        return;
    }
    assert!(!config.service.pipelines.is_empty());
    for (name, pipeline) in &config.service.pipelines {
        assert!(!pipeline.receivers.is_empty() && !pipeline.exporters.is_empty(), "{name}: {pipeline:?}");
        assert!(pipeline.receivers.iter().all(|id| config.receivers.contains_key(id)));
        assert!(pipeline.processors.iter().all(|id| config.processors.contains_key(id)));
        assert!(pipeline.exporters.iter().all(|id| config.exporters.contains_key(id)));
        if let Err(problems) = ProcessorChain::from_config(&config, Some(name)) {
            panic!("valid config, but pipeline {name} does not build: {problems:?}");
        }
    }
    assert!(ProcessorChain::from_config(&config, None).is_ok());
});
