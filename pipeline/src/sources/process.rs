//! `process`: per-process metrics read from `/proc` (Linux): CPU time, resident and virtual memory,
//! threads and open file descriptors, labelled by pid, executable and owner (and the command line
//! when `include_command: true`) — the high-cardinality input Phoenix exists for.

use std::collections::HashMap;
use std::fs;

use serde::Deserialize;

use std::sync::Arc;

use super::{process_metrics, Source};

use crate::model::{millis_to_nanos, Batch, Label, Metric, Point, Value};

/// Longest command line kept as a label.
const MAX_COMMAND_LEN: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Where procfs is mounted (tests and containers may point elsewhere).
    #[serde(default = "default_proc")]
    proc_root: String,
    /// Label each process with its full command line. Off by default: command lines can carry
    /// secrets (`--password=…`), and they reach wherever the pipeline exports.
    #[serde(default)]
    include_command: bool,
}

fn default_proc() -> String {
    "/proc".into()
}

pub struct ProcessSource {
    root: String,
    include_command: bool,
    /// Interned label keys (command, executable, owner, pid: sorted) and metric names.
    keys: [Arc<str>; 4],
    metrics: [Arc<Metric>; 5],
    users: HashMap<u32, String>,
}

/// What one `/proc/<pid>` yields.
struct ProcessSample {
    pid: String,
    executable: String,
    command: String,
    owner: String,
    cpu_seconds: f64,
    rss_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    /// `None` when `/proc/<pid>/fd` cannot be read (another user's process and no privilege): an
    /// unknown count is left out rather than reported as zero.
    open_fds: Option<f64>,
}

impl ProcessSource {
    pub fn new(config: ProcessConfig) -> ProcessSource {
        ProcessSource {
            root: config.proc_root,
            include_command: config.include_command,
            keys: ["command", "executable", "owner", "pid"].map(Arc::from),
            metrics: process_metrics(),
            users: read_users(),
        }
    }

    fn sample(&self, pid: &str) -> Option<ProcessSample> {
        let dir = format!("{}/{pid}", self.root);
        let stat = crate::procfs::stat(std::path::Path::new(&dir))?;
        let executable = stat.comm.clone();
        let command = fs::read(format!("{dir}/cmdline")).ok().map(|raw| command_line(&raw)).unwrap_or_default();
        let uid = fs::read_to_string(format!("{dir}/status")).ok().and_then(|s| owner_uid(&s));
        Some(ProcessSample {
            pid: pid.to_string(),
            command: if command.is_empty() { format!("[{executable}]") } else { command },
            executable,
            owner: uid.map(|u| self.users.get(&u).cloned().unwrap_or_else(|| u.to_string())).unwrap_or_default(),
            cpu_seconds: stat.cpu_seconds,
            rss_bytes: stat.rss_bytes,
            virtual_bytes: stat.virtual_bytes,
            threads: stat.threads,
            open_fds: fs::read_dir(format!("{dir}/fd")).ok().map(|d| d.count() as f64),
        })
    }
}

impl ProcessSample {
    /// One value per [`PROCESS_METRICS`] entry; `None` for a value that could not be read.
    fn values(&self) -> [Option<f64>; 5] {
        [Some(self.cpu_seconds), Some(self.rss_bytes), Some(self.virtual_bytes), Some(self.threads), self.open_fds]
    }
}

fn command_line(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw).split('\0').filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    text.chars().take(MAX_COMMAND_LEN).collect()
}

fn owner_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn read_users() -> HashMap<u32, String> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

impl Source for ProcessSource {
    fn collect(&mut self, now_ms: i64) -> Batch {
        let Ok(entries) = fs::read_dir(&self.root) else { return Vec::new() };
        let mut batch = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            // A process may exit between listing and reading: then it is simply not in this interval.
            let Some(p) = self.sample(pid) else { continue };
            // Built once and shared by the process's series (five, or four when its fd table is unreadable).
            let k = &self.keys;
            let mut labels: Vec<Label> = Vec::with_capacity(4);
            if self.include_command {
                labels.push((k[0].clone(), Arc::from(p.command.as_str())));
            }
            labels.push((k[1].clone(), Arc::from(p.executable.as_str())));
            labels.push((k[2].clone(), Arc::from(p.owner.as_str())));
            labels.push((k[3].clone(), Arc::from(p.pid.as_str())));
            for (metric, value) in self.metrics.iter().zip(p.values()) {
                let Some(value) = value else { continue };
                batch.push(Point::of(metric.clone(), labels.clone(), Value::Number(value), millis_to_nanos(now_ms)));
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::PROCESS_METRICS;

    #[test]
    fn reads_this_machines_proc_and_finds_the_test_process_itself() {
        let mut source = ProcessSource::new(ProcessConfig { proc_root: default_proc(), include_command: true });
        let batch = source.collect(0);
        let me = std::process::id().to_string();
        let mine: Vec<&Point> = batch.iter().filter(|p| p.label("pid").map(|v| &**v) == Some(me.as_str())).collect();
        let metrics: Vec<&str> = mine.iter().map(|p| p.name()).collect();
        assert_eq!(
            metrics,
            [
                "process.cpu.time",
                "process.memory.rss",
                "process.memory.virtual",
                "process.threads",
                "process.open_file_descriptors"
            ]
        );
        let value = |name: &str| mine.iter().find(|p| p.name() == name).map(|p| p.number()).unwrap_or_default();
        assert!(value("process.memory.rss") > 1_000_000.0, "a test binary holds more than 1 MB");
        assert!(value("process.threads") >= 1.0 && value("process.open_file_descriptors") >= 3.0);
        assert!(mine[0].label("command").is_some_and(|c| !c.is_empty()));
        assert!(mine[0].label("owner").is_some_and(|o| !o.is_empty()));
    }

    #[test]
    fn an_unreadable_descriptor_table_leaves_the_metric_out_instead_of_reporting_zero() {
        let root = std::env::temp_dir().join(format!("phoenix-proc-{}", std::process::id()));
        let pid_dir = root.join("4242");
        fs::create_dir_all(&pid_dir).unwrap();
        let stat = "4242 (app) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 123456789 2000 0";
        fs::write(pid_dir.join("stat"), stat).unwrap();
        let mut source =
            ProcessSource::new(ProcessConfig { proc_root: root.to_string_lossy().into_owned(), include_command: true });

        let metrics = |batch: Batch| batch.iter().map(|p| p.name().to_string()).collect::<Vec<_>>();
        let without_fd_dir = metrics(source.collect(0));
        assert_eq!(without_fd_dir, PROCESS_METRICS[..4]);

        fs::create_dir(pid_dir.join("fd")).unwrap();
        fs::write(pid_dir.join("fd").join("0"), "").unwrap();
        let batch = source.collect(0);
        assert_eq!(batch.last().map(|p| (p.name(), p.number())), Some(("process.open_file_descriptors", 1.0)));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn command_lines_are_joined_and_truncated() {
        assert_eq!(command_line(b"nginx\0-g\0daemon off;\0"), "nginx -g daemon off;");
        assert_eq!(command_line(&vec![b'x'; 1000]).len(), MAX_COMMAND_LEN);
    }
}
