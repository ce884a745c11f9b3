//! `/metrics`: every counter of the agent in the Prometheus text format.
//!
//! Nothing here runs on the hot path. The tailers and sink tasks bump the plain atomics of
//! [`crate::metrics`]; at scrape time [`AgentCollector`] copies them out and computes the rest
//! from the state the agent keeps anyway: bytes behind from the checkpoint store and the files'
//! sizes, buffer fill from the buffers' semaphores, sink health from [`Health`]. The text is
//! written by `prometheus-client`'s encoder through its `Collector` interface.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::checkpoint::{CheckpointStore, FilePosition};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::buffer::BufferGauge;

/// At most this many per-file series (`log_agent_file_bytes_behind`): the files furthest
/// behind. Per-source totals cover every file; `log_agent_file_series_omitted` counts the rest.
pub const MAX_FILE_SERIES: usize = 500;

/// Prefix of every metric name.
const PREFIX: &str = "log_agent";

/// Everything the exporter reads at scrape time.
#[derive(Debug)]
pub struct AgentCollector {
    /// Counters per source and per sink.
    pub metrics: Arc<Metrics>,
    /// Checkpoints of tracked files.
    pub store: Arc<CheckpointStore>,
    /// Each sink's buffer, by sink name.
    pub buffers: BufferGauges,
    /// Sink health.
    pub health: Arc<Health>,
}

/// Each running sink's buffer gauge, by sink name; a config reload adds and removes them.
pub type BufferGauges = Arc<std::sync::RwLock<BTreeMap<String, BufferGauge>>>;

/// A registry holding the agent's collector, named with the `log_agent_` prefix, and the
/// standard `process_*` metrics.
pub fn registry(collector: AgentCollector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(super::process::ProcessCollector));
    // Metrics derived from events carry the names the user gave them, unprefixed.
    registry.register_collector(Box::new(super::derived::DerivedCollector {
        metrics: Arc::clone(&collector.metrics),
    }));
    let prefixed = registry.sub_registry_with_prefix(PREFIX);
    prefixed.register_collector(Box::new(super::derived::TransformCollector {
        metrics: Arc::clone(&collector.metrics),
    }));
    prefixed.register_collector(Box::new(collector));
    registry
}

/// The registry's metrics as Prometheus text (format 0.0.4).
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How far behind the files are, per source and for the files furthest behind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Behind {
    /// Bytes behind summed per source, and the number of files tracked per source.
    per_source: BTreeMap<String, (u64, u64)>,
    /// (source, path, bytes behind) of at most [`MAX_FILE_SERIES`] files, furthest behind first.
    files: Vec<(String, String, u64)>,
    /// Files left out of `files`.
    omitted: usize,
}

/// Bytes behind of each position: the size of the file still at its path (same device and
/// inode, by `size_of`) minus its checkpoint. A file no longer at its path (rotated away, being
/// read to its end through its descriptor) cannot be sized by path and counts as 0.
fn behind(
    positions: Vec<FilePosition>,
    size_of: impl Fn(&FilePosition) -> Option<u64>,
    cap: usize,
) -> Behind {
    let mut result = Behind::default();
    let mut files = Vec::with_capacity(positions.len());
    for position in positions {
        let bytes = size_of(&position).map_or(0, |size| size.saturating_sub(position.checkpoint));
        let (total, count) = result
            .per_source
            .entry(position.source.clone())
            .or_default();
        *total += bytes;
        *count += 1;
        files.push((position.source, position.path, bytes));
    }
    files.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
    result.omitted = files.len().saturating_sub(cap);
    files.truncate(cap);
    result.files = files;
    result
}

/// The size of the file at the position's path, if it is still the same file.
fn size_at_path(position: &FilePosition) -> Option<u64> {
    let md = std::fs::metadata(&position.path).ok()?;
    (md.dev() == position.dev && md.ino() == position.ino).then_some(md.len())
}

/// Seconds from `micros` (Unix microseconds; 0 for none) to `now_micros`.
fn age_seconds(micros: u64, now_micros: u64) -> f64 {
    if micros == 0 {
        return 0.0;
    }
    now_micros.saturating_sub(micros) as f64 / 1e6
}

fn unix_micros_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0)
}

/// One metric family: its samples, each with its labels.
pub(super) struct Family<'a, M> {
    name: &'a str,
    help: &'a str,
    samples: Vec<(Vec<(&'a str, &'a str)>, M)>,
}

