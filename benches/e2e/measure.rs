//! Measuring a process from `/proc`: its CPU seconds and its peak or current RSS, one run's
//! figures (`Sample`), a signal sent to it, and the state every measured run starts from
//! (`settle`: dirty pages flushed, the page cache dropped, the input read once).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// CPU seconds (user + sys) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `VmRSS:`-like field of a process, in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    status_line(&format!("/proc/{pid}/status"), field)
}

/// One measured run.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

pub fn kill(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status();
}

/// Puts the machine in the same state before every measured run: the dirty pages earlier runs
/// left are flushed (a previous output is gigabytes), the page cache is dropped where allowed
/// (otherwise a full cache makes each run's output pay for reclaiming it, in system time), and
/// the input is read once so that it is cached for every contender alike.
pub fn settle(files: &[PathBuf]) {
    let _ = Command::new("sync").status();
    let _ = fs::write("/proc/sys/vm/drop_caches", b"1");
    for file in files {
        let _ = Command::new("cat").arg(file).stdout(Stdio::null()).status();
    }
}

/// The number after `field` in a `/proc` file of `field value unit` lines.
pub fn status_line(path: &str, field: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
