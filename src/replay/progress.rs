//! Progress of a replay: a bar on a terminal, a plain line every few seconds otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Counters the reader updates and the reporter reads.
#[derive(Debug)]
pub struct ProgressState {
    total_files: u64,
    total_bytes: u64,
    /// Files read to their end.
    pub files_done: AtomicU64,
    /// Bytes of the files read so far, as they are on disk (compressed for gzip).
    pub bytes_done: AtomicU64,
}

impl ProgressState {
    /// Progress over `total_files` files of `total_bytes` bytes on disk.
    pub fn new(total_files: u64, total_bytes: u64) -> Self {
        ProgressState {
            total_files,
            total_bytes,
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
        }
    }

    fn line(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        format!(
            "replay: {}/{} files, {:.1}/{:.1} MiB",
            self.files_done.load(Ordering::Relaxed),
            self.total_files,
            mib(self.bytes_done.load(Ordering::Relaxed)),
            mib(self.total_bytes)
        )
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
                    bar.set_message(format!(
                        "{}/{} files",
                        state.files_done.load(Ordering::Relaxed),
                        state.total_files
                    ));
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
