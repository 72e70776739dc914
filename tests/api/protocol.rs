//! docs/PROTOCOL.md documents every field of every agent message; this keeps it true.

use std::collections::BTreeSet;

use phoenix_nats::wire::{
    Heartbeat, HeartbeatAck, MetricsBatch, PipelineStatus, ReportedHealth, ReportedTaskStatus, ResourceUsage, Sample,
    TaskAssignment, TaskStatusReport,
};
use phoenix_nats::Envelope;
use serde::Serialize;

fn documented_fields(section: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).expect("PROTOCOL.md");
    let heading = format!("### `{section}`");
    let start = doc.find(&heading).unwrap_or_else(|| panic!("PROTOCOL.md has no section {heading}"));
    doc[start..]
        .lines()
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .map(str::trim)
        .filter(|cell| cell.starts_with('`'))
        .map(|cell| cell.trim_matches('`').to_string())
        .collect()
}

fn code_fields(value: impl Serialize) -> BTreeSet<String> {
    let json = serde_json::to_value(value).expect("serialise");
    json.as_object().expect("an object").keys().cloned().collect()
}

fn sample() -> Sample {
    Sample { metric: "m".into(), value: 1.0, labels: Default::default(), ts: chrono::Utc::now() }
}

#[test]
fn every_agent_message_is_documented_field_for_field() {
    let report = TaskStatusReport {
        task_id: "t".into(),
        attempt: Some(1),
        status: ReportedTaskStatus::Running,
        progress: None,
        result: None,
        error: None,
        retryable: true,
    };
    let pipeline = PipelineStatus {
        name: "p".into(),
        version: None,
        config_hash: "h".into(),
        state: "running".into(),
        error: None,
    };
    let heartbeat = Heartbeat {
        agent_version: "1".into(),
        health: ReportedHealth::Healthy,
        resources: ResourceUsage::default(),
        pipelines: vec![pipeline.clone()],
        seq: 1,
        stopping: false,
    };
    let assignment = TaskAssignment {
        task_id: "t".into(),
        task_type: "x".into(),
        payload: serde_json::json!({}),
        attempt: 1,
        lease_secs: 60,
    };
    let batch = MetricsBatch {
        pipeline: "p".into(),
        experiment_id: None,
        variant: None,
        seq: Some(1),
        samples: vec![sample()],
    };
    let cases = [
        ("envelope", code_fields(Envelope::new("heartbeat", ()).with_auth("credential"))),
        ("heartbeat", code_fields(&heartbeat)),
        ("ResourceUsage", code_fields(ResourceUsage::default())),
        ("PipelineStatus", code_fields(&pipeline)),
        ("heartbeat_ack", code_fields(HeartbeatAck { interval_secs: 10, pending_tasks: 0 })),
        ("task", code_fields(&assignment)),
        ("task_status", code_fields(&report)),
        ("metrics", code_fields(&batch)),
        ("Sample", code_fields(sample())),
    ];
    for (section, fields) in cases {
        assert_eq!(documented_fields(section), fields, "PROTOCOL.md section `{section}` differs from the code");
    }
}

#[test]
fn every_agent_route_of_the_route_table_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).expect("PROTOCOL.md");
    for endpoint in phoenix::http::routes::endpoints() {
        if endpoint.path.starts_with("/api/v1/agent/") {
            let generic = endpoint.path.replace("{id}", "{task_id}");
            assert!(
                doc.contains(&format!("{} {}", endpoint.method, generic)),
                "{} {} is not in PROTOCOL.md",
                endpoint.method,
                endpoint.path
            );
        }
    }
}
