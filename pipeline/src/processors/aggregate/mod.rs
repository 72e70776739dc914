//! `aggregate`: removes attributes (or keeps only some) and merges the series that then collide, each
//! type by its own rule:
//!
//! - cumulative sums and histograms: the total of the newest value of every input series, remembered
//!   across flushes, never going backwards when one input restarts (`totals.rs`);
//! - delta sums and histograms: every point adds;
//! - gauges: combined by `gauge` (`last`, `sum`, `min`, `max`, `mean`) over this flush's points;
//! - histograms with different bounds: converted to the first one's, or refused (`histogram_bounds`);
//! - summaries: kept per series, unchanged (`summary: keep`), or dropped (`summary: drop`).
//!
//! `drop_labels: {labels: [...]}` is the same processor under its earlier name.

mod totals;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use self::totals::CumulativeTotals;
use crate::model::{Attributes, Batch, BoundsPolicy, GaugeFn, Merger, MetricKind, Point, Temporality};
use crate::processors::names::{MatchType, NameSet};
use crate::processors::{Outcome, Processor};
use crate::Problem;

/// How long an input series of a cumulative metric is remembered without a new point.
const DEFAULT_STALE_SECS: u64 = 300;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Attributes to remove.
    #[serde(default)]
    labels: Vec<String>,
    /// Or: the only attributes to keep.
    keep_labels: Option<Vec<String>>,
    /// Resource attributes to remove (`service.instance.id`, `host.name`, …).
    #[serde(default)]
    resource_attributes: Vec<String>,
    /// Only metrics whose names match (all when empty); the others pass unchanged.
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    match_type: MatchType,
    #[serde(default)]
    gauge: GaugeFn,
    #[serde(default)]
    histogram_bounds: BoundsPolicy,
    #[serde(default)]
    summary: SummaryPolicy,
    /// Seconds an input of a cumulative metric is remembered without a new point.
    #[serde(default = "default_stale_secs")]
    stale_secs: u64,
}

fn default_stale_secs() -> u64 {
    DEFAULT_STALE_SECS
}

/// What happens to summaries, which cannot be merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryPolicy {
    /// Kept per series, with all their attributes.
    #[default]
    Keep,
    /// Dropped (counted).
    Drop,
}

/// Which attributes survive.
enum LabelRule {
    Remove(HashSet<String>),
    KeepOnly(HashSet<String>),
}

impl LabelRule {
    fn keeps(&self, key: &str) -> bool {
        match self {
            LabelRule::Remove(removed) => !removed.contains(key),
            LabelRule::KeepOnly(kept) => kept.contains(key),
        }
    }
}

pub struct Aggregate {
    rule: LabelRule,
    resource_removed: HashSet<String>,
    metrics: NameSet,
    gauge: GaugeFn,
    bounds: BoundsPolicy,
    summary: SummaryPolicy,
    totals: CumulativeTotals,
}

impl Aggregate {
    pub fn new(config: AggregateConfig, path: &str) -> Result<Aggregate, Vec<Problem>> {
        let mut problems = Vec::new();
        let rule = match config.keep_labels {
            Some(kept) if config.labels.is_empty() => LabelRule::KeepOnly(kept.into_iter().collect()),
            Some(_) => {
                problems.push(Problem::new(path, "give `labels` (to remove) or `keep_labels`, not both"));
                LabelRule::Remove(HashSet::new())
            }
            None if config.labels.is_empty() && config.resource_attributes.is_empty() => {
                problems.push(Problem::new(
                    &format!("{path}.labels"),
                    "must name at least one attribute (or give keep_labels or resource_attributes)",
                ));
                LabelRule::Remove(HashSet::new())
            }
            None => LabelRule::Remove(config.labels.into_iter().collect()),
        };
        if config.stale_secs == 0 {
            problems.push(Problem::new(&format!("{path}.stale_secs"), "must be ≥ 1"));
        }
        let metrics = NameSet::compile(&config.metrics, config.match_type, &format!("{path}.metrics"), &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Aggregate {
            rule,
            resource_removed: config.resource_attributes.into_iter().collect(),
            metrics,
            gauge: config.gauge,
            bounds: config.histogram_bounds,
            summary: config.summary,
            totals: CumulativeTotals::new(config.histogram_bounds, config.stale_secs.saturating_mul(1_000_000_000)),
        })
    }

