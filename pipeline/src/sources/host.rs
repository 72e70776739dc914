//! `host`: host-wide CPU time by state, memory by state and load averages, from `/proc`.

use serde::Deserialize;

use super::Source;
use crate::model::{millis_to_nanos, Batch, MetricKind, Point};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {}

pub struct HostSource {
    ticks_per_sec: f64,
}

const CPU_STATES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

impl HostSource {
    pub fn new(_: HostConfig) -> HostSource {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        HostSource { ticks_per_sec: if ticks > 0 { ticks as f64 } else { 100.0 } }
    }

    fn cpu(&self, now_ms: i64, batch: &mut Batch) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return };
        for (state, ticks) in CPU_STATES.iter().zip(line.split_whitespace().skip(1)) {
            if let Ok(ticks) = ticks.parse::<f64>() {
                batch.push(Point::new(
                    "system.cpu.time",
                    MetricKind::COUNTER,
                    &[("state", state)],
                    ticks / self.ticks_per_sec,
                    millis_to_nanos(now_ms),
                ));
            }
        }
    }
}

fn memory(now_ms: i64, batch: &mut Batch) {
    let meminfo = crate::procfs::MemInfo::read();
    let kib = |key: &str| meminfo.bytes(key) as f64;
    let (total, free, buffers, cached) = (kib("MemTotal:"), kib("MemFree:"), kib("Buffers:"), kib("Cached:"));
    let used = (total - free - buffers - cached).max(0.0);
    for (state, bytes) in [("used", used), ("free", free), ("buffered", buffers), ("cached", cached)] {
        batch.push(Point::new(
            "system.memory.usage",
            MetricKind::UP_DOWN_COUNTER,
            &[("state", state)],
            bytes,
            millis_to_nanos(now_ms),
        ));
    }
}

fn load(now_ms: i64, batch: &mut Batch) {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let names = ["system.cpu.load_average.1m", "system.cpu.load_average.5m", "system.cpu.load_average.15m"];
    for (name, value) in names.iter().zip(loadavg.split_whitespace()) {
        if let Ok(value) = value.parse::<f64>() {
            batch.push(Point::new(name, MetricKind::Gauge, &[], value, millis_to_nanos(now_ms)));
        }
    }
}

impl Source for HostSource {
    fn collect(&mut self, now_ms: i64) -> Batch {
        let mut batch = Vec::with_capacity(16);
        self.cpu(now_ms, &mut batch);
        memory(now_ms, &mut batch);
        load(now_ms, &mut batch);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_memory_and_load_of_this_host() {
        let batch = HostSource::new(HostConfig::default()).collect(0);
        let value = |metric: &str, state: Option<&str>| {
            batch.iter().find(|p| p.name() == metric && p.label("state").map(|v| &**v) == state).map(|p| p.number())
        };
        assert!(value("system.cpu.time", Some("idle")).is_some_and(|v| v > 0.0));
        assert!(value("system.memory.usage", Some("used")).is_some_and(|v| v > 0.0));
        assert!(value("system.cpu.load_average.1m", None).is_some());
    }
}
