//! What the agent process and its host use, measured from `/proc` for each heartbeat.

use phoenix_nats::wire::ResourceUsage;

/// Remembers the last host CPU reading, to report the busy share over the interval since.
#[derive(Default)]
pub struct ResourceMeter {
    last_host: Option<(f64, f64)>,
}

/// (busy, total) CPU ticks of the host.
fn host_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal; guest time is already inside user and nice.
    let values: Vec<f64> = line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
    let total: f64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    Some((total - idle, total))
}

fn own_cpu_and_rss() -> (f64, u64) {
    phoenix_pipeline::procfs::stat(std::path::Path::new("/proc/self"))
        .map_or((0.0, 0), |s| (s.cpu_seconds, s.rss_bytes as u64))
}

fn host_memory() -> (u64, u64) {
    let meminfo = phoenix_pipeline::procfs::MemInfo::read();
    let total = meminfo.bytes("MemTotal:");
    (total.saturating_sub(meminfo.bytes("MemAvailable:")), total)
}

impl ResourceMeter {
    /// Usage now; host CPU is the busy share since the previous call (0 on the first).
    pub fn measure(&mut self) -> ResourceUsage {
        let (agent_cpu_seconds, agent_rss_bytes) = own_cpu_and_rss();
        let (host_memory_used_bytes, host_memory_total_bytes) = host_memory();
        let now = host_ticks();
        let host_cpu_pct = match (self.last_host, now) {
            (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
                (busy1 - busy0) / (total1 - total0) * 100.0
            }
            _ => 0.0,
        };
        self.last_host = now;
        ResourceUsage {
            agent_cpu_seconds,
            agent_rss_bytes,
            host_cpu_pct,
            host_memory_used_bytes,
            host_memory_total_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process_and_host() {
        let mut meter = ResourceMeter::default();
        let first = meter.measure();
        assert!(first.agent_rss_bytes > 1_000_000 && first.host_memory_total_bytes > first.host_memory_used_bytes);
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        let second = meter.measure();
        assert!(second.agent_cpu_seconds >= first.agent_cpu_seconds);
        assert!((0.0..=100.0).contains(&second.host_cpu_pct));
    }
}
