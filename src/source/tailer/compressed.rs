//! Compressed files: a gzip file is read through a decompressor once it is no longer written,
//! to its end, once; the compressed rotation of a file that was read continues that file.
//!
//! Invariant: a compressed copy of lines read already is not read again, and one of lines not
//! read yet is read from where its original was left.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::moment::Moment;
use super::tracked::{CopyProof, FileId, TrackedFile, has_unread};
use super::tracking::{new_key, original_gone};
use super::{Context, Emit, READ_SIZE, Stopped, TURN_BYTES, Tailer};
use crate::checkpoint::FileRecord;
use crate::metrics::add;
use crate::source::compression::{Codec, Decoded};
use crate::source::fingerprint::read_head;
use crate::source::framing::Framer;
use crate::source::marks::{Holds, skip_comparing};

/// The file a compressor made `path` from (`app.log.1` for `app.log.1.gz`), if its name says.
pub(super) fn plain_name(path: &str) -> Option<&str> {
    [".gz", ".zst", ".bz2", ".xz"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix))
}

/// The length of the content of the `codec` file `compressed` when it is the first bytes of
/// `plain`, no longer than `upto`; `None` when it is not (or is longer).
fn compressed_prefix_of(
    compressed: &File,
    codec: Codec,
    plain: &File,
    upto: u64,
) -> std::io::Result<Option<u64>> {
    use std::io::Read;
    let mut handle = compressed.try_clone()?;
    handle.seek(SeekFrom::Start(0))?;
    let mut content = Decoded::with_codec(handle, Some(codec), Arc::default())?;
    let (mut buf, mut theirs) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
    let mut at = 0u64;
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(Some(at)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        if at + n as u64 > upto {
            return Ok(None);
        }
        plain.read_exact_at(&mut theirs[..n], at)?;
        if buf[..n] != theirs[..n] {
            return Ok(None);
        }
        at += n as u64;
    }
}

impl<E: Emit> Tailer<E> {
    /// The tracked plain file that the gzip file `compressed` is the compressed copy of: same
    /// uncompressed head (`skip`: the gzip file's own index when it is tracked). The original's
    /// fingerprint may not cover its head yet (a file not read since it was found, while the
    /// pipeline was full), so its head is read again when it is open.
    pub(super) fn compressed_original(
        &self,
        compressed: &TrackedFile,
        skip: Option<usize>,
    ) -> Option<usize> {
        let same_head = |f: &TrackedFile| {
            if !compressed.head.is_empty() && compressed.head.len() < f.fingerprint.len as usize {
                // All it holds is less than that file's head: a copy of its beginning.
                return f.head_starts_with(&compressed.head).unwrap_or(false);
            }
            if f.fingerprint.len as usize
                >= compressed.head.len().min(self.ctx.config.fingerprint_bytes)
                && f.fingerprint.len > 0
            {
                return f.fingerprint.matches(&compressed.head);
            }
            let Some(handle) = &f.file else {
                return f.fingerprint.len > 0 && f.fingerprint.matches(&compressed.head);
            };
            read_head(handle, compressed.head.len()).is_ok_and(|head| {
                let n = head.len().min(compressed.head.len());
                n > 0 && head[..n] == compressed.head[..n]
            })
        };
        // A file held as a possible copy may be the original too: found empty (held, as a copy
        // being written starts empty), then written, rotated and compressed before it was
        // decided.
        let candidate = |(i, f): &(usize, &TrackedFile)| Some(*i) != skip && !f.is_compressed();
        // Of files that start alike (copies of one stream), the one it is named after
        // (`app.log.1` for `app.log.1.gz`) is the one it was made from.
        let named = plain_name(&compressed.meta.path);
        let mut alike = self
            .files
            .iter()
            .enumerate()
            .filter(candidate)
            .filter(|(_, f)| same_head(f))
            .map(|(i, f)| (i, Some(&*f.meta.path) == named));
        if let Some(first) = alike.next() {
            let found = std::iter::once(first)
                .chain(alike)
                .find(|(_, named)| *named)
                .unwrap_or(first);
            return Some(found.0);
        }
        // A file truncated, written again, rotated and compressed before the agent looked at it
        // again: its fingerprint is the old generation's, but its descriptor reads the head the
        // compressed file has. It is read to its end (and noticed rewritten) first.
        self.files
            .iter()
            .enumerate()
            .filter(candidate)
            .filter(|(_, f)| !f.is_truncated_away() && f.fingerprint.len > 0)
            .find(|(_, f)| {
                f.file.as_ref().is_some_and(|handle| {
                    let len = f.fingerprint.len as usize;
                    compressed.head.len() >= len
                        && read_head(handle, len).is_ok_and(|head| head == compressed.head[..len])
                })
            })
            .map(|(i, _)| i)
    }

