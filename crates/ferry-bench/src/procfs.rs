//! What /proc says about a running process: its peak RSS (VmHWM) and CPU time, per thread too.
//! Threads that end early (Ferry's file reader, say) vanish from /proc with their figures, so a
//! sampler keeps the last value seen for each one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct ProcStats {
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kib: u64,
    /// CPU time (user + system) of the whole process, clock ticks.
    pub cpu_ticks: u64,
    /// Per thread id: (thread name, CPU ticks).
    pub threads: HashMap<u32, (String, u64)>,
}

impl ProcStats {
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ticks as f64 / ticks_per_sec()
    }

    /// CPU seconds per thread name, busiest first ("tokio-runtime-w" threads add up).
    pub fn by_thread_name(&self) -> Vec<(String, f64)> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for (name, ticks) in self.threads.values() {
            *m.entry(name).or_default() += ticks;
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(n, t)| (n.to_string(), t as f64 / ticks_per_sec()))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// "name 1.2s, name 0.3s, …", the threads that used at least 50 ms.
    pub fn thread_summary(&self) -> String {
        self.thread_summary_per(1.0)
    }

    /// The same with every figure divided by `units` (CPU seconds per GiB, say).
    pub fn thread_summary_per(&self, units: f64) -> String {
        self.by_thread_name()
            .into_iter()
            .filter(|(_, s)| *s >= 0.05)
            .map(|(n, s)| format!("{n} {:.1}s", s / units))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime and the name from a /proc `stat` line; the name may hold spaces and parens.
fn parse_stat(s: &str) -> Option<(String, u64)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s.get(open + 1..close)?.to_string();
    // Fields after the name start with field 3 (state); utime and stime are fields 14 and 15.
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

/// Reads the process once into `stats`. Returns false once the process is gone (or a zombie,
/// whose memory figures are gone).
pub fn sample(pid: u32, stats: &Mutex<ProcStats>) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let Some(hwm) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    else {
        return false;
    };
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s));
    let mut threads = vec![];
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(v) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                threads.push((tid, v));
            }
        }
    }
    let Ok(mut s) = stats.lock() else {
        return false;
    };
    s.hwm_kib = s.hwm_kib.max(hwm);
    if let Some((_, ticks)) = cpu {
        s.cpu_ticks = s.cpu_ticks.max(ticks);
    }
    for (tid, v) in threads {
        s.threads.insert(tid, v);
    }
    true
}

/// Samples `pid` every 100 ms until it is gone (or the task is aborted).
pub fn spawn_sampler(pid: u32, stats: Arc<Mutex<ProcStats>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if !sample(pid, &stats) {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_line_with_odd_name() {
        let line = "42 (tokio (x) w) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0";
        assert_eq!(super::parse_stat(line), Some(("tokio (x) w".into(), 150)));
    }
}
