//! Wiring and lifetime of a running agent: [`run`] builds the sinks, their tasks and buffers,
//! one tailer thread per source, the checkpoint writer and the HTTP API, then drains them all
//! on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::api::{self, ApiError, ApiState};
use crate::config::Config;
use crate::health::{Health, Heartbeat};
use crate::metrics::{CheckpointMetrics, Metrics, MetricsSnapshot, add};
use crate::pipeline::SinkSet;
use crate::pipeline::buffer::BufferSender;
use crate::sink::BuildError;
use crate::source::SourceKind;
use crate::source::checkpoint::{CheckpointError, CheckpointStore, LoadOutcome, WriteCost};
use crate::source::tailer::{Control, Stopped, Tailer};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The checkpoint store could not be opened.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A sink could not be built.
    #[error(transparent)]
    Sink(#[from] BuildError),
    /// The HTTP API could not start.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A tailer thread could not be started.
    #[error("starting source `{source_name}`: {error}")]
    Spawn {
        /// The source.
        source_name: String,
        /// Why.
        error: std::io::Error,
    },
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// True when everything read was delivered and checkpointed within the shutdown timeout.
    pub drained: bool,
    /// The counters at the end.
    pub metrics: MetricsSnapshot,
}

/// Seams for embedding the agent (and for tests) beyond the configuration.
#[derive(Debug, Default)]
pub struct RunHooks {
    /// Told the address the HTTP API listens on once it is bound: with port 0 in
    /// `api.address`, the system picks a free port and this is how to learn it.
    pub api_bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
}

/// A checkpoint writer that has not turned for this long (or ten intervals, if longer) is stuck.
const CHECKPOINTER_STALE_AFTER: Duration = Duration::from_secs(60);

/// How long the HTTP API may take to finish its last requests once the agent has drained.
const API_STOP_GRACE: Duration = Duration::from_secs(1);

/// Runs the agent until `shutdown` completes, then drains: sources stop discovering and read
/// their files to the current end, sinks deliver what they hold, checkpoints are written. All of
/// it within `shutdown_timeout_ms`; past that, whatever is undelivered stays behind the
/// checkpoint and is read again at the next start.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    run_with(config, shutdown, RunHooks::default()).await
}