    /// The length of what the held compressed file `held` holds when that is a prefix of what
    /// was read of the plain file `original` (a compressed copy of it, made before the file went
    /// on): it holds nothing new. Found by decompressing it and comparing it with that file,
    /// once per offset that file has reached, when that file has nothing more to read.
    pub(super) fn compressed_prefix(&mut self, held: usize, original: usize) -> Option<u64> {
        let (copy, of) = (&self.files[held], &self.files[original]);
        let offset = of.framer.read_offset();
        if of.is_compressed() || has_unread(of) {
            return None;
        }
        if copy.head.len() < self.ctx.config.fingerprint_bytes {
            // All it holds is its head, known already.
            return of
                .head_starts_with(&copy.head)
                .unwrap_or(false)
                .then_some(copy.head.len() as u64)
                .filter(|&length| length <= offset);
        }
        let tried = CopyProof {
            of: of.meta.key,
            size: offset,
        };
        if copy.copy_proof() == Some(&tried) {
            return None;
        }
        let found = match (&copy.file, &of.file, copy.codec()) {
            (Some(compressed), Some(plain), Some(codec)) => {
                compressed_prefix_of(compressed, codec, plain, offset)
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        self.files[held].prove(Some(tried));
        found
    }
}

impl<E: Emit> Context<E> {
    /// Takes a held compressed file whose whole content (`length` bytes) was read from the file
    /// it is a copy of as read to its end, under a record of its own at that end.
    pub(super) fn compressed_read_already(&self, tracked: &mut TrackedFile, length: u64) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, length, "compressed copy of lines already read from another file: nothing shipped from it");
        add(&self.metrics.copies_skipped, 1);
        tracked.framer = Framer::new(length, self.config.max_line_bytes);
        tracked.emitted = length;
        tracked.exhaust();
        self.register(tracked, Vec::new(), true);
        tracked.drop_decoder();
        tracked.file = None;
        tracked.eof_since = Some(Moment::now());
    }

    /// Continues a held gzip file where the file it is the compressed copy of was let go (that
    /// file's record), with that file's key, or from its start if there is no such record.
    pub(super) fn resume_compressed(&self, tracked: &mut TrackedFile) {
        let Some(record) = self.store.claim_compressed(
            &self.name,
            &tracked.head,
            plain_name(&tracked.meta.path),
            new_key(tracked.dev, tracked.ino),
            original_gone,
        ) else {
            tracing::debug!(source = %self.name, file = %tracked.meta.path, "compressed file with no known original: reading it whole");
            self.release(tracked);
            return;
        };
        tracked.release();
        tracing::info!(
            source = %self.name, file = %tracked.meta.path, original = %record.path,
            offset = record.offset, "compressed copy of a file let go: continuing where it ended"
        );
        self.store.forget(tracked.meta.key);
        tracked.meta = FileId::new(record.key, Arc::clone(&tracked.meta.path));
        tracked.framer = Framer::new(record.offset, self.config.max_line_bytes);
        tracked.framer.set_tail(&[], &record.marks);
        tracked.emitted = record.offset;
        self.store.track(
            FileRecord {
                path: Arc::clone(&tracked.meta.path),
                dev: tracked.dev,
                ino: tracked.ino,
                fingerprint: tracked.fingerprint,
                finished: false,
                ..record
            },
            &self.sinks,
        );
    }

