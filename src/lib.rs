//! log-agent: tails log files and ships every line, at least once, to pluggable sinks.
//!
//! # Layout
//!
//! Listed from the ground up: a module imports only from the layers listed before its own
//! (`tests/architecture.rs` checks it on the source), so data flows one way and no import cycle
//! can form. `docs/architecture.md` draws the data flow and a file's lifecycle.
//!
//! The ground:
//! - [`event`]: the [`event::Chunk`]s of [`event::Event`]s that flow from sources to sinks, the
//!   [`event::Batch`]es in which sinks deliver them, JSON string writing, the static fields and
//!   pod identity every event of a source carries, and pod metadata from kubelet paths.
//! - [`metrics`]: counters per source, per sink, of checkpoints and of config reloads.
//! - [`health`]: heartbeats of the agent's loops and sink health, for liveness and readiness.
//! - [`spacing`]: background work (scans, checkpoint writes) spaced by its own cost.
//! - [`config::errors`], [`mod@config::interpolate`]: the configuration's vocabulary (errors in the
//!   user's terms, `${VAR}` names) that every plug-in's config uses.
//!
//! Parsing and checkpoints:
//! - [`parse`]: pure parsers that turn lines into structured events (`raw`, `json`, `logfmt`,
//!   `regex`, nginx/apache, `cri`, `docker`), multiline grouping, timestamps, filters.
//! - [`checkpoint`]: what is remembered of each file (record, fingerprint, stream marks), the
//!   store that acks advance, the checkpoint file written atomically, and its writer loop.
//!
//! Sources and sinks:
//! - [`source`]: the file tailer (one file per concern under `source/tailer/`), discovery, the
//!   `notify` watcher, line framing, compressed files, copy recognition, and the step from
//!   framed lines to a chunk that the tailer and replay share; retention of delivered rotated
//!   files; the network sources (`otlp`, `syslog`, `http`), which write what they receive to a
//!   journal ([`source::journal`]) that the tailer then ships like any file.
//! - [`sink`]: the [`sink::Sink`] trait, the tagged sink config enum that builds sinks, one file
//!   per sink (`file`, `stdout`, `blackhole`, `kafka`, a folder each for `http` and `otlp`), the
//!   delivery settings every sink has (batch, buffer, retry), encodings and templates.
//!
//! Above them:
//! - [`pipeline`]: routing, per-sink bounded buffers, batching, retries with backoff, acks.
//! - [`config`]: the YAML configuration, which assembles the sources' and sinks' configs:
//!   `${VAR}` interpolation, every check on it (every error reported), the `mode: daemonset`
//!   preset and the pod identity, checks against the machine, the file watched for reloads.
//! - [`api`]: the HTTP API on `api.address`: `/healthz`, `/readyz`, `/readyz/sinks`, `/metrics`
//!   (Prometheus, with the `process_*` metrics).
//! - [`replay`]: `log-agent replay`: given files (plain or compressed) read once, in rotation
//!   order, through the same parsing and pipeline, with a summary at the end.
//! - [`agent`]: [`run`], which wires all of the above, applies config reloads (sources and sinks
//!   started, reconfigured and stopped one by one) and drains it all on shutdown.
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
pub mod transform;

pub use agent::{RunError, RunHooks, RunSummary, run, run_with};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this build comes from (`unknown` outside a git checkout, unless the build was
/// given `$LOG_AGENT_COMMIT`).
pub const COMMIT: &str = env!("LOG_AGENT_COMMIT");
pub use config::Config;
