//! Checkpoints: how far each file is delivered, tracked from acks and kept on disk.
//!
//! The tailer registers every file it reads ([`CheckpointStore::track`]) and says how far it has
//! handed lines on ([`CheckpointStore::emitted`]); each sink acks, per file, the offset its
//! deliveries reached ([`CheckpointStore::ack`]). A file's checkpoint is the least offset among
//! the sinks its source routes to, so it never passes a line some sink has not delivered.
//!
//! On disk the store is one JSON file in `data_dir`, written to a temporary file, fsynced and
//! renamed over the old one, so a crash leaves either the old or the new version. A file that
//! cannot be read or parsed is moved aside and reported; the agent then starts without
//! checkpoints (reading files from their start: duplicates, never loss) instead of crash-looping.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;
use super::marks::{MARKS_PERSISTED, StreamMark};
use crate::event::FileKey;

const FILE_NAME: &str = "checkpoints.json";
const FORMAT_VERSION: u32 = 1;
/// Records of files not seen since a restart are kept this long, then forgotten.
pub const DORMANT_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Records loaded for files not found again (yet) kept at most, the most recently updated
/// first: a volume where files come and go across many restarts cannot grow the store.
pub const MAX_DORMANT: usize = 16 * 1024;

/// Index of a sink in the running pipeline.
pub type SinkId = usize;

/// Errors of the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// `data_dir` could not be created.
    #[error("data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the checkpoint file failed.
    #[error("writing checkpoints to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The persisted state of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Name of the source that reads the file (shared with the tailer's copy of it).
    pub source: Arc<str>,
    /// Path the file was last seen at (shared with the tailer's copy of it).
    pub path: Arc<str>,
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Fingerprint of the file's head.
    pub fingerprint: Fingerprint,
    /// Key of the file's current generation, the stem of its events' ids.
    pub key: FileKey,
    /// Offset up to which every routed sink has delivered.
    pub offset: u64,
    /// Unix seconds of the last time the record was written while its file was tracked.
    pub updated_unix: u64,
    /// The file was read to its end and let go (rotated away, deleted). Its record is kept
    /// only so that a compressed copy of it (`app.log.1.gz`) is recognised by its head and
    /// continued where the file ended; a file at its device and inode never takes it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished: bool,
    /// What the file's last reads ended with (see [`crate::source::marks`]): after a restart,
    /// a copy of the file shorter than what was read of it is recognised by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<StreamMark>,
    /// The file holds, up to `offset`, only lines read from another file (it was taken for a
    /// copy of them): its offset says nothing of what was delivered, so no other file
    /// continues from it, but for the compressed file made of it (named after it), which holds
    /// the same lines and keeps this flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
}

/// The checkpoint file (written record by record, see [`write_atomically`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileRecord>,
}

/// How far a tracked file is delivered, as [`CheckpointStore::positions`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    /// The source reading the file.
    pub source: String,
    /// Where the file was last seen.
    pub path: String,
    /// Device of the file, to tell it from another file now at `path`.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// The offset up to which every sink delivered.
    pub checkpoint: u64,
}

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

#[derive(Debug)]
struct Tracked {
    record: FileRecord,
    /// Offset delivered by each routed sink.
    delivered: Vec<(SinkId, u64)>,
    /// Offset up to which chunks were handed to the pipeline.
    emitted: u64,
}

impl Tracked {
    fn checkpoint(&self) -> u64 {
        self.delivered
            .iter()
            .map(|(_, offset)| *offset)
            .min()
            .unwrap_or(self.emitted)
    }
}

#[derive(Debug, Default)]
struct State {
    tracked: HashMap<FileKey, Tracked>,
    /// Loaded records not yet claimed by a file found on disk.
    dormant: Vec<FileRecord>,
    dirty: bool,
    /// The sinks each source routes to, where the agent set them ([`CheckpointStore::route`]):
    /// files tracked from then on are delivered to these, whatever their tailer was started
    /// with.
    routes: HashMap<String, Vec<SinkId>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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
        let Some(tracked) = state.tracked.remove(&key) else {
            return;
        };
        state.dirty = true;
        self.changed.notify_one();
        if tracked.record.fingerprint.len == 0 {
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
        let offset = tracked.checkpoint();
        state.dormant.push(FileRecord {
            offset,
            updated_unix: now,
            finished: true,
            ..tracked.record
        });
    }

