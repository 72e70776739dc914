//! Agent measurements (the seed's `CacheMetric`) and cardinality analysis.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phoenix_nats::wire::MetricsBatch;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Which samples a cardinality report covers.
#[derive(Debug, Clone, Default)]
pub struct CardinalityQuery {
    /// Samples at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this experiment's.
    pub experiment_id: Option<String>,
    /// Only this agent's.
    pub agent_id: Option<String>,
    /// Only this pipeline's.
    pub pipeline: Option<String>,
    /// Only this variant's.
    pub variant: Option<String>,
}

/// Active series of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricCardinality {
    /// Metric name.
    pub metric: String,
    /// Distinct label sets seen.
    pub series: u64,
    /// For each label key, how many distinct values it took.
    pub by_label: std::collections::BTreeMap<String, u64>,
}

/// Active series by metric and label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardinalityReport {
    /// Total distinct series over all metrics.
    pub total_series: u64,
    /// Samples the report was computed from.
    pub samples: u64,
    /// Per metric, most series first.
    pub metrics: Vec<MetricCardinality>,
}

/// Stored measurements.
#[async_trait]
pub trait MetricsStore: Send + Sync {
    /// Stores a batch atomically. `batch_id` (the envelope id) makes it idempotent: a batch delivered
    /// twice is stored once (`false` = it was already there).
    async fn insert_metrics(
        &self,
        batch_id: &str,
        agent_id: &str,
        batch: &MetricsBatch,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Active series by metric and label over the matching samples.
    async fn cardinality(&self, query: &CardinalityQuery) -> Result<CardinalityReport, StoreError>;

    /// Deletes samples older than `before`; returns how many.
    async fn prune_metrics(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