    /// Reads one turn of a gzip file; true if anything was read. Its end (or damage) is final:
    /// the unterminated last line is emitted and the file closed.
    pub(super) fn read_compressed_turn(
        &mut self,
        tracked: &mut TrackedFile,
    ) -> Result<bool, Stopped> {
        if !tracked.may_read() {
            return Ok(false);
        }
        let Some(file) = &tracked.file else {
            return Ok(false);
        };
        if !tracked.has_decoder() {
            let offset = tracked.framer.read_offset();
            let codec = tracked.codec();
            let open = |file: &File| {
                file.try_clone().and_then(|mut handle| {
                    handle.seek(SeekFrom::Start(0))?;
                    Decoded::with_codec(handle, codec, Arc::default())
                })
            };
            let base = file.try_clone();
            // Resuming inside it (where the file it is the compressed copy of was left): what
            // is skipped is compared with that file's marks on the way, so that a file that
            // only starts like it is not taken for it.
            let opened = base.and_then(|base| {
                let mut decoder = open(&base)?;
                let marks = tracked.framer.marks().all();
                let (skipped, holds) = skip_comparing(&mut decoder, offset, marks)?;
                Ok((base, decoder, skipped, holds))
            });
            let opened = match opened {
                Ok((base, _, _, Holds::Differs)) => {
                    self.not_a_copy_after_all(tracked);
                    open(&base).map(|decoder| (decoder, 0))
                }
                Ok((_, decoder, skipped, _)) => Ok((decoder, skipped)),
                Err(e) => Err(e),
            };
            let offset = tracked.framer.read_offset();
            match opened {
                Ok((decoder, skipped)) if skipped == offset => {
                    if let Some(compressed) = &mut tracked.compressed {
                        compressed.decoder = Some(decoder);
                    }
                }
                Ok((_, skipped)) => {
                    // A compressed copy of a copy that held only lines read already (copytruncate
                    // under a writer, then compress).
                    tracing::debug!(source = %self.name, file = %tracked.meta.path, checkpoint = offset, length = skipped, "compressed file shorter than its checkpoint; nothing left to read");
                    return self.end_compressed(tracked, false);
                }
                Err(e) => {
                    add(&self.metrics.read_errors, 1);
                    tracing::error!(source = %self.name, file = %tracked.meta.path, error = %e, "compressed file damaged before its checkpoint");
                    return self.end_compressed(tracked, false);
                }
            }
        }
        let mut total = 0;
        while total < TURN_BYTES {
            let Some(decoder) = tracked.compressed.as_mut().and_then(|c| c.decoder.as_mut()) else {
                break;
            };
            match tracked.framer.read_from(decoder, READ_SIZE) {
                Ok(0) => {
                    self.end_compressed(tracked, true)?;
                    break;
                }
                Ok(got) => {
                    total += got;
                    add(&self.metrics.bytes_in, got as u64);
                    self.emit_framed(tracked, false)?;
                }
                Err(e) => {
                    add(&self.metrics.read_errors, 1);
                    tracing::error!(
                        source = %self.name, file = %tracked.meta.path, error = %e,
                        at = tracked.framer.read_offset(),
                        "compressed file damaged: the lines before the damage are shipped, the line it cut is not"
                    );
                    self.end_compressed(tracked, false)?;
                    break;
                }
            }
        }
        tracked.framer.release_buffer();
        Ok(total > 0)
    }

    /// Closes a gzip file read to its end (`whole`: its unterminated last line is emitted too)
    /// or to damage.
    fn end_compressed(&mut self, tracked: &mut TrackedFile, whole: bool) -> Result<bool, Stopped> {
        tracked.exhaust();
        tracked.drop_decoder();
        tracked.file = None;
        tracked.eof_since = Some(Moment::now());
        if whole {
            self.emit_framed(tracked, true)?;
        } else {
            // The line the damage cut is never shipped, not even when the file is let go.
            let at = tracked.framer.commit_offset();
            tracked.framer = Framer::new(at, self.config.max_line_bytes);
        }
        Ok(false)
    }
}