    /// Starts tracking a file whose checkpoint is `record.offset`, delivered to `sinks` (or to
    /// the sinks its source is routed to, once [`CheckpointStore::route`] said).
    pub fn track(&self, record: FileRecord, sinks: &[SinkId]) {
        let offset = record.offset;
        let mut state = self.lock();
        let sinks = state
            .routes
            .get(&*record.source)
            .map_or(sinks, Vec::as_slice);
        let tracked = Tracked {
            delivered: sinks.iter().map(|&sink| (sink, offset)).collect(),
            emitted: offset,
            record,
        };
        state.tracked.insert(tracked.record.key, tracked);
        state.dirty = true;
        self.changed.notify_one();
    }

    /// Routes `source` to `sinks` from now on (a reload added or removed sinks of a running
    /// source). Each tracked file of the source keeps what the sinks it still goes to have
    /// delivered; a sink added starts at what was handed on so far (it gets the lines read from
    /// now on); a sink removed no longer holds the checkpoint back.
    pub fn route(&self, source: &str, sinks: &[SinkId]) {
        let mut state = self.lock();
        let state = &mut *state;
        state.routes.insert(source.to_owned(), sinks.to_vec());
        for tracked in state.tracked.values_mut() {
            if *tracked.record.source != *source {
                continue;
            }
            let before = tracked.checkpoint();
            let emitted = tracked.emitted;
            let delivered = sinks
                .iter()
                .map(|&sink| {
                    let at = tracked
                        .delivered
                        .iter()
                        .find(|(s, _)| *s == sink)
                        .map_or(emitted, |(_, offset)| *offset);
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
            .filter(|t| *t.record.source == *source)
            .all(|t| t.checkpoint() >= t.emitted)
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
            .filter(|(_, t)| *t.record.source == *source)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(tracked) = state.tracked.remove(&key) {
                let offset = tracked.checkpoint();
                state.dormant.push(FileRecord {
                    offset,
                    updated_unix: now,
                    ..tracked.record
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
        if let Some(t) = self.lock().tracked.get_mut(&key) {
            t.emitted = t.emitted.max(end_offset);
            // Marks inside the fingerprint tell nothing it does not: small files keep none.
            let head = u64::from(t.record.fingerprint.len);
            let past_head = marks.iter().filter(|m| m.end > head);
            let n = past_head.clone().count();
            if n > 0 && t.record.marks.last() != marks.last() {
                // Exactly as many as kept: 100,000 records of one mark each would otherwise
                // hold room for four.
                let kept = n.min(MARKS_PERSISTED);
                let mut record_marks = Vec::with_capacity(kept);
                record_marks.extend(past_head.skip(n - kept));
                t.record.marks = record_marks;
            }
        }
    }

    /// Records that `sink` delivered every line of `key` before `offset`.
    pub fn ack(&self, sink: SinkId, key: FileKey, offset: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(t) = state.tracked.get_mut(&key) else {
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
        if let Some(t) = state.tracked.get_mut(&key) {
            if t.record.path != *path {
                t.record.path = Arc::clone(path);
                state.dirty = true;
                self.changed.notify_one();
            }
            if t.record.fingerprint != fingerprint {
                t.record.fingerprint = fingerprint;
                state.dirty = true;
                self.changed.notify_one();
            }
        }
    }

    /// Moves a tracked file's record to another file holding the same content (its copy).
    pub fn relocate(&self, key: FileKey, path: &Arc<str>, dev: u64, ino: u64) {
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(t) = state.tracked.get_mut(&key) {
            t.record.path = Arc::clone(path);
            t.record.dev = dev;
            t.record.ino = ino;
            state.dirty = true;
            self.changed.notify_one();
        }
    }

    /// The checkpoint of a tracked file.
    pub fn checkpoint(&self, key: FileKey) -> Option<u64> {
        self.lock().tracked.get(&key).map(Tracked::checkpoint)
    }

    /// True when every line handed on for `key` is delivered by every sink (or `key` is
    /// unknown).
    pub fn is_fully_acked(&self, key: FileKey) -> bool {
        self.lock()
            .tracked
            .get(&key)
            .is_none_or(|t| t.checkpoint() >= t.emitted)
    }

    /// Stops tracking a file for now, its record kept as loaded: it is claimed again when the
    /// file is taken again.
    pub fn untrack(&self, key: FileKey) {
        let mut state = self.lock();
        let Some(tracked) = state.tracked.remove(&key) else {
            return;
        };
        let offset = tracked.checkpoint();
        state.dormant.push(FileRecord {
            offset,
            ..tracked.record
        });
        state.dirty = true;
        self.changed.notify_one();
    }

    /// Stops tracking a file (deleted, or truncated into a new generation); its record goes.
    pub fn forget(&self, key: FileKey) {
        let mut state = self.lock();
        if state.tracked.remove(&key).is_some() {
            state.dirty = true;
            self.changed.notify_one();
        }
    }

    /// Where each tracked file is delivered up to, for metrics.
    pub fn positions(&self) -> Vec<FilePosition> {
        self.lock()
            .tracked
            .values()
            .map(|t| FilePosition {
                source: t.record.source.to_string(),
                path: t.record.path.to_string(),
                dev: t.record.dev,
                ino: t.record.ino,
                checkpoint: t.checkpoint(),
            })
            .collect()
    }

    /// Every record as it would be written now.
    pub fn records(&self) -> Vec<FileRecord> {
        let now = unix_now();
        // Cheap to copy (the strings are shared), so the lock that every ack takes is held
        // briefly even with 100,000 files; the sort happens without it.
        let mut records: Vec<FileRecord> = {
            let state = self.lock();
            state
                .tracked
                .values()
                .map(|t| FileRecord {
                    offset: t.checkpoint(),
                    updated_unix: now,
                    ..t.record.clone()
                })
                .chain(
                    state
                        .dormant
                        .iter()
                        .filter(|r| now.saturating_sub(r.updated_unix) < DORMANT_EXPIRY_SECS)
                        .cloned(),
                )
                .collect()
        };
        records
            .sort_unstable_by(|a, b| (&a.source, &a.path, a.key).cmp(&(&b.source, &b.path, b.key)));
        records
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
        let records = self.records();
        let result = write_atomically(&self.path, &records);
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

/// Drops the records not updated for [`DORMANT_EXPIRY_SECS`], then the oldest beyond
/// [`MAX_RETIRED`] finished and [`MAX_DORMANT`] other records.
fn prune(records: &mut Vec<FileRecord>, now: u64) {
    records.retain(|r| now.saturating_sub(r.updated_unix) < DORMANT_EXPIRY_SECS);
    let (finished, other) = (
        records.iter().filter(|r| r.finished).count(),
        records.iter().filter(|r| !r.finished).count(),
    );
    if finished <= MAX_RETIRED && other <= MAX_DORMANT {
        return;
    }
    records.sort_by_key(|r| std::cmp::Reverse(r.updated_unix));
    let (mut kept_finished, mut kept_other) = (0, 0);
    records.retain(|r| {
        let kept = if r.finished {
            &mut kept_finished
        } else {
            &mut kept_other
        };
        *kept += 1;
        *kept <= if r.finished { MAX_RETIRED } else { MAX_DORMANT }
    });
}

/// Reads the checkpoint file: `Ok(None)` when there is none, `Err` with a reason when it is
/// unreadable or not a checkpoint file of this version.
fn load(path: &Path) -> Result<Option<Vec<FileRecord>>, String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("unsupported version {}", file.version));
    }
    Ok(Some(file.files))
}

/// Writes `records` as a checkpoint file: compact, one record per line (a store of 100,000
/// files is rewritten every interval: pretty-printing it cost more than the rest of the agent),
/// streamed to a temporary file that is fsynced and renamed over the old one. Returns when the
/// bytes were written, before they were synced.
fn write_atomically(path: &Path, records: &[FileRecord]) -> io::Result<Instant> {
    let tmp = path.with_extension("json.tmp");
    let mut out = io::BufWriter::with_capacity(256 * 1024, fs::File::create(&tmp)?);
    write!(out, "{{\"version\":{FORMAT_VERSION},\"files\":[")?;
    for (i, record) in records.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut out, record).map_err(io::Error::other)?;
    }
    out.write_all(b"\n]}\n")?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    let written = Instant::now();
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(written)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: FileKey, offset: u64) -> FileRecord {
        FileRecord {
            source: "app".into(),
            path: format!("/logs/{key}.log").into(),
            dev: 1,
            ino: key,
            fingerprint: Fingerprint::of(b"head"),
            key,
            offset,
            updated_unix: unix_now(),
            finished: false,
            marks: Vec::new(),
            copy: false,
        }
    }

    #[test]
    fn checkpoint_is_the_least_delivered_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(outcome, LoadOutcome::FirstStart);
        store.track(record(7, 100), &[0, 1]);
        store.emitted(7, 500);
        // (sink, acked offset, checkpoint after, fully acked after)
        let steps = [
            (0, 300, 100, false),
            (1, 200, 200, false),
            (1, 150, 200, false), // an older ack never moves it back
            (1, 500, 300, false),
            (9, 900, 300, false), // a sink the source does not route to counts for nothing
            (0, 500, 500, true),
        ];
        for (sink, offset, want, acked) in steps {
            store.ack(sink, 7, offset);
            assert_eq!(store.checkpoint(7), Some(want), "after ack {sink}@{offset}");
            assert_eq!(store.is_fully_acked(7), acked, "after ack {sink}@{offset}");
        }
    }

    #[test]
    fn routes_set_by_a_reload_keep_what_the_remaining_sinks_delivered() {
        let store = CheckpointStore::ephemeral();
        store.track(record(7, 100), &[0, 1]);
        store.emitted(7, 500);
        store.ack(0, 7, 400);
        store.ack(1, 7, 200);
        // (routes set, checkpoint after, then an ack and the checkpoint after it)
        type Step = (&'static [SinkId], u64, (SinkId, u64), u64);
        let steps: &[Step] = &[
            // Sink 2 added: it starts at what was handed on (500); 1 still holds at 200.
            (&[0, 1, 2], 200, (1, 450), 400),
            // Sink 0 removed: it no longer holds the checkpoint back.
            (&[1, 2], 450, (1, 500), 500),
            // An ack of a sink routed no more counts for nothing.
            (&[2], 500, (0, 900), 500),
        ];
        for (sinks, want, (sink, offset), after) in steps {
            store.route("app", sinks);
            assert_eq!(store.checkpoint(7), Some(*want), "routes {sinks:?}");
            store.ack(*sink, 7, *offset);
            assert_eq!(store.checkpoint(7), Some(*after), "routes {sinks:?}, ack");
        }
        // Files tracked from now on go to the routes, whatever their tailer says.
        store.track(record(8, 0), &[0, 1]);
        store.emitted(8, 10);
        store.ack(2, 8, 10);
        assert_eq!(store.checkpoint(8), Some(10));
        assert!(store.is_source_fully_acked("app"));
        store.emitted(8, 20);
        assert!(!store.is_source_fully_acked("app"));
        assert!(store.is_source_fully_acked("other"));
    }

    #[test]
    fn a_released_source_resumes_at_its_checkpoints() {
        let store = CheckpointStore::ephemeral();
        store.track(record(1, 0), &[0]);
        store.track(
            FileRecord {
                source: "web".into(),
                ..record(2, 0)
            },
            &[0],
        );
        store.emitted(1, 300);
        store.ack(0, 1, 120);
        store.release("app");
        assert_eq!(store.checkpoint(1), None, "no longer tracked");
        assert_eq!(store.checkpoint(2), Some(0), "another source's file stays");
        store.ack(0, 1, 300);
        let claimed = store.claim("app", 1, 1, b"head and more", 1_000).unwrap();
        assert_eq!(claimed.offset, 120, "resumes at what was delivered");
        assert!(!claimed.finished);
    }

    #[test]
    fn persists_and_reloads_and_claims_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = CheckpointStore::open(dir.path()).unwrap();
            store.track(record(1, 0), &[0]);
            store.track(record(2, 0), &[0]);
            store.emitted(1, 40);
            store.ack(0, 1, 40);
            assert!(store.persist().unwrap().is_some());
            assert!(
                store.persist().unwrap().is_none(),
                "nothing changed, nothing written"
            );
        }
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(outcome, LoadOutcome::Loaded(2));
        assert!(!store.is_first_start());
        // Wrong source, wrong inode, changed head, or shrunk below the offset: not the same file.
        assert!(store.claim("other", 1, 1, b"head and more", 100).is_none());
        assert!(store.claim("app", 1, 3, b"head and more", 100).is_none());
        assert!(store.claim("app", 1, 1, b"HEAD and more", 100).is_none());
        assert!(store.claim("app", 1, 1, b"head and more", 39).is_none());
        let claimed = store.claim("app", 1, 1, b"head and more", 100).unwrap();
        assert_eq!(claimed.offset, 40);
        assert!(
            store.claim("app", 1, 1, b"head and more", 100).is_none(),
            "claimed once"
        );
    }

    #[test]
    fn the_file_holds_one_compact_record_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        for key in 1..=3 {
            store.track(record(key, 10 * key), &[0]);
        }
        store.persist().unwrap();
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], r#"{"version":1,"files":["#);
        assert_eq!(lines[4], "]}");
        for (i, line) in lines[1..4].iter().enumerate() {
            let record: FileRecord = serde_json::from_str(line.trim_end_matches(',')).unwrap();
            assert_eq!(record.key, i as u64 + 1);
            assert_eq!(record.offset, 10 * record.key);
            assert!(!line.contains(": "), "compact: {line}");
        }
        let (_, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(outcome, LoadOutcome::Loaded(3));
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[&[u8]] = &[
            b"{\"version\":1,\"files\":[{\"sour",
            b"\x00\x01garbage",
            b"{\"version\":99,\"files\":[]}",
        ];
        for bad in cases {
            fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
            match outcome {
                LoadOutcome::Corrupt { moved_to, .. } => assert!(moved_to.unwrap().exists()),
                other => panic!("{other:?}"),
            }
            assert!(
                !store.is_first_start(),
                "a corrupt store is not a first start"
            );
            assert!(store.records().is_empty());
        }
    }

