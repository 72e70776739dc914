//! Reading `/proc`: `/proc/<pid>/stat` for the `process` source, the agent's own usage and its
//! collectors; the host's name.

use std::path::Path;

/// What one `stat` line says about a process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    /// The short executable name (`comm`).
    pub comm: String,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    pub threads: f64,
    pub virtual_bytes: f64,
    pub rss_bytes: f64,
}

/// This process's resident set, bytes (`/proc/self/statm`; 0 when it cannot be read).
pub fn resident_bytes() -> u64 {
    let (_, page) = ticks_and_page_size();
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()))
        .map_or(0, |pages| pages * page as u64)
}

/// The host's memory figures (`/proc/meminfo`), read once.
pub struct MemInfo(String);

impl MemInfo {
    pub fn read() -> MemInfo {
        MemInfo(std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
    }

    /// A figure in bytes (`MemTotal:`, `MemAvailable:`, …); 0 when it is not there.
    pub fn bytes(&self, key: &str) -> u64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }
}

/// Clock ticks per second and the page size (both system constants).
/// This host's name (`unknown` when /proc does not say).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn ticks_and_page_size() -> (f64, f64) {
    // SAFETY: sysconf only reads system constants.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    (if ticks > 0 { ticks as f64 } else { 100.0 }, if page > 0 { page as f64 } else { 4096.0 })
}

/// Parses a `stat` file's text.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // `comm` is in parentheses and may contain spaces: the fields after it start at the last ')'.
    let (head, rest) = text.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let (ticks, page) = ticks_and_page_size();
    // Indices after ')': state=0, utime=11, stime=12, num_threads=17, vsize=20, rss=21.
    Some(ProcStat {
        comm,
        cpu_seconds: (number(11)? + number(12)?) / ticks,
        threads: number(17)?,
        virtual_bytes: number(20)?,
        rss_bytes: number(21)? * page,
    })
}

/// `stat` of the process at `dir` (`/proc/<pid>` or `/proc/self`); `None` when it is gone.
pub fn stat(dir: &Path) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_parsed() {
        let line = "42 (my (odd) app) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 123456789 2000 18446744073709551615";
        let stat = parse_stat(line).expect("parsed");
        assert_eq!(stat.comm, "my (odd) app");
        let (ticks, page) = ticks_and_page_size();
        assert_eq!(stat.cpu_seconds, 300.0 / ticks);
        assert_eq!((stat.threads, stat.virtual_bytes, stat.rss_bytes), (7.0, 123456789.0, 2000.0 * page));
    }

    #[test]
    fn this_process_can_be_read() {
        let me = stat(Path::new("/proc/self")).expect("own stat");
        assert!(me.rss_bytes > 0.0 && me.threads >= 1.0);
    }
}
