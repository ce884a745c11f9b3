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

/// Where a record comes from.
#[derive(Debug)]
enum Source {
    /// A file tracked when the write began, copied with its chunk.
    Tracked,
    /// A record kept for a file not (or no longer) tracked, copied when the write began: there
    /// are at most [`super::MAX_DORMANT`] and [`super::MAX_RETIRED`] of them.
    Dormant(Box<FileRecord>),
}

/// A record's place in the file: by source, path and key.
#[derive(Debug)]
struct Entry {
    source: Arc<str>,
    path: Arc<str>,
    key: FileKey,
    from: Source,
}

/// The records of a store, in the order they are written.
#[derive(Debug)]
pub(super) struct Snapshot<'a> {
    store: &'a CheckpointStore,
    now: u64,
    order: std::vec::IntoIter<Entry>,
    ready: VecDeque<FileRecord>,
}

impl<'a> Snapshot<'a> {
    /// Takes the order of every record now; records of tracked files are copied as they are
    /// reached.
    pub(super) fn new(store: &'a CheckpointStore) -> Self {
        let now = unix_now();
        let mut order: Vec<Entry> = {
            let state = store.lock();
            let tracked = state.tracked.iter().map(|(&key, t)| Entry {
                source: Arc::clone(&t.source),
                path: Arc::clone(&t.path),
                key,
                from: Source::Tracked,
            });
            let dormant = state
                .dormant
                .iter()
                .filter(|r| not_expired(r, now))
                .map(|r| Entry {
                    source: Arc::clone(&r.source),
                    path: Arc::clone(&r.path),
                    key: r.key,
                    from: Source::Dormant(Box::new(r.clone())),
                });
            tracked.chain(dormant).collect()
        };
        order
            .sort_unstable_by(|a, b| (&a.source, &a.path, a.key).cmp(&(&b.source, &b.path, b.key)));
        Snapshot {
            store,
            now,
            order: order.into_iter(),
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
            match entry.from {
                Source::Dormant(record) => self.ready.push_back(*record),
                Source::Tracked => {
                    tracked += 1;
                    if let Some(record) = state.current_record(entry.key, self.now) {
                        self.ready.push_back(record);
                    }
                }
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
