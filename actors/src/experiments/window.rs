//! From the samples agents reported to per-interval series for each variant: the input of the KPIs and
//! of the charts.
//!
//! Each agent sends one batch per interval for each variant, and both variants of an agent are measured
//! at the same tick. The k-th interval of a variant is the sum over the agents of their k-th sample, so
//! a fleet of agents reads as one. Only agents that reported both variants count (a comparison needs
//! both sides), and every variant is cut to the number of intervals all of them reached, so a late or
//! missing batch never makes one side look smaller.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::kpis::VariantWindow;
use crate::store::ExperimentSample;

/// Which variant a sample belongs to.
pub const BASELINE: &str = "baseline";
pub const CANDIDATE: &str = "candidate";

const OUTPUT_SERIES: &str = "pipeline.output.series";
const OUTPUT_POINTS: &str = "pipeline.output.points";
const CPU_SECONDS: &str = "pipeline.cpu.seconds";
const MEMORY_BYTES: &str = "pipeline.memory.bytes";
const CRITICAL_PRESENT: &str = "pipeline.critical.present";
const METRIC_OUTPUT_SERIES: &str = "pipeline.metric.output_series";
const METRIC_OUTPUT_TOTAL: &str = "pipeline.metric.output_total";

/// Both variants over the same intervals.
#[derive(Debug, Clone, Default)]
pub struct AlignedWindow {
    /// When each interval was measured (by the first agent).
    pub at: Vec<DateTime<Utc>>,
    pub baseline: VariantWindow,
    pub candidate: VariantWindow,
    /// Share of the (agent, critical process, interval) triples present in the baseline that are present
    /// in the candidate too; `None` when the baseline had none.
    pub accuracy_pct: Option<f64>,
    /// Agents that reported both variants.
    pub agents: usize,
    /// Per metric of the user's traffic (as the agents name them), both variants over the same
    /// intervals.
    pub per_metric: Vec<MetricWindow>,
}

/// One metric of the traffic, per interval summed over the agents: its output series and total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricWindow {
    pub metric: String,
    pub baseline_series: Vec<f64>,
    pub candidate_series: Vec<f64>,
    /// Empty for metrics without a total (gauges).
    pub baseline_total: Vec<f64>,
    pub candidate_total: Vec<f64>,
}

/// Per variant, agent and metric: the values in time order (critical samples keyed by process too).
type Grouped<'a> = BTreeMap<(&'a str, &'a str, &'a str, Option<&'a str>), Vec<(DateTime<Utc>, f64)>>;

fn values<'m, 'a>(
    grouped: &'m Grouped<'a>,
    variant: &'a str,
    agent: &'a str,
    metric: &'a str,
) -> Option<&'m Vec<(DateTime<Utc>, f64)>> {
    grouped.get(&(variant, agent, metric, None))
}

/// Aligns the samples; `interval_secs` turns per-interval counts into rates.
pub fn align(samples: &[ExperimentSample], interval_secs: f64) -> AlignedWindow {
    let mut grouped: Grouped = BTreeMap::new();
    for s in samples {
        grouped
            .entry((s.variant.as_str(), s.agent_id.as_str(), s.metric.as_str(), s.subject.as_deref()))
            .or_default()
            .push((s.sampled_at, s.value));
    }
    let series_of = |variant, agent| values(&grouped, variant, agent, OUTPUT_SERIES);
    let agents: Vec<&str> = grouped
        .keys()
        .filter(|(variant, _, metric, _)| *variant == BASELINE && *metric == OUTPUT_SERIES)
        .map(|(_, agent, _, _)| *agent)
        .filter(|agent| series_of(CANDIDATE, agent).is_some())
        .collect();
    let intervals = agents
        .iter()
        .flat_map(|agent| [BASELINE, CANDIDATE].map(|variant| series_of(variant, agent).map_or(0, Vec::len)))
        .min()
        .unwrap_or(0);
    let sum_over_agents = |variant: &'static str, metric: &'static str, scale: f64| -> Vec<f64> {
        (0..intervals)
            .map(|k| {
                agents
                    .iter()
                    .filter_map(|agent| values(&grouped, variant, agent, metric))
                    .filter_map(|values| values.get(k))
                    .map(|(_, value)| value * scale)
                    .sum()
            })
            .collect()
    };
    let rate = if interval_secs > 0.0 { 1.0 / interval_secs } else { 0.0 };
    let window = |variant: &'static str| VariantWindow {
        series: sum_over_agents(variant, OUTPUT_SERIES, 1.0),
        points_per_sec: sum_over_agents(variant, OUTPUT_POINTS, rate),
        cpu_seconds_per_sec: sum_over_agents(variant, CPU_SECONDS, rate),
        memory_bytes: sum_over_agents(variant, MEMORY_BYTES, 1.0),
    };
    let at = agents
        .first()
        .and_then(|agent| series_of(BASELINE, agent))
        .map(|values| values.iter().take(intervals).map(|(at, _)| *at).collect())
        .unwrap_or_default();
    AlignedWindow {
        at,
        baseline: window(BASELINE),
        candidate: window(CANDIDATE),
        accuracy_pct: accuracy(&grouped, &agents, intervals),
        agents: agents.len(),
        per_metric: per_metric(&grouped, &agents, intervals),
    }
}

