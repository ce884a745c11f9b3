//! Liveness and readiness, as the probes of `/healthz` and `/readyz` see them.
//!
//! Every loop the agent runs (each source's tailer, the checkpoint writer) bumps a
//! [`Heartbeat`] each time it turns; a loop that has not turned for its `stale_after` makes the
//! agent not alive. A loop waiting on the pipeline (a tailer blocked on a full sink buffer) is
//! alive: that is backpressure, which a restart would not cure. Each sink task keeps a
//! [`SinkHealth`]: failing from a failed delivery until the next one that succeeds.
//!
//! The agent is ready once every loop has turned once, until it shuts down. Whether its sinks
//! deliver is not part of that: a sidecar's readiness is its pod's, and a log destination that
//! is down must not take the web app out of its Service. [`Health::readiness_with_sinks`] adds
//! the sinks, for those who opt into it (`/readyz/sinks`); the metrics carry them too.
//!
//! Loops and sinks come and go with config reloads: the lists are behind locks, read by the
//! probes and written only by a reload.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest reason kept for a failing sink: an error text can be long, the probe's answer not.
const MAX_REASON_CHARS: usize = 300;

/// `last_beat` value of a loop that never turned.
const NEVER: u64 = u64::MAX;

/// The sign of life of one loop.
#[derive(Debug)]
pub struct Heartbeat {
    /// Reference point of `last_beat`.
    epoch: Instant,
    /// Milliseconds from `epoch` to the last turn, or [`NEVER`].
    last_beat: AtomicU64,
    /// Inside a wait on the pipeline, where not turning is not a fault.
    waiting: AtomicBool,
    /// The loop ended on purpose (shutdown): not turning is not a fault.
    finished: AtomicBool,
    stale_after: Duration,
}

impl Heartbeat {
    /// A heartbeat that is stale once its loop has not turned for `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        Heartbeat {
            epoch: Instant::now(),
            last_beat: AtomicU64::new(NEVER),
            waiting: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            stale_after,
        }
    }

    /// The loop turned.
    pub fn beat(&self) {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_beat.store(elapsed, Ordering::Relaxed);
    }

    /// Runs `wait`, a wait on the pipeline, during which the loop counts as alive; a beat
    /// follows it.
    pub fn waiting_on<T>(&self, wait: impl FnOnce() -> T) -> T {
        self.waiting.store(true, Ordering::Relaxed);
        let result = wait();
        self.waiting.store(false, Ordering::Relaxed);
        self.beat();
        result
    }

    /// The loop ended on purpose.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// True once the loop turned at least once.
    pub fn has_turned(&self) -> bool {
        self.last_beat.load(Ordering::Relaxed) != NEVER
    }

    /// How long the loop has not turned as of `now`, when that is more than `stale_after` and
    /// the loop is neither waiting on the pipeline nor finished. A loop that never turned counts
    /// from the heartbeat's creation.
    pub fn stale_for(&self, now: Instant) -> Option<Duration> {
        if self.finished.load(Ordering::Relaxed) || self.waiting.load(Ordering::Relaxed) {
            return None;
        }
        let last = match self.last_beat.load(Ordering::Relaxed) {
            NEVER => self.epoch,
            millis => self.epoch + Duration::from_millis(millis),
        };
        let silent = now.saturating_duration_since(last);
        (silent > self.stale_after).then_some(silent)
    }
}

