//! What the agent remembers of a file: its record in the checkpoint file, the fingerprint of
//! its head and the marks of its last reads.
//!
//! Identity by content: together with the device and inode, a hash of a file's first bytes
//! tells it apart from every other: a renamed file keeps both, a reused inode brings a different
//! head, and a copy has another inode. A file shorter than the fingerprint size is fingerprinted
//! on what it has, and the fingerprint grows with the file: a stored fingerprint of `len` bytes
//! matches any head whose first `len` bytes hash the same, so a one-line file is read at once
//! and still recognised once it grows.
//!
//! Invariant: a record written is read back the same (the file format is these types' serde).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::FileKey;

/// The most bytes a [`StreamMark`] hashes: the last bytes of a read, which the framer keeps.
pub const MARK_BYTES: usize = 256;

/// Marks written to the checkpoint file per file (the most recent ones).
pub const MARKS_PERSISTED: usize = 8;

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
    /// What the file's last reads ended with (see [`StreamMark`]): after a restart,
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

/// Hash of the first `len` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many leading bytes were hashed (0 for an empty file).
    pub len: u32,
    /// xxh3-64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `head`, all of which is hashed.
    pub fn of(head: &[u8]) -> Self {
        Fingerprint {
            len: u32::try_from(head.len()).unwrap_or(u32::MAX),
            hash: xxhash_rust::xxh3::xxh3_64(head),
        }
    }

    /// True when `head` starts with the bytes this fingerprint was taken of: the same file,
    /// possibly grown since. A head shorter than the fingerprint is a different (or truncated)
    /// file.
    pub fn matches(&self, head: &[u8]) -> bool {
        let len = self.len as usize;
        head.len() >= len && xxhash_rust::xxh3::xxh3_64(&head[..len]) == self.hash
    }
}

/// A hash of the `len` bytes of a read stream that end at offset `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u64, u16, u64)", into = "(u64, u16, u64)")]
pub struct StreamMark {
    /// Offset right after the bytes hashed.
    pub end: u64,
    /// How many bytes were hashed (at most [`MARK_BYTES`]).
    pub len: u16,
    /// xxh3-64 of those bytes.
    pub hash: u64,
}

impl From<(u64, u16, u64)> for StreamMark {
    fn from((end, len, hash): (u64, u16, u64)) -> Self {
        StreamMark { end, len, hash }
    }
}

impl From<StreamMark> for (u64, u16, u64) {
    fn from(mark: StreamMark) -> Self {
        (mark.end, mark.len, mark.hash)
    }
}

impl StreamMark {
    /// The mark of `window`, the bytes of a stream that end at offset `end`.
    pub fn of(end: u64, window: &[u8]) -> Self {
        let window = &window[window.len().saturating_sub(MARK_BYTES)..];
        StreamMark {
            end,
            len: u16::try_from(window.len()).unwrap_or(u16::MAX),
            hash: xxhash_rust::xxh3::xxh3_64(window),
        }
    }
}

/// How far a tracked file is delivered, as [`super::CheckpointStore::positions`] reports it.
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
    /// Its head when it was taken: a file now at `path` on the same device and inode (reused)
    /// is another file unless its head matches.
    pub fingerprint: Fingerprint,
    /// The offset up to which every sink delivered.
    pub checkpoint: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_table() {
        // (fingerprinted head, later head, same file?)
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"line one\n", b"line one\n", true),
            (b"line one\n", b"line one\nline two\n", true),
            (b"", b"anything", true),
            (b"", b"", true),
            (b"line one\n", b"line on", false),
            (b"line one\n", b"", false),
            (b"line one\n", b"line ONE\n", false),
            (b"header\nA", b"header\nB", false),
        ];
        for (first, later, same) in cases {
            assert_eq!(
                Fingerprint::of(first).matches(later),
                *same,
                "{:?} vs {:?}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(later)
            );
        }
    }
}