impl<'a, M: EncodeMetric> Family<'a, M> {
    pub(super) fn new(name: &'a str, help: &'a str) -> Self {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    pub(super) fn sample(&mut self, labels: Vec<(&'a str, &'a str)>, metric: M) {
        self.samples.push((labels, metric));
    }

    pub(super) fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let Some((_, first)) = self.samples.first() else {
            return Ok(());
        };
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, first.metric_type())?;
        for (labels, metric) in &self.samples {
            metric.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

pub(super) type Counters<'a> = Family<'a, ConstCounter<u64>>;
type Gauges<'a> = Family<'a, ConstGauge<f64>>;

impl Collector for AgentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.metrics.snapshot();
        let behind = behind(self.store.positions(), size_at_path, MAX_FILE_SERIES);
        let now = unix_micros_now();

        let mut source_counters = [
            Counters::new("source_events_in", "Events read and framed."),
            Counters::new("source_bytes_in", "Bytes read from files."),
            Counters::new(
                "source_parse_errors",
                "Lines that failed to parse with the source's format (shipped raw).",
            ),
            Counters::new("source_truncated_lines", "Lines cut at max_line_bytes."),
            Counters::new(
                "source_invalid_utf8_lines",
                "Lines that were not valid UTF-8.",
            ),
            Counters::new(
                "source_file_truncations",
                "Files read again from offset 0 after a truncation or rewrite.",
            ),
            Counters::new(
                "source_read_errors",
                "Errors opening, reading or stat-ing files.",
            ),
            Counters::new(
                "source_truncation_lost_bytes",
                "Bytes of truncated files lost with no copy holding them (copytruncate's own loss).",
            ),
            Counters::new(
                "source_copies_skipped",
                "Files taken for copies of lines already read from another file, not shipped again.",
            ),
            Counters::new(
                "source_filtered_events",
                "Events dropped by the source's filter (they count as delivered).",
            ),
            Counters::new(
                "source_multiline_groups",
                "Multiline events of more than one line.",
            ),
            Counters::new(
                "source_multiline_cut",
                "Multiline events cut at max_lines or max_bytes.",
            ),
            Counters::new(
                "source_timestamp_failures",
                "Events whose configured timestamp field was missing or did not parse.",
            ),
            Counters::new(
                "source_skipped_symlinks",
                "Symbolic links matched by the globs and not followed, each counted once.",
            ),
            Counters::new(
                "source_skipped_directories",
                "Directories matched by the globs where files were expected, each counted once.",
            ),
            Counters::new(
                "source_skipped_special_files",
                "FIFOs, sockets and device nodes matched by the globs, never opened, each counted once.",
            ),
            Counters::new(
                "source_records_received",
                "Records a network source took from its senders into its journal.",
            ),
            Counters::new(
                "source_requests_rejected",
                "Requests, records or datagrams a network source refused (journal full, malformed, too large).",
            ),
            Counters::new(
                "source_datagrams_dropped",
                "Datagrams dropped because the journal was full (UDP cannot push back).",
            ),
            Counters::new(
                "source_journal_syncs",
                "Group writes of a network source's journal (each synced under durability: fsync).",
            ),
            Counters::new(
                "source_journal_segments_deleted",
                "Journal segments deleted once every sink delivered them.",
            ),
            Counters::new(
                "source_retention_deleted_files",
                "Rotated files retention deleted once every line in them was delivered.",
            ),
            Counters::new(
                "source_retention_deleted_bytes",
                "Bytes of the rotated files retention deleted.",
            ),
        ];
        let mut source_gauges = [
            Gauges::new("source_open_files", "Files open (at most max_open_files)."),
            Gauges::new(
                "source_tracked_files",
                "Files being read or waiting for their last acks.",
            ),
            Gauges::new(
                "source_missing_directories",
                "Include globs whose directory does not exist (nothing is read from them until it does).",
            ),
            Gauges::new(
                "source_bytes_behind",
                "Bytes written to the source's files and not yet delivered by every sink (file size minus checkpoint), summed.",
            ),
            Gauges::new(
                "source_journal_bytes",
                "Bytes in a network source's journal segments on disk (at most journal.max_bytes).",
            ),
            Gauges::new(
                "source_retention_over_limit_bytes",
                "Bytes by which a source's files exceed retention.max_bytes with nothing more deletable (undelivered or live files); 0 within the limit.",
            ),
        ];
        for (name, s) in &snapshot.sources {
            let label = || vec![("source", name.as_str())];
            let counters = [
                s.events_in,
                s.bytes_in,
                s.parse_errors,
                s.truncated_lines,
                s.invalid_utf8_lines,
                s.truncations,
                s.read_errors,
                s.truncation_lost_bytes,
                s.copies_skipped,
                s.filtered_events,
                s.multiline_groups,
                s.multiline_cut,
                s.timestamp_failures,
                s.skipped_symlinks,
                s.skipped_directories,
                s.skipped_special_files,
                s.records_received,
                s.requests_rejected,
                s.datagrams_dropped,
                s.journal_syncs,
                s.journal_segments_deleted,
                s.retention_deleted_files,
                s.retention_deleted_bytes,
            ];
            for (family, value) in source_counters.iter_mut().zip(counters) {
                family.sample(label(), ConstCounter::new(value));
            }
            let (bytes_behind, tracked) = behind.per_source.get(name).copied().unwrap_or_default();
            let gauges = [
                s.open_files,
                tracked,
                s.missing_directories,
                bytes_behind,
                s.journal_bytes,
                s.retention_over_limit_bytes,
            ];
            for (family, value) in source_gauges.iter_mut().zip(gauges) {
                family.sample(label(), ConstGauge::new(value as f64));
            }
        }

        let mut sink_counters = [
            Counters::new("sink_events_out", "Events delivered."),
            Counters::new("sink_bytes_out", "Encoded bytes delivered."),
            Counters::new("sink_batches", "Batches delivered."),
            Counters::new("sink_errors", "Failed delivery attempts."),
            Counters::new("sink_retries", "Delivery attempts that were retries."),
        ];
        let mut dropped = Counters::new(
            "sink_events_dropped",
            "Events not delivered to the sink, by reason: buffer_full (when_full: drop_newest) or dead_letter (failed for good, kept in data_dir/dead_letter/<sink>.ndjson).",
        );
        let mut sink_gauges = [
            Gauges::new(
                "sink_buffer_events",
                "Events held in the sink's buffer or batch in flight.",
            ),
            Gauges::new("sink_buffer_max_events", "buffer.max_events of the sink."),
            Gauges::new(
                "sink_buffer_bytes",
                "Bytes of read data held for the sink (in whole KiB).",
            ),
            Gauges::new("sink_buffer_max_bytes", "buffer.max_bytes of the sink."),
            Gauges::new(
                "sink_buffer_fill_ratio",
                "How full the sink's buffer is, 0 to 1: the fuller of its event and byte counts.",
            ),
            Gauges::new(
                "sink_oldest_unshipped_age_seconds",
                "Age of the oldest event the sink holds and has not delivered (from its read time); 0 when it holds none.",
            ),
        ];
        let mut oldest_overall: f64 = 0.0;
        let buffers = self
            .buffers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, s) in &snapshot.sinks {
            let label = || vec![("sink", name.as_str())];
            let counters = [s.events_out, s.bytes_out, s.batches, s.errors, s.retries];
            for (family, value) in sink_counters.iter_mut().zip(counters) {
                family.sample(label(), ConstCounter::new(value));
            }
            for (reason, value) in [
                ("buffer_full", s.dropped_buffer_full),
                ("dead_letter", s.dead_lettered),
            ] {
                dropped.sample(
                    vec![("sink", name.as_str()), ("reason", reason)],
                    ConstCounter::new(value),
                );
            }
            let (used_bytes, max_events, max_bytes) =
                buffers.get(name.as_str()).map_or((0, 0, 0), |g| {
                    let config = g.config();
                    (
                        g.used_bytes(),
                        config.max_events as u64,
                        config.max_bytes as u64,
                    )
                });
            let ratio = |used: u64, max: u64| {
                if max == 0 {
                    0.0
                } else {
                    used as f64 / max as f64
                }
            };
            let fill = ratio(s.buffered_events, max_events).max(ratio(used_bytes, max_bytes));
            let age = age_seconds(s.oldest_unshipped_micros, now);
            oldest_overall = oldest_overall.max(age);
            let gauges = [
                s.buffered_events as f64,
                max_events as f64,
                used_bytes as f64,
                max_bytes as f64,
                fill.min(1.0),
                age,
            ];
            for (family, value) in sink_gauges.iter_mut().zip(gauges) {
                family.sample(label(), ConstGauge::new(value));
            }
        }
        let mut healthy = Gauges::new(
            "sink_healthy",
            "1 while the sink's deliveries go through, 0 from a failed delivery until the next one that succeeds.",
        );
        let sink_health = self.health.sinks();
        for (name, ok) in &sink_health {
            healthy.sample(
                vec![("sink", name.as_str())],
                ConstGauge::new(if *ok { 1.0 } else { 0.0 }),
            );
        }

