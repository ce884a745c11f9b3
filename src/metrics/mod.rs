//! Counters the agent keeps about itself.
//!
//! Plain atomics, bumped once per chunk or per batch (never per line), grouped per source and per
//! sink. [`Metrics::snapshot`] copies them out, for tests, the shutdown summary and the
//! Prometheus exporter of [`crate::api`], which renders them at scrape time. Sources and sinks
//! come and go with config reloads; one that stays (changed or not) keeps its counters.

pub mod derived;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Events read and framed.
    pub events_in: AtomicU64,
    /// Bytes read from files.
    pub bytes_in: AtomicU64,
    /// Lines cut at `max_line_bytes`.
    pub truncated_lines: AtomicU64,
    /// Lines that were not valid UTF-8.
    pub invalid_utf8_lines: AtomicU64,
    /// Lines that failed to parse with the source's format.
    pub parse_errors: AtomicU64,
    /// Events dropped by the source's `filter`.
    pub filtered_events: AtomicU64,
    /// Multiline events of more than one line.
    pub multiline_groups: AtomicU64,
    /// Multiline events cut by `max_lines` or `max_bytes`.
    pub multiline_cut: AtomicU64,
    /// Events whose configured `timestamp` field was missing or did not parse.
    pub timestamp_failures: AtomicU64,
    /// Files currently open.
    pub open_files: AtomicU64,
    /// Files read from offset 0 again because they were truncated or rewritten in place.
    pub truncations: AtomicU64,
    /// Bytes of truncated files lost with no copy holding them: seen past what was read before
    /// the truncation, or the start of a line whose rest it took (copytruncate's own loss).
    pub truncation_lost_bytes: AtomicU64,
    /// Files taken for copies of lines already read from another file (logrotate's `copy`,
    /// copytruncate under a live writer) and not shipped again.
    pub copies_skipped: AtomicU64,
    /// Errors opening, reading or stat-ing files.
    pub read_errors: AtomicU64,
    /// Symbolic links matched by the globs and not followed (`follow_symlinks` off), or
    /// swapped in before an open; each counted once while it stays.
    pub skipped_symlinks: AtomicU64,
    /// Directories matched by the globs where files were expected; each counted once.
    pub skipped_directories: AtomicU64,
    /// FIFOs, sockets and device nodes matched by the globs, never opened; each counted once.
    pub skipped_special_files: AtomicU64,
    /// Include globs whose directory does not exist, as last checked.
    pub missing_directories: AtomicU64,
    /// Records a network source took from its senders into its journal.
    pub records_received: AtomicU64,
    /// Requests, connections' records or datagrams a network source refused (journal full,
    /// malformed, too large), by the sender's protocol's means.
    pub requests_rejected: AtomicU64,
    /// Datagrams dropped because the journal was full (UDP has no way to push back).
    pub datagrams_dropped: AtomicU64,
    /// Bytes in the source's journal segments on disk.
    pub journal_bytes: AtomicU64,
    /// Writes (with their syncs, under `durability: fsync`) of the journal: one per group.
    pub journal_syncs: AtomicU64,
    /// Journal segments deleted once delivered.
    pub journal_segments_deleted: AtomicU64,
    /// Rotated files `retention` deleted once delivered.
    pub retention_deleted_files: AtomicU64,
    /// Their bytes.
    pub retention_deleted_bytes: AtomicU64,
    /// Bytes by which the files exceed `retention.max_bytes` after the last sweep, when
    /// nothing more could be deleted (0: within the limit).
    pub retention_over_limit_bytes: AtomicU64,
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Events delivered.
    pub events_out: AtomicU64,
    /// Encoded bytes delivered.
    pub bytes_out: AtomicU64,
    /// Batches delivered.
    pub batches: AtomicU64,
    /// Failed delivery attempts.
    pub errors: AtomicU64,
    /// Delivery attempts that were retries.
    pub retries: AtomicU64,
    /// Events dropped by `when_full: drop_newest`.
    pub dropped_buffer_full: AtomicU64,
    /// Events that failed permanently and went to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Events waiting in the sink's buffer or in its batch in flight.
    pub buffered_events: AtomicU64,
    /// Read time (Unix microseconds) of the oldest event the sink holds and has not delivered;
    /// 0 when it holds none. Set when the sink goes from holding nothing to holding something,
    /// and after each delivery: not per event.
    pub oldest_unshipped_micros: AtomicU64,
}

