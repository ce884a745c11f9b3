//! `log-agent replay`: read given files (plain or compressed) to their end once, ship every line
//! through the same pipeline as `run` (buffers, batches, retries, dead letters), wait for every
//! ack, and sum up what happened.
//!
//! Replay keeps no checkpoints: acks are tracked in memory only to know when everything sent is
//! delivered. Files are read one after another on one thread, each rotation family oldest
//! first ([`paths`]), so that lines reach the sinks in the order they were written.

pub mod paths;
mod progress;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};

pub use paths::PathError;
pub use progress::ProgressMode;
use progress::ProgressState;

use crate::config::Config;
use crate::event::{Chunk, Event, Field, FieldsView, FileMeta};
use crate::metrics::{Metrics, add};
use crate::parse::assemble::{FileState, Release};
use crate::parse::{Format, SourceParser};
use crate::pipeline::{Router, SinkSet};
use crate::sink::{BuildError, SinkCommon, SinkConfig, SinkKind};
use crate::source::checkpoint::{CheckpointStore, FileRecord, SinkId};
use crate::source::compression::{Decoded, SNIFF_BYTES, codec_of, decompressed_head};
use crate::source::fingerprint::{Fingerprint, read_head};
use crate::source::framing::{Framed, Framer};
use crate::source::open::open_regular;
use crate::source::tailer::now_rfc3339;
use crate::source::{FileSourceConfig, SourceConfig, SourceKind};

/// What to replay, where to, and how.
#[derive(Debug)]
pub struct ReplayOptions {
    /// Files, directories and globs, as given on the command line.
    pub paths: Vec<String>,
    /// A configuration whose sources give each file its settings and sinks.
    pub config: Option<Config>,
    /// A sink replacing the configuration's (or the only one, without a configuration).
    pub to: Option<SinkKind>,
    /// A format replacing the sources'.
    pub format: Option<Format>,
    /// Only events at or after this time (events without a time are kept and counted).
    pub since: Option<DateTime<FixedOffset>>,
    /// Only events before this time.
    pub until: Option<DateTime<FixedOffset>>,
    /// At most this many lines a second.
    pub rate_limit: Option<NonZeroU64>,
    /// Where dead letters go: the configuration's `data_dir` by default, else the current
    /// directory.
    pub data_dir: Option<PathBuf>,
    /// How progress is shown while it runs.
    pub progress: ProgressMode,
}

/// Why a replay could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A PATH argument names nothing to read.
    #[error(transparent)]
    Paths(#[from] PathError),
    /// With a configuration of several sources, a file that none of them includes.
    #[error(
        "{0}: matches no source's `include` in the configuration; replay it with --to, or add a source for it"
    )]
    NoSource(PathBuf),
    /// Bad command-line usage.
    #[error("{0}")]
    Usage(String),
    /// A sink could not be built.
    #[error(transparent)]
    Sink(#[from] BuildError),
    /// The reader thread could not start.
    #[error("starting the reader: {0}")]
    Spawn(std::io::Error),
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    /// Files read (to their end, or to their damage).
    pub files: u64,
    /// Lines read.
    pub lines: u64,
    /// Bytes of content read (uncompressed).
    pub bytes: u64,
    /// Lines that failed to parse (shipped anyway, with `parse_error`).
    pub parse_errors: u64,
    /// Lines left out by `--since`/`--until`.
    pub outside_time_range: u64,
    /// Events dropped by a source's `filter`.
    pub filtered: u64,
    /// Lines without a time that `--since`/`--until` could judge (kept).
    pub undated: u64,
    /// Events delivered, summed over sinks.
    pub delivered: u64,
    /// Events sent to a sink and not delivered there (dead-lettered, dropped, or interrupted),
    /// summed over sinks.
    pub undelivered: u64,
    /// Files that could not be opened, with the reason.
    pub unreadable: Vec<String>,
    /// Files read up to damage (a corrupt or truncated compressed file), with where and why.
    pub damaged: Vec<String>,
    /// True when stopped by a signal before every file was read.
    pub interrupted: bool,
    /// How long it took.
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// True when every line read was delivered and nothing was damaged or left unread.
    pub fn succeeded(&self) -> bool {
        self.undelivered == 0
            && self.damaged.is_empty()
            && self.unreadable.is_empty()
            && !self.interrupted
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(1e-6);
        writeln!(
            f,
            "replay: {} files, {} lines, {} bytes in {:.2} s ({:.0} events/s)",
            self.files,
            self.lines,
            self.bytes,
            seconds,
            self.lines as f64 / seconds
        )?;
        writeln!(
            f,
            "  delivered: {}, undelivered: {}, parse errors: {}",
            self.delivered, self.undelivered, self.parse_errors
        )?;
        if self.filtered > 0 {
            writeln!(f, "  dropped by filter: {}", self.filtered)?;
        }
        if self.outside_time_range > 0 || self.undated > 0 {
            writeln!(
                f,
                "  outside --since/--until: {}, without a time (kept): {}",
                self.outside_time_range, self.undated
            )?;
        }
        for line in &self.unreadable {
            writeln!(f, "  unreadable: {line}")?;
        }
        for line in &self.damaged {
            writeln!(f, "  damaged: {line}")?;
        }
        if self.interrupted {
            writeln!(f, "  interrupted: files were left unread")?;
        }
        Ok(())
    }
}