/// The metrics the baseline reported on, each summed over the agents interval by interval.
fn per_metric(grouped: &Grouped, agents: &[&str], intervals: usize) -> Vec<MetricWindow> {
    let metrics: std::collections::BTreeSet<&str> = grouped
        .keys()
        .filter(|(variant, _, metric, _)| *variant == BASELINE && *metric == METRIC_OUTPUT_SERIES)
        .filter_map(|(_, _, _, subject)| *subject)
        .collect();
    let sum = |variant: &str, metric: &str, subject: &str| -> Vec<f64> {
        let per_agent: Vec<&Vec<(DateTime<Utc>, f64)>> =
            agents.iter().filter_map(|agent| grouped.get(&(variant, *agent, metric, Some(subject)))).collect();
        if per_agent.is_empty() {
            return Vec::new();
        }
        (0..intervals).map(|k| per_agent.iter().filter_map(|values| values.get(k)).map(|(_, v)| v).sum()).collect()
    };
    metrics
        .into_iter()
        .map(|metric| MetricWindow {
            metric: metric.to_string(),
            baseline_series: sum(BASELINE, METRIC_OUTPUT_SERIES, metric),
            candidate_series: sum(CANDIDATE, METRIC_OUTPUT_SERIES, metric),
            baseline_total: sum(BASELINE, METRIC_OUTPUT_TOTAL, metric),
            candidate_total: sum(CANDIDATE, METRIC_OUTPUT_TOTAL, metric),
        })
        .collect()
}

