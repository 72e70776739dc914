//! Bounds on what an agent may send. Every string of a heartbeat, a task report and a measurement batch
//! has a limit (a 1 MB `agent_version` would be stored, served by `GET /agents` and make the agent's
//! events too large to send), and samples must be stamped near the server's time: a sample far in the
//! future or past would fall outside every experiment window without anyone being told. Both
//! transports refuse a message with any problem (HTTP 422 naming each field, NATS dropped and counted
//! as `malformed`). The limits are in the table of `docs/OPERATIONS.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use phoenix_nats::wire::{Heartbeat, MetricsBatch, TaskStatusReport};

use crate::limits::{too_long, LABELS};

/// Most samples one metrics batch may carry.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// Characters in an agent's version string.
pub const AGENT_VERSION_CHARS: usize = 100;

/// Characters in a pipeline's name (on the agent) and in a config hash.
pub const PIPELINE_NAME_CHARS: usize = 200;

/// Characters in an error an agent reports (a pipeline's or a task's).
pub const ERROR_CHARS: usize = 4_000;

/// Pipelines one heartbeat may report.
pub const PIPELINES_PER_HEARTBEAT: usize = 64;

/// Characters in a metric name, in a label key and in a label value of a sample.
pub const METRIC_NAME_CHARS: usize = 200;
pub const LABEL_KEY_CHARS: usize = 100;
pub const LABEL_VALUE_CHARS: usize = 1_000;

/// Bytes of a task report's `progress` or `result` document (as JSON).
pub const REPORT_DETAIL_BYTES: usize = 64 * 1024;

/// How far ahead of the server's clock a sample may be stamped.
pub const SAMPLE_LEAD_SECS: i64 = 5 * 60;

/// How long before its batch was sent a sample may have been taken (an agent's outbox keeps batches
/// while it cannot reach the server). Judged against when the batch reached Phoenix — over NATS when
/// JetStream took it in — so batches that waited in the stream through a server outage still count.
pub const SAMPLE_AGE_SECS: i64 = 60 * 60;

/// The states a pipeline status may have.
pub const PIPELINE_STATES: [&str; 3] = ["running", "failed", "stopped"];

/// A problem with one field: `(path, message)`, as the HTTP problem document lists them.
pub type Problem = (String, String);

/// Every problem of a heartbeat.
pub fn heartbeat_problems(heartbeat: &Heartbeat) -> Vec<Problem> {
    let mut problems: Vec<Problem> =
        too_long("body.agent_version", &heartbeat.agent_version, AGENT_VERSION_CHARS).into_iter().collect();
    if heartbeat.pipelines.len() > PIPELINES_PER_HEARTBEAT {
        problems.push(("body.pipelines".into(), format!("at most {PIPELINES_PER_HEARTBEAT} pipelines")));
    }
    for (i, pipeline) in heartbeat.pipelines.iter().enumerate().take(PIPELINES_PER_HEARTBEAT) {
        let path = |field: &str| format!("body.pipelines[{i}].{field}");
        problems.extend(name_problem(&path("name"), &pipeline.name));
        problems.extend(too_long(&path("config_hash"), &pipeline.config_hash, PIPELINE_NAME_CHARS));
        if !PIPELINE_STATES.contains(&pipeline.state.as_str()) {
            problems.push((path("state"), format!("must be one of {}", PIPELINE_STATES.join(", "))));
        }
        if let Some(error) = &pipeline.error {
            problems.extend(too_long(&path("error"), error, ERROR_CHARS));
        }
    }
    problems
}

/// Every problem of a task status report.
pub fn report_problems(report: &TaskStatusReport) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    if let Some(error) = &report.error {
        problems.extend(too_long("body.error", error, ERROR_CHARS));
    }
    for (field, detail) in [("progress", &report.progress), ("result", &report.result)] {
        let bytes = detail.as_ref().map_or(0, |d| d.to_string().len());
        if bytes > REPORT_DETAIL_BYTES {
            problems.push((format!("body.{field}"), format!("must be at most {REPORT_DETAIL_BYTES} bytes as JSON")));
        }
    }
    problems
}

/// Every problem of a metrics batch that reached Phoenix at `now`.
pub fn batch_problems(batch: &MetricsBatch, now: DateTime<Utc>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = name_problem("body.pipeline", &batch.pipeline).into_iter().collect();
    for (field, value) in [("experiment_id", &batch.experiment_id), ("variant", &batch.variant)] {
        if let Some(value) = value {
            problems.extend(name_problem(&format!("body.{field}"), value));
        }
    }
    if batch.samples.len() > MAX_SAMPLES_PER_BATCH {
        problems.push(("body.samples".into(), format!("at most {MAX_SAMPLES_PER_BATCH} samples per batch")));
    }
    let (earliest, latest) = (now - Duration::seconds(SAMPLE_AGE_SECS), now + Duration::seconds(SAMPLE_LEAD_SECS));
    for (i, sample) in batch.samples.iter().enumerate().take(MAX_SAMPLES_PER_BATCH) {
        let path = |field: &str| format!("body.samples[{i}].{field}");
        if sample.metric.trim().is_empty() {
            problems.push((path("metric"), "must not be empty".into()));
        }
        problems.extend(too_long(&path("metric"), &sample.metric, METRIC_NAME_CHARS));
        if !sample.value.is_finite() {
            problems.push((path("value"), "must be a finite number".into()));
        }
        problems.extend(label_problems(&path("labels"), &sample.labels));
        if sample.ts < earliest || sample.ts > latest {
            problems.push((
                path("ts"),
                format!(
                    "must be within {SAMPLE_AGE_SECS} s before and {SAMPLE_LEAD_SECS} s after the server's time \
                     ({now}): check the agent's clock"
                ),
            ));
        }
    }
    problems
}

