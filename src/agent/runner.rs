//! The pipelines an agent runs, and the tasks that change them. Tasks are idempotent by id: a task
//! delivered again (a redelivery after a reconnect or an expired lease) is acknowledged, not re-run.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::Utc;
use phoenix_nats::wire::{MetricsBatch, PipelineStatus, ReportedTaskStatus, Sample, TaskAssignment, TaskStatusReport};
use serde::Deserialize;
use serde_json::{json, Value};

use phoenix_pipeline::config::{config_hash, validate_text, PipelineConfig};
use phoenix_pipeline::engine::{IntervalStats, Pipeline};
use phoenix_pipeline::net;
use phoenix_pipeline::sources::shared::ReceiverHub;
use phoenix_pipeline::sources::synthetic::{SyntheticConfig, SyntheticSource};
use phoenix_pipeline::sources::Source;

/// Task ids remembered to recognise redeliveries.
const REMEMBERED_TASKS: usize = 10_000;
/// Most critical processes one pipeline measures (each is a sample in every batch).
const MAX_CRITICAL: usize = 1000;

/// `pipeline.apply`'s payload.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyPayload {
    /// The pipeline's name on the agent (an apply with the same name replaces it).
    pub pipeline: String,
    /// The rendered config.
    pub config: String,
    /// Its content hash; checked when given.
    pub config_hash: Option<String>,
    pub version: Option<i64>,
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
    pub deployment_id: Option<String>,
    /// Process names whose presence in the output is measured.
    #[serde(default)]
    pub critical: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemovePayload {
    pipeline: String,
}

struct Running {
    pipeline: Pipeline,
    spec: ApplyPayload,
    hash: String,
    last_error: Option<String>,
    /// Measurement batches sent for this pipeline by this process (their sequence numbers).
    batches: u64,
    /// The last interval's measurement (for the agent's metrics endpoint).
    last: IntervalStats,
}

/// The running pipelines and what the agent remembers of its tasks.
pub struct Runner {
    pipelines: BTreeMap<String, Running>,
    /// Outcomes of finished tasks, replayed when a task is delivered again.
    done: HashMap<String, (ReportedTaskStatus, Option<Value>, Option<String>)>,
    done_order: VecDeque<String>,
    /// Why a pipeline makes the agent degraded (its last apply failed, or it could not be restored).
    degraded: BTreeMap<String, String>,
    /// The load simulation: one source, its points fed to every pipeline each interval.
    loadsim: Option<SyntheticSource>,
    /// Where `file` exporters write.
    export_dir: std::path::PathBuf,
    /// Receivers shared by the pipelines that name one configured alike (an experiment's variants
    /// beside a deployment get exactly the same input).
    receivers: ReceiverHub,
}

fn report(
    task: &TaskAssignment,
    status: ReportedTaskStatus,
    result: Option<Value>,
    error: Option<String>,
    retryable: bool,
) -> TaskStatusReport {
    TaskStatusReport {
        task_id: task.task_id.clone(),
        attempt: Some(task.attempt),
        status,
        progress: None,
        result,
        error,
        retryable,
    }
}

