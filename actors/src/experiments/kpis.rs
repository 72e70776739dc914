//! An experiment's KPIs and verdict, computed only from what the agents measured over the window after
//! warm-up: per variant and per interval (summed over the target agents) the output series, points per
//! second, pipeline CPU seconds per second and memory.

use serde::Serialize;

use super::stats::mann_whitney_u;
use super::SuccessCriteria;

/// Fewer intervals than this per variant is too little to judge.
pub const MIN_INTERVALS: usize = 3;

/// A difference in series counts is taken as real below this p-value.
const SIGNIFICANCE: f64 = 0.05;

/// Hours in an average month (365 × 24 / 12), as cloud price lists count them.
const HOURS_PER_MONTH: f64 = 730.0;

/// One variant's measurements, one entry per interval of the window.
#[derive(Debug, Clone, Default)]
pub struct VariantWindow {
    pub series: Vec<f64>,
    pub points_per_sec: Vec<f64>,
    pub cpu_seconds_per_sec: Vec<f64>,
    pub memory_bytes: Vec<f64>,
}

/// How a metrics vendor bills, and in which currency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PriceModel {
    pub per_thousand_series_month: f64,
    pub per_million_points: f64,
    /// An ISO 4217 code such as `USD` (validated by the settings).
    pub currency: Currency,
}

/// A three-letter currency code, kept inline so prices stay `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// The code, when it is three ASCII letters.
    pub fn new(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_alphabetic).then(|| Currency(bytes.map(|b| b.to_ascii_uppercase())))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Mean and percentiles of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// What one variant measured and what it would cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantKpis {
    pub intervals: usize,
    pub active_series: Summary,
    pub points_per_sec: Summary,
    pub cpu_seconds_per_sec: Summary,
    pub memory_bytes: Summary,
    pub cost_monthly: f64,
    pub cost_yearly: f64,
}

/// `pass`: every criterion met and the drop in series is significant; `marginal`: every criterion met
/// but the difference could be chance; `fail`: a criterion missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Marginal,
    Fail,
}

/// The whole analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub baseline: VariantKpis,
    pub candidate: VariantKpis,
    pub cardinality_reduction_pct: f64,
    /// `None` (like the two below) when the baseline measured 0 and the candidate did not: a change
    /// from nothing has no percentage.
    pub ingest_reduction_pct: Option<f64>,
    pub cpu_overhead_pct: Option<f64>,
    pub memory_reduction_pct: Option<f64>,
    /// Share of the baseline's critical series the candidate kept; `None` when there were none.
    pub accuracy_pct: Option<f64>,
    pub monthly_saving: f64,
    pub yearly_saving: f64,
    /// Mann–Whitney U test on the per-interval series counts.
    pub u: f64,
    pub p_value: f64,
    pub verdict: Verdict,
    pub recommendation: String,
}

/// One metric of the user's traffic, compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricKpis {
    pub metric: String,
    /// Mean output series per interval.
    pub baseline_series: f64,
    pub candidate_series: f64,
    /// How many fewer series the candidate sends, percent (`None` when the baseline sent none).
    pub reduction_pct: Option<f64>,
    /// How much of the baseline's total (sums' values, histograms' counts) the candidate's output
    /// carries, percent: 100 when a cut keeps every count. `None` for gauges and empty baselines.
    pub preserved_pct: Option<f64>,
}

/// Most metrics an analysis lists (agents report 50; an agent sending more cannot grow the results).
pub const MAX_METRICS: usize = 50;