    #[test]
    fn retired_files_are_claimed_only_by_their_compressed_copies() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = CheckpointStore::open(dir.path()).unwrap();
            store.track(record(1, 0), &[0]);
            store.emitted(1, 70);
            store.ack(0, 1, 70);
            store.retire(1);
            let mut unnamed = record(2, 0);
            unnamed.fingerprint = Fingerprint::of(b"");
            store.track(unnamed, &[0]);
            store.retire(2);
            store.persist().unwrap();
        }
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(
            outcome,
            LoadOutcome::Loaded(1),
            "an empty head cannot be recognised"
        );
        assert!(
            store.claim("app", 1, 1, b"head and more", 100).is_none(),
            "a file at the same inode does not take a finished record back"
        );
        assert!(
            store
                .claim_compressed("other", b"head and more", None, 9, |_| false)
                .is_none()
        );
        assert!(
            store
                .claim_compressed("app", b"HEAD and more", None, 9, |_| false)
                .is_none()
        );
        let claimed = store
            .claim_compressed("app", b"head and more", None, 9, |_| false)
            .unwrap();
        assert_eq!((claimed.key, claimed.offset), (1, 70));
        assert!(
            store
                .claim_compressed("app", b"head and more", None, 9, |_| false)
                .is_none()
        );
    }

    #[test]
    fn a_compressed_copy_takes_a_finished_record_and_leaves_others_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = CheckpointStore::open(dir.path()).unwrap();
            for key in [1, 2, 3] {
                store.track(record(key, 0), &[0]);
                store.emitted(key, 10 * key);
                store.ack(0, key, 10 * key);
            }
            store.retire(1);
            store.retire(3);
            store.persist().unwrap();
        }
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let head = b"head and more";
        // The one named as the file it was made from wins; one not let go stays for its file.
        let live = store
            .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
            .unwrap();
        assert_eq!((live.key, live.offset), (9, 20));
        let again = store
            .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
            .unwrap();
        assert_eq!((again.key, again.offset), (9, 20));
        let finished = store
            .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
            .unwrap();
        assert_eq!((finished.key, finished.offset), (1, 10));
        let other = store
            .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
            .unwrap();
        assert_ne!(other.key, 1, "taken once");
        assert!(
            store.claim("app", 1, 2, head, 100).is_some(),
            "its own file still finds it"
        );
    }

    #[test]
    fn the_record_of_a_copy_is_continued_only_by_its_own_file_and_its_compressed_self() {
        let store = CheckpointStore::ephemeral();
        let mut copy = record(1, 0);
        copy.copy = true;
        store.track(copy, &[0]);
        store.emitted(1, 70);
        store.ack(0, 1, 70);
        store.untrack(1);
        let head = b"head and more";
        assert!(store.claim_copy("app", head, |_| true).is_none());
        assert!(
            store
                .claim_compressed("app", head, Some("/logs/2.log"), 9, |_| false)
                .is_none(),
            "a compressed file named after another file"
        );
        assert!(
            store
                .claim_compressed("app", head, None, 9, |_| false)
                .is_none(),
            "a compressed file named after no file"
        );
        let own = store.claim("app", 1, 1, head, 100).unwrap();
        assert_eq!((own.key, own.offset, own.copy), (1, 70, true));
        // Its file let go, then compressed.
        store.track(own, &[0]);
        store.retire(1);
        let compressed = store
            .claim_compressed("app", head, Some("/logs/1.log"), 9, |_| false)
            .unwrap();
        assert_eq!(
            (compressed.key, compressed.offset, compressed.copy),
            (1, 70, true),
            "the compressed file made of the copy holds the same lines"
        );
    }

    #[test]
    fn a_plain_copy_claims_only_the_record_of_a_truncated_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = CheckpointStore::open(dir.path()).unwrap();
            for (key, offset) in [(1, 70), (2, 0), (3, 90)] {
                store.track(record(key, 0), &[0]);
                store.emitted(key, offset);
                store.ack(0, key, offset);
            }
            store.retire(3);
            store.persist().unwrap();
        }
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let copy = |_: &FileRecord| true;
        let head = b"head and more";
        assert!(
            store.claim_copy("app", head, |_| false).is_none(),
            "not when the caller says it is no copy of it"
        );
        assert!(store.claim_copy("other", head, copy).is_none());
        assert!(store.claim_copy("app", b"HEAD and more", copy).is_none());
        let claimed = store.claim_copy("app", head, copy).unwrap();
        assert_eq!(
            (claimed.key, claimed.offset),
            (1, 70),
            "neither the record at offset 0 nor the finished one"
        );
        assert!(store.claim_copy("app", head, copy).is_none());
    }

    #[test]
    fn retired_records_are_capped() {
        let store = CheckpointStore::ephemeral();
        for key in 0..MAX_RETIRED as u64 + 10 {
            store.track(record(key, 0), &[0]);
            store.retire(key);
        }
        let state = store.lock();
        assert_eq!(state.dormant.len(), MAX_RETIRED);
        assert!(state.tracked.is_empty());
    }

    #[test]
    fn positions_are_the_checkpoints_of_tracked_files() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.track(record(1, 10), &[0, 1]);
        store.track(record(2, 0), &[0]);
        store.emitted(1, 50);
        store.ack(0, 1, 50);
        store.ack(1, 1, 30);
        let mut got: Vec<(String, u64)> = store
            .positions()
            .into_iter()
            .map(|p| (p.path, p.checkpoint))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("/logs/1.log".to_owned(), 30),
                ("/logs/2.log".to_owned(), 0)
            ]
        );
        store.forget(1);
        assert_eq!(store.positions().len(), 1);
    }

    #[test]
    fn records_of_files_gone_for_a_while_expire_and_loaded_ones_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let now = unix_now();
        let mut files = Vec::new();
        // Gone 8 days (expires), gone 6 days (kept), and more records than kept at most.
        let mut old = record(1, 10);
        old.updated_unix = now - 8 * 24 * 3600;
        files.push(old);
        let mut recent = record(2, 20);
        recent.updated_unix = now - 6 * 24 * 3600;
        files.push(recent);
        for key in 10..10 + MAX_DORMANT as u64 + 5 {
            let mut r = record(key, 0);
            r.updated_unix = now - 3600;
            files.push(r);
        }
        for key in 100_000..100_000 + MAX_RETIRED as u64 + 5 {
            let mut r = record(key, 0);
            r.finished = true;
            r.updated_unix = now - 60;
            files.push(r);
        }
        let body = serde_json::to_vec(&CheckpointFile {
            version: FORMAT_VERSION,
            files,
        })
        .unwrap();
        fs::write(dir.path().join(FILE_NAME), body).unwrap();
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(outcome, LoadOutcome::Loaded(MAX_DORMANT + MAX_RETIRED));
        let records = store.records();
        assert!(!records.iter().any(|r| r.key == 1), "expired");
        assert!(
            !records.iter().any(|r| r.key == 2),
            "the oldest go beyond the cap"
        );
        assert_eq!(records.iter().filter(|r| r.finished).count(), MAX_RETIRED);
        // An expiry that happens while running leaves memory at the next write.
        store.lock().dormant[0].updated_unix = now - 8 * 24 * 3600;
        let expiring = store.lock().dormant[0].key;
        store.lock().dirty = true;
        assert!(store.persist().unwrap().is_some());
        assert!(!store.lock().dormant.iter().any(|r| r.key == expiring));
    }

    #[test]
    fn a_real_checkpoint_file_truncated_mid_write_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = CheckpointStore::open(dir.path()).unwrap();
            for key in 1..=3 {
                store.track(record(key, 0), &[0]);
                store.emitted(key, 100);
                store.ack(0, key, 100);
            }
            store.persist().unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let whole = fs::read(&path).unwrap();
        for cut in [1, whole.len() / 3, whole.len() / 2, whole.len() - 2] {
            fs::write(&path, &whole[..cut]).unwrap();
            let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
            let LoadOutcome::Corrupt { reason, moved_to } = outcome else {
                panic!("cut at {cut}: {outcome:?}");
            };
            assert!(reason.contains("EOF"), "{reason}");
            assert_eq!(fs::read(moved_to.unwrap()).unwrap(), &whole[..cut]);
            assert!(!path.exists());
            assert!(store.records().is_empty());
        }
    }

    #[test]
    fn forgotten_files_leave_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.track(record(1, 0), &[0]);
        store.forget(1);
        store.persist().unwrap();
        let (store, outcome) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(outcome, LoadOutcome::Loaded(0));
        assert!(store.records().is_empty());
    }

    #[test]
    fn concurrent_writers_do_not_trip_over_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        let store = std::sync::Arc::new(store);
        store.track(record(1, 0), &[0]);
        let writers: Vec<_> = (0..4)
            .map(|n| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        store.emitted(1, n * 1000 + i);
                        store.ack(0, 1, n * 1000 + i);
                        store.persist().unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
    }

    #[test]
    fn write_failure_is_an_error_and_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.track(record(1, 0), &[0]);
        // A directory where the temporary file goes makes the write fail.
        fs::create_dir(dir.path().join("checkpoints.json.tmp")).unwrap();
        assert!(store.persist().is_err());
        fs::remove_dir(dir.path().join("checkpoints.json.tmp")).unwrap();
        assert!(
            store.persist().unwrap().is_some(),
            "still dirty after a failure"
        );
    }
}
