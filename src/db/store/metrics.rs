use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use phoenix_actors::labels::Labels;
use phoenix_actors::store::{CardinalityQuery, CardinalityReport, MetricCardinality, MetricsStore};
use phoenix_actors::StoreError;
use phoenix_nats::wire::MetricsBatch;

use super::convert::{from_json, to_db_time, to_json};
use super::DieselStore;
use crate::db::connection::MultiBackend;
use crate::db::models::MetricSampleRow;
use crate::db::schema::metric_samples;
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};

/// Rows per INSERT: 10 columns x 500 rows stays far below SQLite's limit of bound variables.
const INSERT_CHUNK: usize = 500;

/// Most distinct series a cardinality report reads; a report over more says so via `samples`.
const CARDINALITY_SCAN_LIMIT: i64 = 1_000_000;

fn rows(
    batch_id: &str,
    agent_id: &str,
    batch: &MetricsBatch,
    received_at: DateTime<Utc>,
) -> Result<Vec<MetricSampleRow>, DbError> {
    batch
        .samples
        .iter()
        .enumerate()
        .map(|(index, sample)| {
            Ok(MetricSampleRow {
                // Deterministic ids: a batch delivered twice collides with itself and is stored once. The
                // agent id is part of it, so one agent's envelope ids can never suppress another's batch.
                id: format!("{agent_id}:{batch_id}:{index}"),
                experiment_id: batch.experiment_id.clone(),
                agent_id: agent_id.to_string(),
                pipeline: batch.pipeline.clone(),
                variant: batch.variant.clone(),
                metric: sample.metric.clone(),
                value: sample.value,
                labels: to_json(&sample.labels)?,
                sampled_at: to_db_time(sample.ts),
                received_at: to_db_time(received_at),
                batch_seq: batch.seq.and_then(|seq| i64::try_from(seq).ok()),
            })
        })
        .collect()
}

fn insert(conn: &mut DbConnection, rows: &[MetricSampleRow]) -> Result<bool, DbError> {
    let outcome = write_transaction::<(), diesel::result::Error, _>(conn, |tx| {
        for chunk in rows.chunks(INSERT_CHUNK) {
            // Multi-row INSERT has a different SQL shape per backend, which Diesel's MultiConnection
            // cannot express: run it on the concrete connection.
            match tx {
                DbConnection::Pg(pg) => diesel::insert_into(metric_samples::table).values(chunk).execute(pg)?,
                DbConnection::Sqlite(lite) => diesel::insert_into(metric_samples::table).values(chunk).execute(lite)?,
            };
        }
        Ok(())
    });
    match outcome {
        Ok(()) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn filtered(query: &CardinalityQuery) -> metric_samples::BoxedQuery<'static, MultiBackend> {
    let mut boxed = metric_samples::table.into_boxed();
    if let Some(since) = query.since {
        boxed = boxed.filter(metric_samples::sampled_at.ge(to_db_time(since)));
    }
    if let Some(experiment) = &query.experiment_id {
        boxed = boxed.filter(metric_samples::experiment_id.eq(experiment.clone()));
    }
    if let Some(agent) = &query.agent_id {
        boxed = boxed.filter(metric_samples::agent_id.eq(agent.clone()));
    }
    if let Some(pipeline) = &query.pipeline {
        boxed = boxed.filter(metric_samples::pipeline.eq(pipeline.clone()));
    }
    if let Some(variant) = &query.variant {
        boxed = boxed.filter(metric_samples::variant.eq(variant.clone()));
    }
    boxed
}

fn cardinality(conn: &mut DbConnection, query: &CardinalityQuery) -> Result<CardinalityReport, DbError> {
    let samples: i64 = filtered(query).count().get_result(conn)?;
    let series: Vec<(String, String)> = filtered(query)
        .select((metric_samples::metric, metric_samples::labels))
        .distinct()
        .limit(CARDINALITY_SCAN_LIMIT)
        .load(conn)?;
    let mut per_metric: BTreeMap<String, (u64, BTreeMap<String, BTreeSet<String>>)> = BTreeMap::new();
    for (metric, labels) in series {
        let labels: Labels = from_json("metric_samples.labels", &labels)?;
        let (count, values) = per_metric.entry(metric).or_default();
        *count += 1;
        for (key, value) in labels {
            values.entry(key).or_default().insert(value);
        }
    }
    let mut metrics: Vec<MetricCardinality> = per_metric
        .into_iter()
        .map(|(metric, (series, values))| MetricCardinality {
            metric,
            series,
            by_label: values.into_iter().map(|(key, distinct)| (key, distinct.len() as u64)).collect(),
        })
        .collect();
    metrics.sort_by(|a, b| b.series.cmp(&a.series).then_with(|| a.metric.cmp(&b.metric)));
    Ok(CardinalityReport {
        total_series: metrics.iter().map(|m| m.series).sum(),
        samples: u64::try_from(samples).unwrap_or(0),
        metrics,
    })
}

#[async_trait]
impl MetricsStore for DieselStore {
    async fn insert_metrics(
        &self,
        batch_id: &str,
        agent_id: &str,
        batch: &MetricsBatch,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows = rows(batch_id, agent_id, batch, received_at)?;
        self.run(move |conn| insert(conn, &rows)).await
    }

    async fn cardinality(&self, query: &CardinalityQuery) -> Result<CardinalityReport, StoreError> {
        let query = query.clone();
        self.run(move |conn| cardinality(conn, &query)).await
    }

    async fn prune_metrics(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.run(move |conn| {
            let deleted =
                diesel::delete(metric_samples::table.filter(metric_samples::sampled_at.lt(to_db_time(before))))
                    .execute(conn)?;
            Ok(deleted as u64)
        })
        .await
    }
}