/// Name of the source of a replay without a configuration.
const REPLAY_SOURCE: &str = "replay";
/// Name of the `--to` sink.
const TO_SINK: &str = "to";
/// Attempts of a `--to` sink before a batch is dead-lettered: a replay ends, it does not wait
/// forever for a destination that is down.
const TO_SINK_ATTEMPTS: u32 = 8;
/// Bytes read at once.
const READ_SIZE: usize = 256 * 1024;
/// Bytes read at once under `--rate-limit`, so that pacing is smooth.
const PACED_READ_SIZE: usize = 16 * 1024;

/// A file to read and the source whose settings apply to it.
struct PlannedFile {
    path: PathBuf,
    source: String,
}

/// The configuration a replay runs with, and its files in order.
struct Plan {
    config: Config,
    files: Vec<PlannedFile>,
    warnings: Vec<String>,
}

fn plan(options: &mut ReplayOptions) -> Result<Plan, ReplayError> {
    let (paths, warnings) = paths::expand(&options.paths)?;
    let mut config = match options.config.take() {
        Some(config) => config,
        None => {
            if options.to.is_none() {
                return Err(ReplayError::Usage(
                    "replay needs --to (stdout, blackhole, file:PATH, kafka://HOST:PORT/TOPIC) or --config"
                        .into(),
                ));
            }
            let source: FileSourceConfig = serde_norway::from_str("include: []")
                .map_err(|e| ReplayError::Usage(e.to_string()))?;
            Config {
                mode: crate::config::Mode::Sidecar,
                pods_root: crate::config::kubernetes::default_pods_root(),
                data_dir: PathBuf::from("."),
                sources: BTreeMap::from([(
                    REPLAY_SOURCE.to_owned(),
                    SourceConfig {
                        kind: SourceKind::File(source),
                    },
                )]),
                sinks: BTreeMap::new(),
                api: None,
                shutdown_timeout_ms: 20_000,
                checkpoint_interval_ms: 1_000,
            }
        }
    };
    if let Some(dir) = &options.data_dir {
        config.data_dir.clone_from(dir);
    }
    if let Some(format) = options.format {
        for (name, source) in config.sources.iter_mut() {
            let SourceKind::File(file) = &mut source.kind;
            if format == Format::Regex && file.pattern.is_none() {
                return Err(ReplayError::Usage(format!(
                    "--format regex: source `{name}` has no `pattern`; give one in --config"
                )));
            }
            file.format = format;
        }
    }
    if let Some(to) = options.to.take() {
        let common = SinkCommon {
            inputs: config.sources.keys().cloned().collect(),
            batch: Default::default(),
            buffer: Default::default(),
            retry: crate::pipeline::retry::RetryConfig {
                max_attempts: Some(TO_SINK_ATTEMPTS),
                ..Default::default()
            },
        };
        config.sinks = BTreeMap::from([(TO_SINK.to_owned(), SinkConfig { common, kind: to })]);
    }
    let files = paths
        .into_iter()
        .map(|path| {
            let source = source_for(&config, &path)?;
            Ok(PlannedFile { path, source })
        })
        .collect::<Result<Vec<_>, ReplayError>>()?;
    Ok(Plan {
        config,
        files,
        warnings,
    })
}

