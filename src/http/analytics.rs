//! `/api/v1/metrics/*`: what the agents' measurements say.

use actix_web::{web, HttpResponse};
use chrono::DateTime;
use chrono::Utc;
use phoenix_actors::store::{CardinalityQuery, CardinalityReport, OverviewCounts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, AppState};

/// Longest window a cardinality report may cover.
const MAX_WINDOW_SECS: u64 = 31 * 24 * 3600;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CardinalityParams {
    /// Samples of the last this many seconds (default 300, at most 31 days).
    #[param(minimum = 1, maximum = 2678400)]
    window_secs: Option<u64>,
    /// Only this experiment's samples.
    experiment_id: Option<String>,
    /// Only this agent's samples.
    agent_id: Option<String>,
    /// Only this pipeline's samples (its name on the agents).
    pipeline: Option<String>,
    /// Only this variant's samples (`baseline` or `candidate`).
    variant: Option<String>,
}

/// `GET /metrics/cardinality`: active series by metric and label key, from the stored samples.
#[utoipa::path(get, path = "/api/v1/metrics/cardinality", tag = "analytics", params(CardinalityParams),
    responses((status = 200, description = "Active series by metric and label key", body = CardinalityAnswer)))]
pub async fn get_cardinality(
    state: web::Data<AppState>,
    params: web::Query<CardinalityParams>,
) -> Result<HttpResponse, ApiError> {
    let window = params.window_secs.unwrap_or(300);
    if window == 0 || window > MAX_WINDOW_SECS {
        return Err(ApiError::BadRequest(format!("window_secs must be between 1 and {MAX_WINDOW_SECS}")));
    }
    let params = params.into_inner();
    let query = CardinalityQuery {
        since: Some(Utc::now() - chrono::Duration::seconds(window as i64)),
        experiment_id: params.experiment_id,
        agent_id: params.agent_id,
        pipeline: params.pipeline,
        variant: params.variant,
    };
    let report = state.store.cardinality(&query).await?;
    Ok(HttpResponse::Ok().json(CardinalityAnswer { window_secs: window, report }))
}

#[derive(Serialize, ToSchema)]
pub struct CardinalityAnswer {
    window_secs: u64,
    #[serde(flatten)]
    report: CardinalityReport,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CostParams {
    /// `1h`, `24h`, `7d`, `30d`… (a number and `h` or `d`, or plain seconds); default `24h`.
    #[param(pattern = "^[1-9][0-9]{0,6}[hd]?$")]
    period: Option<String>,
}

/// Seconds in a period like `24h` or `7d`.
fn period_secs(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, 'h')) => (&text[..i], 3600),
        Some((i, 'd')) => (&text[..i], 86_400),
        _ => (text, 1),
    };
    let secs = number.parse::<u64>().map_err(|_| format!("period '{text}' is not like 24h, 7d or 3600"))? * unit;
    if secs == 0 || secs > MAX_WINDOW_SECS {
        return Err(format!("period must be between 1 second and {} days", MAX_WINDOW_SECS / 86_400));
    }
    Ok(secs)
}

/// Per pipeline, summed over its agents.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PipelineCost {
    pipeline: String,
    agents: usize,
    /// Mean active series entering the pipeline (what would be billed without it).
    input_series: f64,
    /// Mean active series leaving it (what is billed).
    active_series: f64,
    points_ingested: f64,
    points_per_sec: f64,
    monthly_cost: f64,
}

/// The period a report covers.
#[derive(Serialize, ToSchema)]
pub struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    secs: u64,
}

/// The prices reports use (`experiments.*` settings).
#[derive(Serialize, ToSchema)]
pub struct PriceModel {
    /// Three-letter code, e.g. `USD`.
    currency: String,
    per_thousand_series_month: f64,
    per_million_points: f64,
}

impl PriceModel {
    pub(super) fn of(state: &AppState) -> PriceModel {
        let prices = &state.settings.experiments;
        PriceModel {
            currency: currency(state),
            per_thousand_series_month: prices.price_per_thousand_series_month,
            per_million_points: prices.price_per_million_points,
        }
    }
}

/// Every pipeline added up.
#[derive(Serialize, ToSchema)]
pub struct CostTotals {
    input_series: f64,
    active_series: f64,
    points_ingested: f64,
    monthly_cost: f64,
    /// What the promoted experiments save a month.
    promoted_monthly_saving: f64,
}

/// What the pipelines cost over a period.
#[derive(Serialize, ToSchema)]
pub struct CostReport {
    period: Period,
    price_model: PriceModel,
    totals: CostTotals,
    pipelines: Vec<PipelineCost>,
}

/// `GET /cost-analytics?period=`: what the pipelines the agents ran cost over the period, from their
/// stored measurements, and what promoted experiments saved.
#[utoipa::path(get, path = "/api/v1/cost-analytics", tag = "analytics", params(CostParams),
    responses((status = 200, description = "Cost per pipeline and in total", body = CostReport)))]
