//! The tracked file and its reads: one generation of one file, read in turns, its head and
//! identity checked before each read (see `generation`), reopened by path after it was closed
//! for `max_open_files`.
//!
//! Invariant: a file is read only while its phase lets it (see `lifecycle`), at most
//! [`TURN_BYTES`] a turn, through a descriptor checked to hold its generation before every
//! read; and a generation's first bytes are sniffed before it is read as text, so a compressed
//! file is never read as text.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::lifecycle::Phase;
use super::moment::Moment;
use super::{Context, Emit, READ_SIZE, Stopped, TAIL_ALIGN_BYTES, TURN_BYTES};
use crate::checkpoint::Fingerprint;
use crate::event::{FileKey, FileMeta};
use crate::metrics::add;
use crate::source::compression::{Codec, Decoded, SNIFF_BYTES, Sniffed, sniff};
use crate::source::fingerprint::read_head;
use crate::source::framing::{Framer, TAIL_BYTES};
use crate::source::open::open_regular;

/// Which generation of which file a tracked file is: what its checkpoint record and its events
/// are known by.
#[derive(Debug, Clone)]
pub(super) struct FileId {
    pub(super) key: FileKey,
    /// Where the file is (shared with its checkpoint record and its events' metadata).
    pub(super) path: Arc<str>,
}

impl FileId {
    pub(super) fn new(key: FileKey, path: impl Into<Arc<str>>) -> Self {
        FileId {
            key,
            path: path.into(),
        }
    }
}

/// One file being read.
#[derive(Debug)]
pub(super) struct TrackedFile {
    pub(super) meta: FileId,
    /// What the events of its last chunk share, reused for the next chunks while it is the
    /// same generation at the same path; made again when it changes, and given back while the
    /// file is idle (its JSON prefixes were a fifth of the memory of 100,000 idle files).
    pub(super) shipped: Option<Arc<FileMeta>>,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) fingerprint: Fingerprint,
    /// The bytes the fingerprint was taken of, to recognise a copy still being written: all of
    /// them while the head may grow, its first bytes only once it is complete (see `head`).
    pub(super) head: Box<[u8]>,
    /// Open descriptor; `None` while closed to respect `max_open_files`, or once let go.
    pub(super) file: Option<File>,
    pub(super) framer: Framer,
    /// End offset of the last chunk handed on.
    pub(super) emitted: u64,
    /// When the file was first found at no included path (renamed away or deleted).
    pub(super) gone_since: Option<Moment>,
    /// When a read last found nothing new.
    pub(super) eof_since: Option<Moment>,
    pub(super) opened_at: Moment,
    /// Where it is in its lifecycle (held, read, retired, let go...): see [`Phase`].
    pub(super) phase: Phase,
    /// Reopened a moment ago, its inode and head checked: the check before its next read need
    /// not read the head again (one `pread` less per file taking its turn).
    pub(super) identity_checked: bool,
    /// What a compressed file keeps besides (`None` for a plain file).
    pub(super) compressed: Option<Box<Compressed>>,
    /// Its size when last seen (by a scan or before a read): what a truncation took away
    /// unread, when no copy holds it, is counted from it.
    pub(super) seen_size: u64,
    /// A compressed file that resumed where the record of another file (its device and inode)
    /// says: another compressed copy of that file may follow, which is compared with it.
    pub(super) continues: Option<Box<(u64, u64)>>,
}

/// What only a compressed file keeps: in a box, 16 bytes less for each plain file.
#[derive(Debug)]
pub(super) struct Compressed {
    /// Its codec, read through `decoder`, checked by nothing but its path (it never changes).
    pub(super) codec: Codec,
    /// The decompressing reader, at `framer.read_offset()`; made at its first read.
    pub(super) decoder: Option<Decoded>,
    /// Size and modification time when it was taken (it never changes): once it is closed its
    /// inode can be freed and reused, and a file found there that differs is another file.
    pub(super) stamp: Stamp,
}

/// A held file was shown to hold what was read of the file of generation `of`, up to within
/// [`PROOF_GAP`] of its end, when it was `size` bytes long. Kept because that file's marks move
/// on as it is read further: a copy made by logrotate's `copy` is compared while it is written,
/// when the marks around its end are still at hand, and decided once it is no longer written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CopyProof {
    pub(super) of: FileKey,
    pub(super) size: u64,
}

