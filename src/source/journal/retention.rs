//! Deleting journal segments once delivered, in two steps: a segment the writer has moved past
//! and every sink delivered to its end is first set aside (renamed out of the tailer's glob), so
//! the tailer lets it go; it is unlinked only once the tailer no longer tracks it, and its room
//! goes back to the senders.
//!
//! Invariant: a segment is set aside only if it is not the one being written and every byte of
//! it is behind its file's checkpoint (the least offset delivered among the source's sinks); its
//! inode is freed only once no tracked file holds it, so a new segment on the same inode is never
//! taken for the old one.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{JournalWriter, Shared, segment};
use crate::checkpoint::{CheckpointStore, Fingerprint};
use crate::metrics::{SourceMetrics, add};
use crate::source::fingerprint::read_head;

/// How often delivered segments are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// The least time between two sweeps asked for by senders waiting for room.
pub const SWEEP_GAP: Duration = Duration::from_millis(10);

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

    /// Sets the delivered segments aside and unlinks those set aside that the tailer let go;
    /// returns how many it unlinked. Blocking I/O.
    pub fn sweep(&self) -> io::Result<usize> {
        let segments = segment::list(&self.shared.dir)?;
        // Read after the listing: see where it is published (`Writer::roll`).
        let writing = self.shared.writing.load(Ordering::Acquire);
        let positions = self.store.positions_of(&self.source);
        let mut deleted = 0;
        for (_, path) in segment::list_set_aside(&self.shared.dir)? {
            let md = match std::fs::metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let held = positions
                .values()
                .any(|p| (p.dev, p.ino) == (md.dev(), md.ino()));
            if held {
                continue;
            }
            std::fs::remove_file(&path)?;
            deleted += 1;
            self.shared.release(md.len());
            let _ = self.metrics.journal_bytes.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |b| Some(b.saturating_sub(md.len())),
            );
            add(&self.metrics.journal_segments_deleted, 1);
            tracing::debug!(segment = %path.display(), "journal segment delivered and deleted");
        }
        for (seq, path) in segments {
            if seq >= writing {
                break;
            }
            let md = match std::fs::metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let Some(position) = positions.get(path.to_string_lossy().as_ref()) else {
                continue;
            };
            if (position.dev, position.ino) != (md.dev(), md.ino())
                || position.checkpoint < md.len()
                || !head_matches(&path, &position.fingerprint)?
            {
                continue;
            }
            std::fs::rename(&path, segment::set_aside_path(&self.shared.dir, seq))?;
        }
        if deleted > 0 {
            self.shared.room.notify_waiters();
        }
        Ok(deleted)
    }
}

/// Whether the file at `path` starts with the bytes `fingerprint` was taken of (an empty
/// fingerprint, taken of an empty file, tells nothing: no).
pub fn head_matches(path: &std::path::Path, fingerprint: &Fingerprint) -> io::Result<bool> {
    if fingerprint.len == 0 {
        return Ok(false);
    }
    let file = std::fs::File::open(path)?;
    Ok(fingerprint.matches(&read_head(&file, fingerprint.len as usize)?))
}

impl Retention {
    /// Sweeps every [`SWEEP_EVERY`], and at once (at most every [`SWEEP_GAP`]) when a sender
    /// finds the journal full, until the task is aborted with its source.
    pub async fn run(self) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.shared.wanted.notified() => {
                    tokio::time::sleep(SWEEP_GAP).await;
                }
            }
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