/// Counters of one transform.
#[derive(Debug, Default)]
pub struct TransformMetrics {
    /// Events that came in.
    pub events_in: AtomicU64,
    /// Events that went out (to each output once).
    pub events_out: AtomicU64,
    /// Events dropped on purpose: `abort`, sampled or throttled out, `drop_on_error`. Each is
    /// acked as handled. (A route output nothing takes is not counted here: the route hands
    /// its events on, and nothing takes them.)
    pub events_dropped: AtomicU64,
    /// Events on which a VRL program failed (kept as they came, or dropped with
    /// `drop_on_error`).
    pub errors: AtomicU64,
    /// Keys that a `throttle` could not track apart (past `max_keys`), counted per event.
    pub keys_overflowed: AtomicU64,
}

/// Counters of the checkpoint store.
#[derive(Debug, Default)]
pub struct CheckpointMetrics {
    /// Checkpoint files written.
    pub writes: AtomicU64,
    /// Checkpoint writes that failed.
    pub write_errors: AtomicU64,
}

type ByName<T> = RwLock<BTreeMap<String, Arc<T>>>;

/// Every counter of one running agent.
#[derive(Debug, Default)]
pub struct Metrics {
    sources: ByName<SourceMetrics>,
    sinks: ByName<SinkMetrics>,
    transforms: ByName<TransformMetrics>,
    /// The metrics `log_to_metric` transforms derive from events.
    pub derived: Arc<derived::DerivedRegistry>,
    /// Checkpoint store counters.
    pub checkpoints: Arc<CheckpointMetrics>,
    /// Config reloads.
    pub reloads: Arc<ReloadMetrics>,
}

/// Counters of config reloads (SIGHUP, `--watch-config`).
#[derive(Debug, Default)]
pub struct ReloadMetrics {
    /// Reloads applied.
    pub applied: AtomicU64,
    /// Reloads refused: the new config was invalid (or a sink of it could not be built), and
    /// the running one was kept.
    pub failed: AtomicU64,
    /// 1 when the last reload was applied (or there was none), 0 when it failed.
    pub last_succeeded: AtomicU64,
}

/// The entry of `name`, made if missing.
fn entry<T: Default>(map: &ByName<T>, name: &str) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|p| p.into_inner()).get(name) {
        return Arc::clone(found);
    }
    let mut map = map.write().unwrap_or_else(|p| p.into_inner());
    Arc::clone(map.entry(name.to_owned()).or_default())
}

fn entries<T>(map: &ByName<T>) -> Vec<(String, Arc<T>)> {
    map.read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(name, m)| (name.clone(), Arc::clone(m)))
        .collect()
}