fn accuracy(grouped: &Grouped, agents: &[&str], intervals: usize) -> Option<f64> {
    let (mut present, mut kept) = (0u64, 0u64);
    for ((variant, agent, metric, process), values) in grouped {
        if *variant != BASELINE || *metric != CRITICAL_PRESENT || !agents.contains(agent) {
            continue;
        }
        let candidate = grouped.get(&(CANDIDATE, *agent, CRITICAL_PRESENT, *process));
        for (k, (_, value)) in values.iter().enumerate().take(intervals) {
            if *value > 0.0 {
                present += 1;
                if candidate.and_then(|c| c.get(k)).is_some_and(|(_, v)| *v > 0.0) {
                    kept += 1;
                }
            }
        }
    }
    (present > 0).then(|| kept as f64 / present as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(agent: &str, variant: &str, metric: &str, k: i64, value: f64) -> ExperimentSample {
        ExperimentSample {
            agent_id: agent.into(),
            variant: variant.into(),
            metric: metric.into(),
            value,
            subject: (metric == CRITICAL_PRESENT).then(|| "nginx".to_string()),
            sampled_at: DateTime::from_timestamp(1_700_000_000 + k * 10, 0).expect("time"),
        }
    }

    #[test]
    fn agents_are_summed_interval_by_interval_and_cut_to_the_shortest() {
        let mut samples = Vec::new();
        for k in 0..4 {
            samples.push(sample("a", BASELINE, OUTPUT_SERIES, k, 100.0));
            samples.push(sample("a", CANDIDATE, OUTPUT_SERIES, k, 10.0));
            samples.push(sample("a", BASELINE, OUTPUT_POINTS, k, 1000.0));
            samples.push(sample("a", CANDIDATE, OUTPUT_POINTS, k, 100.0));
        }
        // Agent b's last candidate batch has not arrived yet: three intervals for everyone.
        for k in 0..3 {
            samples.push(sample("b", BASELINE, OUTPUT_SERIES, k, 50.0));
            samples.push(sample("b", CANDIDATE, OUTPUT_SERIES, k, 5.0));
        }
        samples.push(sample("b", BASELINE, OUTPUT_SERIES, 3, 50.0));
        // Agent c never reported its candidate: left out.
        samples.push(sample("c", BASELINE, OUTPUT_SERIES, 0, 7.0));
        let window = align(&samples, 10.0);
        assert_eq!(window.agents, 2);
        assert_eq!(window.baseline.series, [150.0, 150.0, 150.0]);
        assert_eq!(window.candidate.series, [15.0, 15.0, 15.0]);
        assert_eq!(window.baseline.points_per_sec, [100.0, 100.0, 100.0]);
        assert_eq!(window.at.len(), 3);
        assert_eq!(window.accuracy_pct, None);
    }

    #[test]
    fn accuracy_is_the_share_of_baseline_critical_presence_the_candidate_keeps() {
        let mut samples = Vec::new();
        for k in 0..4 {
            samples.push(sample("a", BASELINE, OUTPUT_SERIES, k, 1.0));
            samples.push(sample("a", CANDIDATE, OUTPUT_SERIES, k, 1.0));
            samples.push(sample("a", BASELINE, CRITICAL_PRESENT, k, 1.0));
            samples.push(sample("a", CANDIDATE, CRITICAL_PRESENT, k, if k == 0 { 0.0 } else { 1.0 }));
        }
        assert_eq!(align(&samples, 1.0).accuracy_pct, Some(75.0));
    }

    #[test]
    fn each_metric_of_the_traffic_is_summed_over_the_agents() {
        let mut samples = Vec::new();
        let of = |sample: ExperimentSample, metric: &str| ExperimentSample { subject: Some(metric.into()), ..sample };
        for agent in ["a", "b"] {
            for k in 0..3 {
                samples.push(sample(agent, BASELINE, OUTPUT_SERIES, k, 100.0));
                samples.push(sample(agent, CANDIDATE, OUTPUT_SERIES, k, 10.0));
                samples.push(of(sample(agent, BASELINE, METRIC_OUTPUT_SERIES, k, 100.0), "http.requests"));
                samples.push(of(sample(agent, CANDIDATE, METRIC_OUTPUT_SERIES, k, 10.0), "http.requests"));
                samples.push(of(sample(agent, BASELINE, METRIC_OUTPUT_TOTAL, k, 500.0), "http.requests"));
                samples.push(of(sample(agent, CANDIDATE, METRIC_OUTPUT_TOTAL, k, 500.0), "http.requests"));
                samples.push(of(sample(agent, BASELINE, METRIC_OUTPUT_SERIES, k, 3.0), "queue.depth"));
                samples.push(of(sample(agent, CANDIDATE, METRIC_OUTPUT_SERIES, k, 3.0), "queue.depth"));
            }
        }
        let window = align(&samples, 10.0);
        let requests = window.per_metric.iter().find(|m| m.metric == "http.requests").expect("requests");
        assert_eq!(requests.baseline_series, [200.0, 200.0, 200.0]);
        assert_eq!(requests.candidate_total, [1000.0, 1000.0, 1000.0]);
        let depth = window.per_metric.iter().find(|m| m.metric == "queue.depth").expect("depth");
        assert!(depth.baseline_total.is_empty(), "a gauge has no total");
        let rows = super::super::kpis::per_metric(&window.per_metric);
        assert_eq!(rows[0].metric, "http.requests", "the largest first");
        assert_eq!((rows[0].reduction_pct, rows[0].preserved_pct), (Some(90.0), Some(100.0)));
        assert_eq!((rows[1].reduction_pct, rows[1].preserved_pct), (Some(0.0), None));
    }

    #[test]
    fn an_agent_naming_more_metrics_cannot_grow_the_per_metric_list() {
        let windows: Vec<MetricWindow> = (0..80)
            .map(|m| MetricWindow {
                metric: format!("m{m}"),
                baseline_series: vec![m as f64],
                candidate_series: vec![1.0],
                ..MetricWindow::default()
            })
            .collect();
        let rows = super::super::kpis::per_metric(&windows);
        assert_eq!(rows.len(), super::super::kpis::MAX_METRICS);
        assert_eq!(rows[0].metric, "m79", "the largest kept");
    }

    #[test]
    fn no_samples_is_an_empty_window() {
        let window = align(&[], 10.0);
        assert_eq!(window.agents, 0);
        assert!(window.baseline.series.is_empty());
    }
}
