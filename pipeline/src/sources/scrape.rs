//! The `prometheus` receiver: scrapes `static_configs` targets at their interval, as Prometheus does —
//! the text format or OpenMetrics, `honor_labels`, `honor_timestamps`, `metric_relabel_configs`,
//! `sample_limit` — and writes Prometheus's own series per target beside the samples: `up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped` and `scrape_samples_post_metric_relabeling`.
//! The config is shaped like the Collector's receiver, which wraps a Prometheus config:
//!
//! ```yaml
//! receivers:
//!   prometheus:
//!     config:
//!       scrape_configs:
//!         - job_name: app
//!           scrape_interval: 15s
//!           static_configs: [{targets: ['127.0.0.1:8000'], labels: {env: prod}}]
//!           metric_relabel_configs: [{source_labels: [__name__], regex: 'go_.*', action: drop}]
//! ```
//!
//! Scrapes run in the background and their points wait in the pipeline's buffer until its next flush.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::buffer::PointBuffer;
use super::Source;
use crate::config::parse_duration;
use crate::model::Batch;
use crate::prom::assemble::{assemble, FlatSample};
use crate::prom::relabel::{apply_all, RelabelConfig, Rule};
use crate::prom::text::{self, Format};
use crate::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeReceiverConfig {
    pub config: PrometheusConfig,
    /// Points waiting for the next flush, at most; a scrape that does not fit is dropped, counted.
    #[serde(default = "default_max_buffered_points")]
    pub max_buffered_points: usize,
}

fn default_max_buffered_points() -> usize {
    1_000_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    #[serde(default)]
    pub global: Global,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub scrape_interval: Option<String>,
    pub scrape_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Option<String>,
    pub scrape_timeout: Option<String>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// A scrape with more samples (after relabelling) fails whole; 0: no limit.
    #[serde(default)]
    pub sample_limit: usize,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

fn default_true() -> bool {
    true
}

/// Prometheus's defaults.
const DEFAULT_INTERVAL: &str = "1m";
const DEFAULT_TIMEOUT: &str = "10s";
/// A scrape body larger than this fails (Prometheus's `body_size_limit`, fixed here).
const MAX_BODY_BYTES: usize = 64 << 20;

/// One target with everything its loop needs.
#[derive(Debug, Clone)]
struct Target {
    job: String,
    url: String,
    /// `job`, `instance` and the static config's labels.
    labels: Vec<(String, String)>,
    interval: Duration,
    timeout: Duration,
    honor_labels: bool,
    honor_timestamps: bool,
    sample_limit: usize,
    rules: Arc<[Rule]>,
}

impl ScrapeReceiverConfig {
    pub fn check(&self, path: &str) -> Vec<Problem> {
        self.targets(path).err().unwrap_or_default()
    }

    fn targets(&self, path: &str) -> Result<Vec<Target>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut targets = Vec::new();
        let global = &self.config.global;
        let mut jobs = Vec::new();
        for (i, scrape) in self.config.scrape_configs.iter().enumerate() {
            let at = format!("{path}.config.scrape_configs[{i}]");
            let interval = duration(
                [&scrape.scrape_interval, &global.scrape_interval],
                DEFAULT_INTERVAL,
                &format!("{at}.scrape_interval"),
                &mut problems,
            );
            let timeout = duration(
                [&scrape.scrape_timeout, &global.scrape_timeout],
                DEFAULT_TIMEOUT,
                &format!("{at}.scrape_timeout"),
                &mut problems,
            );
            targets.extend(self.targets_of(scrape, &at, interval, timeout.min(interval), &mut problems));
            if jobs.contains(&scrape.job_name) {
                problems.push(Problem::new(&format!("{at}.job_name"), format!("'{}' is used twice", scrape.job_name)));
            }
            jobs.push(scrape.job_name.clone());
        }
        if self.config.scrape_configs.is_empty() {
            problems.push(Problem::new(&format!("{path}.config.scrape_configs"), "name at least one scrape config"));
        }
        if self.max_buffered_points == 0 {
            problems.push(Problem::new(&format!("{path}.max_buffered_points"), "must be ≥ 1"));
        }
        if problems.is_empty() {
            Ok(targets)
        } else {
            Err(problems)
        }
    }

    fn targets_of(
        &self,
        scrape: &ScrapeConfig,
        at: &str,
        interval: Duration,
        timeout: Duration,
        problems: &mut Vec<Problem>,
    ) -> Vec<Target> {
        if scrape.job_name.is_empty() {
            problems.push(Problem::new(&format!("{at}.job_name"), "must not be empty"));
        }
        if !matches!(scrape.scheme.as_str(), "http" | "https") {
            problems.push(Problem::new(&format!("{at}.scheme"), "must be http or https"));
        }
        let mut rules = Vec::new();
        for (j, config) in scrape.metric_relabel_configs.iter().enumerate() {
            match Rule::new(config.clone(), &format!("{at}.metric_relabel_configs[{j}]")) {
                Ok(rule) => rules.push(rule),
                Err(found) => problems.extend(found),
            }
        }
        let rules: Arc<[Rule]> = rules.into();
        let mut targets = Vec::new();
        for (j, group) in scrape.static_configs.iter().enumerate() {
            for (k, address) in group.targets.iter().enumerate() {
                let url = format!("{}://{address}{}", scrape.scheme, scrape.metrics_path);
                if address.contains('/') || reqwest::Url::parse(&url).map_or(true, |u| u.host().is_none()) {
                    let at = format!("{at}.static_configs[{j}].targets[{k}]");
                    problems.push(Problem::new(&at, format!("'{address}' is not a host:port")));
                    continue;
                }
                let mut labels: Vec<(String, String)> = group.labels.clone().into_iter().collect();
                labels.push(("job".into(), scrape.job_name.clone()));
                labels.push(("instance".into(), address.clone()));
                targets.push(Target {
                    job: scrape.job_name.clone(),
                    url,
                    labels,
                    interval,
                    timeout,
                    honor_labels: scrape.honor_labels,
                    honor_timestamps: scrape.honor_timestamps,
                    sample_limit: scrape.sample_limit,
                    rules: rules.clone(),
                });
            }
        }
        targets
    }
}