        let mut file_behind = Gauges::new(
            "file_bytes_behind",
            "Bytes of the file not yet delivered by every sink (size minus checkpoint), for the files furthest behind (see file_series_omitted).",
        );
        for (source, path, bytes) in &behind.files {
            file_behind.sample(
                vec![("source", source.as_str()), ("path", path.as_str())],
                ConstGauge::new(*bytes as f64),
            );
        }
        let mut omitted = Gauges::new(
            "file_series_omitted",
            "Tracked files left out of file_bytes_behind (at most 500 series are kept).",
        );
        omitted.sample(Vec::new(), ConstGauge::new(behind.omitted as f64));
        let mut oldest = Gauges::new(
            "oldest_unshipped_age_seconds",
            "Age of the oldest event some sink holds and has not delivered; 0 when none.",
        );
        oldest.sample(Vec::new(), ConstGauge::new(oldest_overall));

        let mut checkpoints = [
            Counters::new("checkpoint_writes", "Checkpoint files written."),
            Counters::new("checkpoint_write_errors", "Checkpoint writes that failed."),
        ];
        checkpoints[0].sample(Vec::new(), ConstCounter::new(snapshot.checkpoint_writes));
        checkpoints[1].sample(
            Vec::new(),
            ConstCounter::new(snapshot.checkpoint_write_errors),
        );
        let mut reloads = Counters::new(
            "config_reloads",
            "Config reloads (SIGHUP, --watch-config), by outcome: applied, or failed (the new config was invalid or a sink of it could not be built; the running one was kept).",
        );
        for (outcome, value) in [
            ("applied", snapshot.reloads_applied),
            ("failed", snapshot.reloads_failed),
        ] {
            reloads.sample(vec![("outcome", outcome)], ConstCounter::new(value));
        }
        let mut last_reload = Gauges::new(
            "config_last_reload_successful",
            "1 when the last config reload was applied (or there was none), 0 when it failed.",
        );
        last_reload.sample(
            Vec::new(),
            ConstGauge::new(
                self.metrics
                    .reloads
                    .last_succeeded
                    .load(std::sync::atomic::Ordering::Relaxed) as f64,
            ),
        );
        let mut build = Gauges::new(
            "build_info",
            "Always 1; the labels say which build runs: its version and the commit it comes from.",
        );
        build.sample(
            vec![("version", crate::VERSION), ("commit", crate::COMMIT)],
            ConstGauge::new(1.0),
        );

