//! Progress of a replay: a bar on a terminal, a plain line every few seconds otherwise. Once
//! the files are read, what the replay still waits for: the sinks holding undelivered events,
//! and why their deliveries fail when they do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar (standard error is a terminal).
    Bar,
    /// A plain line every [`LINE_EVERY`] (logs, CI).
    Lines,
    /// Nothing.
    Off,
}

/// How often a plain progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often the bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(100);

/// A sink of the replay, as progress tells what it waits for.
#[derive(Debug)]
pub struct WatchedSink {
    /// Its name.
    pub name: String,
    /// Its counters (events held).
    pub metrics: Arc<SinkMetrics>,
    /// Whether its deliveries fail, and why.
    pub health: Arc<SinkHealth>,
}

/// Longest failure reason a progress line shows.
const MAX_REASON_CHARS: usize = 160;

/// Counters the reader updates and the reporter reads.
#[derive(Debug)]
pub struct ProgressState {
    total_files: u64,
    total_bytes: u64,
    /// Files read to their end.
    pub files_done: AtomicU64,
    /// Bytes of the files read so far, as they are on disk (compressed for gzip).
    pub bytes_done: AtomicU64,
    sinks: Vec<WatchedSink>,
}

/// `bytes` in the unit that keeps it short (B, KiB, MiB, GiB).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl ProgressState {
    /// Progress over `total_files` files of `total_bytes` bytes on disk, shipped to `sinks`.
    pub fn new(total_files: u64, total_bytes: u64, sinks: Vec<WatchedSink>) -> Self {
        ProgressState {
            total_files,
            total_bytes,
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            sinks,
        }
    }

    /// What the replay waits for besides reading: each sink that holds undelivered events.
    fn waiting_for(&self) -> Vec<String> {
        self.sinks
            .iter()
            .filter_map(|sink| {
                let held = sink.metrics.buffered_events.load(Ordering::Relaxed);
                if held == 0 {
                    return None;
                }
                let mut text = format!("sink `{}`: {held} events not delivered yet", sink.name);
                if let Some(reason) = sink.health.failure() {
                    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
                    text.push_str(&format!(", deliveries failing and retried: {reason}"));
                }
                Some(text)
            })
            .collect()
    }

    fn line(&self) -> String {
        let files_done = self.files_done.load(Ordering::Relaxed);
        let mut line = format!(
            "replay: {files_done}/{} files, {}/{} read",
            self.total_files,
            size(self.bytes_done.load(Ordering::Relaxed)),
            size(self.total_bytes)
        );
        let waiting = self.waiting_for();
        if !waiting.is_empty() {
            line.push_str("; waiting for ");
            line.push_str(&waiting.join("; "));
        }
        line
    }
}

/// A running reporter.
pub struct Reporter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Reporter {
    /// Draws the last state and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts reporting `state` as `mode` says; `None` for [`ProgressMode::Off`].
pub fn spawn_reporter(mode: ProgressMode, state: Arc<ProgressState>) -> Option<Reporter> {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = match mode {
        ProgressMode::Off => return None,
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::new(state.total_bytes);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            ) {
                bar.set_style(style);
            }
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(BAR_EVERY);
                loop {
                    bar.set_position(state.bytes_done.load(Ordering::Relaxed));
                    let mut message = format!(
                        "{}/{} files",
                        state.files_done.load(Ordering::Relaxed),
                        state.total_files
                    );
                    let waiting = state.waiting_for();
                    if !waiting.is_empty() {
                        message.push_str("; waiting for ");
                        message.push_str(&waiting.join("; "));
                    }
                    bar.set_message(message);
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = &mut stopped => break,
                    }
                }
                bar.set_position(state.bytes_done.load(Ordering::Relaxed));
                bar.finish_and_clear();
            })
        }
        ProgressMode::Lines => tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LINE_EVERY);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => eprintln!("{}", state.line()),
                    _ = &mut stopped => break,
                }
            }
        }),
    };
    Some(Reporter { stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_table() {
        let metrics = Arc::new(SinkMetrics::default());
        let health = Arc::new(SinkHealth::default());
        let state = ProgressState::new(
            2,
            3 * 1024 * 1024,
            vec![WatchedSink {
                name: "to".into(),
                metrics: Arc::clone(&metrics),
                health: Arc::clone(&health),
            }],
        );
        state.files_done.store(1, Ordering::Relaxed);
        state.bytes_done.store(1536, Ordering::Relaxed);
        assert_eq!(state.line(), "replay: 1/2 files, 1.5 KiB/3.0 MiB read");
        metrics.buffered_events.store(200, Ordering::Relaxed);
        assert_eq!(
            state.line(),
            "replay: 1/2 files, 1.5 KiB/3.0 MiB read; waiting for sink `to`: 200 events not delivered yet"
        );
        health.failed("connection refused");
        assert!(
            state
                .line()
                .ends_with(", deliveries failing and retried: connection refused"),
            "{}",
            state.line()
        );
        assert_eq!(size(8), "8 B");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