/// Whether a sink's deliveries are going through.
#[derive(Debug, Default)]
pub struct SinkHealth {
    /// Fast path for the common case: nothing to clear after a delivery.
    failing: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl SinkHealth {
    /// A delivery failed (it will be retried or dead-lettered).
    pub fn failed(&self, reason: &str) {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        *self.lock() = Some(reason);
        self.failing.store(true, Ordering::Release);
    }

    /// A delivery succeeded.
    pub fn delivered(&self) {
        if self.failing.swap(false, Ordering::AcqRel) {
            *self.lock() = None;
        }
    }

    /// Why the sink is failing, if it is.
    pub fn failure(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The guarded value is replaced whole, so a poisoned lock still holds a valid one.
        self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Watched<T> = std::sync::RwLock<Vec<(String, std::sync::Arc<T>)>>;

/// Every heartbeat and sink health of a running agent.
#[derive(Debug, Default)]
pub struct Health {
    loops: Watched<Heartbeat>,
    sinks: Watched<SinkHealth>,
    draining: AtomicBool,
}

/// Reads a list (a poisoned lock still holds a whole list: every change is one push or retain).
fn read<T>(list: &Watched<T>) -> std::sync::RwLockReadGuard<'_, Vec<(String, std::sync::Arc<T>)>> {
    list.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(
    list: &Watched<T>,
) -> std::sync::RwLockWriteGuard<'_, Vec<(String, std::sync::Arc<T>)>> {
    list.write().unwrap_or_else(|p| p.into_inner())
}

impl Health {
    /// Watches a loop, named as probes report it (`source \`app\``), in place of any loop of
    /// that name.
    pub fn add_loop(&self, name: String, heartbeat: std::sync::Arc<Heartbeat>) {
        let mut loops = write(&self.loops);
        loops.retain(|(n, _)| *n != name);
        loops.push((name, heartbeat));
    }

    /// Stops watching a loop (its source was removed or is being restarted).
    pub fn remove_loop(&self, name: &str) {
        write(&self.loops).retain(|(n, _)| n != name);
    }

    /// Watches a sink, in place of any sink of that name.
    pub fn add_sink(&self, name: String, health: std::sync::Arc<SinkHealth>) {
        let mut sinks = write(&self.sinks);
        sinks.retain(|(n, _)| *n != name);
        sinks.push((name, health));
    }

    /// Stops watching a sink (removed by a reload).
    pub fn remove_sink(&self, name: &str) {
        write(&self.sinks).retain(|(n, _)| n != name);
    }

    /// The agent is shutting down: no longer ready.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// `Ok` when every loop turns, else the stale loops.
    pub fn liveness(&self, now: Instant) -> Result<(), Vec<String>> {
        let stale: Vec<String> = read(&self.loops)
            .iter()
            .filter_map(|(name, heartbeat)| {
                heartbeat
                    .stale_for(now)
                    .map(|silent| format!("{name}: has not turned for {} s", silent.as_secs()))
            })
            .collect();
        if stale.is_empty() { Ok(()) } else { Err(stale) }
    }

    /// `Ok` when every loop has started and the agent is not shutting down, else why not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Relaxed) {
            reasons.push("shutting down".to_owned());
        }
        for (name, heartbeat) in read(&self.loops).iter() {
            if !heartbeat.has_turned() {
                reasons.push(format!("{name}: not started yet"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// [`Health::readiness`], and every sink delivering.
    pub fn readiness_with_sinks(&self) -> Result<(), Vec<String>> {
        let mut reasons = self.readiness().err().unwrap_or_default();
        for (name, health) in read(&self.sinks).iter() {
            if let Some(reason) = health.failure() {
                reasons.push(format!("sink `{name}`: deliveries failing: {reason}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Whether each sink delivers, by name, for the metrics.
    pub fn sinks(&self) -> Vec<(String, bool)> {
        read(&self.sinks)
            .iter()
            .map(|(name, health)| (name.clone(), health.failure().is_none()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn staleness_table() {
        let stale_after = Duration::from_secs(10);
        // (beat?, waiting?, finished?, seconds after creation, stale?)
        let cases = [
            (false, false, false, 5, false),
            (false, false, false, 11, true),
            (true, false, false, 9, false),
            (true, false, false, 11, true),
            (true, true, false, 100, false),
            (true, false, true, 100, false),
            (false, false, true, 100, false),
        ];
        for (beat, waiting, finished, after, stale) in cases {
            let heartbeat = Heartbeat::new(stale_after);
            if beat {
                heartbeat.beat();
            }
            heartbeat.waiting.store(waiting, Ordering::Relaxed);
            if finished {
                heartbeat.finish();
            }
            let now = heartbeat.epoch + Duration::from_secs(after);
            assert_eq!(
                heartbeat.stale_for(now).is_some(),
                stale,
                "beat {beat} waiting {waiting} finished {finished} after {after} s"
            );
        }
    }

    #[test]
    fn a_wait_on_the_pipeline_counts_as_a_turn() {
        let heartbeat = Heartbeat::new(Duration::from_secs(1));
        assert!(!heartbeat.has_turned());
        let inside =
            heartbeat.waiting_on(|| heartbeat.stale_for(Instant::now() + Duration::from_secs(60)));
        assert_eq!(inside, None, "alive while waiting");
        assert!(heartbeat.has_turned());
        assert!(
            heartbeat
                .stale_for(Instant::now() + Duration::from_secs(60))
                .is_some()
        );
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let health = Health::default();
        let tailer = Arc::new(Heartbeat::new(Duration::from_secs(60)));
        let sink = Arc::new(SinkHealth::default());
        health.add_loop("source `app`".into(), Arc::clone(&tailer));
        health.add_sink("out".into(), Arc::clone(&sink));
        assert_eq!(
            health.readiness(),
            Err(vec!["source `app`: not started yet".to_owned()])
        );
        tailer.beat();
        assert_eq!(health.readiness(), Ok(()));
        sink.failed(&"x".repeat(1000));
        assert_eq!(
            health.readiness(),
            Ok(()),
            "a failing sink leaves plain readiness"
        );
        let reasons = health.readiness_with_sinks().unwrap_err();
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("sink `out`: deliveries failing: xxx"));
        assert!(reasons[0].len() < 400, "long errors are cut");
        assert_eq!(health.sinks(), vec![("out".to_owned(), false)]);
        sink.delivered();
        assert_eq!(health.readiness_with_sinks(), Ok(()));
        health.remove_sink("out");
        sink.failed("gone");
        assert_eq!(
            health.readiness_with_sinks(),
            Ok(()),
            "a removed sink is not watched"
        );
        health.start_draining();
        assert_eq!(health.readiness(), Err(vec!["shutting down".to_owned()]));
        assert_eq!(health.liveness(Instant::now()), Ok(()));
    }
}
