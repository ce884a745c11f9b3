//! log-agent: tails log files and ships every line, at least once, to pluggable sinks.
//!
//! # Layout
//!
//! - [`config`]: the YAML configuration, `${VAR}` interpolation, every check on it (every error
//!   reported, in the user's terms), the `mode: daemonset` preset and the pod identity, checks
//!   against the machine (missing directories), and the config file watched for reloads.
//! - [`event`]: the [`event::Chunk`]s of [`event::Event`]s that flow from sources to sinks, and
//!   the [`event::Batch`]es in which sinks deliver them.
//! - [`source`]: the file tailer: discovery, `notify` watcher, reading, line framing,
//!   fingerprints, the checkpoint store that acks advance, and pod metadata from kubelet paths.
//! - [`parse`]: pure parsers that turn lines into structured events (`raw`, `json`, `logfmt`,
//!   `regex`, nginx/apache, `cri`, `docker`), multiline grouping, timestamps, enrichment, filters.
//! - [`pipeline`]: routing, per-sink bounded buffers, batching, retries with backoff, acks.
//! - [`sink`]: the [`sink::Sink`] trait, the tagged sink config enum that builds sinks, one file
//!   per sink (`file`, `stdout`, `blackhole`, `kafka`, a folder each for `http` and `otlp`), the
//!   event encodings and templates.
//! - [`metrics`]: counters per source, per sink, of checkpoints and of config reloads.
//! - [`health`]: heartbeats of the agent's loops and sink health, for liveness and readiness.
//! - [`api`]: the HTTP API on `api.address`: `/healthz`, `/readyz`, `/readyz/sinks`, `/metrics`
//!   (Prometheus, with the `process_*` metrics).
//! - [`agent`]: [`run`], which wires all of the above, applies config reloads (sources and sinks
//!   started, reconfigured and stopped one by one) and drains it all on shutdown.
//! - [`replay`]: `log-agent replay`: given files (plain or compressed) read once, in rotation order,
//!   through the same pipeline, with a summary at the end.
//!
//! The binary (`src/main.rs`) is only the command line around [`run`] (signals, reload
//! triggers, completions, man pages); tests call [`run`] in-process with a shutdown future of
//! their own, and [`run_with`] with their own reloads.

pub mod agent;
pub mod api;
pub mod checkpoint;
pub mod config;
pub mod event;
pub mod health;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod replay;
pub mod sink;
pub mod source;
pub mod spacing;

pub use agent::{RunError, RunHooks, RunSummary, run, run_with};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this build comes from (`unknown` outside a git checkout, unless the build was
/// given `$LOG_AGENT_COMMIT`).
pub const COMMIT: &str = env!("LOG_AGENT_COMMIT");
pub use config::Config;
