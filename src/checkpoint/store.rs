//! The checkpoint store: every tracked file's record and what each sink delivered of it, shared
//! by tailers, sink tasks, the API, replay and the writer.
//!
//! Invariant: a file's checkpoint is the least offset delivered among the sinks its source routes
//! to, so it never passes a line some sink has not delivered.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::disk::{FILE_NAME, load, not_expired, prune, unix_now, write_atomically};
use super::record::{FilePosition, FileRecord, Fingerprint, MARKS_PERSISTED, StreamMark};
use super::snapshot::Snapshot;
use super::tracked::Tracked;
use super::tracked_map::TrackedMap;
use super::{CheckpointError, SinkId, same_sink};
use crate::event::FileKey;

/// Records of files not seen since a restart are kept this long, then forgotten.
pub const DORMANT_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Records loaded for files not found again (yet) kept at most, the most recently updated
/// first: a volume where files come and go across many restarts cannot grow the store.
pub const MAX_DORMANT: usize = 16 * 1024;

/// What opening the store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// No checkpoint file: the agent's very first start with this `data_dir`.
    FirstStart,
    /// Checkpoints of this many files were loaded.
    Loaded(usize),
    /// The file was unreadable or corrupt; it was moved aside (where said) and ignored.
    Corrupt {
        /// What was wrong.
        reason: String,
        /// Where the bad file now is, if moving it worked.
        moved_to: Option<PathBuf>,
    },
}

