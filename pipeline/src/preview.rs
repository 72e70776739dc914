//! Preview: a baseline and a candidate config run over the same input for a few intervals, with what
//! each actually emitted and what it cost. Every number is measured.

use serde::{Deserialize, Serialize};

use super::config::PipelineConfig;
use super::engine::{IntervalStats, ProcessorChain};
use super::model::{millis_to_nanos, Batch, MetricKind, Point};
use super::sources::synthetic::{SyntheticConfig, SyntheticSource};
use super::sources::Source;
use super::Problem;

/// Most intervals one preview may run.
pub const MAX_INTERVALS: u32 = 20;
/// Most simulated processes one preview may use.
pub const MAX_PREVIEW_PROCESSES: usize = 100_000;

/// The input of a preview: a simulation, or sample points the user uploads (the same points are fed
/// in every interval).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PreviewSource {
    Synthetic(SyntheticConfig),
    Samples(Vec<SampleInput>),
}

/// One uploaded point.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SampleInput {
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub kind: SampleKind,
}

/// How an uploaded point's series combine when merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SampleKind {
    /// Additive (a total, bytes in use): merged series add up.
    #[default]
    Sum,
    /// A level (a utilisation): merged series combine as the processor says (the mean by default).
    Gauge,
}

impl SampleKind {
    fn metric_kind(self) -> MetricKind {
        match self {
            SampleKind::Sum => MetricKind::UP_DOWN_COUNTER,
            SampleKind::Gauge => MetricKind::Gauge,
        }
    }
}

/// Most uploaded points.
pub const MAX_SAMPLES: usize = 200_000;

/// Seconds per interval for uploaded samples (the synthetic source says its own).
const SAMPLE_INTERVAL_SECS: f64 = 10.0;

/// Replays uploaded points every interval.
struct Replay(Batch);

impl Source for Replay {
    fn collect(&mut self, now_ms: i64) -> Batch {
        self.0.iter().cloned().map(|p| Point { time_ns: millis_to_nanos(now_ms), ..p }).collect()
    }
}

fn build_source(source: PreviewSource, problems: &mut Vec<Problem>) -> (Option<Box<dyn Source>>, f64) {
    match source {
        PreviewSource::Synthetic(config) => {
            let interval = config.interval_secs;
            if config.processes > MAX_PREVIEW_PROCESSES {
                problems.push(Problem::new(
                    "source.synthetic.processes",
                    format!("at most {MAX_PREVIEW_PROCESSES} in a preview"),
                ));
                return (None, interval);
            }
            let built = SyntheticSource::new(config, "source.synthetic").map_err(|p| problems.extend(p)).ok();
            (built.map(|s| Box::new(s) as Box<dyn Source>), interval)
        }
        PreviewSource::Samples(samples) => {
            if samples.is_empty() || samples.len() > MAX_SAMPLES {
                problems.push(Problem::new("source.samples", format!("must hold 1 to {MAX_SAMPLES} points")));
            }
            for (i, sample) in samples.iter().enumerate() {
                if sample.metric.trim().is_empty() || !sample.value.is_finite() {
                    problems
                        .push(Problem::new(&format!("source.samples[{i}]"), "needs a metric name and a finite value"));
                }
            }
            let batch = samples
                .iter()
                .map(|s| {
                    let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    Point::new(&s.metric, s.kind.metric_kind(), &labels, s.value, 0)
                })
                .collect();
            (Some(Box::new(Replay(batch)) as Box<dyn Source>), SAMPLE_INTERVAL_SECS)
        }
    }
}

/// Measured outcome for one variant, averaged over the intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VariantResult {
    /// Output series per interval (mean).
    pub series: f64,
    /// Input series per interval (mean).
    pub input_series: f64,
    /// Output points per second of simulated time.
    pub points_per_sec: f64,
    /// CPU seconds the processors used, over all intervals.
    pub cpu_seconds: f64,
    /// Bytes held at the end.
    pub memory_bytes: usize,
    /// Per interval.
    pub intervals: Vec<IntervalStats>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewResult {
    pub baseline: VariantResult,
    pub candidate: VariantResult,
    /// `(baseline series - candidate series) / baseline series * 100`.
    pub cardinality_reduction_pct: f64,
    /// Same, for points per second.
    pub ingest_reduction_pct: f64,
}

/// Runs both configs' first pipeline over the same synthetic input.
pub fn run(
    baseline: &PipelineConfig,
    candidate: &PipelineConfig,
    source: PreviewSource,
    intervals: u32,
) -> Result<PreviewResult, Vec<Problem>> {
    let mut problems = Vec::new();
    if !(1..=MAX_INTERVALS).contains(&intervals) {
        problems.push(Problem::new("intervals", format!("must be between 1 and {MAX_INTERVALS}")));
    }
    let (mut input, interval_secs) = build_source(source, &mut problems);
    let mut chains = [
        ProcessorChain::from_config(baseline, None).map_err(|p| problems.extend(prefixed("baseline", p))).ok(),
        ProcessorChain::from_config(candidate, None).map_err(|p| problems.extend(prefixed("candidate", p))).ok(),
    ];
    let (Some(source), [Some(base), Some(cand)], true) = (input.as_deref_mut(), &mut chains, problems.is_empty())
    else {
        return Err(problems);
    };
    let mut results = [VariantResult::default(), VariantResult::default()];
    for i in 0..intervals {
        let batch = source.collect(i64::from(i) * 1000);
        for (chain, result) in [&mut *base, &mut *cand].into_iter().zip(results.iter_mut()) {
            let (_, stats) = chain.process(batch.clone(), &[]);
            result.intervals.push(stats);
        }
    }
    let [baseline, candidate] = results.map(|r| summarise(r, interval_secs));
    Ok(PreviewResult {
        cardinality_reduction_pct: reduction(baseline.series, candidate.series),
        ingest_reduction_pct: reduction(baseline.points_per_sec, candidate.points_per_sec),
        baseline,
        candidate,
    })
}

fn prefixed(variant: &str, problems: Vec<Problem>) -> Vec<Problem> {
    problems.into_iter().map(|p| Problem::new(&format!("{variant}.{}", p.path), p.message)).collect()
}

fn summarise(mut result: VariantResult, interval_secs: f64) -> VariantResult {
    let n = result.intervals.len().max(1) as f64;
    result.series = result.intervals.iter().map(|s| s.output_series as f64).sum::<f64>() / n;
    result.input_series = result.intervals.iter().map(|s| s.input_series as f64).sum::<f64>() / n;
    result.points_per_sec = result.intervals.iter().map(|s| s.output_points as f64).sum::<f64>() / (n * interval_secs);
    result.cpu_seconds = result.intervals.iter().map(|s| s.cpu_seconds).sum();
    result.memory_bytes = result.intervals.last().map_or(0, |s| s.memory_bytes);
    result
}

/// `(before - after) / before * 100`, 0 when there was nothing before.
pub fn reduction(before: f64, after: f64) -> f64 {
    if before > 0.0 {
        (before - after) / before * 100.0
    } else {
        0.0
    }
}