        for family in source_counters
            .iter()
            .chain(&sink_counters)
            .chain([&dropped])
            .chain(&checkpoints)
            .chain([&reloads])
        {
            family.encode(&mut encoder)?;
        }
        for family in source_gauges.iter().chain(&sink_gauges).chain([
            &healthy,
            &file_behind,
            &omitted,
            &oldest,
            &last_reload,
            &build,
        ]) {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(source: &str, path: &str, checkpoint: u64) -> FilePosition {
        FilePosition {
            source: source.into(),
            path: path.into(),
            dev: 1,
            ino: 1,
            fingerprint: crate::checkpoint::Fingerprint::of(b""),
            checkpoint,
        }
    }

    #[test]
    fn bytes_behind_table() {
        // Sizes by path; a path without a size is no longer the tracked file.
        let sizes: BTreeMap<&str, u64> = [("/a", 100), ("/b", 50), ("/c", 10), ("/d", 5)].into();
        let size_of = |p: &FilePosition| sizes.get(p.path.as_str()).copied();
        let positions = vec![
            position("app", "/a", 40),
            position("app", "/b", 50),
            position("web", "/c", 0),
            position("web", "/d", 9), // shrunk below its checkpoint: 0, not negative
            position("web", "/gone", 7),
        ];
        // (cap, expected files, expected omitted)
        type Case = (usize, &'static [(&'static str, u64)], usize);
        let cases: &[Case] = &[
            (
                10,
                &[("/a", 60), ("/c", 10), ("/b", 0), ("/d", 0), ("/gone", 0)],
                0,
            ),
            (2, &[("/a", 60), ("/c", 10)], 3),
            (0, &[], 5),
        ];
        for (cap, want, omitted) in cases {
            let got = behind(positions.clone(), size_of, *cap);
            let files: Vec<(&str, u64)> =
                got.files.iter().map(|(_, p, b)| (p.as_str(), *b)).collect();
            assert_eq!(&files, want, "cap {cap}");
            assert_eq!(got.omitted, *omitted, "cap {cap}");
            // Totals cover every file whatever the cap.
            assert_eq!(got.per_source["app"], (60, 2));
            assert_eq!(got.per_source["web"], (10, 3));
        }
    }

    #[test]
    fn age_is_zero_without_anything_held() {
        assert_eq!(age_seconds(0, 5_000_000), 0.0);
        assert_eq!(age_seconds(2_000_000, 5_000_000), 3.0);
        assert_eq!(age_seconds(6_000_000, 5_000_000), 0.0);
    }
}
