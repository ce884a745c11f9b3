//! Starting to track a file: its identity from the open descriptor, the checkpoint record it
//! resumes, and its copy lineage decided before its first read.
//!
//! Invariant: a new file resumes from the right record (its own, or the one of the file it is
//! a copy or the compressed rotation of), never from another file's.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::compressed::plain_name;
use super::lifecycle::Phase;
use super::moment::Moment;
use super::tracked::{
    Compressed, FileId, TrackedFile, is_young, stamp, start_of_last_line, tail_before,
};
use super::{Context, Emit};
use crate::checkpoint::FileRecord;
use crate::checkpoint::Fingerprint;
use crate::event::FileKey;
use crate::metrics::add;
use crate::source::ReadFrom;
use crate::source::compression::{Decoded, SNIFF_BYTES, Sniffed, decompressed_head, sniff};
use crate::source::fingerprint::read_head;
use crate::source::framing::Framer;
use crate::source::marks::{Holds, PROOF_GAP, StreamHead, compare};
use crate::source::open::{OpenError, open_regular};

/// Where the file a checkpoint `record` was taken of is now: at its path, or renamed within its
/// directory since; `None` when it is gone (deleted, or moved elsewhere).
fn find_original(record: &FileRecord) -> Option<PathBuf> {
    use std::os::unix::fs::DirEntryExt;
    let same = |md: &fs::Metadata| md.is_file() && (md.dev(), md.ino()) == (record.dev, record.ino);
    // Checked before opening: whatever else stands at a path now (a FIFO) is not opened.
    let is_it = |path: &Path| fs::symlink_metadata(path).is_ok_and(|md| same(&md));
    let path = Path::new(&*record.path);
    if is_it(path) {
        return Some(path.to_owned());
    }
    path.parent()
        .and_then(|dir| fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.ino() == record.ino)
        .map(|entry| entry.path())
        .find(|path| is_it(path))
}

/// What became of the file a checkpoint `record` was taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Original {
    /// Still at its inode and holding what was read of it.
    Intact,
    /// Still at its inode, but shorter than the checkpoint or with another head: what
    /// copytruncate leaves behind.
    Truncated,
    /// Deleted, or moved out of its directory.
    Gone,
}

/// True when the file a checkpoint `record` was taken of no longer holds what the record
/// covers: a compressed copy of it carries its stream on, with its key.
pub(super) fn original_gone(record: &FileRecord) -> bool {
    original_of(record) != Original::Intact
}

fn original_of(record: &FileRecord) -> Original {
    let Some(path) = find_original(record) else {
        return Original::Gone;
    };
    let Some(file) = File::open(path).ok() else {
        return Original::Intact;
    };
    let Ok(md) = file.metadata() else {
        return Original::Intact;
    };
    if !md.is_file() || (md.dev(), md.ino()) != (record.dev, record.ino) {
        return Original::Intact;
    }
    let rewritten = md.len() < record.offset
        || read_head(&file, record.fingerprint.len as usize)
            .is_ok_and(|head| !record.fingerprint.matches(&head));
    if rewritten {
        Original::Truncated
    } else {
        Original::Intact
    }
}

/// True when the plain file `copy` (`size` bytes), whose head matches `record`'s fingerprint,
/// is a copy of the record's file made while the agent was not looking, as copytruncate makes
/// them: that file no longer holds what was read of it, and the copy holds what was read of it
/// as far as the record's marks tell (see [`compare`]):
/// - the record's file truncated or rewritten in place: a copy at least as long as the
///   checkpoint continues it (nothing compared differs); a shorter one is a copy of what was
///   delivered when compared up to near its end;
/// - the record's file gone: the copy must be compared up to the checkpoint (or, if shorter,
///   up to near its end), since nothing else says it is that file's.
fn copy_of(record: &FileRecord, copy: &File, size: u64) -> bool {
    let stream = StreamHead {
        fingerprint: record.fingerprint,
        bytes: None,
    };
    let Ok(Holds::ProvenTo(proven)) = compare(copy, size, stream, &record.marks) else {
        return false;
    };
    // A copy shorter than the checkpoint: compared up to near its end (see `PROOF_GAP`).
    let shown = proven == size
        || (proven > u64::from(record.fingerprint.len) && size - proven <= PROOF_GAP);
    match original_of(record) {
        Original::Intact => false,
        Original::Truncated => size >= record.offset || shown,
        Original::Gone if size >= record.offset => proven >= record.offset,
        Original::Gone => shown,
    }
}

