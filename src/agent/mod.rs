//! Wiring and lifetime of a running agent: [`run`] starts the sinks, their tasks and buffers,
//! one tailer thread per source ([`running`]), the checkpoint writer ([`crate::checkpoint::writer`]) and
//! the HTTP API; applies config reloads as they come ([`reload`]); then drains it all on
//! shutdown.

mod missing_dirs;
pub mod reload;
mod running;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::metrics::BufferGauges;
use crate::api::{self, ApiError, ApiState};
use crate::checkpoint::{self, CheckpointError, CheckpointStore, LoadOutcome};
use crate::config::Config;
use crate::health::Health;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pipeline::tap::TapHub;
use crate::sink::BuildError;
use reload::Tunables;
pub use reload::{ReloadReport, ReloadRequest};
use running::Running;

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
    /// A network source could not listen or open its journal.
    #[error("starting source `{source_name}`: {error}")]
    Network {
        /// The source.
        source_name: String,
        /// Why.
        error: crate::source::network::NetworkError,
    },
    /// A tailer thread could not be started.
    #[error("starting source `{source_name}`: {error}")]
    Spawn {
        /// The source.
        source_name: String,
        /// Why.
        error: std::io::Error,
    },
    /// A transform could not be built.
    #[error(transparent)]
    Transform(crate::transform::TransformError),
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
    /// Told the address taps are served on once it is bound (with `tap:` in the config).
    pub tap_bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    /// New configs to reload (SIGHUP, `--watch-config`), or why one could not be read: the
    /// agent applies each, or logs and counts why not and keeps the running one.
    pub reloads: Option<mpsc::Receiver<ReloadRequest>>,
    /// Told what each reload did (or why it was refused), when there is room.
    pub reloaded: Option<mpsc::Sender<Result<ReloadReport, String>>>,
}

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
    let RunHooks {
        api_bound,
        tap_bound,
        mut reloads,
        reloaded,
    } = hooks;
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
    let tap_listener =
        match &config.tap {
            Some(tap) => Some(tokio::net::TcpListener::bind(tap.address).await.map_err(
                |source| ApiError::TapBind {
                    address: tap.address,
                    source,
                },
            )?),
            None => None,
        };
    let taps = Arc::new(TapHub::default());
    let health = Arc::new(Health::default());
    let gauges = BufferGauges::default();
    let tunables = Tunables {
        checkpoint_interval_ms: Arc::new(AtomicU64::new(config.checkpoint_interval_ms)),
    };
    let mut running = Running::start(
        config,
        Arc::clone(&store),
        Arc::clone(&metrics),
        Arc::clone(&health),
        Arc::clone(&gauges),
        Arc::clone(&taps),
    )?;
    let tap_server = tap_listener.map(|listener| {
        if let (Ok(address), Some(bound)) = (listener.local_addr(), tap_bound) {
            tracing::info!(%address, "taps served: GET /tap?point=GLOB");
            let _ = bound.send(address);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(api::tap::serve(listener, taps, async {
            let _ = stopped.await;
        }));
        (stop, server)
    });
    let (running_config, watched_config) = watch::channel(Arc::new(running.config.clone()));
    let dir_watch = missing_dirs::spawn(watched_config, Arc::clone(&metrics));
    let checkpointer = checkpoint::writer::spawn(
        &store,
        &metrics.checkpoints,
        Arc::clone(&tunables.checkpoint_interval_ms),
        &health,
    );
    let api_server = match api_listener {
        Some(listener) => {
            let collector = api::metrics::AgentCollector {
                metrics: Arc::clone(&metrics),
                store: Arc::clone(&store),
                buffers: gauges,
                health: Arc::clone(&health),
            };
            let state = ApiState {
                health: Arc::clone(&health),
                registry: Arc::new(api::metrics::registry(collector)),
            };
            Some(start_api(listener, state, api_bound))
        }
        None => None,
    };

    // The shutdown as a flag that reloads in progress watch too.
    let (stopping_tx, mut stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            request = next_reload(&mut reloads) => {
                let Some(request) = request else {
                    reloads = None;
                    continue;
                };
                let mut stop_after = false;
                let outcome = {
                    let reload = reload::reload(
                        &mut running, request, &tunables, &metrics.reloads, &mut stopping,
                    );
                    tokio::pin!(reload);
                    tokio::select! {
                        outcome = &mut reload => outcome,
                        () = &mut shutdown => {
                            // The reload's waits are cut short, and it ends with what it did.
                            stopping_tx.send_replace(true);
                            stop_after = true;
                            reload.await
                        }
                    }
                };
                if outcome.is_ok() {
                    running_config.send_replace(Arc::new(running.config.clone()));
                }
                if let Some(reloaded) = &reloaded {
                    let _ = reloaded.try_send(outcome.map_err(|e| e.to_string()));
                }
                if stop_after {
                    break;
                }
            }
        }
    }
    stopping_tx.send_replace(true);
    health.start_draining();
    let delay_ms = running.config.shutdown_delay_ms;
    if delay_ms > 0 {
        // The web container may still be writing its last lines: read on for a while.
        tracing::info!(
            delay_ms,
            "shutting down: tailing on for shutdown_delay_ms before draining"
        );
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let timeout_ms = running.config.shutdown_timeout_ms;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    tracing::info!(
        timeout_ms,
        "shutting down: reading files to their end and delivering"
    );
    let mut drained = running.shutdown(deadline).await;
    dir_watch.abort();
    checkpointer.abort();
    let last = checkpoint::writer::persist(&store, &metrics.checkpoints).await;
    if let Err(e) = &last {
        tracing::error!(error = %e, "final checkpoint write failed; lines delivered since the last write are read again at the next start");
    }
    drained &= last.is_ok();
    if let Some((stop, server)) = tap_server {
        let _ = stop.send(());
        let _ = server.await;
    }
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

/// The next reload asked for; never, without a source of reloads.
async fn next_reload(reloads: &mut Option<mpsc::Receiver<ReloadRequest>>) -> Option<ReloadRequest> {
    match reloads {
        Some(reloads) => reloads.recv().await,
        None => std::future::pending().await,
    }
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