pub async fn get_cost_analytics(
    state: web::Data<AppState>,
    params: web::Query<CostParams>,
) -> Result<HttpResponse, ApiError> {
    let period = period_secs(params.period.as_deref().unwrap_or("24h")).map_err(ApiError::BadRequest)?;
    let until = Utc::now();
    let from = until - chrono::Duration::seconds(period as i64);
    let prices = &state.settings.experiments;
    let interval = state.settings.agents.heartbeat_interval_secs.max(1) as f64;
    let mut pipelines: std::collections::BTreeMap<String, PipelineCost> = Default::default();
    for total in state.store.pipeline_totals("pipeline.output.series", from, until).await? {
        let entry = pipelines.entry(total.pipeline.clone()).or_default();
        entry.agents += 1;
        entry.active_series += total.mean;
    }
    for total in state.store.pipeline_totals("pipeline.input.series", from, until).await? {
        pipelines.entry(total.pipeline.clone()).or_default().input_series += total.mean;
    }
    for total in state.store.pipeline_totals("pipeline.output.points", from, until).await? {
        let entry = pipelines.entry(total.pipeline.clone()).or_default();
        entry.points_ingested += total.sum;
        // Each sample covers one interval: the rate over the time this agent actually ran it.
        entry.points_per_sec += total.sum / (total.samples.max(1) as f64 * interval);
    }
    let hours_per_month = 730.0;
    let mut items = Vec::new();
    for (name, mut cost) in pipelines {
        cost.pipeline = name;
        cost.monthly_cost = cost.active_series / 1000.0 * prices.price_per_thousand_series_month
            + cost.points_per_sec * hours_per_month * 3600.0 / 1e6 * prices.price_per_million_points;
        items.push(cost);
    }
    let totals = CostTotals {
        input_series: items.iter().map(|c| c.input_series).sum(),
        active_series: items.iter().map(|c| c.active_series).sum(),
        points_ingested: items.iter().map(|c| c.points_ingested).sum(),
        monthly_cost: items.iter().map(|c| c.monthly_cost).sum(),
        promoted_monthly_saving: promoted_savings(&state).await?.monthly_saving,
    };
    Ok(HttpResponse::Ok().json(CostReport {
        period: Period { from, to: until, secs: period },
        price_model: PriceModel::of(&state),
        totals,
        pipelines: items,
    }))
}

/// What the promoted experiments measured, added up: the monthly cost of their baselines and of their
/// candidates (the candidate is what now runs).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PromotedSavings {
    /// The configured currency (results priced in another one are not added).
    currency: String,
    promoted_experiments: u64,
    monthly_cost_before: f64,
    monthly_cost_after: f64,
    monthly_saving: f64,
}

/// The configured currency, as reports spell it (`EUR`, whatever the case in the settings).
fn currency(state: &AppState) -> String {
    let interval = state.settings.agents.heartbeat_interval_secs;
    state.settings.experiments.runtime(interval).prices.currency.to_string()
}

/// Only results priced in the configured currency are added up: a total across currencies means nothing.
async fn promoted_savings(state: &AppState) -> Result<PromotedSavings, ApiError> {
    let currency = currency(state);
    let mut savings = PromotedSavings { currency: currency.clone(), ..PromotedSavings::default() };
    let mut page = phoenix_actors::paging::PageRequest { limit: phoenix_actors::paging::MAX_PAGE_SIZE, after: None };
    loop {
        let found =
            state.store.list_experiments(Some(phoenix_actors::experiments::Phase::Promoted), page.clone()).await?;
        let costs = found.items.iter().filter_map(|e| e.results.as_ref()?.get("cost"));
        for cost in costs.filter(|cost| cost.get("currency").and_then(serde_json::Value::as_str) == Some(&currency)) {
            let number = |field: &str| cost.get(field).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            savings.promoted_experiments += 1;
            savings.monthly_cost_before += number("baseline_monthly");
            savings.monthly_cost_after += number("candidate_monthly");
            savings.monthly_saving += number("monthly_saving");
        }
        match found.next_cursor {
            Some(cursor) => page.after = Some(cursor),
            None => return Ok(savings),
        }
    }
}

/// The dashboard's first page.
#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// Agents by state, experiments by phase, deployments by status (only those that occur).
    #[serde(flatten)]
    counts: OverviewCounts,
    savings: PromotedSavings,
}

/// `GET /overview`: agents by state, experiments by phase, deployments by status, and what the promoted
/// experiments save — the dashboard's first page in one request.
#[utoipa::path(get, path = "/api/v1/overview", tag = "analytics",
    responses((status = 200, description = "Counts and savings", body = Overview)))]
pub async fn get_overview(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.overview_counts().await?;
    let savings = promoted_savings(&state).await?;
    Ok(HttpResponse::Ok().json(Overview { counts, savings }))
}

#[cfg(test)]
mod tests {
    use super::period_secs;

    #[test]
    fn periods_read_hours_days_and_seconds() {
        assert_eq!(period_secs("24h"), Ok(86_400));
        assert_eq!(period_secs("7d"), Ok(7 * 86_400));
        assert_eq!(period_secs("90"), Ok(90));
        assert!(period_secs("0h").is_err());
        assert!(period_secs("week").is_err());
        assert!(period_secs("400d").is_err());
    }
}