/// [`run`], with [`RunHooks`].
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    hooks: RunHooks,
) -> Result<RunSummary, RunError> {
    let metrics = Arc::new(Metrics::new(
        config.sources.keys().map(String::as_str),
        config.sinks.keys().map(String::as_str),
    ));
    let (store, outcome) = CheckpointStore::open(&config.data_dir)?;
    match &outcome {
        LoadOutcome::FirstStart => {
            tracing::info!(path = %store.path().display(), "no checkpoints yet: first start")
        }
        LoadOutcome::Loaded(n) => {
            tracing::info!(path = %store.path().display(), files = n, "checkpoints loaded")
        }
        LoadOutcome::Corrupt { reason, moved_to } => tracing::error!(
            path = %store.path().display(),
            moved_to = %moved_to.as_ref().map_or("nowhere (move failed)".into(), |p| p.display().to_string()),
            reason = %reason,
            "checkpoint file unreadable; starting without checkpoints (files are read again from their start)"
        ),
    }
    let store = Arc::new(store);
    // Bound before anything starts, so that an address in use fails the start at once.
    let api_listener = match &config.api {
        Some(api_config) => Some(api::bind(api_config.address).await?),
        None => None,
    };
    let mut health = Health::default();
    let mut buffer_gauges = Vec::new();

    let mut sinks = SinkSet::spawn(&config.sinks, &config.data_dir, &store, &metrics)?;
    let mut sink_tasks = std::mem::take(&mut sinks.tasks);
    for (name, sink_health) in &sinks.health {
        health.add_sink(name.clone(), Arc::clone(sink_health));
    }
    for (name, sender) in &sinks.senders {
        buffer_gauges.push((name.clone(), sender.gauge()));
    }

    let runtime = tokio::runtime::Handle::current();
    let mut controls = DrainOnDrop(Vec::new());
    let mut tailers: Vec<JoinHandle<()>> = Vec::new();
    for (name, source_config) in &config.sources {
        let (router, ids) = sinks.route_to(&config.sinks_of(name));
        let SourceKind::File(file_config) = &source_config.kind;
        let handle = runtime.clone();
        let emit = move |chunk| handle.block_on(router.send(chunk)).map_err(|_| Stopped);
        let (tailer, control) = Tailer::new(
            name,
            file_config.clone(),
            ids,
            Arc::clone(&store),
            metrics.source(name),
            emit,
        );
        health.add_loop(format!("source `{name}`"), Arc::clone(control.heartbeat()));
        controls.0.push(control);
        let thread = std::thread::Builder::new()
            .name(format!("tail-{name}"))
            .spawn(move || tailer.run())
            .map_err(|error| RunError::Spawn {
                source_name: name.clone(),
                error,
            })?;
        tailers.push(tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        }));
    }
    // Only the routers hold senders from here on: when the tailers end, the sink tasks see
    // their buffers close and finish.
    let closers: Vec<BufferSender> = sinks.senders.values().cloned().collect();
    drop(sinks);

    let checkpointer = {
        let store = Arc::clone(&store);
        let checkpoint_metrics = Arc::clone(&metrics.checkpoints);
        let every = Duration::from_millis(config.checkpoint_interval_ms);
        let heartbeat = Arc::new(Heartbeat::new(CHECKPOINTER_STALE_AFTER.max(every * 10)));
        health.add_loop("checkpoint writer".to_owned(), Arc::clone(&heartbeat));
        tokio::spawn(async move {
            let mut failures = FailureLog::default();
            // The first write comes at once, as the first beat the health check waits for.
            let mut next_write = Instant::now();
            loop {
                tokio::time::sleep_until(next_write).await;
                let started = Instant::now();
                // A failed write leaves the store dirty: the next one writes again.
                let outcome = persist(&store, &checkpoint_metrics).await;
                let cost = outcome.as_ref().ok().copied().flatten();
                let failed = outcome.is_err();
                failures.record(outcome.map(|_| ()));
                heartbeat.beat();
                next_write = started + checkpoint_gap(every, cost.map(|c| c.before_sync));
                if failed {
                    // Retried at every interval until a write succeeds.
                    continue;
                }
                // Group commit: the next write covers every delivery made until it starts. With
                // nothing delivered it waits, beating now and then for the health check.
                tokio::select! {
                    () = store.changed() => {}
                    () = tokio::time::sleep(IDLE_BEAT) => {}
                }
            }
        })
    };

    let health = Arc::new(health);
    let api_server = match api_listener {
        Some(listener) => {
            let collector = api::metrics::AgentCollector {
                metrics: Arc::clone(&metrics),
                store: Arc::clone(&store),
                buffers: buffer_gauges,
                health: Arc::clone(&health),
            };
            let state = ApiState {
                health: Arc::clone(&health),
                registry: Arc::new(api::metrics::registry(collector)),
            };
            Some(start_api(listener, state, hooks.api_bound))
        }
        None => None,
    };

    shutdown.await;
    health.start_draining();
    let deadline = Instant::now() + Duration::from_millis(config.shutdown_timeout_ms);
    tracing::info!(
        timeout_ms = config.shutdown_timeout_ms,
        "shutting down: reading files to their end and delivering"
    );
    for control in &controls.0 {
        control.drain();
    }
    let mut drained = timeout_at(deadline, join_all(tailers)).await.is_ok();
    if !drained {
        // Wake tailers blocked on full buffers: they stop with what they handed on so far.
        for closer in &closers {
            closer.close();
        }
    }
    drop(closers);
    if drained {
        drained = timeout_at(deadline, join_all(sink_tasks.iter_mut()))
            .await
            .is_ok();
    }
    if !drained {
        tracing::warn!(
            "shutdown timeout reached; undelivered lines stay behind the checkpoints and are read again at the next start"
        );
        for task in &sink_tasks {
            task.abort();
        }
    }
    checkpointer.abort();
    let last = persist(&store, &metrics.checkpoints).await;
    if let Err(e) = &last {
        tracing::error!(error = %e, "final checkpoint write failed; lines delivered since the last write are read again at the next start");
    }
    drained &= last.is_ok();
    if let Some((stop, server)) = api_server {
        let _ = stop.send(());
        let abort = server.abort_handle();
        if tokio::time::timeout(API_STOP_GRACE, server).await.is_err() {
            abort.abort();
        }
    }
    Ok(RunSummary {
        drained,
        metrics: metrics.snapshot(),
    })
}

