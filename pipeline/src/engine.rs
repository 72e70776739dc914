//! The engine: a built pipeline — sources, processor chain, exporters — that runs one interval at a
//! time and measures itself: input and output series and points, CPU time spent in the processors,
//! memory held, and which critical processes are still present in the output.

use serde::Serialize;

use super::config::{component_type, PipelineConfig};
use super::exporters::{self, Exporter};
use super::model::{keep_newest_levels, series_count, Batch, Point};
use super::processors::{self, Outcome, Processor};
use super::sources::{self, Source};
use super::Problem;

/// What one interval of one pipeline did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntervalStats {
    pub input_series: usize,
    pub input_points: usize,
    pub output_series: usize,
    pub output_points: usize,
    /// CPU seconds the processors used (thread CPU time).
    pub cpu_seconds: f64,
    /// Bytes held: processor state plus the output batch.
    pub memory_bytes: usize,
    /// Critical process names present in the output.
    pub critical_present: Vec<String>,
    /// Points of series over a cardinality limit (folded into an overflow series, or dropped).
    pub over_limit_points: u64,
    /// Points the processors left out by a rule or could not merge (see `refusals`).
    pub dropped_points: u64,
    /// What the exporters could not deliver since the previous interval (samples of dropped requests,
    /// points the format cannot represent).
    pub undelivered: u64,
    /// Why merges refused points (the first few).
    #[cfg_attr(feature = "openapi", schema(ignore))]
    #[serde(skip)]
    pub refusals: Vec<String>,
    /// Per metric (the largest by input series): series in and out, and the output's total.
    pub per_metric: Vec<crate::metric_stats::MetricStats>,
}

/// The processors of one pipeline, in order.
pub struct ProcessorChain {
    processors: Vec<Box<dyn Processor>>,
}

impl ProcessorChain {
    /// The chain of pipeline `name` (or the first pipeline when `None`).
    pub fn from_config(config: &PipelineConfig, name: Option<&str>) -> Result<ProcessorChain, Vec<Problem>> {
        let (name, def) = pick(config, name)?;
        let mut processors = Vec::new();
        let mut problems = Vec::new();
        for id in &def.processors {
            let path = format!("processors.{id}");
            let Some(section) = config.processors.get(id) else {
                problems.push(Problem::new(&format!("service.pipelines.{name}"), format!("'{id}' is not defined")));
                continue;
            };
            match processors::build(component_type(id), section, &path) {
                Ok(processor) => processors.push(processor),
                Err(more) => problems.extend(more),
            }
        }
        if problems.is_empty() {
            Ok(ProcessorChain { processors })
        } else {
            Err(problems)
        }
    }

    /// The most points one exporter request may carry, when a `batch` processor says.
    pub fn max_request_points(&self) -> Option<usize> {
        self.processors.iter().filter_map(|p| p.max_request_points()).min()
    }

    /// Gates of the chain's `memory_limiter`s.
    fn memory_gates(&self) -> Vec<std::sync::Arc<crate::processors::memory_limiter::MemoryGate>> {
        self.processors.iter().filter_map(|p| p.memory_gate()).collect()
    }

    /// Runs the batch through every processor, measuring the work.
    pub fn process(&mut self, input: Batch, critical: &[String]) -> (Batch, IntervalStats) {
        let mut stats = IntervalStats { input_points: input.len(), ..Default::default() };
        let started = thread_cpu_seconds();
        // Processors may count on one point per level series: a sender may have sent one twice since
        // the last flush, and only the newest counts.
        let (mut batch, input_series) = keep_newest_levels(input);
        stats.input_series = input_series;
        let input_tally = crate::metric_stats::Tally::of(&batch);
        // The input points critical selectors select, to check against the output (processors consume
        // the batch).
        let selected: Vec<(&String, crate::selector::Selector, Vec<Point>)> = critical
            .iter()
            .filter(|c| crate::selector::Selector::is_selector(c))
            .filter_map(|c| crate::selector::Selector::parse(c).ok().map(|s| (c, s)))
            .map(|(c, s)| {
                let points = batch.iter().filter(|p| s.matches(p)).cloned().collect();
                (c, s, points)
            })
            .collect();
        let mut outcome = Outcome::default();
        for processor in &mut self.processors {
            batch = processor.process(batch, &mut outcome);
        }
        stats.over_limit_points = outcome.over_limit;
        stats.dropped_points = outcome.dropped;
        stats.refusals = outcome.refusals;
        stats.cpu_seconds = (thread_cpu_seconds() - started).max(0.0);
        let distinct = self.processors.last().is_some_and(|p| p.output_is_distinct());
        stats.output_series = if distinct { batch.len() } else { series_count(&batch) };
        stats.output_points = batch.len();
        stats.memory_bytes = self.processors.iter().map(|p| p.state_bytes()).sum::<usize>() + batch_bytes(&batch);
        stats.critical_present = critical_present(&batch, critical);
        stats.critical_present.extend(
            selected
                .iter()
                .filter(|(_, selector, points)| crate::selector::kept_exactly(selector, points, &batch))
                .map(|(text, _, _)| (*text).clone()),
        );
        stats.per_metric = crate::metric_stats::per_metric(&input_tally, &crate::metric_stats::Tally::of(&batch));
        (batch, stats)
    }
}

