//! The checkpoint writer: writes `data_dir/checkpoints.json` soon after deliveries, one write
//! covering every ack since the last (group commit), at most one write per
//! `checkpoint_interval_ms` and spaced by its own cost ([`crate::spacing`]: rewriting the
//! records of 100,000 files takes at most a fifth of a core; a later write means more lines
//! read again after a `kill -9`, never fewer delivered), and logs failures once a minute while
//! they last.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{CheckpointStore, WriteCost};
use crate::health::{Health, Heartbeat};
use crate::metrics::{CheckpointMetrics, add};
use crate::spacing;

/// A checkpoint writer that has not turned for this long (or ten intervals, if longer) is stuck.
const CHECKPOINTER_STALE_AFTER: Duration = Duration::from_secs(60);

/// How often the checkpoint writer turns when nothing is delivered, to show it is alive.
const IDLE_BEAT: Duration = Duration::from_secs(1);

/// Starts the writer; `interval_ms` is `checkpoint_interval_ms`, which a reload may change.
pub fn spawn(
    store: &Arc<CheckpointStore>,
    metrics: &Arc<CheckpointMetrics>,
    interval_ms: Arc<AtomicU64>,
    health: &Health,
) -> JoinHandle<()> {
    let store = Arc::clone(store);
    let metrics = Arc::clone(metrics);
    let every = Duration::from_millis(interval_ms.load(Ordering::Relaxed));
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
            let outcome = persist(&store, &metrics).await;
            let cost = outcome.as_ref().ok().copied().flatten();
            let failed = outcome.is_err();
            failures.record(outcome.map(|_| ()));
            heartbeat.beat();
            let every = Duration::from_millis(interval_ms.load(Ordering::Relaxed));
            // The work of a write is up to its bytes written; the fsync after is waiting.
            let work = cost.map(|c| c.before_sync).unwrap_or_default();
            next_write = started + spacing::gap(every, work);
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
}

/// Writes the checkpoints (on a blocking thread), counting failures; says what the write cost
/// (`None`: nothing had changed), or why it failed.
pub async fn persist(
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
