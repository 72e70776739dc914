//! External collector mode (`--collector-bin`): instead of running pipelines in-process, the agent
//! writes each rendered config to its state directory and supervises the collector binary with it
//! (`<bin> --config <file>`): start, health check, restart with backoff when it dies, and revert to the
//! last known good config when a new one does not come up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use phoenix_nats::wire::{MetricsBatch, PipelineStatus};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::link::Backoff;
use super::runner::{measurement, ApplyPayload};
use phoenix_pipeline::config::{config_hash, validate_text};
use phoenix_pipeline::engine::IntervalStats;

/// A new collector must stay up this long to count as healthy.
const HEALTH_WINDOW: Duration = Duration::from_secs(2);

struct Supervised {
    child: Option<Child>,
    config_file: PathBuf,
    hash: String,
    spec: ApplyPayload,
    last_error: Option<String>,
    backoff: Backoff,
    restart_at: Option<tokio::time::Instant>,
    batches: u64,
    /// The collector's CPU seconds at the previous measurement (per-interval CPU is the difference).
    last_cpu: Option<f64>,
}

pub struct Collectors {
    bin: PathBuf,
    dir: PathBuf,
    /// Where collectors run: the agent's export directory.
    workdir: PathBuf,
    running: BTreeMap<String, Supervised>,
    /// Pipelines whose last apply failed (they make the agent degraded until applied or removed).
    failed_applies: BTreeMap<String, String>,
}