impl State {
    /// The record of tracked file `key` as it would be written now (`None`: not tracked); a
    /// file let go meanwhile is looked for among the records kept.
    pub(super) fn current_record(&self, key: FileKey, now: u64) -> Option<FileRecord> {
        match self.tracked.get(key) {
            Some(t) => Some(FileRecord {
                updated_unix: now,
                ..t.record(key)
            }),
            None => self
                .dormant
                .iter()
                .find(|r| r.key == key && not_expired(r, now))
                .cloned(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tracked: TrackedMap,
    /// Loaded records not yet claimed by a file found on disk.
    pub(super) dormant: Vec<FileRecord>,
    pub(super) dirty: bool,
    /// The sinks each source routes to, where the agent set them ([`CheckpointStore::route`]):
    /// files tracked from then on are delivered to these, whatever their tailer was started
    /// with.
    pub(super) routes: HashMap<String, Vec<SinkId>>,
}

/// What a checkpoint write cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteCost {
    /// From the start to the file and its directory synced.
    pub total: Duration,
    /// Up to the bytes written (the work of it; the rest is waiting for the disk).
    pub before_sync: Duration,
}

/// How many records of files let go are kept for their compressed copies.
pub const MAX_RETIRED: usize = 1024;

/// Checkpoints of every file of every source, shared by tailers, sinks and the writer.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    /// False for a store that only tracks acks in memory (`replay`): nothing is written.
    persistent: bool,
    first_start: bool,
    state: Mutex<State>,
    /// Held for a whole write: two writers would share the temporary file.
    write_lock: Mutex<()>,
    /// Notified when the store changes (a file delivered further, tracked, let go): the writer
    /// follows deliveries closely instead of waiting for a tick.
    changed: tokio::sync::Notify,
}

impl CheckpointStore {
    /// Opens (creating `data_dir` if needed) and loads the store.
    pub fn open(data_dir: &Path) -> Result<(Self, LoadOutcome), CheckpointError> {
        fs::create_dir_all(data_dir).map_err(|source| CheckpointError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let (dormant, outcome) = match load(&path) {
            Ok(Some(mut files)) => {
                prune(&mut files, unix_now());
                let n = files.len();
                (files, LoadOutcome::Loaded(n))
            }
            Ok(None) => (Vec::new(), LoadOutcome::FirstStart),
            Err(reason) => {
                let aside = path.with_extension("json.corrupt");
                let moved_to = fs::rename(&path, &aside).ok().map(|()| aside);
                (Vec::new(), LoadOutcome::Corrupt { reason, moved_to })
            }
        };
        let store = CheckpointStore {
            path,
            persistent: true,
            first_start: outcome == LoadOutcome::FirstStart,
            state: Mutex::new(State {
                dormant,
                ..State::default()
            }),
            write_lock: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        };
        Ok((store, outcome))
    }

    /// A store that tracks acks in memory only and never writes (for `replay`, which keeps no
    /// checkpoints but waits for every ack).
    pub fn ephemeral() -> Self {
        CheckpointStore {
            path: PathBuf::new(),
            persistent: false,
            first_start: true,
            state: Mutex::new(State::default()),
            write_lock: Mutex::new(()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once the store has changed since the last call (at once if it has already).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when there was no checkpoint file at start (`read_from: end` applies then only).
    pub fn is_first_start(&self) -> bool {
        self.first_start
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the loaded record of the file (`dev`, `ino`) of `source` if its fingerprint matches
    /// the file's current `head` and the file still reaches its offset.
    pub fn claim(
        &self,
        source: &str,
        dev: u64,
        ino: u64,
        head: &[u8],
        size: u64,
    ) -> Option<FileRecord> {
        let mut state = self.lock();
        let index = state.dormant.iter().position(|r| {
            *r.source == *source
                && !r.finished
                && r.dev == dev
                && r.ino == ino
                && r.fingerprint.matches(head)
                && size >= r.offset
        })?;
        state.dirty = true;
        self.changed.notify_one();
        Some(state.dormant.swap_remove(index))
    }

    /// The device and inode of the loaded records of `source` not claimed yet (none once every
    /// file was found again).
    pub fn dormant_ids(&self, source: &str) -> HashSet<(u64, u64)> {
        self.lock()
            .dormant
            .iter()
            .filter(|r| *r.source == *source && !r.finished)
            .map(|r| (r.dev, r.ino))
            .collect()
    }

    /// The loaded or retired record whose fingerprint matches the uncompressed `head` of a
    /// compressed file of `source`, wherever that record's file was: the file being read when the
    /// agent stopped, or one let go since, that was compressed meanwhile. Of records that match,
    /// the one at `named` (the path the compressed file was made from, as its name says) wins,
    /// then the longest fingerprint. A record of a file let go (finished), or one whose file
    /// `gone` says no longer holds what it covers (rotated away, deleted, truncated), is taken:
    /// the compressed file continues that file, with its key. Any other (its file still there,
    /// holding its lines) is left where it is for that file, and the copy given has a key of
    /// its own (`new_key`): the compressed file may hold only a part of what the record covers.
    /// `gone` runs without the store's lock held (it looks at files).
    pub fn claim_compressed(
        &self,
        source: &str,
        head: &[u8],
        named: Option<&str>,
        new_key: FileKey,
        gone: impl Fn(&FileRecord) -> bool,
    ) -> Option<FileRecord> {
        let chosen = self
            .lock()
            .dormant
            .iter()
            .filter(|r| {
                *r.source == *source
                    // A copy's record goes only to a compressed file made of that copy (named
                    // after it), which then holds the same lines read elsewhere.
                    && (!r.copy || Some(&*r.path) == named)
                    && r.fingerprint.len > 0
                    && r.fingerprint.matches(head)
            })
            .max_by_key(|r| (Some(&*r.path) == named, r.fingerprint.len))
            .cloned()?;
        if !chosen.finished && !gone(&chosen) {
            return Some(FileRecord {
                key: new_key,
                ..chosen
            });
        }
        let mut state = self.lock();
        // Taken meanwhile by another tailer's file: not there any more.
        let index = state.dormant.iter().position(|r| r.key == chosen.key)?;
        state.dirty = true;
        self.changed.notify_one();
        Some(state.dormant.swap_remove(index))
    }

    /// Takes the loaded record that a plain file of `source` with this `head` is the copy of: a
    /// record not claimed by its own file, not finished, with a fingerprint that matches `head`,
    /// and that `is_copy_of` accepts (it reads the record's file, to know that it no longer
    /// holds what was read of it, as copytruncate leaves it while the agent is down, and the
    /// copy, to compare it with the record's marks). The longest fingerprint wins. `is_copy_of`
    /// runs without the store's lock held.
    pub fn claim_copy(
        &self,
        source: &str,
        head: &[u8],
        is_copy_of: impl Fn(&FileRecord) -> bool,
    ) -> Option<FileRecord> {
        let candidates: Vec<FileRecord> = self
            .lock()
            .dormant
            .iter()
            .filter(|r| {
                *r.source == *source
                    && !r.finished
                    && !r.copy
                    && r.offset > 0
                    && r.fingerprint.len > 0
                    && r.fingerprint.matches(head)
            })
            .cloned()
            .collect();
        let chosen = candidates
            .into_iter()
            .filter(|r| is_copy_of(r))
            .max_by_key(|r| r.fingerprint.len)?;
        let mut state = self.lock();
        // Claimed meanwhile by another tailer's file: not there any more.
        let index = state
            .dormant
            .iter()
            .position(|r| r.key == chosen.key && !r.finished)?;
        state.dirty = true;
        self.changed.notify_one();
        Some(state.dormant.swap_remove(index))
    }

    /// Stops tracking a file read to its end and let go, keeping its record as finished (see
    /// [`FileRecord::finished`]) when it has a fingerprint to be recognised by. At most
    /// [`MAX_RETIRED`] are kept, the oldest dropped first.
    pub fn retire(&self, key: FileKey) {
        let now = unix_now();
        let mut state = self.lock();
        let Some(tracked) = state.tracked.remove(key) else {
            return;
        };
        state.dirty = true;
        self.changed.notify_one();
        if tracked.fingerprint.len == 0 {
            return;
        }
        let retired = state.dormant.iter().filter(|r| r.finished).count();
        if retired >= MAX_RETIRED
            && let Some(oldest) = state
                .dormant
                .iter()
                .enumerate()
                .filter(|(_, r)| r.finished)
                .min_by_key(|(_, r)| r.updated_unix)
                .map(|(i, _)| i)
        {
            state.dormant.swap_remove(oldest);
        }
        state.dormant.push(FileRecord {
            updated_unix: now,
            finished: true,
            ..tracked.into_record(key)
        });
    }

    /// Makes room for `additional` more tracked files at once: a scan that finds thousands
    /// of new files grows the map once rather than by doublings, each of which held the old
    /// table beside the new one (10 MB at the last one, with 100,000 files).
    pub fn reserve(&self, additional: usize) {
        self.lock().tracked.reserve(additional);
    }

    /// Starts tracking a file whose checkpoint is `record.offset`, delivered to `sinks` (or to
    /// the sinks its source is routed to, once [`CheckpointStore::route`] said).
    pub fn track(&self, record: FileRecord, sinks: &[SinkId]) {
        let mut state = self.lock();
        let sinks = state
            .routes
            .get(&*record.source)
            .map_or(sinks, Vec::as_slice);
        let (key, tracked) = Tracked::new(record, sinks);
        state.tracked.insert(key, tracked);
        state.dirty = true;
        self.changed.notify_one();
    }

    /// Routes `source` to `sinks` (ack ids) from now on (a reload added or removed sinks or
    /// transforms of a running source). Each tracked file of the source keeps what the sinks it
    /// still goes to have delivered; a sink added starts at what was handed on so far (it gets
    /// the lines read from now on), a new lane of a sink it went to already at the least that
    /// sink's lanes delivered; a sink removed no longer holds the checkpoint back.
    pub fn route(&self, source: &str, sinks: &[SinkId]) {
        let mut state = self.lock();
        let state = &mut *state;
        state.routes.insert(source.to_owned(), sinks.to_vec());
        for tracked in state.tracked.values_mut() {
            if *tracked.source != *source {
                continue;
            }
            let before = tracked.checkpoint();
            let emitted = tracked.emitted;
            let delivered = sinks
                .iter()
                .map(|&sink| {
                    let same = tracked.delivered.iter().find(|(s, _)| *s == sink);
                    // A lane new to a sink that had others (the transforms changed): chunks of
                    // the old lanes may still be on their way to it, so the new one starts
                    // where the least of those was, not past them.
                    let same_sink = || {
                        tracked
                            .delivered
                            .iter()
                            .filter(|(s, _)| same_sink(*s, sink))
                            .map(|(_, offset)| *offset)
                            .min()
                    };
                    let at = match same {
                        Some((_, offset)) => *offset,
                        None => same_sink().unwrap_or(emitted),
                    };
                    (sink, at)
                })
                .collect();
            tracked.delivered = delivered;
            if tracked.checkpoint() != before {
                state.dirty = true;
                self.changed.notify_one();
            }
        }
    }

    /// True when every line of `source`'s tracked files handed to the pipeline is delivered.
    pub fn is_source_fully_acked(&self, source: &str) -> bool {
        self.lock()
            .tracked
            .values()
            .filter(|t| *t.source == *source)
            .all(|t| t.checkpoint() >= t.emitted)
    }

    /// Where each tracked file of `source` is delivered up to, by the path it was last seen at.
    pub fn positions_of(&self, source: &str) -> HashMap<String, FilePosition> {
        self.lock()
            .tracked
            .values()
            .filter(|t| *t.source == *source)
            .map(|t| (t.path.to_string(), t.position()))
            .collect()
    }

    /// Stops tracking the files of `source` (its tailer has stopped), keeping each at its
    /// checkpoint as a record the next tailer of `source` claims, as after a restart: it
    /// resumes there. Acks that come later for these files are not counted.
    pub fn release(&self, source: &str) {
        let now = unix_now();
        let mut state = self.lock();
        let state = &mut *state;
        let keys: Vec<FileKey> = state
            .tracked
            .iter()
            .filter(|(_, t)| *t.source == *source)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            if let Some(tracked) = state.tracked.remove(key) {
                state.dormant.push(FileRecord {
                    updated_unix: now,
                    ..tracked.into_record(key)
                });
                state.dirty = true;
            }
        }
        self.changed.notify_one();
    }

    /// Records that chunks of `key` up to `end_offset` were handed to the pipeline.
    pub fn emitted(&self, key: FileKey, end_offset: u64) {
        self.emitted_after(key, end_offset, &[]);
    }

    /// Records that chunks of `key` up to `end_offset` were handed to the pipeline, read by
    /// reads that left `marks` (kept with the record when there are any; they do not make the
    /// store dirty on their own: they go out with the next offset that does).
    pub fn emitted_after(&self, key: FileKey, end_offset: u64, marks: &[StreamMark]) {
        if let Some(t) = self.lock().tracked.get_mut(key) {
            t.emitted = t.emitted.max(end_offset);
            // Marks inside the fingerprint tell nothing it does not: small files keep none.
            let head = u64::from(t.fingerprint.len);
            let past_head = marks.iter().filter(|m| m.end > head);
            let n = past_head.clone().count();
            if n > 0 && t.marks.last() != marks.last() {
                let kept = n.min(MARKS_PERSISTED);
                t.marks = past_head.skip(n - kept).copied().collect();
            }
        }
    }

    /// Records that `sink` delivered every line of `key` before `offset`.
    pub fn ack(&self, sink: SinkId, key: FileKey, offset: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(t) = state.tracked.get_mut(key) else {
            return;
        };
        if let Some((_, delivered)) = t.delivered.iter_mut().find(|(s, _)| *s == sink)
            && offset > *delivered
        {
            *delivered = offset;
            state.dirty = true;
            self.changed.notify_one();
        }
    }

    /// Updates where a tracked file lives and what its head is.
    pub fn update_identity(&self, key: FileKey, path: &Arc<str>, fingerprint: Fingerprint) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(t) = state.tracked.get_mut(key) {
            if t.path != *path {
                t.path = Arc::clone(path);
                state.dirty = true;
                self.changed.notify_one();
            }
            if t.fingerprint != fingerprint {
                t.fingerprint = fingerprint;
                state.dirty = true;
                self.changed.notify_one();
            }
        }
    }

    /// Moves a tracked file's record to another file holding the same content (its copy).
    pub fn relocate(&self, key: FileKey, path: &Arc<str>, dev: u64, ino: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(t) = state.tracked.get_mut(key) {
            t.path = Arc::clone(path);
            t.dev = dev;
            t.ino = ino;
            state.dirty = true;
            self.changed.notify_one();
        }
    }

    /// The checkpoint of a tracked file.
    pub fn checkpoint(&self, key: FileKey) -> Option<u64> {
        self.lock().tracked.get(key).map(Tracked::checkpoint)
    }

    /// True when every line handed on for `key` is delivered by every sink (or `key` is
    /// unknown).
    pub fn is_fully_acked(&self, key: FileKey) -> bool {
        self.lock()
            .tracked
            .get(key)
            .is_none_or(|t| t.checkpoint() >= t.emitted)
    }

    /// Stops tracking a file for now, its record kept as loaded: it is claimed again when the
    /// file is taken again.
    pub fn untrack(&self, key: FileKey) {
        let mut state = self.lock();
        let Some(tracked) = state.tracked.remove(key) else {
            return;
        };
        state.dormant.push(tracked.into_record(key));
        state.dirty = true;
        self.changed.notify_one();
    }

    /// Stops tracking a file (deleted, or truncated into a new generation); its record goes.
    pub fn forget(&self, key: FileKey) {
        let mut state = self.lock();
        if state.tracked.remove(key).is_some() {
            state.dirty = true;
            self.changed.notify_one();
        }
    }

    /// Where each tracked file is delivered up to, for metrics.
    pub fn positions(&self) -> Vec<FilePosition> {
        self.lock()
            .tracked
            .values()
            .map(Tracked::position)
            .collect()
    }

    /// Every record as it would be written now, in the order it is written.
    pub fn records(&self) -> Vec<FileRecord> {
        Snapshot::new(self).collect()
    }

    /// Writes the checkpoint file if anything changed since the last write; says what the write
    /// cost (`None`: nothing to write). Blocking I/O.
    pub fn persist(&self) -> Result<Option<WriteCost>, CheckpointError> {
        if !self.persistent {
            return Ok(None);
        }
        let started = Instant::now();
        let _writing = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(None);
            }
            state.dirty = false;
            // Expired records leave memory too, not only the file.
            prune(&mut state.dormant, unix_now());
        }
        let result = write_atomically(&self.path, Snapshot::new(self));
        if result.is_err() {
            self.lock().dirty = true;
        }
        result
            .map(|written| {
                Some(WriteCost {
                    total: started.elapsed(),
                    before_sync: written - started,
                })
            })
            .map_err(|source| CheckpointError::Write {
                path: self.path.clone(),
                source,
            })
    }
}