/// The source whose `include` matches `path`, or the only source.
fn source_for(config: &Config, path: &Path) -> Result<String, ReplayError> {
    if config.sources.len() == 1
        && let Some(name) = config.sources.keys().next()
    {
        return Ok(name.clone());
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    config
        .sources
        .iter()
        .find(|(_, source)| {
            let SourceKind::File(file) = &source.kind;
            file.include
                .iter()
                .any(|pattern| glob::Pattern::new(pattern).is_ok_and(|p| p.matches_path(&absolute)))
        })
        .map(|(name, _)| name.clone())
        .ok_or_else(|| ReplayError::NoSource(path.to_owned()))
}

/// Replays the files of `options` until they are all read and every line sent is acked, or
/// until `stop` completes (then what was sent is still delivered before returning).
pub async fn replay(
    mut options: ReplayOptions,
    stop: impl Future<Output = ()>,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let Plan {
        config,
        files,
        warnings,
    } = plan(&mut options)?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let metrics = Arc::new(Metrics::new(
        config.sources.keys().map(String::as_str),
        config.sinks.keys().map(String::as_str),
    ));
    let store = Arc::new(CheckpointStore::ephemeral());
    let mut sinks = SinkSet::spawn(&config.sinks, &config.data_dir, &store, &metrics)?;
    let sink_tasks = std::mem::take(&mut sinks.tasks);
    let mut routes = BTreeMap::new();
    for (name, source) in &config.sources {
        let SourceKind::File(file) = &source.kind;
        let (router, ids) = sinks.route_to(&config.sinks_of(name));
        routes.insert(
            name.clone(),
            Route {
                router,
                sinks: ids,
                parser: SourceParser::new(file),
                max_line_bytes: file.max_line_bytes,
            },
        );
    }
    drop(sinks);

    let total_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|md| md.len())
        .sum();
    let progress = Arc::new(ProgressState::new(files.len() as u64, total_bytes));
    let stopping = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        runtime: tokio::runtime::Handle::current(),
        routes,
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        progress: Arc::clone(&progress),
        stopping: Arc::clone(&stopping),
        since: options.since,
        until: options.until,
        pacer: options.rate_limit.map(Pacer::new),
        report: ReaderReport::default(),
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("replay-reader".into())
        .spawn(move || {
            let report = reader.read_all(&files);
            let _ = done_tx.send(report);
        })
        .map_err(ReplayError::Spawn)?;
    let reporter = progress::spawn_reporter(options.progress, Arc::clone(&progress));

    tokio::pin!(stop);
    tokio::pin!(done_rx);
    let report = tokio::select! {
        report = &mut done_rx => report.ok(),
        () = &mut stop => {
            tracing::info!("stopping: no more lines are read; delivering what was sent");
            stopping.store(true, Ordering::Release);
            done_rx.await.ok()
        }
    }
    .unwrap_or_default();
    // The reader's routers are gone with it: each sink delivers what it holds and ends.
    for task in sink_tasks {
        let _ = task.await;
    }
    if let Some(reporter) = reporter {
        reporter.finish().await;
    }

    let snapshot = metrics.snapshot();
    let mut delivered = 0;
    let mut undelivered = 0;
    for (sink_name, sink) in &snapshot.sinks {
        let routed: u64 = config
            .sources
            .keys()
            .filter(|source| config.sinks_of(source).contains(&sink_name.as_str()))
            .map(|source| report.shipped.get(source).copied().unwrap_or(0))
            .sum();
        delivered += sink.events_out;
        undelivered += routed.saturating_sub(sink.events_out);
    }
    Ok(ReplaySummary {
        files: report.files,
        lines: report.lines,
        bytes: report.bytes,
        parse_errors: snapshot.sources.values().map(|s| s.parse_errors).sum(),
        outside_time_range: report.outside_time_range,
        filtered: report.filtered,
        undated: report.undated,
        delivered,
        undelivered,
        unreadable: report.unreadable,
        damaged: report.damaged,
        interrupted: report.interrupted,
        elapsed: started.elapsed(),
    })
}

/// Where a source's lines go, and how they are read.
struct Route {
    router: Router,
    sinks: Vec<SinkId>,
    /// The source's parsing stages (format, multiline, timestamp, enrichment, filter).
    parser: SourceParser,
    max_line_bytes: usize,
}

/// What the reader thread did.
#[derive(Debug, Default)]
struct ReaderReport {
    files: u64,
    lines: u64,
    bytes: u64,
    outside_time_range: u64,
    filtered: u64,
    undated: u64,
    /// Events handed to the pipeline, per source.
    shipped: BTreeMap<String, u64>,
    unreadable: Vec<String>,
    damaged: Vec<String>,
    interrupted: bool,
}

/// Reads the files one after another on its own thread.
struct Reader {
    runtime: tokio::runtime::Handle,
    routes: BTreeMap<String, Route>,
    store: Arc<CheckpointStore>,
    metrics: Arc<Metrics>,
    progress: Arc<ProgressState>,
    stopping: Arc<AtomicBool>,
    since: Option<DateTime<FixedOffset>>,
    until: Option<DateTime<FixedOffset>>,
    pacer: Option<Pacer>,
    report: ReaderReport,
}

