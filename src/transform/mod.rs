//! Transforms: what happens to events between their sources and their sinks.
//!
//! A transform takes the chunks of its `inputs` (sources or other transforms' outputs) and
//! gives one chunk per output of its own, each the input's events kept, dropped or rewritten.
//! Types plug in through [`TransformKind`] (its `build()` is the registry) and one trait,
//! [`Transform`]; one file per type:
//! - [`remap`]: a VRL program per event ([`vrl_program`], on the event as shipped,
//!   [`event_value`]);
//! - [`route`]: one output per named VRL condition, and `_unmatched`;
//! - [`sample`]: one event in `rate`, by a key so that related events stay together;
//! - [`throttle`]: at most `threshold` events per window and key;
//! - [`log_to_metric`]: counters, gauges and histograms for `/metrics`, from event fields;
//! - [`topology`]: the graph the `inputs` draw, checked and unfolded per source;
//! - [`unit_test`]: the config's own `tests:`, run by `log-agent test`.
//!
//! Invariant: an output chunk keeps its input's file and end offset, and its events keep the
//! order and offsets of the lines they came from. A sink acks a chunk up to the next event it
//! has not delivered, or to the end offset, so an event a transform dropped is acked once
//! what came before it is: handled, not lost.

pub mod event_value;
pub mod log_to_metric;
pub mod remap;
pub mod route;
pub mod sample;
pub mod throttle;
pub mod topology;
pub mod unit_test;
pub mod vrl_program;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_norway::{Mapping, Value};

use crate::config::errors::{ConfigError, did_you_mean, from_value_with};
use crate::event::{Chunk, Event};
use crate::metrics::Metrics;
use crate::metrics::derived::DerivedMetric;

pub use log_to_metric::LogToMetricConfig;
pub use remap::RemapConfig;
pub use route::RouteConfig;
pub use sample::SampleConfig;
pub use throttle::ThrottleConfig;

/// The output a route gives the events no condition matched.
pub const UNMATCHED: &str = "_unmatched";

/// One transform of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransformConfig {
    /// Names of the sources, transforms or transform outputs (`route.errors`) it takes.
    pub inputs: Vec<String>,
    /// Its type and the type's settings.
    #[serde(flatten)]
    pub kind: TransformKind,
}

/// The transform types, read by their `type` key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformKind {
    /// A VRL program.
    Remap(RemapConfig),
    /// Named VRL conditions, one output each.
    Route(RouteConfig),
    /// One event in N.
    Sample(SampleConfig),
    /// At most N events per window and key.
    Throttle(ThrottleConfig),
    /// Metrics from event fields.
    LogToMetric(LogToMetricConfig),
}

/// Why a transform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A VRL program did not compile.
    #[error("{key}: VRL program does not compile:\n{report}")]
    Compile {
        /// The config key of the program.
        key: String,
        /// VRL's report (line, column, fix).
        report: String,
    },
    /// A program file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        /// The config key.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The config key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl From<TransformError> for ConfigError {
    fn from(error: TransformError) -> Self {
        match error {
            TransformError::Compile { key, report } => {
                ConfigError::invalid(key, format!("VRL program does not compile:\n{report}"))
            }
            TransformError::Read { key, path, source } => {
                ConfigError::invalid(key, format!("cannot read {}: {source}", path.display()))
            }
            TransformError::Invalid { key, message } => ConfigError::invalid(key, message),
        }
    }
}

/// A running transform. Shared by the tailers of every source it takes (so its state, a
/// sample's count or a throttle's window, is one for all of them).
pub trait Transform: Send + Sync {
    /// Pushes onto `out` one chunk per output, in [`TransformKind::outputs`] order, each with
    /// the file and end offset of `chunk` (and no event, when none goes that way).
    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>);

    /// The metrics it derives from events, for `/metrics` ([`register_derived`]).
    fn derived_metrics(&self) -> &[Arc<DerivedMetric>] {
        &[]
    }
}

/// Serves the derived metrics of `transforms` (the running ones, once a start or a reload is
/// committed: a reload refused leaves the running ones' metrics as they were).
pub fn register_derived(metrics: &Metrics, transforms: &BTreeMap<String, Arc<dyn Transform>>) {
    for (name, transform) in transforms {
        metrics.derived.register(name, transform.derived_metrics());
    }
}

