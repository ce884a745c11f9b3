//! Config reloads (SIGHUP, `--watch-config`): what a new config changes, and applying it to
//! the running agent.
//!
//! A new config is checked whole before anything changes (an invalid one arrives here as an
//! error and is only counted), and every new sink instance is built first: a reload applies
//! entirely or not at all. Then:
//!
//! - sinks added start; sinks changed (their type's settings, `batch`, `buffer` or `retry`) get
//!   a new instance in their running task, which sends again what was on its way; sinks removed
//!   deliver what they hold until `shutdown_timeout_ms`, then stop;
//! - every source still running is routed to its sinks under the new config (its tailer goes
//!   on: nothing is read again);
//! - sources changed are drained, wait until what they read is delivered (up to
//!   `shutdown_timeout_ms`), and start again under the new config from their checkpoints;
//!   sources removed stop at once; sources added start.
//!
//! `data_dir` and `api` need a restart: a reload that changes them applies the rest and says
//! so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::running::{Running, stop_source};
use crate::config::{Config, ConfigError};
use crate::metrics::{ReloadMetrics, add};
use crate::pipeline::BuiltSink;
use crate::sink::{BuildError, SinkConfig};

/// A reload asked for: the new config, or why it could not be read.
pub type ReloadRequest = Result<Config, ConfigError>;

/// What a reload changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Sources started.
    pub sources_added: Vec<String>,
    /// Sources stopped.
    pub sources_removed: Vec<String>,
    /// Sources restarted under new settings, from their checkpoints.
    pub sources_restarted: Vec<String>,
    /// Sources that went on as they were (their sinks may have changed).
    pub sources_kept: Vec<String>,
    /// Sinks started.
    pub sinks_added: Vec<String>,
    /// Sinks stopped.
    pub sinks_removed: Vec<String>,
    /// Sinks given a new instance.
    pub sinks_reconfigured: Vec<String>,
    /// Sinks that went on as they were.
    pub sinks_kept: Vec<String>,
    /// Settings that changed and take effect only at the next start.
    pub need_restart: Vec<String>,
}

/// Why a reload was refused; the running config goes on.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A sink of the new config could not be built.
    #[error(transparent)]
    Sink(#[from] BuildError),
    /// A transform of the new config could not be built.
    #[error(transparent)]
    Transform(#[from] crate::transform::TransformError),
}

/// What differs between the running config and a new one.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    sources_added: Vec<String>,
    sources_removed: Vec<String>,
    sources_changed: Vec<String>,
    sources_kept: Vec<String>,
    sinks_added: Vec<String>,
    sinks_removed: Vec<String>,
    sinks_changed: Vec<String>,
    sinks_kept: Vec<String>,
    need_restart: Vec<String>,
}

/// Whether a sink needs a new instance: anything but its `inputs` changed (a change of inputs
/// is a change of routes only).
fn sink_changed(old: &SinkConfig, new: &SinkConfig) -> bool {
    old.kind != new.kind
        || old.common.batch != new.common.batch
        || old.common.buffer != new.common.buffer
        || old.common.retry != new.common.retry
}

/// Sources have no secrets: their settings are compared as printed, plus the pod identity
/// that printing leaves out.
fn source_changed(old: &Config, new: &Config, name: &str) -> bool {
    let (Some(old), Some(new)) = (old.sources.get(name), new.sources.get(name)) else {
        return true;
    };
    let printed = |source| serde_json::to_value(source).ok();
    let identity =
        |source: &crate::source::SourceConfig| source.tailed().map(|t| t.kubernetes.clone());
    printed(old) != printed(new) || identity(old) != identity(new)
}

fn plan(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    let names = |a: &Config, b: &Config, sinks: bool| -> BTreeSet<String> {
        if sinks {
            a.sinks.keys().chain(b.sinks.keys()).cloned().collect()
        } else {
            a.sources.keys().chain(b.sources.keys()).cloned().collect()
        }
    };
    for name in names(old, new, true) {
        let list = match (old.sinks.get(&name), new.sinks.get(&name)) {
            (None, Some(_)) => &mut plan.sinks_added,
            (Some(_), None) => &mut plan.sinks_removed,
            (Some(o), Some(n)) if sink_changed(o, n) => &mut plan.sinks_changed,
            _ => &mut plan.sinks_kept,
        };
        list.push(name);
    }
    for name in names(old, new, false) {
        let list = match (
            old.sources.contains_key(&name),
            new.sources.contains_key(&name),
        ) {
            (false, true) => &mut plan.sources_added,
            (true, false) => &mut plan.sources_removed,
            _ if source_changed(old, new, &name) => &mut plan.sources_changed,
            _ => &mut plan.sources_kept,
        };
        list.push(name);
    }
    if old.data_dir != new.data_dir {
        plan.need_restart.push("data_dir".to_owned());
    }
    if old.api.as_ref().map(|a| a.address) != new.api.as_ref().map(|a| a.address) {
        plan.need_restart.push("api".to_owned());
    }
    if old.tap.as_ref().map(|t| t.address) != new.tap.as_ref().map(|t| t.address) {
        plan.need_restart.push("tap".to_owned());
    }
    plan
}