impl TrackedFile {
    pub(super) fn is_compressed(&self) -> bool {
        self.compressed.is_some()
    }

    /// A compressed file's codec.
    pub(super) fn codec(&self) -> Option<Codec> {
        self.compressed.as_ref().map(|c| c.codec)
    }

    /// True for a compressed file being read (its decompressing reader made).
    pub(super) fn has_decoder(&self) -> bool {
        self.compressed
            .as_ref()
            .is_some_and(|c| c.decoder.is_some())
    }

    /// Gives back a compressed file's decompressing reader (read to its end, or damaged).
    pub(super) fn drop_decoder(&mut self) {
        if let Some(compressed) = &mut self.compressed {
            compressed.decoder = None;
        }
    }

    /// Closes the file for its turn (`max_open_files`): it is reopened by path later. What it
    /// keeps for its next read only is given back meanwhile.
    pub(super) fn close_for_turn(&mut self) {
        self.file = None;
        self.release_idle_memory();
    }

    /// Gives back what a plain file keeps only for its next read (the last bytes read, read
    /// again from the file then): for files idle or closed for their turn.
    pub(super) fn release_idle_memory(&mut self) {
        // Chunks still on their way keep their own reference.
        self.shipped = None;
        if !self.is_compressed() {
            self.framer.release_tail();
        }
    }

    /// A generation that began empty (at a truncation) and has bytes its fingerprint does not
    /// cover yet: a copy of it is compared with its bytes, while it is open.
    pub(super) fn is_unheaded(&self) -> bool {
        self.fingerprint.len == 0 && self.file.is_some() && !self.is_retired() && self.seen_size > 0
    }
}

/// True when a live file has more to read than what was read of it (as its descriptor says, or
/// as it was last seen when closed for its turn).
pub(super) fn has_unread(f: &TrackedFile) -> bool {
    let offset = f.framer.read_offset();
    let size = f
        .file
        .as_ref()
        .and_then(|handle| handle.metadata().ok())
        .map_or(f.seen_size, |md| md.len());
    !f.is_finished() && size > offset
}

/// The least a read asks for (a file may have grown since it was last looked at).
const MIN_READ: usize = 8 * 1024;

/// Bytes to ask of the kernel for a file with `unread` bytes known to be unread: what there is,
/// within [`MIN_READ`] and [`READ_SIZE`]. The read buffer is zeroed before each read, and 100,000
/// files of a kilobyte each zeroed a quarter of a megabyte each.
fn read_size(unread: u64) -> usize {
    usize::try_from(unread)
        .unwrap_or(READ_SIZE)
        .clamp(MIN_READ, READ_SIZE)
}

/// Size and modification time of a file.
type Stamp = (u64, Option<SystemTime>);

/// True for a file modified within `wait`: a compressor or a copy may still be writing it.
pub(super) fn is_young(md: &fs::Metadata, wait: Duration) -> bool {
    md.modified()
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age < wait)
}

pub(super) fn stamp(md: &fs::Metadata) -> Stamp {
    (md.len(), md.modified().ok())
}

/// The last bytes (at most [`TAIL_BYTES`]) of `file` before `offset`.
pub(super) fn tail_before(file: &File, offset: u64) -> std::io::Result<Vec<u8>> {
    let from = offset.saturating_sub(TAIL_BYTES as u64);
    let mut tail = vec![0; (offset - from) as usize];
    file.read_exact_at(&mut tail, from)?;
    Ok(tail)
}