/// Per metric, the largest baseline first.
pub fn per_metric(windows: &[super::window::MetricWindow]) -> Vec<MetricKpis> {
    let mean = |values: &[f64]| (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    let mut rows: Vec<MetricKpis> = windows
        .iter()
        .map(|w| {
            let (baseline_series, candidate_series) =
                (mean(&w.baseline_series).unwrap_or(0.0), mean(&w.candidate_series).unwrap_or(0.0));
            let preserved_pct = match (mean(&w.baseline_total), mean(&w.candidate_total)) {
                (Some(base), Some(cand)) if base != 0.0 => Some(cand / base * 100.0),
                _ => None,
            };
            MetricKpis {
                metric: w.metric.clone(),
                baseline_series,
                candidate_series,
                reduction_pct: reduction_pct(baseline_series, candidate_series).filter(|_| baseline_series > 0.0),
                preserved_pct,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.baseline_series.total_cmp(&a.baseline_series).then_with(|| a.metric.cmp(&b.metric)));
    rows.truncate(MAX_METRICS);
    rows
}

/// Judges the candidate against the baseline; `Err` says why there is not enough data to.
pub fn analyse(
    baseline: &VariantWindow,
    candidate: &VariantWindow,
    accuracy_pct: Option<f64>,
    criteria: &SuccessCriteria,
    prices: PriceModel,
) -> Result<Analysis, String> {
    for (name, window) in [("baseline", baseline), ("candidate", candidate)] {
        if window.series.len() < MIN_INTERVALS {
            return Err(format!(
                "not enough data: the {name} has {} measured intervals, at least {MIN_INTERVALS} are needed",
                window.series.len()
            ));
        }
    }
    let base = variant_kpis(baseline, prices);
    let cand = variant_kpis(candidate, prices);
    let test = mann_whitney_u(&baseline.series, &candidate.series)
        .ok_or("the series counts are not numbers: nothing can be judged")?;
    let cardinality_reduction_pct = reduction_pct(base.active_series.mean, cand.active_series.mean)
        .ok_or("the baseline measured no series: there is nothing to reduce")?;
    let cpu_overhead_pct = reduction_pct(base.cpu_seconds_per_sec.mean, cand.cpu_seconds_per_sec.mean).map(|r| -r);
    let missed = missed_criteria(criteria, cardinality_reduction_pct, cpu_overhead_pct, accuracy_pct);
    let verdict = match (missed.is_empty(), test.p_value < SIGNIFICANCE) {
        (false, _) => Verdict::Fail,
        (true, true) => Verdict::Pass,
        (true, false) => Verdict::Marginal,
    };
    let monthly_saving = base.cost_monthly - cand.cost_monthly;
    Ok(Analysis {
        cardinality_reduction_pct,
        ingest_reduction_pct: reduction_pct(base.points_per_sec.mean, cand.points_per_sec.mean),
        cpu_overhead_pct,
        memory_reduction_pct: reduction_pct(base.memory_bytes.mean, cand.memory_bytes.mean),
        accuracy_pct,
        monthly_saving,
        yearly_saving: monthly_saving * 12.0,
        u: test.u,
        p_value: test.p_value,
        verdict,
        recommendation: recommendation(
            verdict,
            cardinality_reduction_pct,
            format!("{monthly_saving:.2} {}", prices.currency),
            &missed,
            test.p_value,
        ),
        baseline: base,
        candidate: cand,
    })
}

fn variant_kpis(window: &VariantWindow, prices: PriceModel) -> VariantKpis {
    let active_series = summary(&window.series);
    let points_per_sec = summary(&window.points_per_sec);
    let series_cost = active_series.mean / 1000.0 * prices.per_thousand_series_month;
    let points_per_month = points_per_sec.mean * HOURS_PER_MONTH * 3600.0;
    let cost_monthly = series_cost + points_per_month / 1e6 * prices.per_million_points;
    VariantKpis {
        intervals: window.series.len(),
        active_series,
        points_per_sec,
        cpu_seconds_per_sec: summary(&window.cpu_seconds_per_sec),
        memory_bytes: summary(&window.memory_bytes),
        cost_monthly,
        cost_yearly: cost_monthly * 12.0,
    }
}

/// How much smaller `candidate` is than `baseline`, percent (negative when larger; 0 when both are 0;
/// `None` when only the baseline is 0).
fn reduction_pct(baseline: f64, candidate: f64) -> Option<f64> {
    match (baseline == 0.0, candidate == 0.0) {
        (true, true) => Some(0.0),
        (true, false) => None,
        (false, _) => Some((1.0 - candidate / baseline) * 100.0),
    }
}

fn missed_criteria(
    criteria: &SuccessCriteria,
    cardinality_reduction_pct: f64,
    cpu_overhead_pct: Option<f64>,
    accuracy_pct: Option<f64>,
) -> Vec<String> {
    let mut missed = Vec::new();
    if cardinality_reduction_pct < criteria.min_cardinality_reduction_pct {
        missed.push(format!(
            "cardinality fell {cardinality_reduction_pct:.1}% (at least {:.1}% required)",
            criteria.min_cardinality_reduction_pct
        ));
    }
    match cpu_overhead_pct {
        Some(overhead) if overhead > criteria.max_cpu_overhead_pct => missed
            .push(format!("pipeline CPU rose {overhead:.1}% (at most {:.1}% allowed)", criteria.max_cpu_overhead_pct)),
        // Strict on purpose: an overhead that cannot be bounded does not meet a bound.
        None => missed.push("the baseline measured no pipeline CPU, so the candidate's overhead is unbounded".into()),
        Some(_) => {}
    }
    if let Some(accuracy) = accuracy_pct.filter(|a| *a < criteria.min_accuracy_pct) {
        missed.push(format!(
            "{accuracy:.1}% of the critical series kept (at least {:.1}% required)",
            criteria.min_accuracy_pct
        ));
    }
    missed
}

fn recommendation(verdict: Verdict, reduction: f64, saving: String, missed: &[String], p: f64) -> String {
    let p = if p < 0.001 { "p < 0.001".to_string() } else { format!("p = {p:.3}") };
    match verdict {
        Verdict::Pass => format!(
            "Promote the candidate: it cuts active series by {reduction:.1}% and saves {saving} a month, \
             meeting every criterion ({p})."
        ),
        Verdict::Marginal => format!(
            "The candidate meets every criterion, but the drop in series could be chance ({p}); run it longer \
             before promoting."
        ),
        Verdict::Fail => format!("Keep the baseline: {}.", missed.join("; ")),
    }
}

/// Mean and nearest-rank percentiles; all zero for an empty sample.
fn summary(values: &[f64]) -> Summary {
    if values.is_empty() {
        return Summary { mean: 0.0, p50: 0.0, p95: 0.0, p99: 0.0 };
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let percentile = |p: f64| sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Summary {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        p50: percentile(50.0),
        p95: percentile(95.0),
        p99: percentile(99.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: PriceModel =
        PriceModel { per_thousand_series_month: 10.0, per_million_points: 0.5, currency: Currency::USD };

    fn window(series: f64, points_per_sec: f64, cpu: f64, intervals: usize) -> VariantWindow {
        // Small, distinct wobble so the samples have no ties, as real measurements rarely do.
        let wobble = |base: f64| (0..intervals).map(|i| base + i as f64 * 0.01).collect::<Vec<_>>();
        VariantWindow {
            series: wobble(series),
            points_per_sec: wobble(points_per_sec),
            cpu_seconds_per_sec: wobble(cpu),
            memory_bytes: wobble(1e6),
        }
    }

    #[test]
    fn a_candidate_that_cuts_series_and_keeps_critical_ones_passes_with_its_saving() {
        let base = window(2500.0, 250.0, 0.010, 10);
        let cand = window(500.0, 50.0, 0.0105, 10);
        let analysis = analyse(&base, &cand, Some(100.0), &SuccessCriteria::default(), PRICES).unwrap();
        assert_eq!(analysis.verdict, Verdict::Pass);
        assert!((analysis.cardinality_reduction_pct - 80.0).abs() < 0.01);
        assert!(analysis.p_value < 0.001, "ten intervals each, fully separated");
        // 2,500.045 series → 25.00045 a month; 250.045 points/s × 730 h → 657.118 M points → 328.559.
        assert!((analysis.baseline.cost_monthly - (25.00045 + 250.045 * 730.0 * 3600.0 / 1e6 * 0.5)).abs() < 1e-6);
        assert!((analysis.yearly_saving - 12.0 * analysis.monthly_saving).abs() < 1e-9);
        let saving = format!("saves {:.2} USD a month", analysis.monthly_saving);
        assert!(analysis.recommendation.starts_with("Promote"), "{}", analysis.recommendation);
        assert!(analysis.recommendation.contains(&saving), "{}", analysis.recommendation);
        assert!(analysis.recommendation.contains("(p < 0.001)"), "{}", analysis.recommendation);
        assert_eq!(Currency::new("eur").map(|c| c.to_string()).as_deref(), Some("EUR"));
        assert_eq!(Currency::new("EURO"), None);
    }

    #[test]
    fn dropping_a_critical_process_or_burning_cpu_fails_with_the_reasons() {
        let base = window(2500.0, 250.0, 0.010, 10);
        let cand = window(500.0, 50.0, 0.020, 10);
        let analysis = analyse(&base, &cand, Some(80.0), &SuccessCriteria::default(), PRICES).unwrap();
        assert_eq!(analysis.verdict, Verdict::Fail);
        assert!(analysis.recommendation.contains("CPU rose"), "{}", analysis.recommendation);
        assert!(analysis.recommendation.contains("80.0% of the critical series"), "{}", analysis.recommendation);
    }

    #[test]
    fn a_difference_that_could_be_chance_is_marginal() {
        let base = window(2500.0, 250.0, 0.010, 3);
        let cand = window(500.0, 50.0, 0.010, 3);
        let analysis = analyse(&base, &cand, None, &SuccessCriteria::default(), PRICES).unwrap();
        assert!(
            (analysis.p_value - 0.1).abs() < 1e-12,
            "exact two-sided p of 3 vs 3 fully separated: {}",
            analysis.p_value
        );
        assert_eq!(analysis.verdict, Verdict::Marginal);
    }

    #[test]
    fn too_few_intervals_are_reported_not_judged() {
        let error =
            analyse(&window(1.0, 1.0, 1.0, 2), &window(1.0, 1.0, 1.0, 5), None, &SuccessCriteria::default(), PRICES)
                .unwrap_err();
        assert!(error.contains("baseline has 2 measured intervals"), "{error}");
    }

    #[test]
    fn a_change_from_nothing_has_no_percentage() {
        assert_eq!(reduction_pct(0.0, 0.0), Some(0.0));
        assert_eq!(reduction_pct(0.0, 5.0), None);
        assert_eq!(reduction_pct(200.0, 50.0), Some(75.0));
        let idle = VariantWindow { cpu_seconds_per_sec: vec![0.0; 5], ..window(2500.0, 250.0, 0.0, 5) };
        let analysis =
            analyse(&idle, &window(500.0, 50.0, 0.01, 5), None, &SuccessCriteria::default(), PRICES).unwrap();
        assert_eq!(analysis.cpu_overhead_pct, None);
        assert_eq!(analysis.verdict, Verdict::Fail, "{}", analysis.recommendation);
        let empty = VariantWindow { series: vec![0.0; 5], ..window(0.0, 0.0, 0.01, 5) };
        assert!(analyse(&empty, &idle, None, &SuccessCriteria::default(), PRICES).unwrap_err().contains("no series"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(summary(&values), Summary { mean: 50.5, p50: 50.0, p95: 95.0, p99: 99.0 });
        assert_eq!(summary(&[7.0]).p99, 7.0);
    }
}
