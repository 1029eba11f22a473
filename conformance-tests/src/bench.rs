//! Benchmark support: whole-process samples taken side by side with a peer in the same run,
//! summary statistics, a description of the machine, and the markdown `docs/benchmarks.md` is
//! made of. Numbers are never asserted in tests; they are measured here and written down.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// Samples of one measured thing, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// What was measured.
    pub label: String,
    ms: Vec<f64>,
}

impl Samples {
    /// An empty series.
    pub fn new(label: &str) -> Samples {
        Samples {
            label: label.to_string(),
            ms: Vec::new(),
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.ms.push(d.as_secs_f64() * 1000.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ms.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1);
        v[rank]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }
}

/// Runs `f` on a new thread that first enters the network namespace at `netns`. Children spawned
/// there inherit the namespace without a `pre_exec` hook, so std can use its fast spawn path and
/// a timing measures the plugin, not the harness. Panics (running nothing) if setns fails.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// One whole-process call: spawn with `env` (nothing else) and `stdin`, read stdout, wait.
/// Panics if the call fails, since a failed call's time means nothing.
pub fn timed_call(program: &Path, env: &[(String, String)], stdin: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(program)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin);
    }
    let mut out = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut out);
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("wait {}: {e}", program.display()));
    let took = start.elapsed();
    assert!(
        status.success(),
        "benchmark call of {} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out)
    );
    took
}

/// A markdown table row per series: median, p10, p90, samples, and the ratio of the first
/// series' median to each one's (how many times faster than the first).
pub fn table(series: &[&Samples]) -> String {
    let mut out = String::from("| what | median ms | p10 ms | p90 ms | samples | speed-up vs first |\n|---|---:|---:|---:|---:|---:|\n");
    let base = series.first().map_or(f64::NAN, |s| s.median());
    for s in series {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {} | {:.1}x |",
            s.label,
            s.median(),
            s.quantile(0.1),
            s.quantile(0.9),
            s.len(),
            base / s.median()
        );
    }
    out
}

/// One line per fact about the machine the numbers were taken on.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    format!(
        "- CPU: {cpu}, {cores} cores available\n- memory: {} GiB\n- kernel: {}\n",
        mem_kb / (1024 * 1024),
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut s = Samples::new("x");
        for ms in [5, 1, 3, 2, 4] {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.median(), 3.0);
        assert_eq!(s.quantile(0.0), 1.0);
        assert_eq!(s.quantile(1.0), 5.0);
    }

    #[test]
    fn table_shows_the_speed_up_against_the_first_series() {
        let mut a = Samples::new("peer");
        let mut b = Samples::new("ours");
        a.push(Duration::from_millis(10));
        b.push(Duration::from_millis(2));
        let t = table(&[&a, &b]);
        assert!(
            t.contains("| ours | 2.00 |") && t.contains("| 5.0x |"),
            "{t}"
        );
    }
}