/// The offset after the last newline within the last [`TAIL_ALIGN_BYTES`] of the file, so that
/// `read_from: end` starts at a line's start; the size itself if there is none.
pub(super) fn start_of_last_line(file: &File, size: u64) -> std::io::Result<u64> {
    let start = size.saturating_sub(TAIL_ALIGN_BYTES);
    let mut tail = vec![0; (size - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    Ok(match memchr::memrchr(b'\n', &tail) {
        Some(newline) => start + newline as u64 + 1,
        None => size,
    })
}

impl<E: Emit> Context<E> {
    /// Lets a held file be read as a file of its own, from where it stands, under a record of
    /// its own (held files have none).
    pub(super) fn release(&self, tracked: &mut TrackedFile) {
        tracing::debug!(source = %self.name, file = %tracked.meta.path, "no copy: read as a file of its own");
        tracked.release();
        self.register(tracked, Vec::new(), false);
    }

    pub(super) fn renamed(&self, file: &mut TrackedFile, path: &Path) {
        let path = path.to_string_lossy();
        tracing::debug!(source = %self.name, from = %file.meta.path, to = %path, "file renamed");
        file.meta = FileId::new(file.meta.key, &*path);
        self.store
            .update_identity(file.meta.key, &file.meta.path, file.fingerprint);
    }

    /// Reopens a file closed for the open-file cap, checking it is still the same file.
    pub(super) fn reopen(&mut self, tracked: &mut TrackedFile) {
        let path = Path::new(&*tracked.meta.path);
        let opened = open_regular(path, self.globs.root_of(path), self.config.follow_symlinks)
            .and_then(|file| {
                let md = file.metadata()?;
                // A gzip file's head is its uncompressed one: checked by inode alone (below).
                let head = if tracked.is_compressed() {
                    Vec::new()
                } else {
                    read_head(&file, self.config.fingerprint_bytes)?
                };
                Ok((file, md, head))
            });
        let (mut file, md, head) = match opened {
            Ok(triple) => triple,
            Err(e) if e.skip_reason().is_some() => {
                // Replaced while closed for its turn by a link, a FIFO...: what was written to
                // the file itself after its last read cannot be reached any more.
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "file replaced while closed for max_open_files; not following the replacement");
                tracked.gone_since = Some(Moment::now());
                return;
            }
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot reopen file");
                return;
            }
        };
        if (md.dev(), md.ino()) != (tracked.dev, tracked.ino) {
            // Rotated while closed: its new name is not included, so it cannot be read on.
            tracing::warn!(source = %self.name, file = %tracked.meta.path, "file rotated away while closed for max_open_files; lines written to it after its last read are not shipped");
            tracked.gone_since = Some(Moment::now());
            return;
        }
        tracked.opened_at = Moment::now();
        // What it was when closed says nothing of what it is now.
        tracked.eof_since = None;
        if tracked.is_compressed() {
            // Not read yet (closed before its decoder was made); its decoder starts from here.
            tracked.file = Some(file);
            return;
        }
        if md.len() < tracked.framer.read_offset() || !tracked.fingerprint.matches(&head) {
            tracked.file = Some(file);
            self.restart_from_zero(tracked, &head);
            return;
        }
        match file.seek(SeekFrom::Start(tracked.framer.read_offset())) {
            Ok(_) => {
                tracked.file = Some(file);
                tracked.identity_checked = true;
            }
            Err(e) => {
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot seek file")
            }
        }
    }

    /// Reads one turn of a file; true if anything was read.
    pub(super) fn read_turn(&mut self, tracked: &mut TrackedFile) -> Result<bool, Stopped> {
        if tracked.is_compressed() {
            return self.read_compressed_turn(tracked);
        }
        if !tracked.may_read() || tracked.file.is_none() {
            return Ok(false);
        }
        let (mut total, mut asked) = (0, false);
        // Identity is checked before every read, not once per turn: an emit may have waited
        // on backpressure for long, and the file may have been rewritten meanwhile.
        while total < TURN_BYTES && self.ready_to_read(tracked) {
            let Some(file) = tracked.file.as_mut() else {
                break;
            };
            if tracked.framer.tail_released() {
                // Given back while the file was idle or closed for its turn: the marks of this
                // read need the bytes before it.
                if let Ok(tail) = tail_before(file, tracked.framer.read_offset()) {
                    tracked.framer.restore_tail(&tail);
                }
            }
            let mark = tracked.framer.mark();
            asked = true;
            let unread = tracked
                .seen_size
                .saturating_sub(tracked.framer.read_offset());
            let got = match tracked.framer.read_from(file, read_size(unread)) {
                Ok(got) => got,
                Err(e) => {
                    add(&self.metrics.read_errors, 1);
                    tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "read failed");
                    break;
                }
            };
            if got == 0 {
                tracked.eof_since.get_or_insert_with(Moment::now);
                break;
            }
            if self.took_back_a_newer_generation(tracked, &mark) {
                continue;
            }
            tracked.eof_since = None;
            total += got;
            add(&self.metrics.bytes_in, got as u64);
            self.cover_what_was_read(tracked, &mark);
            self.emit_framed(tracked, false)?;
        }
        // Between turns a file keeps only its partial line, not a read buffer: memory does not
        // grow with the number of files being read.
        if asked {
            tracked.framer.release_buffer();
        }
        Ok(total > 0)
    }

    /// True when the open file has grown past the read offset and is still the file that was
    /// read: checked before each turn, so that a file rewritten in place (truncated, then written
    /// past the old offset) is read again from its start, not continued at the old offset.
    fn ready_to_read(&mut self, tracked: &mut TrackedFile) -> bool {
        let Some(file) = &tracked.file else {
            return false;
        };
        let size = match file.metadata() {
            Ok(md) => md.len(),
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot stat file");
                return false;
            }
        };
        let checked = std::mem::take(&mut tracked.identity_checked);
        let offset = tracked.framer.read_offset();
        if size == offset {
            tracked.eof_since.get_or_insert_with(Moment::now);
            tracked.seen_size = size;
            return false;
        }
        let rewritten = size < offset
            || (!checked
                && tracked.fingerprint.len > 0
                && read_head(file, tracked.fingerprint.len as usize)
                    .is_ok_and(|head| !tracked.fingerprint.matches(&head)));
        if rewritten {
            let head = read_head(file, self.config.fingerprint_bytes).unwrap_or_default();
            self.restart_from_zero(tracked, &head);
        }
        tracked.seen_size = size;
        if tracked.framer.read_offset() == 0 && !self.looks_like_text(tracked) {
            return false;
        }
        tracked.file.is_some()
    }

    /// Before the first byte of a file generation is read: false when its first bytes are
    /// those of a compressed file (it is let go, to be taken again as one by a scan once
    /// settled) or may still become them (too few yet, and written within `rotate_wait_ms`):
    /// compressors create their output empty and fill it afterwards.
    fn looks_like_text(&mut self, tracked: &mut TrackedFile) -> bool {
        let Some(file) = &tracked.file else {
            return false;
        };
        let kept = tracked.head.get(..SNIFF_BYTES);
        if tracked.fingerprint.len as usize >= SNIFF_BYTES
            && kept.is_some_and(|first| sniff(first) == Sniffed::Plain)
        {
            // Its fingerprint was just found to match (before this read): the first bytes it
            // keeps in memory are the file's, and they are text.
            return true;
        }
        let (head, md) = match read_head(file, SNIFF_BYTES).and_then(|h| Ok((h, file.metadata()?)))
        {
            Ok(pair) => pair,
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot read file");
                return false;
            }
        };
        match sniff(&head) {
            Sniffed::Plain => true,
            Sniffed::Undecided => !is_young(&md, Duration::from_millis(self.config.rotate_wait_ms)),
            Sniffed::Compressed(codec) => {
                tracing::debug!(source = %self.name, file = %tracked.meta.path, %codec, "a file taken for text while empty is compressed: taken again as such once settled");
                self.store.forget(tracked.meta.key);
                tracked.file = None;
                tracked.finish();
                self.rescan.store(true, Ordering::Release);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn what_is_kept_per_file_stays_small() {
        // 100,000 tracked files: every 100 bytes here are 10 MB. Fields that only compressed
        // files and copies use are boxed, times are 8-byte moments. (what, its size, at most)
        let cases = [
            ("TrackedFile", std::mem::size_of::<TrackedFile>(), 264),
            ("Framer", std::mem::size_of::<Framer>(), 104),
            ("FileId", std::mem::size_of::<FileId>(), 24),
        ];
        for (what, size, most) in cases {
            assert!(size <= most, "{what} is {size} bytes, more than {most}");
        }
    }

    #[test]
    fn reads_ask_for_what_there_is_within_bounds() {
        // (bytes known to be unread, bytes asked for)
        let cases = [
            (0, MIN_READ),
            (1_400, MIN_READ),
            (MIN_READ as u64 + 1, MIN_READ + 1),
            (100_000, 100_000),
            (READ_SIZE as u64, READ_SIZE),
            (u64::MAX, READ_SIZE),
        ];
        for (unread, want) in cases {
            assert_eq!(read_size(unread), want, "{unread} unread");
        }
    }

    #[test]
    fn start_of_last_line_table() {
        let cases: &[(&[u8], u64)] =
            &[(b"", 0), (b"a\nb\n", 4), (b"a\nbc", 2), (b"no newline", 10)];
        for (content, want) in cases {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(content).unwrap();
            let got = start_of_last_line(&file, content.len() as u64).unwrap();
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(content));
        }
    }
}