/// Starts `bin --config FILE` in `workdir` (the agent's export directory, so relative paths a file
/// exporter names land there, as with the agent's own pipelines).
fn spawn(bin: &Path, config_file: &Path, workdir: &Path) -> Result<Child, String> {
    std::fs::create_dir_all(workdir).map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;
    Command::new(bin)
        .arg("--config")
        .arg(config_file)
        .current_dir(workdir)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

/// Starts the collector and waits out the health window: `Err` with the reason when it exits.
async fn start_healthy(bin: &Path, config_file: &Path, workdir: &Path) -> Result<Child, String> {
    let mut child = spawn(bin, config_file, workdir)?;
    tokio::time::sleep(HEALTH_WINDOW).await;
    match child.try_wait() {
        Ok(None) => Ok(child),
        Ok(Some(status)) => Err(format!("the collector exited during its health check ({status})")),
        Err(e) => Err(format!("cannot watch the collector: {e}")),
    }
}

impl Collectors {
    pub fn new(bin: PathBuf, state_dir: &Path) -> Collectors {
        Collectors {
            bin,
            dir: state_dir.join("collector"),
            workdir: state_dir.join("exports"),
            running: BTreeMap::new(),
            failed_applies: BTreeMap::new(),
        }
    }

    /// Validates the config, writes it, and swaps the collector over to it; on failure the previous
    /// config is written back and its collector keeps (or starts) running.
    pub async fn apply(&mut self, spec: ApplyPayload) -> Result<Value, String> {
        let hash = config_hash(&spec.config);
        if spec.config_hash.as_ref().is_some_and(|expected| *expected != hash) {
            return Err(format!("config hash mismatch: the config is {hash}"));
        }
        let (_, validation) = validate_text(&spec.config);
        if !validation.is_valid() {
            let errors: Vec<String> = validation.errors.iter().map(ToString::to_string).collect();
            return Err(format!("invalid config: {}", errors.join("; ")));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let config_file = self.dir.join(file_name(&spec.pipeline));
        // Written beside the live file first: if that fails, nothing was stopped.
        let staged = config_file.with_extension("yaml.new");
        std::fs::write(&staged, &spec.config).map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
        let mut previous = self.running.remove(&spec.pipeline);
        if let Some(old) = previous.as_mut().and_then(|p| p.child.as_mut()) {
            let _ = old.kill().await;
        }
        std::fs::rename(&staged, &config_file).map_err(|e| format!("cannot write {}: {e}", config_file.display()))?;
        match start_healthy(&self.bin, &config_file, &self.workdir).await {
            Ok(child) => {
                let batches = previous.map_or(0, |p| p.batches);
                let name = spec.pipeline.clone();
                self.failed_applies.remove(&name);
                let supervised = Supervised {
                    child: Some(child),
                    config_file,
                    hash: hash.clone(),
                    spec,
                    last_error: None,
                    backoff: Backoff::default(),
                    restart_at: None,
                    batches,
                    last_cpu: None,
                };
                self.running.insert(name.clone(), supervised);
                Ok(json!({"pipeline": name, "config_hash": hash, "collector": self.bin.display().to_string()}))
            }
            Err(reason) => {
                self.revert(previous, &config_file);
                self.failed_applies.insert(spec.pipeline.clone(), reason.clone());
                Err(format!("{reason}; reverted to the last known good config"))
            }
        }
    }

    /// Puts the previous config back (from its spec, not from the file) and starts its collector.
    fn revert(&mut self, previous: Option<Supervised>, config_file: &Path) {
        match previous {
            Some(mut old) => {
                if let Err(e) = std::fs::write(config_file, &old.spec.config) {
                    old.last_error = Some(format!("cannot write back the previous config: {e}"));
                }
                old.child = spawn(&self.bin, config_file, &self.workdir).map_err(|e| old.last_error = Some(e)).ok();
                self.running.insert(old.spec.pipeline.clone(), old);
            }
            None => {
                let _ = std::fs::remove_file(config_file);
            }
        }
    }

    pub async fn remove(&mut self, name: &str) -> Value {
        self.failed_applies.remove(name);
        let removed = match self.running.remove(name) {
            Some(mut gone) => {
                if let Some(child) = gone.child.as_mut() {
                    let _ = child.kill().await;
                }
                let _ = std::fs::remove_file(&gone.config_file);
                true
            }
            None => false,
        };
        json!({"pipeline": name, "removed": removed})
    }

    /// Stops every collector and waits for each to exit (the agent is stopping: none may outlive it).
    /// Each gets SIGTERM and [`STOP_GRACE`] to flush its exporters, then SIGKILL.
    pub async fn stop_all(&mut self) {
        let children: Vec<Child> = self
            .running
            .values_mut()
            .filter_map(|supervised| {
                supervised.restart_at = None;
                supervised.child.take()
            })
            .collect();
        futures_util::future::join_all(children.into_iter().map(stop_gracefully)).await;
    }

    /// Restarts collectors that died (with backoff) and measures the running ones.
    pub fn supervise(&mut self) -> Vec<MetricsBatch> {
        let now = tokio::time::Instant::now();
        let mut batches = Vec::new();
        for (name, s) in &mut self.running {
            if let Some(child) = s.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    s.last_error = Some(format!("the collector exited ({status}); restarting"));
                    s.child = None;
                    s.restart_at = Some(now + s.backoff.next_wait());
                }
            }
            if s.child.is_none() && s.restart_at.is_some_and(|at| at <= now) {
                match spawn(&self.bin, &s.config_file, &self.workdir) {
                    Ok(child) => {
                        s.child = Some(child);
                        s.restart_at = None;
                        s.last_error = None;
                        s.last_cpu = None;
                    }
                    Err(e) => {
                        s.last_error = Some(e);
                        s.restart_at = Some(now + s.backoff.next_wait());
                    }
                }
            }
            if let Some(pid) = s.child.as_ref().and_then(Child::id) {
                let (cpu_total, memory) = process_usage(pid);
                let cpu = cpu_total - s.last_cpu.unwrap_or(cpu_total);
                s.last_cpu = Some(cpu_total);
                s.batches += 1;
                let stats = IntervalStats { cpu_seconds: cpu.max(0.0), memory_bytes: memory, ..Default::default() };
                let mut batch = measurement(name, &s.spec, &stats, Utc::now(), s.batches);
                // Series counts are the collector's own business: only its cost is measured here.
                batch.samples.retain(|sample| {
                    matches!(sample.metric.as_str(), "pipeline.cpu.seconds" | "pipeline.memory.bytes")
                });
                batches.push(batch);
            }
        }
        batches
    }

    /// What is applied now, to restore after a restart.
    pub fn applied(&self) -> Vec<ApplyPayload> {
        self.running.values().map(|s| s.spec.clone()).collect()
    }

    pub fn is_degraded(&self) -> bool {
        !self.failed_applies.is_empty() || self.running.values().any(|s| s.last_error.is_some())
    }

    pub fn statuses(&self) -> Vec<PipelineStatus> {
        self.running
            .iter()
            .map(|(name, s)| PipelineStatus {
                name: name.clone(),
                version: s.spec.version,
                config_hash: s.hash.clone(),
                state: if s.child.is_some() { "running" } else { "failed" }.into(),
                error: s.last_error.clone(),
            })
            .collect()
    }
}

/// The config file of a pipeline: its name made file-safe, plus a short hash of the exact name so two
/// names that look alike once made safe (`a.b`, `a_b`) never share a file.
fn file_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let hash = config_hash(name);
    format!("{safe}-{}.yaml", &hash["sha256:".len().."sha256:".len() + 8])
}

/// CPU seconds since start and resident bytes of a process.
fn process_usage(pid: u32) -> (f64, usize) {
    phoenix_pipeline::procfs::stat(Path::new(&format!("/proc/{pid}")))
        .map_or((0.0, 0), |s| (s.cpu_seconds, s.rss_bytes as usize))
}

/// How long a stopping collector may take to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

async fn stop_gracefully(mut child: Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with our own, not yet reaped child's pid and a valid signal.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