impl Runner {
    /// A runner whose `file` exporters write in `export_dir`.
    pub fn new(export_dir: std::path::PathBuf) -> Runner {
        Runner {
            pipelines: BTreeMap::new(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
            degraded: BTreeMap::new(),
            loadsim: None,
            export_dir,
            receivers: ReceiverHub::default(),
        }
    }

    /// Runs a task and says how it ended (never panics on bad input: that is a failed task).
    pub fn execute(&mut self, task: &TaskAssignment) -> TaskStatusReport {
        if let Some((status, result, error)) = self.done.get(&task.task_id) {
            // Delivered again: the first run's outcome, for this attempt (never a second run).
            return report(task, *status, result.clone(), error.clone(), false);
        }
        let outcome = match task.task_type.as_str() {
            "pipeline.apply" => self.apply(&task.payload),
            "pipeline.remove" => self.remove(&task.payload),
            "loadsim.start" => self.start_loadsim(&task.payload),
            "loadsim.stop" => Ok(self.stop_loadsim()),
            other => Err(format!(
                "unknown task type '{other}': this agent runs pipeline.apply, pipeline.remove, loadsim.start and loadsim.stop"
            )),
        };
        // Retrying the same input cannot help: the failures here are about the task itself.
        let done = match outcome {
            Ok(result) => report(task, ReportedTaskStatus::Succeeded, Some(result), None, false),
            Err(error) => report(task, ReportedTaskStatus::Failed, None, Some(error), false),
        };
        self.remember(&done);
        done
    }

    /// Starts a pipeline applied before this process started (restored from the state directory).
    pub fn restore(&mut self, spec: ApplyPayload) -> Result<(), String> {
        let name = spec.pipeline.clone();
        self.try_apply(spec).map(|_| ()).inspect_err(|e| {
            self.degraded.insert(name, format!("could not be restored after a restart: {e}"));
        })
    }

    /// What is applied now, to restore after a restart.
    pub fn applied(&self) -> Vec<ApplyPayload> {
        self.pipelines.values().map(|r| r.spec.clone()).collect()
    }

    /// True when this task id ran before (a redelivery).
    pub fn already_done(&self, task: &TaskAssignment) -> bool {
        self.done.contains_key(&task.task_id)
    }

    /// Remembers the outcome of a task run elsewhere (by the collector supervisor).
    pub fn mark_done(&mut self, outcome: &TaskStatusReport) {
        self.remember(outcome);
    }

    fn remember(&mut self, outcome: &TaskStatusReport) {
        let entry = (outcome.status, outcome.result.clone(), outcome.error.clone());
        if self.done.insert(outcome.task_id.clone(), entry).is_none() {
            self.done_order.push_back(outcome.task_id.clone());
        }
        while self.done_order.len() > REMEMBERED_TASKS {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// Validates and starts the new pipeline, checks it with one interval, then swaps it in. On any
    /// failure the running pipeline (the last known good) keeps running and the agent is degraded.
    fn apply(&mut self, payload: &Value) -> Result<Value, String> {
        let spec: ApplyPayload =
            serde_json::from_value(payload.clone()).map_err(|e| format!("invalid pipeline.apply payload: {e}"))?;
        let outcome = self.try_apply(spec.clone());
        match &outcome {
            Ok(_) => {
                self.degraded.remove(&spec.pipeline);
            }
            Err(e) => {
                let kept = if self.pipelines.contains_key(&spec.pipeline) {
                    "the previous version keeps running"
                } else {
                    "nothing was running"
                };
                self.degraded.insert(spec.pipeline.clone(), format!("apply failed ({kept}): {e}"));
            }
        }
        outcome
    }

    fn try_apply(&mut self, spec: ApplyPayload) -> Result<Value, String> {
        if spec.pipeline.trim().is_empty() || spec.pipeline.len() > 200 {
            return Err("the pipeline name must be 1 to 200 characters".into());
        }
        if spec.critical.len() > MAX_CRITICAL {
            return Err(format!("at most {MAX_CRITICAL} critical processes"));
        }
        let hash = config_hash(&spec.config);
        if let Some(expected) = &spec.config_hash {
            if *expected != hash {
                return Err(format!("config hash mismatch: the task says {expected}, the config is {hash}"));
            }
        }
        let (config, validation) = validate_text(&spec.config);
        let config = match config {
            Some(config) if validation.is_valid() => config,
            _ => return Err(format!("invalid config: {}", join(validation.errors.iter().map(ToString::to_string)))),
        };
        self.check_addresses_free(&spec.pipeline, &config)?;
        // The previous version steps aside first: it may hold what the new one needs (a port). If the
        // new one does not come up, the previous one is started again from its spec.
        // What its receivers took in since its last interval goes to whichever version runs next, so
        // a new version loses no point a sender was told was accepted.
        let mut pending = Vec::new();
        let previous = self.pipelines.remove(&spec.pipeline).map(|mut old| {
            pending = old.pipeline.take_pending();
            (old.spec, old.batches)
        });
        match self.start(&config, &spec, &mut pending) {
            Ok((pipeline, stats)) => {
                let result =
                    json!({"pipeline": spec.pipeline, "config_hash": hash, "output_series": stats.output_series});
                // A replaced pipeline keeps counting, so its batches stay one gap-free sequence.
                let batches = previous.map_or(0, |(_, batches)| batches);
                let running = Running { pipeline, spec, hash, last_error: None, batches, last: stats };
                self.pipelines.insert(running.spec.pipeline.clone(), running);
                Ok(result)
            }
            Err(e) => {
                if let Some((old_spec, batches)) = previous {
                    self.restart_previous(old_spec, batches, &mut pending);
                }
                Err(e)
            }
        }
    }

    /// Refuses a config that would listen where another running pipeline listens (its own previous
    /// version may: it hands the address over), unless both name one receiver configured alike, which
    /// they then share.
    fn check_addresses_free(&self, name: &str, config: &PipelineConfig) -> Result<(), String> {
        let wanted = net::listen_addresses(config);
        for (other, running) in self.pipelines.iter().filter(|(other, _)| *other != name) {
            let Some(theirs) = validate_text(&running.spec.config).0 else { continue };
            let theirs = net::listen_addresses(&theirs);
            for mine in &wanted {
                if let Some(taken) = theirs.iter().find(|t| mine.conflicts_with(t)) {
                    return Err(format!(
                        "{}: {} is taken by pipeline '{other}' ({}, configured otherwise) on this agent",
                        mine.path, mine.addr, taken.path
                    ));
                }
            }
        }
        Ok(())
    }

    /// Builds a pipeline and runs one interval as its health check, with `pending` (points a previous
    /// version had received) as part of its input; they stay in `pending` when it cannot be built.
    fn start(
        &mut self,
        config: &PipelineConfig,
        spec: &ApplyPayload,
        pending: &mut Vec<phoenix_pipeline::model::Point>,
    ) -> Result<(Pipeline, IntervalStats), String> {
        let mut pipeline =
            Pipeline::build_in(config, None, spec.critical.clone(), &self.export_dir, Some(&self.receivers)).map_err(
                |problems| format!("cannot start the pipeline: {}", join(problems.iter().map(ToString::to_string))),
            )?;
        let (stats, errors) = pipeline.run_interval_with(Utc::now().timestamp_millis(), std::mem::take(pending));
        if !errors.is_empty() {
            return Err(format!("health check failed: {}", errors.join("; ")));
        }
        Ok((pipeline, stats))
    }

    fn restart_previous(
        &mut self,
        spec: ApplyPayload,
        batches: u64,
        pending: &mut Vec<phoenix_pipeline::model::Point>,
    ) {
        let (config, _) = validate_text(&spec.config);
        let restarted = config
            .ok_or_else(|| "its config no longer parses".to_string())
            .and_then(|config| self.start(&config, &spec, pending));
        match restarted {
            Ok((pipeline, last)) => {
                let hash = config_hash(&spec.config);
                let running = Running { pipeline, spec, hash, last_error: None, batches, last };
                self.pipelines.insert(running.spec.pipeline.clone(), running);
            }
            Err(e) => {
                self.degraded
                    .insert(spec.pipeline.clone(), format!("the previous version could not be restarted: {e}"));
            }
        }
    }

    /// Starts (or replaces) a load simulation: synthetic processes of a profile from the pipelines
    /// module, added to the input of every pipeline — the same points for each, so a baseline and a
    /// candidate running side by side see identical load.
    fn start_loadsim(&mut self, payload: &Value) -> Result<Value, String> {
        let config: SyntheticConfig =
            serde_json::from_value(payload.clone()).map_err(|e| format!("invalid loadsim.start payload: {e}"))?;
        let source = SyntheticSource::new(config.clone(), "loadsim")
            .map_err(|problems| join(problems.iter().map(ToString::to_string)))?;
        self.loadsim = Some(source);
        Ok(json!({"loadsim": config, "pipelines": self.pipelines.len()}))
    }

    fn stop_loadsim(&mut self) -> Value {
        json!({"stopped": self.loadsim.take().is_some()})
    }

    fn remove(&mut self, payload: &Value) -> Result<Value, String> {
        let spec: RemovePayload =
            serde_json::from_value(payload.clone()).map_err(|e| format!("invalid pipeline.remove payload: {e}"))?;
        let removed = self.pipelines.remove(&spec.pipeline).is_some();
        self.degraded.remove(&spec.pipeline);
        Ok(json!({"pipeline": spec.pipeline, "removed": removed}))
    }

    /// Runs one interval of every pipeline; one measurement batch per pipeline.
    pub fn run_interval(&mut self) -> Vec<MetricsBatch> {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        // One simulation step per interval, the same points for every pipeline.
        let load = self.loadsim.as_mut().map(|sim| sim.collect(now_ms)).unwrap_or_default();
        let mut batches = Vec::with_capacity(self.pipelines.len());
        for (name, running) in &mut self.pipelines {
            let (stats, errors) = running.pipeline.run_interval_with(now_ms, load.clone());
            if !stats.refusals.is_empty() {
                // Once per interval and pipeline, with the first reasons: the counts go with the samples.
                tracing::warn!(pipeline = %name, dropped = stats.dropped_points, reasons = ?stats.refusals, "points could not be merged");
            }
            running.last_error = (!errors.is_empty()).then(|| errors.join("; "));
            running.batches += 1;
            batches.push(measurement(name, &running.spec, &stats, now, running.batches));
            running.last = stats;
        }
        batches
    }

    /// Every pipeline's own telemetry as points, for the agent's metrics endpoint.
    pub fn self_metrics(&self) -> Vec<phoenix_pipeline::model::Point> {
        let now_ns = phoenix_pipeline::model::millis_to_nanos(Utc::now().timestamp_millis());
        self.pipelines
            .iter()
            .flat_map(|(name, running)| {
                phoenix_pipeline::telemetry::points(name, &running.pipeline.telemetry(), &running.last, now_ns)
            })
            .collect()
    }

    /// The agent's own view of its health, for heartbeats.
    pub fn is_degraded(&self) -> bool {
        !self.degraded.is_empty() || self.pipelines.values().any(|r| r.last_error.is_some())
    }

    /// What each running pipeline is, for heartbeats.
    pub fn statuses(&self) -> Vec<PipelineStatus> {
        self.pipelines
            .iter()
            .map(|(name, running)| PipelineStatus {
                name: name.clone(),
                version: running.spec.version,
                config_hash: running.hash.clone(),
                state: if running.last_error.is_some() { "failed" } else { "running" }.into(),
                error: running.last_error.clone(),
            })
            .collect()
    }
}

/// `pipeline.apply` / `pipeline.remove` in external collector mode.
pub async fn run_on_collectors(
    collectors: &mut super::collector::Collectors,
    task: &TaskAssignment,
) -> TaskStatusReport {
    let outcome = match task.task_type.as_str() {
        "pipeline.apply" => match serde_json::from_value::<ApplyPayload>(task.payload.clone()) {
            Ok(spec) => collectors.apply(spec).await,
            Err(e) => Err(format!("invalid pipeline.apply payload: {e}")),
        },
        "pipeline.remove" => match serde_json::from_value::<RemovePayload>(task.payload.clone()) {
            Ok(spec) => Ok(collectors.remove(&spec.pipeline).await),
            Err(e) => Err(format!("invalid pipeline.remove payload: {e}")),
        },
        // The simulated load is fed into Phoenix's own pipelines; an external collector reads its own
        // sources, so accepting the task would report a load test that never happened.
        "loadsim.start" => {
            Err("load simulation is not available with --collector-bin: the external collector reads its own sources"
                .into())
        }
        "loadsim.stop" => Ok(json!({"stopped": false})),
        other => Err(format!("unknown task type '{other}'")),
    };
    match outcome {
        Ok(result) => report(task, ReportedTaskStatus::Succeeded, Some(result), None, false),
        Err(error) => report(task, ReportedTaskStatus::Failed, None, Some(error), false),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join("; ")
}

/// One pipeline's self-measurement as samples: what went in, what came out, what it cost.
pub fn measurement(
    name: &str,
    spec: &ApplyPayload,
    stats: &IntervalStats,
    now: chrono::DateTime<Utc>,
    seq: u64,
) -> MetricsBatch {
    let mut labels = BTreeMap::new();
    if let Some(version) = spec.version {
        labels.insert("version".to_string(), version.to_string());
    }
    if let Some(deployment) = &spec.deployment_id {
        labels.insert("deployment_id".to_string(), deployment.clone());
    }
    let sample = |metric: &str, value: f64, extra: Option<(&str, &str)>| {
        let mut labels = labels.clone();
        if let Some((key, value)) = extra {
            labels.insert(key.to_string(), value.to_string());
        }
        Sample { metric: metric.to_string(), value, labels, ts: now }
    };
    let mut samples = vec![
        sample("pipeline.input.series", stats.input_series as f64, None),
        sample("pipeline.input.points", stats.input_points as f64, None),
        sample("pipeline.output.series", stats.output_series as f64, None),
        sample("pipeline.output.points", stats.output_points as f64, None),
        sample("pipeline.cpu.seconds", stats.cpu_seconds, None),
        sample("pipeline.memory.bytes", stats.memory_bytes as f64, None),
        sample("pipeline.over_limit.points", stats.over_limit_points as f64, None),
        sample("pipeline.dropped.points", stats.dropped_points as f64, None),
        sample("pipeline.export.undelivered", stats.undelivered as f64, None),
    ];
    for process in &spec.critical {
        let present = if stats.critical_present.contains(process) { 1.0 } else { 0.0 };
        samples.push(sample("pipeline.critical.present", present, Some(("process", process))));
    }
    // A name the server would refuse as a label would cost the whole batch: such a metric is left out.
    let reportable = |m: &&phoenix_pipeline::metric_stats::MetricStats| {
        m.metric.chars().count() <= phoenix_actors::gateway::input::LABEL_VALUE_CHARS
    };
    for metric in stats.per_metric.iter().filter(reportable) {
        let of = Some(("metric", metric.metric.as_str()));
        samples.push(sample("pipeline.metric.input_series", metric.input_series as f64, of));
        samples.push(sample("pipeline.metric.output_series", metric.output_series as f64, of));
        if let Some(total) = metric.output_total {
            samples.push(sample("pipeline.metric.output_total", total, of));
        }
    }
    MetricsBatch {
        pipeline: name.to_string(),
        experiment_id: spec.experiment_id.clone(),
        variant: spec.variant.clone(),
        seq: Some(seq),
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPK: &str = "receivers: {synthetic: {profile: steady, processes: 100}}\nprocessors: {topk: {k: 5}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [synthetic], processors: [topk], exporters: [count]}}}\n";

    fn task(id: &str, task_type: &str, payload: Value) -> TaskAssignment {
        TaskAssignment { task_id: id.into(), task_type: task_type.into(), payload, attempt: 1, lease_secs: 60 }
    }

    #[test]
    fn apply_runs_a_pipeline_that_measures_itself() {
        let mut runner = Runner::new(std::env::temp_dir());
        let done = runner.execute(&task(
            "t1",
            "pipeline.apply",
            json!({"pipeline": "p", "config": TOPK, "critical": ["nginx"]}),
        ));
        assert_eq!(done.status, ReportedTaskStatus::Succeeded, "{done:?}");
        let batches = runner.run_interval();
        let value = |metric: &str| batches[0].samples.iter().find(|s| s.metric == metric).map(|s| s.value);
        assert_eq!(value("pipeline.input.series"), Some(500.0));
        assert_eq!(value("pipeline.output.series"), Some(30.0), "top 5 + other, 5 metrics");
        assert!(batches[0].samples.iter().any(|s| s.metric == "pipeline.critical.present"));
        assert!(!runner.is_degraded());
    }

    #[test]
    fn points_over_a_cardinality_limit_and_dropped_points_are_reported() {
        let mut runner = Runner::new(std::env::temp_dir());
        let config = "receivers: {synthetic: {profile: steady, processes: 100}}\nprocessors: {cardinality_limit: {max_series: 3, action: drop}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [synthetic], processors: [cardinality_limit], exporters: [count]}}}\n";
        let done = runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "p", "config": config})));
        assert_eq!(done.status, ReportedTaskStatus::Succeeded, "{done:?}");
        let batches = runner.run_interval();
        let value = |metric: &str| batches[0].samples.iter().find(|s| s.metric == metric).map(|s| s.value);
        assert_eq!(value("pipeline.output.series"), Some(15.0), "3 series of each of the 5 metrics");
        assert_eq!(value("pipeline.over_limit.points"), Some(485.0));
        assert_eq!(value("pipeline.dropped.points"), Some(485.0), "action: drop");
    }

    #[test]
    fn a_broken_config_fails_the_task_and_the_previous_pipeline_keeps_running() {
        let mut runner = Runner::new(std::env::temp_dir());
        runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "p", "config": TOPK})));
        let broken = TOPK.replace("k: 5", "k: 0");
        let failed = runner.execute(&task("t2", "pipeline.apply", json!({"pipeline": "p", "config": broken})));
        assert_eq!(failed.status, ReportedTaskStatus::Failed);
        assert!(failed.error.unwrap_or_default().contains("processors.topk.k"));
        assert!(!failed.retryable, "the same config would fail again");
        assert!(runner.is_degraded());
        assert_eq!(runner.run_interval()[0].samples[2].value, 30.0, "the old pipeline still runs");
        assert_eq!(runner.statuses()[0].config_hash, config_hash(TOPK));
    }

    #[test]
    fn a_task_delivered_twice_runs_once_and_unknown_types_are_refused() {
        let mut runner = Runner::new(std::env::temp_dir());
        let apply = task("t1", "pipeline.apply", json!({"pipeline": "p", "config": TOPK}));
        runner.execute(&apply);
        runner.execute(&task("t2", "pipeline.remove", json!({"pipeline": "p"})));
        let again = runner.execute(&apply);
        assert_eq!(again.status, ReportedTaskStatus::Succeeded, "the first run's outcome, replayed");
        assert_eq!(again.result.as_ref().map(|r| r["pipeline"].clone()), Some(json!("p")));
        assert!(runner.statuses().is_empty(), "the repeated apply did not start the pipeline again");
        let unknown = runner.execute(&task("t3", "reboot.host", json!({})));
        assert_eq!(unknown.status, ReportedTaskStatus::Failed);
        assert!(!unknown.retryable);
    }

    #[test]
    fn a_load_simulation_feeds_every_pipeline_the_same_points_until_stopped() {
        let mut runner = Runner::new(std::env::temp_dir());
        let host = "receivers: {host: {}}\nexporters: {count: {}}\nservice: {pipelines: {m: {receivers: [host], exporters: [count]}}}\n";
        runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "a", "config": host})));
        runner.execute(&task(
            "t2",
            "loadsim.start",
            json!({"profile": "high_cardinality", "processes": 200, "seed": 3}),
        ));
        runner.execute(&task("t3", "pipeline.apply", json!({"pipeline": "b", "config": host})));
        let input = |batches: &[MetricsBatch], i: usize| batches[i].samples[0].value;
        let with_load = runner.run_interval();
        assert_eq!(input(&with_load, 0), input(&with_load, 1), "both pipelines see the same input");
        let stopped = runner.execute(&task("t4", "loadsim.stop", json!({})));
        assert_eq!(stopped.result, Some(json!({"stopped": true})));
        let without = runner.run_interval();
        assert_eq!(input(&with_load, 0) - input(&without, 0), 1000.0, "200 simulated processes x 5 series");
        let bad = runner.execute(&task("t5", "loadsim.start", json!({"profile": "steady", "processes": 0})));
        assert_eq!(bad.status, ReportedTaskStatus::Failed);
    }

    #[tokio::test]
    async fn a_load_simulation_is_refused_in_collector_mode_rather_than_silently_ignored() {
        let state_dir = std::env::temp_dir().join(format!("phoenix-collector-loadsim-{}", std::process::id()));
        let mut collectors = super::super::collector::Collectors::new("/bin/false".into(), &state_dir);
        let start = task("t1", "loadsim.start", json!({"profile": "steady", "processes": 10}));
        let refused = run_on_collectors(&mut collectors, &start).await;
        assert_eq!(refused.status, ReportedTaskStatus::Failed);
        assert!(refused.error.is_some_and(|e| e.contains("--collector-bin")));
        let stop = run_on_collectors(&mut collectors, &task("t2", "loadsim.stop", json!({}))).await;
        assert_eq!(stop.status, ReportedTaskStatus::Succeeded);
    }

    /// A topk pipeline whose scrape endpoint listens on `address`.
    fn scrape_config(address: &str, k: u32) -> String {
        format!("receivers: {{synthetic: {{profile: steady, processes: 10}}}}\nprocessors: {{topk: {{k: {k}}}}}\nexporters: {{prometheus: {{endpoint: \"{address}\"}}}}\nservice: {{pipelines: {{m: {{receivers: [synthetic], processors: [topk], exporters: [prometheus]}}}}}}\n")
    }

    #[tokio::test]
    async fn a_new_version_of_a_pipeline_can_take_over_its_prometheus_port() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = |k: u32| scrape_config(&format!("127.0.0.1:{port}"), k);
        let mut runner = Runner::new(std::env::temp_dir());
        let first = runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "p", "config": config(3)})));
        assert_eq!(first.status, ReportedTaskStatus::Succeeded, "{first:?}");
        let second = runner.execute(&task("t2", "pipeline.apply", json!({"pipeline": "p", "config": config(4)})));
        assert_eq!(second.status, ReportedTaskStatus::Succeeded, "the same port, a new version: {second:?}");
        let broken = runner.execute(&task("t3", "pipeline.apply", json!({"pipeline": "p", "config": config(0)})));
        assert_eq!(broken.status, ReportedTaskStatus::Failed);
        assert_eq!(runner.statuses()[0].config_hash, config_hash(&config(4)), "the previous version was started again");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "and serves on its port");
    }

    #[tokio::test]
    async fn two_pipelines_cannot_listen_on_one_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = |k: u32| scrape_config(&format!("0.0.0.0:{port}"), k);
        let mut runner = Runner::new(std::env::temp_dir());
        let first = runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "a", "config": config(3)})));
        assert_eq!(first.status, ReportedTaskStatus::Succeeded, "{first:?}");
        let second = runner.execute(&task("t2", "pipeline.apply", json!({"pipeline": "b", "config": config(4)})));
        assert_eq!(second.status, ReportedTaskStatus::Failed, "the kernel would split the scrapes between them");
        assert!(second.error.unwrap_or_default().contains("is taken by pipeline 'a'"));
        let again = runner.execute(&task("t3", "pipeline.apply", json!({"pipeline": "a", "config": config(5)})));
        assert_eq!(again.status, ReportedTaskStatus::Succeeded, "a pipeline's own new version takes its address over");
    }

    /// POSTs gauge `g`, one point per value of its attribute `k`, to an OTLP/HTTP receiver on `port`.
    async fn post_gauges(port: u16, keys: &[&str]) {
        let points: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| json!({"asDouble": i as f64 + 1.0, "timeUnixNano": "1", "attributes": [{"key": "k", "value": {"stringValue": key}}]}))
            .collect();
        let body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "g", "gauge": {"dataPoints": points}}]}]}]});
        phoenix_nats::install_tls_provider();
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/metrics"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status(), 200);
    }

    #[tokio::test]
    async fn points_received_before_a_new_version_starts_go_to_the_new_version() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = |k: u32| {
            format!("receivers: {{otlp: {{protocols: {{http: {{endpoint: \"127.0.0.1:{port}\"}}}}}}}}\nprocessors: {{topk: {{k: {k}, group_by: [k]}}}}\nexporters: {{count: {{}}}}\nservice: {{pipelines: {{m: {{receivers: [otlp], processors: [topk], exporters: [count]}}}}}}\n")
        };
        let mut runner = Runner::new(std::env::temp_dir());
        let first = runner.execute(&task("t1", "pipeline.apply", json!({"pipeline": "p", "config": config(3)})));
        assert_eq!(first.status, ReportedTaskStatus::Succeeded, "{first:?}");
        // Three series accepted by the running version, not yet flushed.
        post_gauges(port, &["a", "b", "c"]).await;
        let second = runner.execute(&task("t2", "pipeline.apply", json!({"pipeline": "p", "config": config(4)})));
        assert_eq!(second.status, ReportedTaskStatus::Succeeded, "{second:?}");
        assert_eq!(second.result.map(|r| r["output_series"].clone()), Some(json!(3)), "the new version took them");
    }

    #[tokio::test]
    async fn pipelines_naming_one_receiver_share_it_and_each_get_every_point() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let config = |receiver: &str, processors: &str, chain: &str| {
            format!("receivers: {{otlp: {receiver}}}\nprocessors: {processors}\nexporters: {{count: {{}}}}\nservice: {{pipelines: {{metrics: {{receivers: [otlp], processors: [{chain}], exporters: [count]}}}}}}\n")
        };
        let receiver = format!("{{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}");
        let baseline = config(&receiver, "{}", "");
        let candidate = config(&receiver, "{topk: {k: 1, group_by: [k]}}", "topk");
        let mut runner = Runner::new(std::env::temp_dir());
        for (id, name, config) in [("t1", "exp-1-baseline", &baseline), ("t2", "exp-1-candidate", &candidate)] {
            let done = runner.execute(&task(id, "pipeline.apply", json!({"pipeline": name, "config": config})));
            assert_eq!(done.status, ReportedTaskStatus::Succeeded, "{done:?}");
        }
        post_gauges(port, &["a", "b"]).await;
        let batches = runner.run_interval();
        let value = |pipeline: &str, metric: &str| {
            let batch = batches.iter().find(|b| b.pipeline == pipeline).expect("measured");
            batch.samples.iter().find(|s| s.metric == metric).map(|s| s.value)
        };
        assert_eq!(value("exp-1-baseline", "pipeline.input.series"), Some(2.0));
        assert_eq!(value("exp-1-candidate", "pipeline.input.series"), Some(2.0), "the same input");
        assert_eq!(value("exp-1-candidate", "pipeline.output.series"), Some(2.0), "the top 1 and other");
        let otherwise = config(
            &format!("{{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}, max_buffered_points: 5}}"),
            "{}",
            "",
        );
        let refused = runner.execute(&task("t3", "pipeline.apply", json!({"pipeline": "other", "config": otherwise})));
        assert_eq!(refused.status, ReportedTaskStatus::Failed, "one port, a receiver configured otherwise");
        assert!(refused.error.unwrap_or_default().contains("configured otherwise"));
    }

    #[test]
    fn a_task_that_failed_is_reported_failed_again_when_delivered_again() {
        let mut runner = Runner::new(std::env::temp_dir());
        let bad = task("t1", "pipeline.apply", json!({"pipeline": "p", "config": "nonsense"}));
        assert_eq!(runner.execute(&bad).status, ReportedTaskStatus::Failed);
        let again = runner.execute(&TaskAssignment { attempt: 2, ..bad });
        assert_eq!((again.status, again.attempt), (ReportedTaskStatus::Failed, Some(2)));
    }

    #[test]
    fn a_config_that_does_not_match_its_hash_is_refused() {
        let mut runner = Runner::new(std::env::temp_dir());
        let failed = runner.execute(&task(
            "t1",
            "pipeline.apply",
            json!({"pipeline": "p", "config": TOPK, "config_hash": "sha256:00"}),
        ));
        assert!(failed.error.unwrap_or_default().contains("hash mismatch"));
    }
}