/// A complete pipeline: sources, processors, exporters.
pub struct Pipeline {
    /// Each with its id in the config.
    sources: Vec<(String, Box<dyn Source>)>,
    chain: ProcessorChain,
    exporters: Vec<(String, Box<dyn Exporter>)>,
    critical: Vec<String>,
}

impl Pipeline {
    /// Builds pipeline `name` (or the first). Exporters that bind ports need a tokio runtime.
    pub fn build(
        config: &PipelineConfig,
        name: Option<&str>,
        critical: Vec<String>,
        export_dir: &std::path::Path,
    ) -> Result<Pipeline, Vec<Problem>> {
        Pipeline::build_in(config, name, critical, export_dir, None)
    }

    /// Like [`Pipeline::build`], its receivers that take points from outside shared through `hub` with
    /// the other pipelines of the agent that name one configured alike.
    pub fn build_in(
        config: &PipelineConfig,
        name: Option<&str>,
        critical: Vec<String>,
        export_dir: &std::path::Path,
        hub: Option<&sources::shared::ReceiverHub>,
    ) -> Result<Pipeline, Vec<Problem>> {
        let (_, def) = pick(config, name)?;
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for id in &def.receivers {
            let section = config.receivers.get(id).cloned().unwrap_or_default();
            let (kind, path) = (component_type(id), format!("receivers.{id}"));
            let built = match hub {
                Some(hub) if sources::shared::SHARED_KINDS.contains(&kind) => {
                    hub.subscribe(kind, &section, &path).map(|s| Box::new(s) as Box<dyn Source>)
                }
                _ => sources::build(kind, &section, &path),
            };
            match built {
                Ok(source) => sources.push((id.clone(), source)),
                Err(more) => problems.extend(more),
            }
        }
        let mut exporters = Vec::new();
        for id in &def.exporters {
            let section = config.exporters.get(id).cloned().unwrap_or_default();
            match exporters::build(component_type(id), &section, &format!("exporters.{id}"), export_dir) {
                Ok(exporter) => exporters.push((id.clone(), exporter)),
                Err(more) => problems.extend(more),
            }
        }
        let chain = ProcessorChain::from_config(config, name).map_err(|more| problems.extend(more));
        if let Ok(chain) = &chain {
            for gate in chain.memory_gates() {
                sources.iter_mut().for_each(|(_, source)| source.limit_memory(gate.clone()));
            }
        }
        match chain {
            Ok(chain) if problems.is_empty() => Ok(Pipeline { sources, chain, exporters, critical }),
            _ => Err(problems),
        }
    }

    /// Points its receivers accepted since the last interval, taken out (for the pipeline's next version).
    pub fn take_pending(&mut self) -> Batch {
        self.sources.iter_mut().flat_map(|(_, s)| s.take_pending()).collect()
    }

    /// What its receivers and exporters have counted so far.
    pub fn telemetry(&self) -> crate::telemetry::Telemetry {
        use crate::telemetry::{ExporterTelemetry, ReceiverTelemetry};
        crate::telemetry::Telemetry {
            receivers: self
                .sources
                .iter()
                .filter_map(|(id, s)| s.receiver_counts().map(|c| ReceiverTelemetry::of(id, c)))
                .collect(),
            exporters: self
                .exporters
                .iter()
                .filter_map(|(id, e)| e.delivery().map(|(c, depth)| ExporterTelemetry::of(id, c, depth)))
                .collect(),
        }
    }

    /// Collects from every source, processes, exports; an export failure is returned with the stats.
    pub fn run_interval(&mut self, now_ms: i64) -> (IntervalStats, Vec<String>) {
        self.run_interval_with(now_ms, Vec::new())
    }

