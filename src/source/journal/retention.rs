//! Deleting journal segments once delivered: a segment the writer has moved past is deleted
//! when the checkpoint store says every sink delivered it to its end, and its room goes back to
//! the senders.
//!
//! Invariant: a segment is deleted only if it is not the one being written and every byte of it
//! is behind its file's checkpoint (the least offset delivered among the source's sinks).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{JournalWriter, Shared, segment};
use crate::checkpoint::CheckpointStore;
use crate::metrics::{SourceMetrics, add};

/// How often delivered segments are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What deletes a journal's delivered segments.
#[derive(Clone)]
pub struct Retention {
    shared: Arc<Shared>,
    source: Arc<str>,
    store: Arc<CheckpointStore>,
    metrics: Arc<SourceMetrics>,
}

impl Retention {
    /// The retention of the journal written by `writer`, read by source `source`.
    pub fn new(
        writer: &JournalWriter,
        source: &str,
        store: Arc<CheckpointStore>,
        metrics: Arc<SourceMetrics>,
    ) -> Self {
        Retention {
            shared: Arc::clone(&writer.shared),
            source: Arc::from(source),
            store,
            metrics,
        }
    }

    /// Deletes the delivered segments; returns how many. Blocking I/O.
    pub fn sweep(&self) -> io::Result<usize> {
        let segments = segment::list(&self.shared.dir)?;
        // Read after the listing: see where it is published (`Writer::roll`).
        let writing = self.shared.writing.load(Ordering::Acquire);
        let checkpoints: HashMap<(u64, u64), u64> = self
            .store
            .checkpoints_of(&self.source)
            .into_iter()
            .map(|(dev, ino, checkpoint)| ((dev, ino), checkpoint))
            .collect();
        let mut deleted = 0;
        for (seq, path) in segments {
            if seq >= writing {
                break;
            }
            let md = match std::fs::metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let delivered = checkpoints.get(&(md.dev(), md.ino())).copied();
            if delivered.is_none_or(|offset| offset < md.len()) {
                continue;
            }
            std::fs::remove_file(&path)?;
            deleted += 1;
            self.shared.used.fetch_sub(md.len(), Ordering::AcqRel);
            self.metrics
                .journal_bytes
                .fetch_sub(md.len(), Ordering::Relaxed);
            add(&self.metrics.journal_segments_deleted, 1);
            tracing::debug!(segment = %path.display(), "journal segment delivered and deleted");
        }
        if deleted > 0 {
            self.shared.room.notify_waiters();
        }
        Ok(deleted)
    }

    /// Sweeps every [`SWEEP_EVERY`] until dropped (the task is aborted with its source).
    pub async fn run(self) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let retention = self.clone();
            match tokio::task::spawn_blocking(move || retention.sweep()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(source = %self.source, error = %e, "deleting delivered journal segments failed; tried again")
                }
                Err(_) => return,
            }
        }
    }
}