fn name_problem(path: &str, name: &str) -> Option<Problem> {
    (name.trim().is_empty() || name.chars().count() > PIPELINE_NAME_CHARS)
        .then(|| (path.to_string(), format!("must be 1 to {PIPELINE_NAME_CHARS} characters")))
}

fn label_problems(path: &str, labels: &BTreeMap<String, String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    if labels.len() > LABELS {
        problems.push((path.to_string(), format!("at most {LABELS} labels")));
    }
    for (key, value) in labels.iter().take(LABELS) {
        if key.is_empty() || key.chars().count() > LABEL_KEY_CHARS {
            problems.push((path.to_string(), format!("label keys must be 1 to {LABEL_KEY_CHARS} characters")));
        }
        problems.extend(too_long(&format!("{path}.{key}"), value, LABEL_VALUE_CHARS));
    }
    problems
}

#[cfg(test)]
mod tests {
    use phoenix_nats::wire::{PipelineStatus, ReportedHealth, ReportedTaskStatus, Sample};
    use serde_json::json;

    use super::*;

    fn paths(problems: Vec<Problem>) -> Vec<String> {
        problems.into_iter().map(|(path, _)| path).collect()
    }

    fn heartbeat(agent_version: &str, pipelines: Vec<PipelineStatus>) -> Heartbeat {
        Heartbeat {
            agent_version: agent_version.into(),
            health: ReportedHealth::Healthy,
            resources: Default::default(),
            pipelines,
            seq: 1,
            stopping: false,
        }
    }

    fn status(name: &str, state: &str, error: Option<String>) -> PipelineStatus {
        PipelineStatus { name: name.into(), version: None, config_hash: "h".into(), state: state.into(), error }
    }

    #[test]
    fn a_heartbeat_names_each_field_past_its_limit() {
        assert!(heartbeat_problems(&heartbeat("1.2.3", vec![status("p", "running", None)])).is_empty());
        let huge = "x".repeat(AGENT_VERSION_CHARS + 1);
        let pipelines = vec![
            status("", "running", None),
            status("p", "exploded", Some("e".repeat(ERROR_CHARS + 1))),
            status(&"n".repeat(PIPELINE_NAME_CHARS + 1), "failed", Some("e".repeat(ERROR_CHARS))),
        ];
        assert_eq!(
            paths(heartbeat_problems(&heartbeat(&huge, pipelines))),
            [
                "body.agent_version",
                "body.pipelines[0].name",
                "body.pipelines[1].state",
                "body.pipelines[1].error",
                "body.pipelines[2].name"
            ]
        );
        let many = vec![status("p", "running", None); PIPELINES_PER_HEARTBEAT + 1];
        assert_eq!(paths(heartbeat_problems(&heartbeat("1", many))), ["body.pipelines"]);
    }

    #[test]
    fn a_report_bounds_its_error_and_documents() {
        let mut report = TaskStatusReport {
            task_id: "t".into(),
            attempt: Some(1),
            status: ReportedTaskStatus::Failed,
            progress: Some(json!({"done": 1})),
            result: None,
            error: Some("e".repeat(ERROR_CHARS)),
            retryable: true,
        };
        assert!(report_problems(&report).is_empty());
        report.error = Some("e".repeat(ERROR_CHARS + 1));
        report.result = Some(json!("r".repeat(REPORT_DETAIL_BYTES)));
        assert_eq!(paths(report_problems(&report)), ["body.error", "body.result"]);
    }

    fn sample(metric: &str, labels: &[(&str, &str)], ts: DateTime<Utc>) -> Sample {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Sample { metric: metric.into(), value: 1.0, labels, ts }
    }

    fn batch(samples: Vec<Sample>) -> MetricsBatch {
        MetricsBatch { pipeline: "p".into(), experiment_id: None, variant: None, seq: Some(1), samples }
    }

    #[test]
    fn a_batch_bounds_names_labels_and_times() {
        let now = Utc::now();
        let long_value = "v".repeat(LABEL_VALUE_CHARS + 1);
        let long_key = "k".repeat(LABEL_KEY_CHARS + 1);
        let samples = vec![
            sample("ok", &[("pid", "1")], now - Duration::seconds(SAMPLE_AGE_SECS - 1)),
            sample(&"m".repeat(METRIC_NAME_CHARS + 1), &[], now),
            sample("m", &[("pid", &long_value), (&long_key, "1")], now),
            sample("m", &[], now + Duration::seconds(SAMPLE_LEAD_SECS + 1)),
            sample("m", &[], now - Duration::seconds(SAMPLE_AGE_SECS + 1)),
        ];
        assert_eq!(
            paths(batch_problems(&batch(samples), now)),
            [
                "body.samples[1].metric",
                "body.samples[2].labels",
                "body.samples[2].labels.pid",
                "body.samples[3].ts",
                "body.samples[4].ts"
            ]
        );
        let too_many: Vec<(String, String)> = (0..=LABELS).map(|i| (format!("k{i}"), "v".into())).collect();
        let labels: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(paths(batch_problems(&batch(vec![sample("m", &labels, now)]), now)), ["body.samples[0].labels"]);
    }

    #[test]
    fn a_batch_names_an_empty_pipeline_and_a_blank_metric() {
        let mut empty = batch(vec![sample(" ", &[], Utc::now())]);
        empty.pipeline = String::new();
        empty.variant = Some("x".repeat(PIPELINE_NAME_CHARS + 1));
        assert_eq!(
            paths(batch_problems(&empty, Utc::now())),
            ["body.pipeline", "body.variant", "body.samples[0].metric"]
        );
    }
}
