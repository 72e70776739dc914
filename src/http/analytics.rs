//! `/api/v1/metrics/*`: what the agents' measurements say.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use phoenix_actors::store::CardinalityQuery;
use serde::Deserialize;

use super::{ApiError, AppState};

/// Longest window a cardinality report may cover.
const MAX_WINDOW_SECS: u64 = 31 * 24 * 3600;

#[derive(Debug, Deserialize)]
pub struct CardinalityParams {
    /// Samples of the last this many seconds (default 300).
    window_secs: Option<u64>,
    experiment_id: Option<String>,
    agent_id: Option<String>,
    pipeline: Option<String>,
    variant: Option<String>,
}

/// `GET /metrics/cardinality`: active series by metric and label key, from the stored samples.
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

#[derive(serde::Serialize)]
struct CardinalityAnswer {
    window_secs: u64,
    #[serde(flatten)]
    report: phoenix_actors::store::CardinalityReport,
}
