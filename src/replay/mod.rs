//! `log-agent replay`: read given files (plain or compressed) to their end once, ship every line
//! through the same pipeline as `run` (buffers, batches, retries, dead letters), wait for every
//! ack, and sum up what happened.
//!
//! Replay keeps no checkpoints: acks are tracked in memory only to know when everything sent is
//! delivered. Files are read one after another on one thread, each rotation family oldest
//! first ([`paths`]), so that lines reach the sinks in the order they were written.

pub mod paths;
mod progress;
mod reader;
mod summary;

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

pub use paths::PathError;
pub use progress::ProgressMode;
use progress::{ProgressState, WatchedSink};
use reader::{Pacer, Reader, ReaderReport, Route};
pub use summary::{DeadLetters, ReplaySummary};

use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::parse::{Format, SourceParser};
use crate::pipeline::SinkSet;
use crate::sink::{BuildError, SinkCommon, SinkConfig, SinkKind};
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
    /// A transform could not be built.
    #[error(transparent)]
    Transform(#[from] crate::transform::TransformError),
}

/// Name of the source of a replay without a configuration.
const REPLAY_SOURCE: &str = "replay";
/// Name of the `--to` sink.
const TO_SINK: &str = "to";
/// Attempts of a `--to` sink before a batch is dead-lettered: a replay ends, it does not wait
/// forever for a destination that is down.
const TO_SINK_ATTEMPTS: u32 = 8;

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
    if let (Some(since), Some(until)) = (options.since, options.until)
        && since >= until
    {
        return Err(ReplayError::Usage(format!(
            "--since {} is not before --until {}: no event could be kept",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
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
                        kind: SourceKind::File(Box::new(source)),
                        journal_tail: None,
                    },
                )]),
                transforms: BTreeMap::new(),
                tests: Vec::new(),
                tap: None,
                sinks: BTreeMap::new(),
                api: None,
                kubernetes: None,
                shutdown_delay_ms: 0,
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
            let Some(file) = source.tailed_mut() else {
                continue;
            };
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
            batch: to.default_batch(),
            buffer: Default::default(),
            retry: crate::sink::delivery::RetryConfig {
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
            source.tailed().is_some_and(|file| {
                file.include.iter().any(|pattern| {
                    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_path(&absolute))
                })
            })
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
    // A replay goes through the same transforms as the running agent would.
    let mut transforms = BTreeMap::new();
    for (name, transform) in &config.transforms {
        let built = transform
            .kind
            .build(&format!("transforms.{name}"), name, &metrics)?;
        transforms.insert(name.clone(), built);
    }
    crate::transform::register_derived(&metrics, &transforms);
    let mut routes = BTreeMap::new();
    for (name, source) in &config.sources {
        // A network source replays its journal's segments.
        let Some(file) = source.tailed() else {
            continue;
        };
        let (router, ids) = sinks.route_to(&config.branches_of(name), &transforms);
        routes.insert(
            name.clone(),
            Route {
                router,
                sinks: ids,
                parser: SourceParser::new(file.parsing()),
                max_line_bytes: file.max_line_bytes,
            },
        );
    }
    let sink_health = std::mem::take(&mut sinks.health);
    drop(sinks);

    let total_bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|md| md.len())
        .sum();
    let watched = sink_health
        .iter()
        .map(|(name, health)| WatchedSink {
            name: name.clone(),
            metrics: metrics.sink(name),
            health: Arc::clone(health),
        })
        .collect();
    let progress = Arc::new(ProgressState::new(files.len() as u64, total_bytes, watched));
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
            // What transforms drop is handled, not undelivered: only direct routes are counted.
            .filter(|source| {
                let branch = config.branches_of(source);
                branch.is_direct() && branch.sinks.contains(sink_name)
            })
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
        time_range: options.since.is_some() || options.until.is_some(),
        dead_letters: snapshot
            .sinks
            .iter()
            .filter(|(_, sink)| sink.dead_lettered > 0)
            .map(|(name, sink)| {
                let path = crate::pipeline::dead_letter_path(&config.data_dir, name);
                DeadLetters {
                    sink: name.clone(),
                    events: sink.dead_lettered,
                    path: std::path::absolute(&path).unwrap_or(path),
                }
            })
            .collect(),
        events_on_stdout: config
            .sinks
            .values()
            .any(|sink| matches!(sink.kind, SinkKind::Stdout(_))),
        elapsed: started.elapsed(),
    })
}
