//! Generations: a file truncated or rewritten in place (copytruncate, `> file`) is read again
//! from its start as a new generation, under a key of its own; the generation truncated away
//! is retired (see `lifecycle`), waiting for a copy of it. Its identity is checked against the
//! fingerprint of its head, and the fingerprint grows with a file shorter than
//! `fingerprint_bytes`.
//!
//! Invariant: an offset belongs to one generation: a file truncated or rewritten in place is
//! read again from 0 as a new generation, never continued at the old offset.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use super::lifecycle::Phase;
use super::moment::Moment;
use super::tracked::{FileId, TrackedFile};
use super::tracking::new_key;
use super::{Context, Emit};
use crate::checkpoint::Fingerprint;
use crate::metrics::add;
use crate::source::fingerprint::read_head;
use crate::source::framing::{Framer, ReadMark};

/// Tells, after `read` was read at `offset` from `file` (fingerprinted as `fingerprint`), whether
/// those may be another generation's bytes: the size and head were checked before the read, but
/// a rewrite in between (copytruncate, then the application writing on past the old offset)
/// hands the new generation's bytes to a read at the old one's offset. They are taken for the
/// new generation's when the head no longer matches and the file now holds the very bytes read,
/// at the same offsets; otherwise the read came before the rewrite and stands (the next check
/// before a read notices the rewrite). Gives the file's head (`head_bytes` of it) when they are.
fn read_raced_a_rewrite(
    file: &File,
    fingerprint: &Fingerprint,
    read: &[u8],
    offset: u64,
    head_bytes: usize,
) -> Option<Vec<u8>> {
    if fingerprint.len == 0 || read.is_empty() {
        // Nothing was fingerprinted before this read: it read the file, whichever generation.
        return None;
    }
    if offset == 0 && fingerprint.matches(read) {
        // It read the fingerprinted head itself: the file held this generation's head when
        // read, and if it holds the very bytes read now, it still does (no `pread` needed).
        return None;
    }
    let head = read_head(file, head_bytes).ok()?;
    if fingerprint.matches(&head) {
        return None;
    }
    let mut there = vec![0; read.len()];
    file.read_exact_at(&mut there, offset).ok()?;
    (there == read).then_some(head)
}