    /// `point` with the removed attributes gone: its output series.
    fn reduce(&self, mut point: Point) -> Point {
        point.labels.retain(|(key, _)| self.rule.keeps(key));
        if !self.resource_removed.is_empty()
            && point.resource.labels().iter().any(|(key, _)| self.resource_removed.contains(&**key))
        {
            let kept =
                point.resource.labels().iter().filter(|(key, _)| !self.resource_removed.contains(&**key)).cloned();
            point.resource = Arc::new(Attributes::new(kept.collect()));
        }
        point
    }
}

fn is_cumulative(kind: MetricKind) -> bool {
    kind.temporality() == Some(Temporality::Cumulative)
}

impl Processor for Aggregate {
    fn process(&mut self, batch: Batch, outcome: &mut Outcome) -> Batch {
        // Staleness goes by the points' own clock, but never ahead of this host's: a sender stamping
        // points in the future must not make everyone else's inputs look stale.
        let now_ns = batch.iter().map(|p| p.time_ns).max().unwrap_or(0).min(wall_clock_ns());
        let mut out = Vec::with_capacity(batch.len());
        let mut flush_merger = Merger::with_capacity(batch.len()).policies(self.gauge, self.bounds);
        for point in batch {
            if !self.metrics.matches(point.name()) {
                out.push(point);
                continue;
            }
            match point.kind() {
                MetricKind::Summary => match self.summary {
                    SummaryPolicy::Keep => out.push(point),
                    SummaryPolicy::Drop => outcome.drop_points(1),
                },
                kind if is_cumulative(kind) => {
                    let input_key = point.fingerprint();
                    let reduced = self.reduce(point);
                    self.totals.record(input_key, reduced, outcome);
                }
                _ => {
                    let reduced = self.reduce(point);
                    if let Err(e) = flush_merger.add(reduced) {
                        outcome.refuse(e.to_string());
                    }
                }
            }
        }
        out.extend(flush_merger.finish());
        out.extend(self.totals.finish(now_ns, outcome));
        out
    }

    fn state_bytes(&self) -> usize {
        self.totals.state_bytes()
    }
}

