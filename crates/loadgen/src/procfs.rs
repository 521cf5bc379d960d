//! What `/proc` says about a process: its resident set (this process, or
//! `--rss-pid`) and this process's CPU times, read around a load phase.

use tokio::time::Instant;

/// The process whose RSS is reported: this one, or `--rss-pid`.
pub static RSS_PID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

pub fn rss_kb() -> Option<u64> {
    let path = match RSS_PID.get().copied().flatten() {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (user, system) CPU seconds of this process so far.
pub fn cpu_times() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let tick = 100.0;
    Some((
        f.get(11)?.parse::<f64>().ok()? / tick,
        f.get(12)?.parse::<f64>().ok()? / tick,
    ))
}

/// Reads the CPU times at `at`.
pub fn cpu_at(at: Instant) -> tokio::task::JoinHandle<Option<(f64, f64)>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        cpu_times()
    })
}
