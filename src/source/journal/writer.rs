//! The journal's writer thread: appends are taken in groups, written to the current segment in
//! one write, synced once for the whole group (group commit), then answered.
//!
//! Invariant: no append is answered before the write (and, under `durability: fsync`, the sync)
//! that holds it has returned; a failed write is answered with its error and leaves no partial
//! record behind in a segment that is written on.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::segment;
use super::{Append, Durability, JournalConfig, JournalError, Shared};
use crate::metrics::{SourceMetrics, add};

/// A group is closed at this many bytes, so one sync never waits for an unbounded write.
const GROUP_BYTES: usize = 4 * 1024 * 1024;

/// The segment being written.
struct Current {
    seq: u64,
    file: File,
    len: u64,
}

/// The writer's state, moved into its thread.
pub(super) struct Writer {
    shared: Arc<Shared>,
    config: JournalConfig,
    next_seq: u64,
    current: Option<Current>,
    metrics: Arc<SourceMetrics>,
    group: Vec<u8>,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        config: JournalConfig,
        next_seq: u64,
        metrics: &Arc<SourceMetrics>,
    ) -> Self {
        Writer {
            shared,
            config,
            next_seq,
            current: None,
            metrics: Arc::clone(metrics),
            group: Vec::new(),
        }
    }

    /// Writes groups of appends until every sender is gone and the queue is empty.
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<Append>) {
        let mut waiting = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            self.group.clear();
            self.group.extend_from_slice(&first.data);
            waiting.push(first.done);
            while self.group.len() < GROUP_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        self.group.extend_from_slice(&next.data);
                        waiting.push(next.done);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write_group();
            if let Err(e) = &result {
                tracing::error!(journal = %self.shared.dir.display(), error = %e, "journal write failed; the senders are told");
                // Nothing of the group is kept: its room goes back.
                self.shared.release(self.group.len() as u64);
            }
            for done in waiting.drain(..).flatten() {
                let _ = done.send(result.clone());
            }
            if self.group.capacity() > 2 * GROUP_BYTES {
                self.group = Vec::new();
            }
        }
    }

    fn write_group(&mut self) -> Result<(), JournalError> {
        let size = self.group.len() as u64;
        let roll = match &self.current {
            None => true,
            // A segment holds at least one group, however large.
            Some(current) => current.len + size > self.config.segment_bytes,
        };
        if roll {
            self.roll()?;
        }
        let Some(current) = self.current.as_mut() else {
            return Err(JournalError::Closed);
        };
        let written =
            current
                .file
                .write_all(&self.group)
                .and_then(|()| match self.config.durability {
                    Durability::Fsync => current.file.sync_data(),
                    Durability::None => Ok(()),
                });
        match written {
            Ok(()) => {
                current.len += size;
                add(&self.metrics.journal_syncs, 1);
                self.metrics
                    .journal_bytes
                    .fetch_add(size, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Whatever part of the group reached the file is cut off, and the next group
                // goes to a new segment.
                let _ = current.file.set_len(current.len);
                self.current = None;
                Err(JournalError::Write(e.to_string()))
            }
        }
    }

    /// Starts the next segment; the one before it is complete.
    fn roll(&mut self) -> Result<(), JournalError> {
        // No group goes to the segment before, once `writing` has moved past it (retention
        // would take it): if the new one cannot be made, none is written until one is.
        self.current = None;
        let seq = self.next_seq;
        // Published before the file exists: retention, which lists the segments first and
        // looks at this after, never takes the one being started.
        self.shared.writing.store(seq, Ordering::Release);
        let (file, len) = segment::create(&self.shared.dir, seq)
            .map_err(|e| JournalError::Write(format!("new segment: {e}")))?;
        self.next_seq += 1;
        self.shared.used.fetch_add(len, Ordering::AcqRel);
        self.metrics.journal_bytes.fetch_add(len, Ordering::Relaxed);
        self.current = Some(Current { seq, file, len });
        tracing::debug!(journal = %self.shared.dir.display(), seq, "journal segment started");
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(current) = &self.current {
            tracing::debug!(journal = %self.shared.dir.display(), seq = current.seq, "journal closed");
        }
        // Retention may now take the last segment too, once delivered.
        self.shared.writing.store(u64::MAX, Ordering::Release);
    }
}
