//! The standard `process_*` metrics of the agent's own process (CPU seconds, resident and
//! virtual memory, open and maximum descriptors, start time), read from `/proc/self` at scrape
//! time. On a system without `/proc` they are left out rather than made up.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc` says about the process.
#[derive(Debug, Default, Clone, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    /// Seconds since the Unix epoch.
    start_time: f64,
}

/// Reads the fields of `/proc/self/stat` (the text after the command name, whose parentheses
/// may hold anything) that the metrics need.
fn parse_stat(
    stat: &str,
    ticks_per_second: f64,
    page_bytes: f64,
    boot_time: f64,
) -> Option<ProcessStats> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (`state`) is the first after the name: field n is at index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks_per_second,
        start_time: boot_time + field(22)? / ticks_per_second,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page_bytes,
    })
}

/// `btime` of `/proc/stat`: when the system booted, in seconds since the Unix epoch.
fn parse_boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn sysconf(name: libc::c_int) -> Option<f64> {
    // SAFETY: sysconf only reads a system setting.
    let value = unsafe { libc::sysconf(name) };
    (value > 0).then_some(value as f64)
}

fn read_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    parse_stat(
        &stat,
        sysconf(libc::_SC_CLK_TCK)?,
        sysconf(libc::_SC_PAGESIZE)?,
        boot,
    )
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the limit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as f64)
}

/// The `process_*` metrics, without a prefix (their names are the standard ones).
#[derive(Debug, Default)]
pub struct ProcessCollector;

fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if let Some(stats) = read_stats() {
            let cpu = ConstCounter::new(stats.cpu_seconds);
            encode_one(
                &mut encoder,
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds.",
                &cpu,
            )?;
            let gauges = [
                (
                    "process_resident_memory_bytes",
                    "Resident memory size, in bytes.",
                    stats.resident_bytes,
                ),
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size, in bytes.",
                    stats.virtual_bytes,
                ),
                (
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch, in seconds.",
                    stats.start_time,
                ),
            ];
            for (name, help, value) in gauges {
                encode_one(&mut encoder, name, help, &ConstGauge::new(value))?;
            }
        }
        let descriptors = [
            ("process_open_fds", "Open file descriptors.", open_fds()),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max_fds(),
            ),
        ];
        for (name, help, value) in descriptors {
            if let Some(value) = value {
                encode_one(&mut encoder, name, help, &ConstGauge::new(value))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_table() {
        // (a /proc/self/stat line, expected stats) at 100 ticks a second, 4 KiB pages, boot at
        // 1,000,000 s.
        let cases = [
            (
                "42 (log-agent) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 8 0 5000 1048576 300 18446744073709551615",
                Some(ProcessStats {
                    cpu_seconds: 4.0,
                    resident_bytes: 300.0 * 4096.0,
                    virtual_bytes: 1_048_576.0,
                    start_time: 1_000_050.0,
                }),
            ),
            // A command name with spaces and parentheses of its own.
            (
                "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 100 10 1 0",
                Some(ProcessStats {
                    cpu_seconds: 0.02,
                    resident_bytes: 4096.0,
                    virtual_bytes: 10.0,
                    start_time: 1_000_001.0,
                }),
            ),
            ("42 (cut) S 1 2 3", None),
            ("no name at all", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line, 100.0, 4096.0, 1_000_000.0), want, "{line}");
        }
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1764990000\nprocesses 9\n"),
            Some(1_764_990_000.0)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    fn this_process_has_stats() {
        let stats = read_stats().unwrap();
        assert!(
            stats.resident_bytes > 0.0 && stats.start_time > 1.0e9,
            "{stats:?}"
        );
        assert!(open_fds().unwrap() >= 3.0);
    }
}