    /// Like [`Pipeline::run_interval`], with `extra` points joining the sources' (a load simulation).
    ///
    /// The CPU reported is the whole interval's (collect, process, export): what running this pipeline
    /// costs the host. Only the chain's would make a pass-through look free, and any candidate that
    /// does work look infinitely more expensive than it.
    pub fn run_interval_with(&mut self, now_ms: i64, extra: Batch) -> (IntervalStats, Vec<String>) {
        let started = thread_cpu_seconds();
        let mut input: Batch = self.sources.iter_mut().flat_map(|(_, s)| s.collect(now_ms)).collect();
        input.extend(extra);
        let (output, mut stats) = self.chain.process(input, &self.critical);
        let mut errors = Vec::new();
        let request_points = self.chain.max_request_points().unwrap_or(usize::MAX);
        for (_, exporter) in &mut self.exporters {
            // The first failure of an exporter is enough; its later requests would fail alike.
            let failed = output.chunks(request_points).find_map(|chunk| exporter.export(chunk).err());
            errors.extend(failed);
        }
        stats.undelivered = self.exporters.iter_mut().map(|(_, e)| e.take_undelivered()).sum();
        stats.cpu_seconds = (thread_cpu_seconds() - started).max(0.0);
        (stats, errors)
    }
}

fn pick<'a>(
    config: &'a PipelineConfig,
    name: Option<&str>,
) -> Result<(&'a str, &'a super::config::PipelineDef), Vec<Problem>> {
    let found = match name {
        Some(name) => config.service.pipelines.get_key_value(name).map(|(k, v)| (k.as_str(), v)),
        None => config.metrics_pipeline(),
    };
    found.ok_or_else(|| vec![Problem::new("service.pipelines", format!("no pipeline {}", name.unwrap_or("defined")))])
}

/// CPU time of the calling thread, seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is always valid.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if ok {
        now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

fn batch_bytes(batch: &Batch) -> usize {
    batch
        .iter()
        .map(|p| std::mem::size_of::<Point>() + p.labels.len() * std::mem::size_of::<super::model::Label>())
        .sum()
}

/// Which of the critical process names appear as a process (executable, or a word of its command) in
/// `batch` (critical selectors are checked against the input by the chain).
pub fn critical_present(batch: &Batch, critical: &[String]) -> Vec<String> {
    critical
        .iter()
        .filter(|name| !crate::selector::Selector::is_selector(name))
        .filter(|name| {
            batch.iter().any(|p| {
                p.label("executable").is_some_and(|e| **e == ***name)
                    || p.label("command").is_some_and(|c| c.split([' ', '/']).any(|w| w == name.as_str()))
            })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the size of every request it is given.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

    impl Exporter for Recorder {
        fn export(&mut self, batch: &[Point]) -> Result<(), String> {
            self.0.lock().expect("lock").push(batch.len());
            Ok(())
        }
    }

    fn build(text: &str) -> Pipeline {
        let config = crate::config::parse(text).expect("config");
        Pipeline::build(&config, None, Vec::new(), &std::env::temp_dir()).expect("builds")
    }

    #[tokio::test]
    async fn batch_splits_each_interval_into_requests_of_at_most_send_batch_size_points() {
        let mut pipeline = build(
            "receivers: {synthetic: {profile: steady, processes: 10}}\nprocessors: {batch: {send_batch_size: 7}}\n\
             exporters: {count: {}}\nservice: {pipelines: {metrics: {receivers: [synthetic], processors: [batch], exporters: [count]}}}",
        );
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        pipeline.exporters = vec![("recorder".into(), Box::new(Recorder(sizes.clone())))];
        let (stats, _) = pipeline.run_interval(1_000);
        let sizes = sizes.lock().expect("lock").clone();
        assert_eq!(sizes.iter().sum::<usize>(), stats.output_points, "every point is sent once");
        assert!(sizes.iter().all(|&n| n <= 7) && sizes.len() == stats.output_points.div_ceil(7), "{sizes:?}");
    }

    #[tokio::test]
    async fn memory_limiter_makes_the_receivers_refuse_points_over_the_limit() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let post = |port: u16| async move {
            let body = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::default();
            reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/v1/metrics"))
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body).expect("json"))
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        };
        let in_use_mib = crate::procfs::resident_bytes() >> 20;
        for (limit_mib, expected) in [(2, 503), (in_use_mib * 4 + 200, 200)] {
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            let _pipeline = build(&format!(
                "receivers: {{otlp: {{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}}}\n\
                 processors: {{memory_limiter: {{limit_mib: {limit_mib}, spike_limit_mib: 1, check_interval: 10ms}}}}\n\
                 exporters: {{count: {{}}}}\n\
                 service: {{pipelines: {{metrics: {{receivers: [otlp], processors: [memory_limiter], exporters: [count]}}}}}}"
            ));
            assert_eq!(post(port).await, expected, "with a {limit_mib} MiB limit and {in_use_mib} MiB in use");
        }
    }
}