/// A key no other file generation has: ids stay unique across truncations and inode reuse.
pub(super) fn new_key(dev: u64, ino: u64) -> FileKey {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = [0u8; 40];
    seed[..8].copy_from_slice(&dev.to_le_bytes());
    seed[8..16].copy_from_slice(&ino.to_le_bytes());
    seed[16..32].copy_from_slice(&nanos.to_le_bytes());
    seed[32..].copy_from_slice(&count.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&seed)
}

impl<E: Emit> Context<E> {
    /// Opens the file at `path` and starts tracking it. Its identity is taken from the open
    /// descriptor: the path may have been replaced since it was listed. `None` for a compressed
    /// file still being written (changed within `rotate_wait_ms`): it is taken at a later scan.
    pub(super) fn start_tracking(
        &self,
        path: &Path,
        first: bool,
    ) -> Result<Option<(TrackedFile, bool)>, OpenError> {
        let mut file = open_regular(path, self.globs.root_of(path), self.config.follow_symlinks)?;
        let md = file.metadata()?;
        // An empty or too short file is taken for text for now: its first read looks again
        // (see `ready_to_read`), so a compressed file created empty is never read as text.
        // One read for both the sniff and a plain file's head.
        let mut leading = read_head(&file, self.config.fingerprint_bytes.max(SNIFF_BYTES))?;
        let sniffed = sniff(&leading[..leading.len().min(SNIFF_BYTES)]);
        let codec = match sniffed {
            Sniffed::Compressed(codec) => Some(codec),
            Sniffed::Plain | Sniffed::Undecided => None,
        };
        let rotate_wait = Duration::from_millis(self.config.rotate_wait_ms);
        if codec.is_some() && is_young(&md, rotate_wait) {
            return Ok(None);
        }
        let head = match codec {
            // Damage at the start shows at the first read, where it is reported.
            Some(codec) => {
                decompressed_head(&file, codec, self.config.fingerprint_bytes).unwrap_or_default()
            }
            None => {
                leading.truncate(self.config.fingerprint_bytes);
                leading
            }
        };
        let size = md.len();
        let (dev, ino) = (md.dev(), md.ino());
        let path_text = path.to_string_lossy();
        let fresh = new_key(dev, ino);
        let claimed = if codec.is_some() {
            match self.store.claim(&self.name, dev, ino, &head, u64::MAX) {
                // Its own record at offset 0 tells nothing: it was held unread as the
                // compressed copy of a file still being read when the agent stopped, and that
                // file's record says where it goes on.
                Some(own) if own.offset == 0 => Some(
                    self.store
                        .claim_compressed(
                            &self.name,
                            &head,
                            plain_name(&path_text),
                            fresh,
                            original_gone,
                        )
                        .unwrap_or(own),
                ),
                Some(own) => Some(own),
                None => self.store.claim_compressed(
                    &self.name,
                    &head,
                    plain_name(&path_text),
                    fresh,
                    original_gone,
                ),
            }
        } else {
            // The record of a file that was empty tells nothing (offset 0), and any file on its
            // inode matches its empty fingerprint: a new file on a reused inode, maybe a copy
            // whose original's record says where to go on.
            self.store
                .claim(&self.name, dev, ino, &head, size)
                .filter(|record| record.fingerprint.len > 0)
                .or_else(|| {
                    // A copy made while the agent was down (copytruncate) continues where its
                    // truncated original was left, or holds only what was delivered of it.
                    self.store.claim_copy(&self.name, &head, |record| {
                        (record.dev, record.ino) != (dev, ino) && copy_of(record, &file, size)
                    })
                })
        };
        let mut marks = Vec::new();
        let resumed = claimed.is_some();
        // A compressed file made of a copy (see [`FileRecord::copy`]) stays one.
        let copy = codec.is_some() && claimed.as_ref().is_some_and(|record| record.copy);
        // A file that resumes another file's record (a copy of it: the record of another device
        // and inode) may not be the only one: remember whose, to compare it with the others.
        let continues = claimed
            .as_ref()
            .filter(|record| (record.dev, record.ino) != (dev, ino))
            .map(|record| (record.dev, record.ino));
        let (key, offset) = match claimed {
            Some(record) if codec.is_none() && size < record.offset => {
                // A copy shorter than what was delivered of its original: nothing in it is new.
                tracing::info!(
                    source = %self.name, file = %path_text, original = %record.path,
                    delivered = record.offset, size,
                    "copy of lines already shipped from another file (copytruncate or copy): nothing shipped from it"
                );
                add(&self.metrics.copies_skipped, 1);
                (new_key(dev, ino), size)
            }
            Some(record) => {
                tracing::debug!(source = %self.name, file = %path_text, offset = record.offset, "resuming at checkpoint");
                marks = record.marks;
                (record.key, record.offset)
            }
            None => {
                let offset = if first
                    && self.store.is_first_start()
                    && self.config.read_from == ReadFrom::End
                {
                    match codec {
                        Some(codec) => {
                            Decoded::with_codec(file.try_clone()?, Some(codec), Arc::default())?
                                .skip(u64::MAX)?
                        }
                        // Too short to tell text from the start of a compressed file: it is
                        // looked at again from its start.
                        None if sniffed == Sniffed::Undecided => 0,
                        None => start_of_last_line(&file, size)?,
                    }
                } else if self.config.journal {
                    // Past the segment's header line (it is there whole: see `journal`).
                    memchr::memchr(b'\n', &head).map_or(0, |at| at as u64 + 1)
                } else {
                    0
                };
                tracing::debug!(source = %self.name, file = %path_text, offset, codec = ?codec, "new file");
                (new_key(dev, ino), offset)
            }
        };
        let mut framer = Framer::new(offset, self.config.max_line_bytes);
        if codec.is_none() {
            file.seek(SeekFrom::Start(offset))?;
            if offset > 0 {
                framer.set_tail(&tail_before(&file, offset)?, &marks);
            }
        } else {
            // Compared with what is skipped when the file is resumed inside.
            framer.set_tail(&[], &marks);
        }
        let fingerprint = Fingerprint::of(&head);
        let meta = FileId::new(key, &*path_text);
        let tracked = TrackedFile {
            meta,
            shipped: None,
            dev,
            ino,
            fingerprint,
            head: head.into_boxed_slice(),
            file: Some(file),
            framer,
            emitted: offset,
            gone_since: None,
            eof_since: None,
            opened_at: Moment::now(),
            phase: Phase::Reading,
            identity_checked: false,
            compressed: codec.map(|codec| {
                Box::new(Compressed {
                    codec,
                    decoder: None,
                    stamp: stamp(&md),
                })
            }),
            seen_size: size,
            continues: continues.map(Box::new),
        };
        // A file resumed from a record (its own, or its original's) is known; a new one is
        // registered by the caller once it is known not to be held as a possible copy.
        if resumed {
            self.register(&tracked, marks, copy);
        }
        Ok(Some((tracked, resumed)))
    }

