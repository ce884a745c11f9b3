//! What a checkpoint write reads of the store: every record, in the file's order, copied a
//! chunk at a time.
//!
//! Invariant: at most [`CHUNK`] tracked files' records are copied at once, each under the lock
//! and as it stands then, so that neither memory nor the time the lock (taken by every ack) is
//! held grows with the number of files. A copy of every record at once was, with 100,000 files,
//! a tenth of the agent's peak memory.
//!
//! A file tracked when the write began and let go before its chunk is copied is written as its
//! record stands then (kept for a compressed copy), or not at all (forgotten); a file tracked
//! after it began is in the next write (the store is marked dirty).

use std::collections::VecDeque;
use std::sync::Arc;

use super::disk::{not_expired, unix_now};
use super::record::FileRecord;
use super::store::CheckpointStore;
use crate::event::FileKey;

/// Records of tracked files copied per lock.
const CHUNK: usize = 4096;

/// A record's place in the file: by source (its rank among the sources' names), path and key.
/// 32 bytes: with 100,000 files the order is the largest thing a write holds.
#[derive(Debug)]
struct Entry {
    path: Arc<str>,
    key: FileKey,
    source: u32,
    /// Where its record is: [`TRACKED`], or its place among the kept records copied.
    from: u32,
}

/// [`Entry::from`] of a file tracked when the write began, copied with its chunk.
const TRACKED: u32 = u32::MAX;

/// The records of a store, in the order they are written.
#[derive(Debug)]
pub(super) struct Snapshot<'a> {
    store: &'a CheckpointStore,
    now: u64,
    order: std::vec::IntoIter<Entry>,
    /// Records kept for files not (or no longer) tracked, copied when the write began: there
    /// are at most [`super::MAX_DORMANT`] and [`super::MAX_RETIRED`] of them.
    kept: Vec<Option<FileRecord>>,
    ready: VecDeque<FileRecord>,
}

impl<'a> Snapshot<'a> {
    /// Takes the order of every record now; records of tracked files are copied as they are
    /// reached.
    pub(super) fn new(store: &'a CheckpointStore) -> Self {
        let now = unix_now();
        let (mut order, kept) = {
            let state = store.lock();
            let kept: Vec<Option<FileRecord>> = state
                .dormant
                .iter()
                .filter(|r| not_expired(r, now))
                .map(|r| Some(r.clone()))
                .collect();
            let mut sources: Vec<&Arc<str>> = state
                .tracked
                .values()
                .map(|t| &t.source)
                .chain(kept.iter().flatten().map(|r| &r.source))
                .collect();
            sources.sort_unstable();
            sources.dedup();
            let rank = |source: &Arc<str>| {
                let at = sources.partition_point(|s| *s < source);
                u32::try_from(at).unwrap_or(u32::MAX)
            };
            let tracked = state.tracked.iter().map(|(key, t)| Entry {
                path: Arc::clone(&t.path),
                key,
                source: rank(&t.source),
                from: TRACKED,
            });
            let dormant = kept.iter().flatten().zip(0..TRACKED).map(|(r, at)| Entry {
                path: Arc::clone(&r.path),
                key: r.key,
                source: rank(&r.source),
                from: at,
            });
            let order: Vec<Entry> = tracked.chain(dormant).collect();
            (order, kept)
        };
        order.sort_unstable_by(|a, b| (a.source, &a.path, a.key).cmp(&(b.source, &b.path, b.key)));
        Snapshot {
            store,
            now,
            order: order.into_iter(),
            kept,
            ready: VecDeque::new(),
        }
    }

    /// Copies the next records, up to [`CHUNK`] of tracked files, under one lock.
    fn refill(&mut self) {
        let state = self.store.lock();
        let mut tracked = 0;
        while tracked < CHUNK {
            let Some(entry) = self.order.next() else {
                break;
            };
            if entry.from == TRACKED {
                tracked += 1;
                if let Some(record) = state.current_record(entry.key, self.now) {
                    self.ready.push_back(record);
                }
            } else if let Some(record) = self
                .kept
                .get_mut(entry.from as usize)
                .and_then(Option::take)
            {
                self.ready.push_back(record);
            }
        }
    }
}

impl Iterator for Snapshot<'_> {
    type Item = FileRecord;

    fn next(&mut self) -> Option<FileRecord> {
        if self.ready.is_empty() {
            self.refill();
        }
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_of_the_order_stays_small() {
        assert!(std::mem::size_of::<Entry>() <= 32);
    }
}