impl TransformKind {
    /// The `type` names.
    pub const TYPES: &'static [&'static str] =
        &["remap", "route", "sample", "throttle", "log_to_metric"];

    /// Reads the settings of a transform of type `kind` (its other keys in `rest`).
    pub fn from_parts(key: &str, kind: &str, rest: Mapping) -> Result<Self, ConfigError> {
        let rest = Value::Mapping(rest);
        let common = &["inputs"];
        let kind = match kind {
            "remap" => TransformKind::Remap(from_value_with(key, rest, common)?),
            "route" => TransformKind::Route(from_value_with(key, rest, common)?),
            "sample" => TransformKind::Sample(from_value_with(key, rest, common)?),
            "throttle" => TransformKind::Throttle(from_value_with(key, rest, common)?),
            "log_to_metric" => TransformKind::LogToMetric(from_value_with(key, rest, common)?),
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.type"),
                    format!(
                        "unknown transform type `{other}`, expected one of {}{}",
                        Self::TYPES.join(", "),
                        did_you_mean(other, Self::TYPES)
                    ),
                ));
            }
        };
        Ok(kind)
    }

    /// Its outputs: `""` for the one output of most types (named as the transform), a
    /// route's names and [`UNMATCHED`].
    pub fn outputs(&self) -> Vec<String> {
        match self {
            TransformKind::Route(route) => route
                .route
                .keys()
                .cloned()
                .chain([UNMATCHED.to_owned()])
                .collect(),
            _ => vec![String::new()],
        }
    }

    /// True when the transform is of use with nothing taking its output (it counts).
    pub fn may_end_a_path(&self) -> bool {
        matches!(self, TransformKind::LogToMetric(_))
    }

    /// Makes relative paths relative to `base_dir`.
    pub fn resolve(&mut self, base_dir: &Path) {
        if let TransformKind::Remap(remap) = self
            && let Some(file) = &mut remap.file
        {
            *file = base_dir.join(&*file);
        }
    }

    /// Builds transform `name` (config key `key`): programs compiled, settings checked.
    pub fn build(
        &self,
        key: &str,
        name: &str,
        metrics: &Metrics,
    ) -> Result<Arc<dyn Transform>, TransformError> {
        let counters = metrics.transform(name);
        Ok(match self {
            TransformKind::Remap(config) => Arc::new(remap::Remap::new(key, config, counters)?),
            TransformKind::Route(config) => Arc::new(route::Route::new(key, config, counters)?),
            TransformKind::Sample(config) => Arc::new(sample::Sample::new(key, config, counters)?),
            TransformKind::Throttle(config) => {
                Arc::new(throttle::Throttle::new(key, config, counters)?)
            }
            TransformKind::LogToMetric(config) => Arc::new(log_to_metric::LogToMetric::new(
                key, name, config, counters,
            )?),
        })
    }
}

/// Compiles the program at `key` (a condition or a remap).
pub(crate) fn compile(key: &str, source: &str) -> Result<vrl_program::VrlProgram, TransformError> {
    vrl_program::VrlProgram::compile(source).map_err(|report| TransformError::Compile {
        key: key.to_owned(),
        report,
    })
}

/// Compiles the `exclude` condition (if any) of a filtering transform `key`.
pub(crate) fn compile_exclude(
    key: &str,
    exclude: Option<&str>,
) -> Result<Option<vrl_program::VrlProgram>, TransformError> {
    exclude
        .map(|source| compile(&format!("{key}.exclude"), source))
        .transpose()
}

/// The chunk of `input`'s events that `keep` says to keep, sharing its bytes and fields.
pub(crate) fn keep_events(input: &Chunk, keep: impl Iterator<Item = Event>) -> Chunk {
    input.derived(
        input.data.clone(),
        keep.collect(),
        Arc::clone(&input.fields),
        0,
    )
}

/// An `exclude` condition of a filtering transform (`sample`, `throttle`), over one chunk: the
/// events it matches pass untouched. A condition that fails on an event does not match it; the
/// failure is counted and logged.
pub(crate) struct Exclude<'a> {
    key: &'a str,
    program: Option<&'a vrl_program::VrlProgram>,
    log: &'a ErrorLog,
    scratch: Vec<u8>,
    /// Events the condition failed on.
    pub(crate) failed: u64,
}

impl<'a> Exclude<'a> {
    /// The condition `program` of transform `key`, its failures logged to `log`.
    pub(crate) fn new(
        key: &'a str,
        program: Option<&'a vrl_program::VrlProgram>,
        log: &'a ErrorLog,
    ) -> Self {
        Exclude {
            key,
            program,
            log,
            scratch: Vec::new(),
            failed: 0,
        }
    }

    /// True when `event` of `chunk` matches the condition (false without one).
    pub(crate) fn matches(&mut self, chunk: &Chunk, event: &Event) -> bool {
        let Some(program) = self.program else {
            return false;
        };
        match program
            .check(event_value::to_value(chunk, event, &mut self.scratch))
            .1
        {
            Ok(matched) => matched,
            Err(error) => {
                self.failed += 1;
                self.log.warn(self.key, &error);
                false
            }
        }
    }
}

/// Counts what a filtering transform kept of `chunk` (and what it dropped and failed on), and
/// pushes its one output.
pub(crate) fn keep_counted(
    metrics: &crate::metrics::TransformMetrics,
    chunk: &Chunk,
    kept: Vec<Event>,
    failed: u64,
    out: &mut Vec<Chunk>,
) {
    use crate::metrics::add;
    let n = chunk.events.len();
    add(&metrics.events_in, n as u64);
    add(&metrics.events_out, kept.len() as u64);
    add(&metrics.events_dropped, n.saturating_sub(kept.len()) as u64);
    add(&metrics.errors, failed);
    out.push(keep_events(chunk, kept.into_iter()));
}

/// Logs a transform's error at most once a minute (the rest are counted): a program failing on
/// every line must not flood the agent's own log.
#[derive(Debug, Default)]
pub(crate) struct ErrorLog {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ErrorLog {
    pub(crate) fn warn(&self, key: &str, error: &str) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(60)) {
            *last = Some(now);
            tracing::warn!(transform = %key, %error, "a VRL program failed on an event (counted in log_agent_transform_errors_total; logged once a minute)");
        }
    }
}
