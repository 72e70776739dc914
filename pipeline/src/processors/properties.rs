//! Properties every processor keeps, on random input: it never invents a series (each output series is
//! an input series, or an aggregate of input series marked as such), and merging preserves sums.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::test_support::Run;
use super::{build, Processor};
use crate::model::{keep_newest_levels, Label, MetricKind, Point};

/// A series by name and attributes (the generated points have no resource or scope).
type SeriesKey = (Arc<str>, Vec<Label>);

fn series(point: &Point) -> SeriesKey {
    (point.metric.name.clone(), point.labels.clone())
}

const METRICS: [&str; 3] = ["process.cpu.time", "process.memory.rss", "process.threads"];

fn batch() -> impl Strategy<Value = Vec<Point>> {
    prop::collection::vec((1u32..300, 0usize..3, 0.0f64..1000.0, 0usize..4), 0..400).prop_map(|rows| {
        rows.into_iter()
            .map(|(pid, metric, value, exe)| {
                let pid = pid.to_string();
                let exe = ["nginx", "java", "bash", "redis"][exe];
                Point::new(
                    METRICS[metric],
                    MetricKind::COUNTER,
                    &[("pid", &pid), ("executable", exe), ("host", "h")],
                    value,
                    0,
                )
            })
            .collect()
    })
}

fn processor(yaml: &str, kind: &str) -> Box<dyn Processor> {
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
    build(kind, &config, "p").unwrap_or_else(|e| panic!("{kind}: {e:?}"))
}

/// Markers of aggregate series: `pid="other"` (topk) and the overflow label (cardinality_limit).
fn is_aggregate(point: &Point) -> bool {
    point.label("pid").is_some_and(|v| &**v == "other") || point.label("otel.metric.overflow").is_some()
}

/// True when some input series of the same metric carries every label of `out` (a projection).
fn projects_an_input(out: &Point, input: &[Point]) -> bool {
    input.iter().any(|p| p.name() == out.name() && out.labels.iter().all(|l| p.labels.contains(l)))
}

fn sums(batch: &[Point]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for p in batch {
        *totals.entry(p.name().to_string()).or_insert(0.0) += p.number();
    }
    totals
}

fn all_processors() -> Vec<(&'static str, Box<dyn Processor>)> {
    vec![
        ("filter", processor("exclude: {labels: {executable: bash}}", "filter")),
        ("drop_labels", processor("labels: [pid]", "drop_labels")),
        ("aggregate", processor("keep_labels: [executable, host]", "aggregate")),
        ("attributes", processor("actions: [{key: pid, action: delete}]", "attributes")),
        ("topk", processor("k: 5", "topk")),
        ("adaptive_filter", processor("target_series: 10\ncritical: [redis]", "adaptive_filter")),
        ("cardinality_limit", processor("max_series: 20", "cardinality_limit")),
    ]
}

proptest! {
    #[test]
    fn processors_never_invent_series(input in batch()) {
        // The engine hands processors one point per level series (the newest).
        let (input, _) = keep_newest_levels(input);
        let input_series: HashSet<SeriesKey> = input.iter().map(series).collect();
        for (name, mut processor) in all_processors() {
            let output = processor.run(input.clone());
            for point in &output {
                let known = input_series.contains(&series(point));
                let merged = ["drop_labels", "aggregate", "attributes"].contains(&name) && projects_an_input(point, &input);
                let aggregate = is_aggregate(point) && input.iter().any(|p| p.name() == point.name());
                prop_assert!(known || merged || aggregate, "{name} invented {point:?}");
            }
            let output_series: HashSet<SeriesKey> = output.iter().map(series).collect();
            prop_assert!(output_series.len() <= input_series.len() + METRICS.len(), "{name} grew the series count");
        }
    }

    #[test]
    fn merging_processors_preserve_sums(input in batch()) {
        let (input, _) = keep_newest_levels(input);
        let before = sums(&input);
        for kind in ["drop_labels", "topk", "attributes"] {
            let yaml = match kind {
                "topk" => "k: 3",
                "attributes" => "keep: [host]",
                _ => "labels: [pid, executable]",
            };
            let after = sums(&processor(yaml, kind).run(input.clone()));
            prop_assert_eq!(before.len(), after.len());
            for (metric, total) in &before {
                let got = after[metric];
                prop_assert!((got - total).abs() <= 1e-6 * total.abs().max(1.0), "{kind} {metric}: {total} became {got}");
            }
        }
    }
}