impl<E: Emit> Context<E> {
    /// Notices deletion, truncation and in-place rewrites of an open file, and lets its
    /// fingerprint grow with it.
    pub(super) fn check_identity(&mut self, tracked: &mut TrackedFile) {
        if tracked.is_compressed() {
            return;
        }
        let Some(file) = &tracked.file else { return };
        let (md, head) = match file
            .metadata()
            .and_then(|md| Ok((md, read_head(file, self.config.fingerprint_bytes)?)))
        {
            Ok(pair) => pair,
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot check file");
                return;
            }
        };
        if md.nlink() == 0 && tracked.gone_since.is_none() {
            tracing::debug!(source = %self.name, file = %tracked.meta.path, "file deleted; reading it to its end");
            tracked.gone_since = Some(Moment::now());
        }
        if md.len() < tracked.framer.read_offset() || !tracked.fingerprint.matches(&head) {
            self.restart_from_zero(tracked, &head);
        } else if head.len() > tracked.fingerprint.len as usize {
            tracked.fingerprint = Fingerprint::of(&head);
            tracked.head = head.into_boxed_slice();
            tracked.compact_head(self.config.fingerprint_bytes);
            self.store
                .update_identity(tracked.meta.key, &tracked.meta.path, tracked.fingerprint);
        }
    }

    /// The file was truncated or rewritten: its lines from offset 0 are a new generation.
    pub(super) fn restart_from_zero(&mut self, tracked: &mut TrackedFile, head: &[u8]) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, "file truncated or rewritten; reading it again from the start");
        add(&self.metrics.truncations, 1);
        let key = new_key(tracked.dev, tracked.ino);
        let new_meta = FileId::new(key, Arc::clone(&tracked.meta.path));
        let old = TrackedFile {
            meta: std::mem::replace(&mut tracked.meta, new_meta),
            shipped: tracked.shipped.take(),
            dev: tracked.dev,
            ino: tracked.ino,
            fingerprint: std::mem::replace(&mut tracked.fingerprint, Fingerprint::of(head)),
            head: std::mem::replace(&mut tracked.head, head.into()),
            file: None,
            framer: std::mem::replace(
                &mut tracked.framer,
                Framer::new(0, self.config.max_line_bytes),
            ),
            emitted: std::mem::replace(&mut tracked.emitted, 0),
            gone_since: Some(Moment::now()),
            eof_since: None,
            opened_at: tracked.opened_at,
            // Born retired: the file goes on as the new generation, in the phase it was in.
            phase: Phase::Retired,
            identity_checked: false,
            compressed: None,
            seen_size: tracked.seen_size,
            continues: None,
        };
        tracked.eof_since = None;
        tracked.compact_head(self.config.fingerprint_bytes);
        if old.framer.read_offset() > 0 {
            // Its copy, if one shows up, holds what was not read yet.
            self.retired.push(old);
        } else {
            self.store.forget(old.meta.key);
        }
        if let Some(file) = &mut tracked.file
            && let Err(e) = file.seek(SeekFrom::Start(0))
        {
            tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot rewind file");
            tracked.file = None;
        }
        self.register(tracked, Vec::new(), false);
    }

    /// Takes back a read that may have returned another generation's bytes (see
    /// [`read_raced_a_rewrite`]) and reads the file again from its start; the old generation goes
    /// on from where it was (in its copy, if one shows up). True when it did.
    pub(super) fn took_back_a_newer_generation(
        &mut self,
        tracked: &mut TrackedFile,
        mark: &ReadMark,
    ) -> bool {
        let Some(file) = &tracked.file else {
            return false;
        };
        let read = tracked.framer.read_since(mark);
        let Some(head) = read_raced_a_rewrite(
            file,
            &tracked.fingerprint,
            read,
            mark.offset(),
            self.config.fingerprint_bytes,
        ) else {
            return false;
        };
        let bytes = read.len();
        if !tracked.framer.unread(mark) {
            return false;
        }
        tracing::debug!(source = %self.name, file = %tracked.meta.path, offset = mark.offset(), bytes, "a read raced a rewrite of the file: taken back");
        self.restart_from_zero(tracked, &head);
        true
    }

    /// Grows the fingerprint of a file shorter than `fingerprint_bytes` over what was just read
    /// (since `mark`), so that a rewrite of a young file shows as a changed head, not as more
    /// lines. The head grows from the bytes read, not from the file read again: under a fast
    /// writer (copytruncate in a loop) the file may already hold the next generation, whose
    /// head would then name lines it does not hold, and the copy of the generation read would
    /// not be known for one.
    pub(super) fn cover_what_was_read(&mut self, tracked: &mut TrackedFile, mark: &ReadMark) {
        let want = tracked
            .framer
            .read_offset()
            .min(self.config.fingerprint_bytes as u64) as usize;
        let have = tracked.fingerprint.len as usize;
        if have >= want {
            return;
        }
        if tracked.head.len() == have && mark.offset() == have as u64 {
            let read = tracked.framer.read_since(mark);
            let mut head = std::mem::take(&mut tracked.head).into_vec();
            head.extend_from_slice(&read[..(want - have).min(read.len())]);
            tracked.fingerprint = Fingerprint::of(&head);
            tracked.head = head.into_boxed_slice();
            tracked.compact_head(self.config.fingerprint_bytes);
            self.store
                .update_identity(tracked.meta.key, &tracked.meta.path, tracked.fingerprint);
            return;
        }
        let Some(file) = &tracked.file else { return };
        match read_head(file, want) {
            Ok(head) if tracked.fingerprint.matches(&head) => {
                tracked.fingerprint = Fingerprint::of(&head);
                tracked.head = head.into_boxed_slice();
                tracked.compact_head(self.config.fingerprint_bytes);
                self.store.update_identity(
                    tracked.meta.key,
                    &tracked.meta.path,
                    tracked.fingerprint,
                );
            }
            Ok(_) => {
                let head = read_head(file, self.config.fingerprint_bytes).unwrap_or_default();
                self.restart_from_zero(tracked, &head);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_raced_by_a_rewrite_is_told_from_one_before_it() {
        /// (content the fingerprint was taken of, content now, bytes read, at offset, taken
        /// back?)
        type Case = (&'static [u8], &'static [u8], &'static [u8], u64, bool);
        let cases: &[Case] = &[
            // Not rewritten: the read stands.
            (b"old 1\n", b"old 1\nold 2\n", b"old 2\n", 6, false),
            // Rewritten, and the read returned the new generation's bytes at the old offset.
            (b"old 1\n", b"new 1\nnew 2\n", b"new 2\n", 6, true),
            // Rewritten, but what was read is not what is there now: read before the rewrite.
            (b"old 1\n", b"new 1\nnew 2\n", b"old 2\n", 6, false),
            // Rewritten and shorter than the read: it cannot have come from there.
            (b"old 1\n", b"new 1\nnew", b"new 2\n", 6, false),
            // Truncated to nothing after the read.
            (b"old 1\n", b"", b"old 2\n", 6, false),
            // Nothing fingerprinted yet: the read is of whatever the file is.
            (b"", b"new 1\n", b"new 1\n", 0, false),
            // A read from the start that holds the fingerprinted head: this generation's.
            (b"old 1\n", b"new 1\nnew 2\n", b"old 1\nold 2\n", 0, false),
            // A read from the start of another head, which the file holds now: taken back.
            (b"old 1\n", b"new 1\nnew 2\n", b"new 1\nnew 2\n", 0, true),
            // A read from the start shorter than the fingerprint: compared with the file.
            (b"old 1\nold 2\n", b"new 1\n", b"new 1\n", 0, true),
        ];
        for (i, &(old, now, read, offset, taken_back)) in cases.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.log");
            std::fs::write(&path, now).unwrap();
            let file = File::open(&path).unwrap();
            let got = read_raced_a_rewrite(&file, &Fingerprint::of(old), read, offset, 1024);
            assert_eq!(got.is_some(), taken_back, "case {i}");
            if let Some(head) = got {
                assert_eq!(head, now, "case {i}: the new head");
            }
        }
    }
}