/// Serves the API on its own task; returns the sender that stops it and the task.
fn start_api(
    listener: tokio::net::TcpListener,
    state: ApiState,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> (tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
    match listener.local_addr() {
        Ok(address) => {
            tracing::info!(%address, "HTTP API listening: /healthz /readyz /metrics");
            if let Some(bound) = bound {
                let _ = bound.send(address);
            }
        }
        Err(e) => tracing::warn!(error = %e, "HTTP API listening on an unknown address"),
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    (stop_tx, server)
}

/// Asks every tailer to drain when dropped: if `run` is cancelled (its task dropped, a test
/// failing), the tailer threads still end (their pipeline is gone, so they stop at their next
/// chunk) instead of running on and keeping the runtime from shutting down.
struct DrainOnDrop(Vec<Arc<Control>>);

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        for control in &self.0 {
            control.drain();
        }
    }
}

async fn join_all<T>(handles: impl IntoIterator<Item = T>)
where
    T: Future,
{
    for handle in handles {
        handle.await;
    }
}

/// Checkpoint writes start at least this many times the work of the last one apart.
const CHECKPOINT_GAP_PER_COST: u32 = 5;

/// How often the checkpoint writer turns when nothing is delivered, to show it is alive.
const IDLE_BEAT: Duration = Duration::from_secs(1);

/// How long after the start of a checkpoint write the next may start: `checkpoint_interval_ms`,
/// but at least [`CHECKPOINT_GAP_PER_COST`] times the write's work (`work`: up to its bytes
/// written; the fsync after is waiting, not work), so that rewriting the records of 100,000 files
/// (a good part of a second in a debug build) takes at most a fifth of a core. A later write
/// means more lines read again after a `kill -9`, never fewer delivered.
fn checkpoint_gap(every: Duration, work: Option<Duration>) -> Duration {
    every.max(work.unwrap_or_default() * CHECKPOINT_GAP_PER_COST)
}

/// Writes the checkpoints (on a blocking thread), counting failures; says what the write cost
/// (`None`: nothing had changed), or why it failed.
async fn persist(
    store: &Arc<CheckpointStore>,
    metrics: &Arc<CheckpointMetrics>,
) -> Result<Option<WriteCost>, String> {
    let writer = Arc::clone(store);
    match tokio::task::spawn_blocking(move || writer.persist()).await {
        Ok(Ok(cost)) => {
            add(&metrics.writes, u64::from(cost.is_some()));
            Ok(cost)
        }
        Ok(Err(e)) => {
            add(&metrics.write_errors, 1);
            Err(e.to_string())
        }
        Err(e) => {
            add(&metrics.write_errors, 1);
            Err(format!("checkpoint writer failed: {e}"))
        }
    }
}

/// How often a checkpoint write that keeps failing is logged again.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Logs checkpoint write failures (a full or read-only `data_dir`, a file size limit): the
/// first one at once, then one line a minute while they go on, and the recovery, rather than
/// one line per `checkpoint_interval_ms`. Shipping goes on meanwhile; what is delivered is
/// read again after a restart only back to the last checkpoint written.
#[derive(Debug, Default)]
struct FailureLog {
    /// Failures in a row.
    failing: u64,
    last_logged: Option<Instant>,
}

impl FailureLog {
    fn record(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) if self.failing > 0 => {
                tracing::info!(failures = self.failing, "checkpoint writes succeed again");
                *self = FailureLog::default();
            }
            Ok(()) => {}
            Err(e) => {
                self.failing += 1;
                let due = self
                    .last_logged
                    .is_none_or(|at| at.elapsed() >= FAILURE_LOG_EVERY);
                if due {
                    tracing::error!(
                        error = %e, failures = self.failing,
                        "checkpoint write failed; shipping goes on and the write is retried at every checkpoint interval"
                    );
                    self.last_logged = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_writes_keep_their_interval_unless_they_are_slow() {
        let ms = Duration::from_millis;
        // (checkpoint_interval_ms, the last write's work, gap from its start to the next)
        let cases = [
            (ms(100), None, ms(100)),
            (ms(100), Some(ms(0)), ms(100)),
            (ms(100), Some(ms(20)), ms(100)),
            (ms(100), Some(ms(30)), ms(150)),
            (ms(1_000), Some(ms(2_000)), ms(10_000)),
        ];
        for (every, work, want) in cases {
            assert_eq!(checkpoint_gap(every, work), want, "{every:?} {work:?}");
        }
    }
}
