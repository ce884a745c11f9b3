//! What a tracked file keeps of its head in memory: the whole head while it may still grow, only
//! the head index's key once it is complete.
//!
//! Invariant: `head` is the whole fingerprinted head (`head.len() == fingerprint.len`) while the
//! fingerprint is shorter than `fingerprint_bytes` (the file may grow, and a copy of it still
//! being written is compared with a growing head) and for compressed files (whose head cannot be
//! read again cheaply); otherwise it may be cut to its first [`KEY_BYTES`]. Whenever the whole
//! head of a cut one is needed, it is read again from the file and used only when it still
//! matches the fingerprint; when it cannot be (a generation truncated away), callers fall back
//! to what the fingerprint and the marks prove, which holds a copy rather than skipping it.
//!
//! With 100,000 small files the whole heads were a third of the agent's memory (1 KiB each, by
//! default), and the rare comparison that needs their bytes (a copy shorter than the head of
//! a file whose head is complete) can afford a read.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use super::tracked::TrackedFile;
use crate::source::fingerprint::read_head;
use crate::source::head_index::KEY_BYTES;

/// Cuts `head` to its index key when it is complete (`fingerprint_bytes` long) and the file is
/// not compressed; leaves it whole otherwise. Its capacity is cut to its length either way.
pub(super) fn keep_of_head(head: &mut Vec<u8>, fingerprint_bytes: usize, compressed: bool) {
    if !compressed && head.len() >= fingerprint_bytes {
        head.truncate(KEY_BYTES);
    }
    head.shrink_to_fit();
}

impl TrackedFile {
    /// Keeps only what is needed of the head (see [`keep_of_head`]).
    pub(super) fn compact_head(&mut self, fingerprint_bytes: usize) {
        let compressed = self.is_compressed();
        let mut head = std::mem::take(&mut self.head).into_vec();
        keep_of_head(&mut head, fingerprint_bytes, compressed);
        self.head = head.into_boxed_slice();
    }

    /// The whole fingerprinted head, when it is in memory.
    pub(super) fn whole_head(&self) -> Option<&[u8]> {
        (self.head.len() == self.fingerprint.len as usize).then_some(&self.head[..])
    }

    /// The whole fingerprinted head: from memory, else read again from the file (its open
    /// descriptor, or its path when closed for `max_open_files` and still the same inode) when
    /// it still matches the fingerprint. `None` when it cannot be had: a generation truncated
    /// away (retired), a file gone or rewritten.
    pub(super) fn head_bytes(&self) -> Option<Vec<u8>> {
        if let Some(head) = self.whole_head() {
            return Some(head.to_vec());
        }
        if self.is_truncated_away() || self.is_compressed() {
            return None;
        }
        let reopened;
        let file = match &self.file {
            Some(file) => file,
            None => {
                let file = File::open(&*self.meta.path).ok()?;
                let md = file.metadata().ok()?;
                if (md.dev(), md.ino()) != (self.dev, self.ino) {
                    return None;
                }
                reopened = file;
                &reopened
            }
        };
        let head = read_head(file, self.fingerprint.len as usize).ok()?;
        self.fingerprint.matches(&head).then_some(head)
    }

    /// Whether the head starts with `prefix` (shorter than the fingerprinted head): `None` when
    /// that cannot be told (the whole head is not at hand: see [`TrackedFile::head_bytes`])
    /// although the part of it kept in memory agrees.
    pub(super) fn head_starts_with(&self, prefix: &[u8]) -> Option<bool> {
        if prefix.len() > self.fingerprint.len as usize {
            return Some(false);
        }
        if let Some(head) = self.whole_head() {
            return Some(head.starts_with(prefix));
        }
        let kept = prefix.len().min(self.head.len());
        if self.head[..kept] != prefix[..kept] {
            return Some(false);
        }
        if kept == prefix.len() {
            return Some(true);
        }
        self.head_bytes().map(|head| head.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_plain_heads_are_cut_to_their_key() {
        // (head length, fingerprint_bytes, compressed, length kept)
        let cases = [
            (0, 1024, false, 0),
            (10, 1024, false, 10),
            (1023, 1024, false, 1023),
            (1024, 1024, false, KEY_BYTES),
            (1024, 1024, true, 1024),
            (40, 40, false, 40),
            (100, 100, false, KEY_BYTES),
            (100, 100, true, 100),
        ];
        for (len, fingerprint_bytes, compressed, kept) in cases {
            let mut head = Vec::with_capacity(4096);
            head.resize(len, b'x');
            keep_of_head(&mut head, fingerprint_bytes, compressed);
            assert_eq!(
                head.len(),
                kept,
                "{len} bytes of {fingerprint_bytes}, compressed {compressed}"
            );
            assert!(head.capacity() <= kept.max(1) * 2, "capacity cut too");
        }
    }
}