impl Metrics {
    /// Counters for the named sources and sinks.
    pub fn new<'a>(
        sources: impl IntoIterator<Item = &'a str>,
        sinks: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let metrics = Metrics {
            reloads: Arc::new(ReloadMetrics {
                last_succeeded: AtomicU64::new(1),
                ..ReloadMetrics::default()
            }),
            ..Metrics::default()
        };
        for name in sources {
            metrics.source(name);
        }
        for name in sinks {
            metrics.sink(name);
        }
        metrics
    }

    /// The counters of source `name` (made at the first call).
    pub fn source(&self, name: &str) -> Arc<SourceMetrics> {
        entry(&self.sources, name)
    }

    /// The counters of sink `name` (made at the first call).
    pub fn sink(&self, name: &str) -> Arc<SinkMetrics> {
        entry(&self.sinks, name)
    }

    /// The counters of transform `name` (made at the first call).
    pub fn transform(&self, name: &str) -> Arc<TransformMetrics> {
        entry(&self.transforms, name)
    }

    /// Each transform's counters, by name.
    pub fn transforms(&self) -> Vec<(String, Arc<TransformMetrics>)> {
        entries(&self.transforms)
    }

    /// Forgets the counters of the transforms not named (removed by a reload).
    pub fn retain_transforms(&self, transforms: &[&str]) {
        self.transforms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| transforms.contains(&name.as_str()));
    }

    /// Forgets the counters of the sources and sinks not named (removed by a reload).
    pub fn retain(&self, sources: &[&str], sinks: &[&str]) {
        self.sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| sources.contains(&name.as_str()));
        self.sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| sinks.contains(&name.as_str()));
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            sources: entries(&self.sources)
                .into_iter()
                .map(|(name, m)| {
                    let s = SourceSnapshot {
                        events_in: get(&m.events_in),
                        bytes_in: get(&m.bytes_in),
                        truncated_lines: get(&m.truncated_lines),
                        invalid_utf8_lines: get(&m.invalid_utf8_lines),
                        parse_errors: get(&m.parse_errors),
                        filtered_events: get(&m.filtered_events),
                        multiline_groups: get(&m.multiline_groups),
                        multiline_cut: get(&m.multiline_cut),
                        timestamp_failures: get(&m.timestamp_failures),
                        open_files: get(&m.open_files),
                        truncations: get(&m.truncations),
                        truncation_lost_bytes: get(&m.truncation_lost_bytes),
                        copies_skipped: get(&m.copies_skipped),
                        read_errors: get(&m.read_errors),
                        skipped_symlinks: get(&m.skipped_symlinks),
                        skipped_directories: get(&m.skipped_directories),
                        skipped_special_files: get(&m.skipped_special_files),
                        missing_directories: get(&m.missing_directories),
                        records_received: get(&m.records_received),
                        requests_rejected: get(&m.requests_rejected),
                        datagrams_dropped: get(&m.datagrams_dropped),
                        journal_bytes: get(&m.journal_bytes),
                        journal_syncs: get(&m.journal_syncs),
                        journal_segments_deleted: get(&m.journal_segments_deleted),
                        retention_deleted_files: get(&m.retention_deleted_files),
                        retention_deleted_bytes: get(&m.retention_deleted_bytes),
                        retention_over_limit_bytes: get(&m.retention_over_limit_bytes),
                    };
                    (name, s)
                })
                .collect(),
            sinks: entries(&self.sinks)
                .into_iter()
                .map(|(name, m)| {
                    let s = SinkSnapshot {
                        events_out: get(&m.events_out),
                        bytes_out: get(&m.bytes_out),
                        batches: get(&m.batches),
                        errors: get(&m.errors),
                        retries: get(&m.retries),
                        dropped_buffer_full: get(&m.dropped_buffer_full),
                        dead_lettered: get(&m.dead_lettered),
                        buffered_events: get(&m.buffered_events),
                        oldest_unshipped_micros: get(&m.oldest_unshipped_micros),
                    };
                    (name, s)
                })
                .collect(),
            checkpoint_writes: get(&self.checkpoints.writes),
            checkpoint_write_errors: get(&self.checkpoints.write_errors),
            reloads_applied: get(&self.reloads.applied),
            reloads_failed: get(&self.reloads.failed),
        }
    }
}

/// Values of a source's counters at one moment.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    pub events_in: u64,
    pub bytes_in: u64,
    pub truncated_lines: u64,
    pub invalid_utf8_lines: u64,
    pub parse_errors: u64,
    pub filtered_events: u64,
    pub multiline_groups: u64,
    pub multiline_cut: u64,
    pub timestamp_failures: u64,
    pub open_files: u64,
    pub truncations: u64,
    pub truncation_lost_bytes: u64,
    pub copies_skipped: u64,
    pub read_errors: u64,
    pub skipped_symlinks: u64,
    pub skipped_directories: u64,
    pub skipped_special_files: u64,
    pub missing_directories: u64,
    pub records_received: u64,
    pub requests_rejected: u64,
    pub datagrams_dropped: u64,
    pub journal_bytes: u64,
    pub journal_syncs: u64,
    pub journal_segments_deleted: u64,
    pub retention_deleted_files: u64,
    pub retention_deleted_bytes: u64,
    pub retention_over_limit_bytes: u64,
}

/// Values of a sink's counters at one moment.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SinkSnapshot {
    pub events_out: u64,
    pub bytes_out: u64,
    pub batches: u64,
    pub errors: u64,
    pub retries: u64,
    pub dropped_buffer_full: u64,
    pub dead_lettered: u64,
    pub buffered_events: u64,
    pub oldest_unshipped_micros: u64,
}

/// Values of every counter at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Per source, by name.
    pub sources: BTreeMap<String, SourceSnapshot>,
    /// Per sink, by name.
    pub sinks: BTreeMap<String, SinkSnapshot>,
    /// Checkpoint files written.
    pub checkpoint_writes: u64,
    /// Checkpoint writes that failed.
    pub checkpoint_write_errors: u64,
    /// Config reloads applied.
    pub reloads_applied: u64,
    /// Config reloads refused.
    pub reloads_failed: u64,
}