/// The first of `settings` given, else `default`, as a duration.
fn duration(settings: [&Option<String>; 2], default: &str, at: &str, problems: &mut Vec<Problem>) -> Duration {
    let text = settings.into_iter().flatten().next().map(String::as_str).unwrap_or(default);
    parse_duration(text).unwrap_or_else(|why| {
        problems.push(Problem::new(at, why));
        Duration::from_secs(1)
    })
}

/// The receiver as a pipeline source: one scrape loop per target fills the buffer.
pub struct ScrapeSource {
    buffer: Arc<PointBuffer>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl ScrapeSource {
    /// Starts the scrape loops; needs a tokio runtime.
    pub fn start(config: ScrapeReceiverConfig, path: &str) -> Result<ScrapeSource, Vec<Problem>> {
        let targets = config.targets(path)?;
        let buffer = Arc::new(PointBuffer::new(config.max_buffered_points));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| vec![Problem::new(path, format!("cannot build the HTTP client: {e}"))])?;
        let loops = targets
            .into_iter()
            .map(|target| {
                tracing::info!(receiver = path, job = %target.job, url = %target.url, "scraping");
                tokio::spawn(scrape_loop(client.clone(), target, buffer.clone()))
            })
            .collect();
        Ok(ScrapeSource { buffer, loops })
    }

    pub fn counters(&self) -> &super::buffer::ReceiverCounters {
        &self.buffer.counters
    }
}

impl Drop for ScrapeSource {
    fn drop(&mut self) {
        for task in &self.loops {
            task.abort();
        }
    }
}

impl Source for ScrapeSource {
    fn collect(&mut self, _now_ms: i64) -> Batch {
        self.take_pending()
    }

    fn receiver_counts(&self) -> Option<crate::sources::buffer::ReceiverCounts> {
        Some(self.buffer.counters.snapshot())
    }

    fn take_pending(&mut self) -> Batch {
        self.buffer.drain()
    }

    fn limit_memory(&mut self, gate: Arc<crate::processors::memory_limiter::MemoryGate>) {
        self.buffer.limit_memory(gate);
    }
}