/// The pipeline is closed: nothing more can be sent.
struct Closed;

impl Reader {
    fn read_all(mut self, files: &[PlannedFile]) -> ReaderReport {
        for file in files {
            if self.stopping.load(Ordering::Acquire) {
                self.report.interrupted = true;
                break;
            }
            match self.read_file(file) {
                Ok(()) => {}
                Err(Closed) => {
                    self.report.interrupted = true;
                    break;
                }
            }
            self.progress.files_done.fetch_add(1, Ordering::Relaxed);
        }
        self.report
    }

    fn read_file(&mut self, planned: &PlannedFile) -> Result<(), Closed> {
        // Taken out while its file is read (emitting needs `self` mutably), then put back.
        let Some(route) = self.routes.remove(&planned.source) else {
            return Ok(());
        };
        let result = self.read_file_to(planned, &route);
        self.routes.insert(planned.source.clone(), route);
        result
    }

    fn read_file_to(&mut self, planned: &PlannedFile, route: &Route) -> Result<(), Closed> {
        let path_text = std::path::absolute(&planned.path)
            .unwrap_or_else(|_| planned.path.clone())
            .to_string_lossy()
            .into_owned();
        // The operator named these paths (links included), but what is opened must be a regular
        // file that never blocks: a FIFO swapped in after listing is refused, not waited on.
        let consumed = Arc::new(AtomicU64::new(0));
        let opened = open_regular(&planned.path, None, true)
            .map_err(std::io::Error::other)
            .and_then(|file| {
                let raw_head = read_head(&file, SNIFF_BYTES)?;
                let head = match codec_of(&raw_head) {
                    // Damage at the very start shows when the file is read, where it is reported.
                    Some(codec) => {
                        decompressed_head(&file, codec, HEAD_FOR_KEY).unwrap_or_default()
                    }
                    None => read_head(&file, HEAD_FOR_KEY)?,
                };
                let reader = Decoded::new(file, &raw_head, Arc::clone(&consumed))?;
                Ok((reader, head))
            });
        let (mut reader, head) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(file = %path_text, error = %e, "cannot read file");
                self.report.unreadable.push(format!("{path_text}: {e}"));
                return Ok(());
            }
        };
        // Stable across replays of the same file, so that consumers can drop the duplicates of
        // a replay repeated.
        let key = xxhash_rust::xxh3::xxh3_64(&[path_text.as_bytes(), b"\0", &head].concat());
        let meta = Arc::new(
            FileMeta::new(key, planned.source.as_str(), path_text.as_str())
                .with_enrichment(Arc::clone(route.parser.enrichment())),
        );
        self.store.track(
            FileRecord {
                source: Arc::clone(&meta.source),
                path: Arc::clone(&meta.path),
                dev: 0,
                ino: 0,
                fingerprint: Fingerprint::of(&head),
                key,
                offset: 0,
                updated_unix: 0,
                finished: false,
                marks: Vec::new(),
                copy: false,
            },
            &route.sinks,
        );
        let mut framer = Framer::new(0, route.max_line_bytes);
        let mut held = FileState::default();
        let read_size = if self.pacer.is_some() {
            PACED_READ_SIZE
        } else {
            READ_SIZE
        };
        let source_metrics = self.metrics.source(&planned.source);
        let mut progress_seen = 0;
        self.report.files += 1;
        // Whole lines go out as they are read; at the end, the unterminated last line too. At an
        // interruption or damage, not the piece of a line read last: only what parsing held
        // (whole lines of an open multiline group).
        let finish_last_line = loop {
            if self.stopping.load(Ordering::Acquire) {
                self.report.interrupted = true;
                break false;
            }
            let read = framer.read_from(&mut reader, read_size);
            let seen = consumed.load(Ordering::Relaxed);
            self.progress
                .bytes_done
                .fetch_add(seen - progress_seen, Ordering::Relaxed);
            progress_seen = seen;
            match read {
                Ok(0) => break true,
                Ok(got) => {
                    self.report.bytes += got as u64;
                    add(&source_metrics.bytes_in, got as u64);
                    let mut events = Vec::new();
                    let framed = framer.frame(&mut events);
                    let end = framer.commit_offset();
                    let release = Release::Due(std::time::Instant::now());
                    self.emit(route, &meta, &mut held, framed, events, end, release)?;
                }
                Err(e) => {
                    let at = if let Some(codec) = reader.codec() {
                        format!("{codec} byte {seen}")
                    } else {
                        format!("byte {seen}")
                    };
                    let cut = framer.pending_bytes();
                    tracing::error!(file = %path_text, error = %e, at = %at, cut_line_bytes = cut, "file damaged; the lines before the damage are shipped");
                    self.report.damaged.push(format!(
                        "{path_text}: at {at}: {e} (a cut line of {cut} bytes left out)"
                    ));
                    break false;
                }
            }
        };
        let mut events = Vec::new();
        let framed = if finish_last_line {
            framer.finish(&mut events)
        } else {
            Framed::default()
        };
        let end = framer.commit_offset();
        self.emit(route, &meta, &mut held, framed, events, end, Release::All)
    }

    /// Parses, filters by time and hands on one chunk of a file; `held` is what parsing holds
    /// back between its chunks, `release` what of it may go now.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        route: &Route,
        meta: &Arc<FileMeta>,
        held: &mut FileState,
        framed: Framed,
        events: Vec<Event>,
        end_offset: u64,
        release: Release,
    ) -> Result<(), Closed> {
        let source_metrics = self.metrics.source(&meta.source);
        let lines = events.len() as u64;
        self.report.lines += lines;
        add(&source_metrics.events_in, lines);
        add(&source_metrics.truncated_lines, framed.stats.truncated);
        add(
            &source_metrics.invalid_utf8_lines,
            framed.stats.invalid_utf8,
        );
        let parsed = route.parser.process(held, framed.data, events, release);
        let counts = parsed.counts;
        add(&source_metrics.parse_errors, counts.parse_errors);
        add(&source_metrics.filtered_events, counts.filtered);
        add(&source_metrics.multiline_groups, counts.multiline_groups);
        add(&source_metrics.multiline_cut, counts.multiline_cut);
        add(
            &source_metrics.timestamp_failures,
            counts.timestamp_failures,
        );
        self.report.filtered += counts.filtered;
        let mut events = parsed.events;
        if events.is_empty() {
            return Ok(());
        }
        let end_offset = parsed
            .hold_from
            .map_or(end_offset, |hold| end_offset.min(hold));
        if self.since.is_some() || self.until.is_some() {
            let (since, until) = (self.since, self.until);
            let before = events.len();
            let mut undated = 0;
            let (data, fields) = (&parsed.data, &parsed.fields);
            events.retain(|event| match event_time(event, data, fields) {
                Some(at) => since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u),
                None => {
                    undated += 1;
                    true
                }
            });
            self.report.undated += undated;
            self.report.outside_time_range += (before - events.len()) as u64;
        }
        let shipped = events.len() as u64;
        *self
            .report
            .shipped
            .entry(meta.source.to_string())
            .or_default() += shipped;
        self.store.emitted(meta.key, end_offset);
        let chunk = Chunk {
            file: Arc::clone(meta),
            read_time: now_rfc3339().into(),
            data: parsed.data,
            events,
            fields: parsed.fields,
            end_offset,
        };
        self.runtime
            .block_on(route.router.send(chunk))
            .map_err(|_| Closed)?;
        if let Some(pacer) = &mut self.pacer {
            pacer.pace(shipped);
        }
        Ok(())
    }
}

/// The time an event says it happened: the time parsed out of its line (the access and error
/// log formats, `timestamp:`), else an RFC 3339 `timestamp`, `time`, `@timestamp` or `ts` field.
fn event_time(event: &Event, data: &[u8], store: &[Field]) -> Option<DateTime<FixedOffset>> {
    if let Some(nanos) = event.time {
        return Some(DateTime::from_timestamp_nanos(nanos).fixed_offset());
    }
    let fields = FieldsView::new(data, store, event.fields?);
    ["timestamp", "time", "@timestamp", "ts"]
        .iter()
        .filter_map(|key| fields.get(key)?.as_str())
        .find_map(|text| DateTime::parse_from_rfc3339(&text).ok())
}

/// Bytes of a file's (uncompressed) head that go into its key.
const HEAD_FOR_KEY: usize = 1024;

/// Paces lines to a rate.
struct Pacer {
    lines_per_second: u64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: NonZeroU64) -> Self {
        Pacer {
            lines_per_second: rate.get(),
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Counts `lines` more and sleeps until they are due.
    fn pace(&mut self, lines: u64) {
        self.sent += lines;
        let due = Duration::from_secs_f64(self.sent as f64 / self.lines_per_second as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}
