//! `debug` (and `logging`, its older Collector name): writes each interval's output to the agent's log,
//! as the Collector's debug exporter writes to its own. `verbosity`: `basic` (how many points and
//! metrics), `normal` (a line per metric: its type and points) or `detailed` (a line per point).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Exporter;
use crate::model::Point;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
    /// The `logging` exporter's name for the log level; accepted and not used.
    #[serde(default)]
    pub loglevel: Option<String>,
    /// Accepted for Collector configs and not used: every interval is logged.
    #[serde(default)]
    pub sampling_initial: Option<u64>,
    #[serde(default)]
    pub sampling_thereafter: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

pub struct DebugExporter {
    verbosity: Verbosity,
    /// The exporter's id in the config, on every line.
    id: String,
}

impl DebugExporter {
    pub fn new(config: DebugConfig, id: &str) -> DebugExporter {
        DebugExporter { verbosity: config.verbosity, id: id.to_string() }
    }

    /// The lines one interval's output makes (logged by `export`).
    pub fn lines(&self, batch: &[Point]) -> Vec<String> {
        let mut per_metric: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for point in batch {
            *per_metric.entry((point.name(), point.kind().name())).or_default() += 1;
        }
        let mut lines = vec![format!("{} points of {} metrics", batch.len(), per_metric.len())];
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => lines
                .extend(per_metric.iter().map(|((name, kind), points)| format!("{name} ({kind}): {points} points"))),
            Verbosity::Detailed => lines.extend(batch.iter().map(|point| {
                let labels: Vec<String> = point.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}} {:?} @{}", point.name(), labels.join(","), point.value, point.time_ns)
            })),
        }
        lines
    }
}

/// What Phoenix does instead of the settings it accepts but does not use.
pub fn warnings(config: &DebugConfig, path: &str) -> Vec<crate::Problem> {
    let mut warnings = Vec::new();
    if config.loglevel.is_some() {
        warnings.push(crate::Problem::new(&format!("{path}.loglevel"), "not used: the lines are logged at info"));
    }
    if config.sampling_initial.is_some() || config.sampling_thereafter.is_some() {
        warnings.push(crate::Problem::new(path, "sampling is not used: every interval is logged"));
    }
    warnings
}

impl Exporter for DebugExporter {
    fn export(&mut self, batch: &[Point]) -> Result<(), String> {
        for line in self.lines(batch) {
            tracing::info!(exporter = %self.id, "{line}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;

    #[test]
    fn each_verbosity_says_more() {
        let batch = vec![
            Point::new("a", MetricKind::Gauge, &[("k", "1")], 1.0, 5),
            Point::new("a", MetricKind::Gauge, &[("k", "2")], 2.0, 5),
            Point::new("b", MetricKind::COUNTER, &[], 3.0, 5),
        ];
        let lines = |verbosity| DebugExporter { verbosity, id: "debug".into() }.lines(&batch);
        assert_eq!(lines(Verbosity::Basic), ["3 points of 2 metrics"]);
        assert_eq!(lines(Verbosity::Normal)[1..], ["a (gauge): 2 points", "b (sum): 1 points"]);
        let detailed = lines(Verbosity::Detailed);
        assert_eq!(detailed.len(), 4);
        assert!(detailed[2].starts_with("a{k=2} Number(2.0)"), "{}", detailed[2]);
    }
}