async fn scrape_loop(client: reqwest::Client, target: Target, buffer: Arc<PointBuffer>) {
    let mut ticks = tokio::time::interval(target.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        ticks.tick().await;
        let started = Instant::now();
        let now_ms = now_ms();
        let result = scrape(&client, &target, now_ms).await;
        let mut report = Report { up: 0.0, elapsed: started.elapsed().as_secs_f64(), scraped: 0, kept: 0 };
        let mut scraped = Scraped::default();
        match result {
            Ok(ok) => {
                if last_error.take().is_some() {
                    tracing::info!(url = %target.url, "the scrape target answers again");
                }
                report = Report { up: 1.0, scraped: ok.scraped, kept: ok.samples.len(), ..report };
                scraped = ok;
            }
            Err(why) => {
                if last_error.as_ref() != Some(&why) {
                    tracing::warn!(url = %target.url, reason = %why, "scrape failed");
                }
                last_error = Some(why);
                buffer.refused();
            }
        }
        scraped.samples.extend(report.samples(&target, now_ms));
        let assembled = assemble(scraped.samples, &|name| scraped.types.get(name).copied());
        if let Err(refusal) = buffer.push(assembled.points, assembled.rejected) {
            tracing::warn!(url = %target.url, reason = refusal.message(), "a scrape's points were dropped");
            buffer.refused();
        }
    }
}

/// A successful scrape: its samples after relabelling, with the target's labels, and the declared types.
#[derive(Default)]
struct Scraped {
    samples: Vec<FlatSample>,
    types: HashMap<String, crate::prom::assemble::FamilyType>,
    /// Samples in the body, before relabelling.
    scraped: usize,
}

async fn scrape(client: &reqwest::Client, target: &Target, now_ms: i64) -> Result<Scraped, String> {
    let answer = client
        .get(&target.url)
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
             text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .header("X-Prometheus-Scrape-Timeout-Seconds", target.timeout.as_secs_f64().to_string())
        .timeout(target.timeout)
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("answered {}", answer.status()));
    }
    if answer.content_length().is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(format!("the body is over {MAX_BODY_BYTES} bytes"));
    }
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = answer.bytes().await.map_err(|e| format!("the body was cut: {e}"))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("the body is over {MAX_BODY_BYTES} bytes"));
    }
    let body = String::from_utf8_lossy(&body);
    let exposition = text::parse(&body, Format::of_content_type(&content_type), now_ms)?;
    let scraped = exposition.samples.len();
    let mut samples = Vec::with_capacity(scraped);
    for mut sample in exposition.samples {
        if !target.honor_timestamps {
            sample.time_ms = now_ms;
        }
        let mut labels = target_labels(sample.labels, &target.labels, target.honor_labels);
        labels.push(("__name__".into(), sample.name));
        if !apply_all(&target.rules, &mut labels) {
            continue;
        }
        let Some(at) = labels.iter().position(|(name, _)| name == "__name__") else { continue };
        let name = labels.swap_remove(at).1;
        labels.retain(|(_, value)| !value.is_empty());
        samples.push(FlatSample { name, labels, ..sample });
    }
    if target.sample_limit > 0 && samples.len() > target.sample_limit {
        return Err(format!("{} samples, over the sample_limit of {}", samples.len(), target.sample_limit));
    }
    Ok(Scraped { samples, types: exposition.types, scraped })
}

/// A sample's labels with the target's: with `honor_labels` the scraped ones win; otherwise the target's
/// win and a scraped label they displace is kept as `exported_<name>`, as Prometheus does.
fn target_labels(
    mut scraped: Vec<(String, String)>,
    target: &[(String, String)],
    honor_labels: bool,
) -> Vec<(String, String)> {
    for (name, value) in target {
        match scraped.iter().position(|(n, _)| n == name) {
            Some(_) if honor_labels => {}
            Some(at) => {
                let displaced = std::mem::replace(&mut scraped[at], (name.clone(), value.clone()));
                scraped.push((format!("exported_{}", displaced.0), displaced.1));
            }
            None => scraped.push((name.clone(), value.clone())),
        }
    }
    scraped
}

/// Prometheus's own series about a scrape.
struct Report {
    up: f64,
    elapsed: f64,
    scraped: usize,
    kept: usize,
}