/// Settings of the agent itself that a reload changes in place.
#[derive(Debug, Clone)]
pub(super) struct Tunables {
    /// `checkpoint_interval_ms`, read by the checkpoint writer at each write.
    pub(super) checkpoint_interval_ms: Arc<AtomicU64>,
}

/// Applies `request` to `running`, counting it in `metrics`; the running config goes on when
/// it is refused. `shutdown` turning true cuts the waits short.
pub(super) async fn reload(
    running: &mut Running,
    request: ReloadRequest,
    tunables: &Tunables,
    metrics: &ReloadMetrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<ReloadReport, ReloadError> {
    let outcome = match request {
        Ok(new) => apply(running, new, tunables, shutdown).await,
        Err(e) => Err(ReloadError::Config(e)),
    };
    match &outcome {
        Ok(report) => {
            add(&metrics.applied, 1);
            metrics.last_succeeded.store(1, Ordering::Relaxed);
            tracing::info!(
                sources_added = ?report.sources_added,
                sources_removed = ?report.sources_removed,
                sources_restarted = ?report.sources_restarted,
                sources_kept = ?report.sources_kept,
                sinks_added = ?report.sinks_added,
                sinks_removed = ?report.sinks_removed,
                sinks_reconfigured = ?report.sinks_reconfigured,
                sinks_kept = ?report.sinks_kept,
                "config reloaded"
            );
            if !report.need_restart.is_empty() {
                tracing::warn!(
                    settings = ?report.need_restart,
                    "these settings changed and take effect at the next start; the running ones are kept"
                );
            }
        }
        Err(e) => {
            add(&metrics.failed, 1);
            metrics.last_succeeded.store(0, Ordering::Relaxed);
            for line in e.to_string().lines() {
                tracing::error!("config reload refused; the running config is kept: {line}");
            }
        }
    }
    outcome
}

async fn apply(
    running: &mut Running,
    mut new: Config,
    tunables: &Tunables,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<ReloadReport, ReloadError> {
    let plan = plan(&running.config, &new);
    // What needs a restart keeps running as it is.
    new.data_dir.clone_from(&running.config.data_dir);
    new.api.clone_from(&running.config.api);
    new.tap.clone_from(&running.config.tap);
    // Every new instance first: a sink that cannot be built refuses the whole reload.
    let mut built: Vec<(String, BuiltSink)> = Vec::new();
    for name in plan.sinks_added.iter().chain(&plan.sinks_changed) {
        if let Some(sink_config) = new.sinks.get(name) {
            built.push((name.clone(), running.build(name, sink_config)?));
        }
    }
    let transforms = running.build_transforms(Some(&running.config), &new)?;
    let deadline = Instant::now() + Duration::from_millis(new.shutdown_timeout_ms);
    let old = std::mem::replace(&mut running.config, new);
    running.set_transforms(transforms);
    tunables
        .checkpoint_interval_ms
        .store(running.config.checkpoint_interval_ms, Ordering::Relaxed);

    let store = Arc::clone(running.store());
    // Sources removed stop at once, before their sinks may go.
    for name in &plan.sources_removed {
        if let Some(source) = running.take_source(name) {
            stop_source(&store, name, source, true, deadline, shutdown).await;
        }
    }
    for (name, source) in built {
        match (
            old.sinks.get(&name),
            running.config.sinks.get(&name).cloned(),
        ) {
            (Some(old_sink), Some(new_sink)) => {
                running
                    .reconfigure_sink(&name, old_sink, &new_sink, source)
                    .await;
            }
            (None, Some(new_sink)) => running.start_sink(&name, &new_sink, source),
            _ => {}
        }
    }
    running.reroute();
    for name in &plan.sinks_removed {
        running.remove_sink(name, deadline);
    }
    // Changed sources: their old tailers finish under the new routes, then start again.
    let changed: Vec<_> = plan
        .sources_changed
        .iter()
        .filter_map(|name| Some((name.clone(), running.take_source(name)?)))
        .collect();
    let mut restarted = Vec::new();
    for (name, source) in changed {
        if stop_source(&store, &name, source, false, deadline, shutdown).await {
            restarted.push(name);
        }
    }
    if !*shutdown.borrow() {
        for name in restarted.iter().chain(&plan.sources_added) {
            if let Err(e) = running.start_source(name) {
                tracing::error!(source = %name, error = %e, "the source could not start again");
            }
        }
    }
    running.forget_removed_metrics();
    Ok(ReloadReport {
        sources_added: plan.sources_added,
        sources_removed: plan.sources_removed,
        sources_restarted: plan.sources_changed,
        sources_kept: plan.sources_kept,
        sinks_added: plan.sinks_added,
        sinks_removed: plan.sinks_removed,
        sinks_reconfigured: plan.sinks_changed,
        sinks_kept: plan.sinks_kept,
        need_restart: plan.need_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "
data_dir: /data
sources:
  app:
    type: file
    include: [/logs/app/*.log]
  web:
    type: file
    include: [/logs/web/*.log]
sinks:
  out:
    type: file
    inputs: [app, web]
    path: /out/all.ndjson
  kafka:
    type: kafka
    inputs: [app]
    brokers: b:9092
    topic: t
    librdkafka_options: { sasl.password: one }
";

    fn parse(text: &str) -> Config {
        Config::from_yaml(text, |_| None, Path::new("/")).unwrap()
    }

    #[test]
    fn plans_table() {
        let names =
            |list: &[&str]| -> Vec<String> { list.iter().map(|s| (*s).to_owned()).collect() };
        // (edits of BASE, sources (added, removed, changed), sinks (added, removed, changed),
        // settings needing a restart)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            [&'a [&'a str]; 3],
            [&'a [&'a str]; 3],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (&[], [&[], &[], &[]], [&[], &[], &[]], &[]),
            // A secret changed: the sink is changed, though validate prints it the same.
            (
                &[("sasl.password: one", "sasl.password: two")],
                [&[], &[], &[]],
                [&[], &[], &["kafka"]],
                &[],
            ),
            // Inputs changed: routes only.
            (
                &[("inputs: [app]\n", "inputs: [app, web]\n")],
                [&[], &[], &[]],
                [&[], &[], &[]],
                &[],
            ),
            (
                &[("all.ndjson\n", "all.ndjson\n    batch: { max_events: 7 }\n")],
                [&[], &[], &[]],
                [&[], &[], &["out"]],
                &[],
            ),
            (
                &[("web/*.log]\n", "web/*.log]\n    format: json\n")],
                [&[], &[], &["web"]],
                [&[], &[], &[]],
                &[],
            ),
            (
                &[
                    (
                        "  web:\n    type: file\n    include: [/logs/web/*.log]\n",
                        "",
                    ),
                    ("[app, web]", "[app]"),
                ],
                [&[], &["web"], &[]],
                [&[], &[], &[]],
                &[],
            ),
            (
                &[
                    (
                        "sinks:\n",
                        "  db:\n    type: file\n    include: [/logs/db/*]\nsinks:\n",
                    ),
                    (
                        "  out:\n",
                        "  db:\n    type: stdout\n    inputs: [db]\n  out:\n",
                    ),
                ],
                [&["db"], &[], &[]],
                [&["db"], &[], &[]],
                &[],
            ),
            (
                &[
                    ("  kafka:\n", "  k2:\n"),
                    ("data_dir: /data", "data_dir: /x\napi: {}"),
                ],
                [&[], &[], &[]],
                [&["k2"], &["kafka"], &[]],
                &["data_dir", "api"],
            ),
        ];
        let old = parse(BASE);
        for (edits, sources, sinks, restart) in cases {
            let text = edits.iter().fold(BASE.to_owned(), |text, (from, to)| {
                assert!(text.contains(from), "bad case: {from}");
                text.replacen(from, to, 1)
            });
            let got = plan(&old, &parse(&text));
            let want = (
                [names(sources[0]), names(sources[1]), names(sources[2])],
                [names(sinks[0]), names(sinks[1]), names(sinks[2])],
                names(restart),
            );
            assert_eq!(
                (
                    [got.sources_added, got.sources_removed, got.sources_changed],
                    [got.sinks_added, got.sinks_removed, got.sinks_changed],
                    got.need_restart,
                ),
                want,
                "{edits:?}"
            );
        }
    }
}