    /// Tracks a record of `tracked` at the offset it reads from, with the `marks` its reads
    /// left; `copy`: it holds there only lines read from another file (see
    /// [`FileRecord::copy`]).
    pub(super) fn register(
        &self,
        tracked: &TrackedFile,
        marks: Vec<crate::checkpoint::StreamMark>,
        copy: bool,
    ) {
        self.store.track(
            FileRecord {
                source: Arc::clone(&self.name),
                path: Arc::clone(&tracked.meta.path),
                dev: tracked.dev,
                ino: tracked.ino,
                fingerprint: tracked.fingerprint,
                key: tracked.meta.key,
                offset: tracked.framer.read_offset(),
                updated_unix: 0,
                finished: false,
                marks,
                copy,
            },
            &self.sinks,
        );
    }

    /// True when the compressed file now at `path` has the uncompressed head of `tracked` (a
    /// compressed file taken before, closed): the same file, whatever its times say.
    pub(super) fn holds_the_same(&self, tracked: &TrackedFile, path: &Path) -> bool {
        let Some(codec) = tracked.codec() else {
            return false;
        };
        let Ok(file) = open_regular(path, self.globs.root_of(path), self.config.follow_symlinks)
        else {
            return false;
        };
        let sniffed = read_head(&file, SNIFF_BYTES).map(|head| sniff(&head));
        sniffed.is_ok_and(|sniffed| sniffed == Sniffed::Compressed(codec))
            && decompressed_head(&file, codec, self.config.fingerprint_bytes)
                .is_ok_and(|head| *head == *tracked.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_for_the_same_inode() {
        assert_ne!(new_key(1, 2), new_key(1, 2));
    }
}