impl Report {
    fn samples(&self, target: &Target, now_ms: i64) -> Vec<FlatSample> {
        let job_and_instance: Vec<(String, String)> =
            target.labels.iter().filter(|(name, _)| name == "job" || name == "instance").cloned().collect();
        [
            ("up", self.up),
            ("scrape_duration_seconds", self.elapsed),
            ("scrape_samples_scraped", self.scraped as f64),
            ("scrape_samples_post_metric_relabeling", self.kept as f64),
        ]
        .into_iter()
        .map(|(name, value)| FlatSample { name: name.into(), labels: job_and_instance.clone(), value, time_ms: now_ms })
        .collect()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    /// A target answering every request with `body`.
    async fn target(body: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    fn config(yaml: &str) -> ScrapeReceiverConfig {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    async fn first_scrape(source: &mut ScrapeSource) -> Batch {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let batch = source.collect(0);
            if !batch.is_empty() {
                return batch;
            }
            assert!(Instant::now() < deadline, "no scrape arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn value(batch: &Batch, name: &str, instance: &str) -> Option<f64> {
        batch
            .iter()
            .find(|p| p.name() == name && p.label("instance").map(|v| &**v) == Some(instance))
            .map(|p| p.number())
    }

    #[tokio::test]
    async fn scrapes_label_relabel_and_report_up_like_prometheus() {
        let body = "# TYPE requests_total counter\nrequests_total{route=\"/a\",user=\"u1\",job=\"app-says\"} 3\n\
            requests_total{route=\"/b\",user=\"u2\",job=\"app-says\"} 4\ngo_goroutines 9\n\
            # TYPE latency histogram\nlatency_bucket{le=\"1\"} 1\nlatency_bucket{le=\"+Inf\"} 2\nlatency_sum 1.5\nlatency_count 2\n";
        let up = target(body).await;
        let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let yaml = format!(
            "config:\n  scrape_configs:\n  - job_name: app\n    scrape_interval: 1s\n    static_configs: [{{targets: ['{up}', '{down}'], labels: {{env: prod}}}}]\n    \
             metric_relabel_configs:\n    - {{source_labels: [__name__], regex: 'go_.*', action: drop}}\n    - {{regex: user, action: labeldrop}}"
        );
        let mut source = ScrapeSource::start(config(&yaml), "receivers.prometheus").expect("start");
        let mut batch = first_scrape(&mut source).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while value(&batch, "up", &down.to_string()).is_none() || value(&batch, "up", &up.to_string()).is_none() {
            assert!(Instant::now() < deadline, "both targets report up");
            tokio::time::sleep(Duration::from_millis(20)).await;
            batch.extend(source.collect(0));
        }
        let (up, down) = (up.to_string(), down.to_string());
        assert_eq!(value(&batch, "up", &up), Some(1.0));
        assert_eq!(value(&batch, "up", &down), Some(0.0), "an unreachable target is down");
        assert_eq!(value(&batch, "scrape_samples_scraped", &up), Some(7.0));
        assert_eq!(value(&batch, "scrape_samples_post_metric_relabeling", &up), Some(6.0), "go_goroutines dropped");
        let requests: Vec<_> = batch.iter().filter(|p| p.name() == "requests_total").collect();
        assert_eq!(requests.len(), 2);
        let point = requests[0];
        assert_eq!(point.label("job").map(|v| &**v), Some("app"), "the target's job wins");
        assert_eq!(point.label("exported_job").map(|v| &**v), Some("app-says"));
        assert_eq!(point.label("env").map(|v| &**v), Some("prod"));
        assert!(point.label("user").is_none(), "labeldrop");
        let latency = batch.iter().find(|p| p.name() == "latency").expect("the histogram");
        assert!(matches!(&latency.value, Value::Histogram(h) if h.count == 2));
        assert!(
            source.counters().refused_requests.load(std::sync::atomic::Ordering::Relaxed) >= 1,
            "the failed scrape"
        );
    }

    #[tokio::test]
    async fn honor_labels_keeps_the_scraped_ones() {
        let addr = target("requests_total{job=\"from-app\"} 1\n").await;
        let yaml = format!(
            "config:\n  scrape_configs:\n  - job_name: app\n    honor_labels: true\n    static_configs: [{{targets: ['{addr}']}}]"
        );
        let mut source = ScrapeSource::start(config(&yaml), "r").expect("start");
        let batch = first_scrape(&mut source).await;
        let point = batch.iter().find(|p| p.name() == "requests_total").expect("scraped");
        assert_eq!(point.label("job").map(|v| &**v), Some("from-app"));
        assert!(point.label("exported_job").is_none());
    }

    #[test]
    fn bad_configs_are_problems_with_paths() {
        let config = config(
            "config:\n  scrape_configs:\n  - job_name: a\n    scrape_interval: often\n    static_configs: [{targets: ['http://x/y']}]\n    \
             metric_relabel_configs: [{action: hashmod}]\n  - job_name: a",
        );
        let paths: Vec<String> = config.check("r").into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "r.config.scrape_configs[0].scrape_interval",
                "r.config.scrape_configs[0].metric_relabel_configs[0].action",
                "r.config.scrape_configs[0].static_configs[0].targets[0]",
                "r.config.scrape_configs[1].job_name",
            ]
        );
    }
}