fn wall_clock_ns() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Histogram, Metric, Value};
    use crate::processors::test_support::{problems, Run};

    fn aggregate(yaml: &str) -> Aggregate {
        Aggregate::new(serde_yaml_ng::from_str(yaml).expect("yaml"), "processors.aggregate").expect("valid")
    }

    fn point(name: &str, kind: MetricKind, user: &str, route: &str, value: f64, time_ns: u64) -> Point {
        Point::new(name, kind, &[("route", route), ("user_id", user)], value, time_ns)
    }

    fn value_of(out: &[Point], name: &str, route: &str) -> Option<f64> {
        out.iter().find(|p| p.name() == name && p.label("route").map(|v| &**v) == Some(route)).map(Point::number)
    }

    #[test]
    fn cumulative_sums_total_the_newest_value_of_every_input_across_flushes() {
        let mut agg = aggregate("labels: [user_id]");
        let out = agg.run(vec![
            point("hits", MetricKind::COUNTER, "u1", "/a", 3.0, 1),
            point("hits", MetricKind::COUNTER, "u2", "/a", 4.0, 1),
            point("hits", MetricKind::COUNTER, "u3", "/b", 1.0, 1),
        ]);
        assert_eq!((value_of(&out, "hits", "/a"), value_of(&out, "hits", "/b")), (Some(7.0), Some(1.0)));
        assert!(out.iter().all(|p| p.label("user_id").is_none()));
        // u2 does not report in this flush: its 4 still counts.
        let out = agg.run(vec![point("hits", MetricKind::COUNTER, "u1", "/a", 5.0, 2)]);
        assert_eq!(value_of(&out, "hits", "/a"), Some(9.0));
        assert_eq!(value_of(&out, "hits", "/b"), None, "no input of /b reported: nothing to send");
        // u1 restarts (a counter going down): what it had counted stays in the total.
        let out = agg.run(vec![point("hits", MetricKind::COUNTER, "u1", "/a", 2.0, 3)]);
        assert_eq!(value_of(&out, "hits", "/a"), Some(5.0 + 4.0 + 2.0));
    }

    #[test]
    fn a_monotonic_input_that_goes_quiet_keeps_its_count_and_an_up_down_one_does_not() {
        const SEC: u64 = 1_000_000_000;
        let mut agg = aggregate("labels: [user_id]\nstale_secs: 10");
        let first = agg.run(vec![
            point("hits", MetricKind::COUNTER, "u1", "/a", 3.0, SEC),
            point("hits", MetricKind::COUNTER, "u2", "/a", 4.0, SEC),
            point("used", MetricKind::UP_DOWN_COUNTER, "u1", "/a", 30.0, SEC),
            point("used", MetricKind::UP_DOWN_COUNTER, "u2", "/a", 40.0, SEC),
        ]);
        assert_eq!((value_of(&first, "hits", "/a"), value_of(&first, "used", "/a")), (Some(7.0), Some(70.0)));
        // 20 s later only u1 reports: u2 is stale and forgotten after this flush.
        agg.run(vec![
            point("hits", MetricKind::COUNTER, "u1", "/a", 5.0, 21 * SEC),
            point("used", MetricKind::UP_DOWN_COUNTER, "u1", "/a", 35.0, 21 * SEC),
        ]);
        let later = agg.run(vec![
            point("hits", MetricKind::COUNTER, "u1", "/a", 6.0, 22 * SEC),
            point("used", MetricKind::UP_DOWN_COUNTER, "u1", "/a", 36.0, 22 * SEC),
        ]);
        assert_eq!(value_of(&later, "hits", "/a"), Some(6.0 + 4.0), "u2's count stays in the counter");
        assert_eq!(value_of(&later, "used", "/a"), Some(36.0), "u2's bytes in use are gone with it");
    }

    #[test]
    fn a_point_from_the_future_does_not_make_other_inputs_stale() {
        let now = wall_clock_ns();
        let mut agg = aggregate("labels: [user_id]\nstale_secs: 10");
        agg.run(vec![
            point("hits", MetricKind::COUNTER, "u1", "/a", 3.0, now),
            point("hits", MetricKind::COUNTER, "u2", "/a", 4.0, now),
        ]);
        let year_ns = 365 * 24 * 3600 * 1_000_000_000;
        agg.run(vec![point("hits", MetricKind::COUNTER, "u1", "/a", 5.0, now + year_ns)]);
        let out = agg.run(vec![point("hits", MetricKind::COUNTER, "u2", "/a", 6.0, now + 1)]);
        assert_eq!(value_of(&out, "hits", "/a"), Some(5.0 + 6.0), "u2 is still a live input, not a carried one");
    }

    #[test]
    fn delta_sums_add_every_point_and_gauges_combine_by_their_function() {
        let delta = MetricKind::Sum { temporality: Temporality::Delta, monotonic: true };
        let mut agg = aggregate("labels: [user_id]\ngauge: max");
        let out = agg.run(vec![
            point("bytes", delta, "u1", "/a", 10.0, 1),
            point("bytes", delta, "u1", "/a", 5.0, 2),
            point("bytes", delta, "u2", "/a", 1.0, 2),
            point("temp", MetricKind::Gauge, "u1", "/a", 20.0, 1),
            point("temp", MetricKind::Gauge, "u2", "/a", 25.0, 1),
        ]);
        assert_eq!(value_of(&out, "bytes", "/a"), Some(16.0));
        assert_eq!(value_of(&out, "temp", "/a"), Some(25.0));
        // Deltas do not carry over: the next flush has only its own increments.
        let out = agg.run(vec![point("bytes", delta, "u2", "/a", 2.0, 3)]);
        assert_eq!(value_of(&out, "bytes", "/a"), Some(2.0));
    }

    fn histogram(user: &str, bounds: &[f64], counts: &[u64], sum: f64) -> Point {
        let metric = Arc::new(Metric::new("latency", MetricKind::Histogram { temporality: Temporality::Cumulative }));
        let value = Value::Histogram(Box::new(Histogram::of_counts(bounds, counts, Some(sum))));
        let labels = vec![(Arc::from("route"), Arc::from("/a")), (Arc::from("user_id"), Arc::from(user))];
        // With a start time, as SDKs send: a new input's first point is not a restart.
        Point { start_ns: 1, ..Point::of(metric, labels, value, 2) }
    }

    #[test]
    fn histograms_merge_bucket_by_bucket() {
        let mut agg = aggregate("labels: [user_id]");
        let out =
            agg.run(vec![histogram("u1", &[0.1, 1.0], &[1, 2, 3], 4.5), histogram("u2", &[0.1, 1.0], &[4, 0, 1], 2.0)]);
        let Value::Histogram(h) = &out[0].value else { panic!("a histogram: {out:?}") };
        assert_eq!((h.counts.clone(), h.count, h.sum), (vec![5, 2, 4], 11, Some(6.5)));
    }

    #[test]
    fn mismatched_bounds_are_refused_and_counted_when_asked() {
        let mut agg = aggregate("labels: [user_id]\nhistogram_bounds: refuse");
        let mut outcome = Outcome::default();
        let out = agg.process(
            vec![histogram("u1", &[0.1, 1.0], &[1, 2, 3], 4.5), histogram("u2", &[0.5], &[4, 1], 2.0)],
            &mut outcome,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(outcome.dropped, 1);
        assert!(outcome.refusals[0].contains("latency: histogram bounds"), "{:?}", outcome.refusals);
    }

    #[test]
    fn summaries_are_kept_per_series_or_dropped() {
        let summary = || {
            let metric = Arc::new(Metric::new("rpc", MetricKind::Summary));
            let value = Value::Summary(Box::new(crate::model::Summary { count: 3, sum: 1.0, quantiles: Vec::new() }));
            Point::of(metric, vec![(Arc::from("user_id"), Arc::from("u1"))], value, 1)
        };
        let kept = aggregate("labels: [user_id]").run(vec![summary()]);
        assert_eq!(kept[0].label("user_id").map(|v| &**v), Some("u1"), "kept with its attributes");
        let mut outcome = Outcome::default();
        let dropped = aggregate("labels: [user_id]\nsummary: drop").process(vec![summary()], &mut outcome);
        assert!(dropped.is_empty());
        assert_eq!(outcome.dropped, 1);
    }

    #[test]
    fn keep_labels_resource_attributes_and_metric_selection() {
        let mut agg = aggregate("keep_labels: [route]\nresource_attributes: [service.instance.id]\nmetrics: ['hits']");
        let resource = |instance: &str| {
            Arc::new(Attributes::new(vec![
                (Arc::from("service.name"), Arc::from("shop")),
                (Arc::from("service.instance.id"), Arc::from(instance)),
            ]))
        };
        let mut a = point("hits", MetricKind::COUNTER, "u1", "/a", 1.0, 1);
        a.resource = resource("i1");
        let mut b = point("hits", MetricKind::COUNTER, "u2", "/a", 2.0, 1);
        b.resource = resource("i2");
        let other = point("other", MetricKind::COUNTER, "u1", "/a", 1.0, 1);
        let out = agg.run(vec![a, b, other.clone()]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], other, "metrics not selected pass unchanged");
        assert_eq!(out[1].number(), 3.0);
        assert_eq!(out[1].resource.labels().len(), 1, "only service.name is left");
    }

    #[test]
    fn a_config_must_say_what_to_remove() {
        let found = problems(Aggregate::new(serde_yaml_ng::from_str("{}").expect("yaml"), "p"));
        assert_eq!(found[0].path, "p.labels");
        let both =
            problems(Aggregate::new(serde_yaml_ng::from_str("labels: [a]\nkeep_labels: [b]").expect("yaml"), "p"));
        assert!(both[0].message.contains("not both"));
    }
}
