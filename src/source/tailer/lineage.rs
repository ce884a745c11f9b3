//! Copy lineage: a file that starts like a tracked one (logrotate's `copy`, `copytruncate`) is
//! held until it is known whether it continues a retired generation, and read from where that
//! generation was left.
//!
//! Invariant: a copy continues its original and is never read twice.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use super::moment::Moment;
use super::tracked::{CopyProof, FileId, TrackedFile, has_unread, is_young, tail_before};
use super::tracking::new_key;
use super::{Context, Emit, Stopped, Tailer};
use crate::checkpoint::Fingerprint;
use crate::metrics::add;
use crate::parse::assemble::Release;
use crate::source::compression::{Codec, Decoded};
use crate::source::fingerprint::read_head;
use crate::source::framing::Framer;
use crate::source::head_index::HeadIndex;
use crate::source::marks::{Holds, PROOF_GAP, StreamHead, compare};

/// Which of two streams is the shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shorter {
    This,
    Other,
}

/// Whether the content of one file (compressed or not) is the beginning of another's (the
/// shorter one, and its length), or neither (`None`).
fn prefix_relation(
    this: &File,
    this_codec: Option<Codec>,
    other: &File,
    other_codec: Option<Codec>,
) -> std::io::Result<Option<(Shorter, u64)>> {
    use std::io::Read;
    let open = |file: &File, codec| -> std::io::Result<Decoded> {
        let mut handle = file.try_clone()?;
        handle.seek(SeekFrom::Start(0))?;
        Decoded::with_codec(handle, codec, Arc::default())
    };
    let (mut a, mut b) = (open(this, this_codec)?, open(other, other_codec)?);
    let (mut left, mut right) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
    let mut at = 0u64;
    loop {
        let n = match a.read(&mut left) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None),
        };
        let mut got = 0;
        while got < n {
            match b.read(&mut right[got..n]) {
                Ok(0) => break,
                Ok(m) => got += m,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(None),
            }
        }
        if left[..got] != right[..got] {
            return Ok(None);
        }
        if n == 0 {
            return Ok(Some((Shorter::This, at)));
        }
        if got < n {
            return Ok(Some((Shorter::Other, at + got as u64)));
        }
        at += n as u64;
    }
}

/// True when a tracked file's open descriptor says it was not written for `rotate_wait_ms`.
fn is_settled(f: &TrackedFile, rotate_wait_ms: u64) -> bool {
    f.file
        .as_ref()
        .and_then(|handle| handle.metadata().ok())
        .is_some_and(|md| !is_young(&md, Duration::from_millis(rotate_wait_ms)))
}

/// True when the first `len` bytes of `a` and `b` are the same (both at least that long).
fn same_bytes(a: &File, b: &File, len: u64) -> std::io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    let (mut left, mut right) = (vec![0; CHUNK], vec![0; CHUNK]);
    let mut at = 0;
    while at < len {
        let n = CHUNK.min((len - at) as usize);
        let read_all = |file: &File, buf: &mut [u8]| match file.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        };
        if !read_all(a, &mut left[..n])?
            || !read_all(b, &mut right[..n])?
            || left[..n] != right[..n]
        {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// How a file found by a scan relates to the files already tracked (see [`Tailer::lineage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lineage {
    /// Not related: a new file.
    New,
    /// The copy of a retired generation (copytruncate), given as its index in `files`: it holds
    /// all that was read of it, at the same offsets; read it on from that generation's offset.
    Continues(usize),
    /// A copy of part of what was read of a tracked file (given as its index), no longer
    /// written: nothing in it is new. copytruncate under a live writer makes these (the copy is
    /// shorter than what was read of the original), and so does logrotate's `copy`.
    ReadAlready(usize),
    /// Holds what was read of a tracked file but may be a copy still being written: held until
    /// it is no longer written.
    Copying,
    /// Holds all that was read of a live file that has more to read: held until that file's
    /// reading passes it (then it is [`Lineage::ReadAlready`] or [`Lineage::New`]).
    Behind,
    /// Starts like a tracked file, but too little was compared to tell: held for
    /// `rotate_wait_ms` (a copy about to be followed by a truncation of its original), then
    /// read as a file of its own.
    PossibleCopy,
}

impl Lineage {
    /// Of two undecided relations, the one that holds a file longer.
    fn longer_hold(self, other: Lineage) -> Lineage {
        let rank = |l: Lineage| match l {
            Lineage::Behind => 3,
            Lineage::Copying => 2,
            Lineage::PossibleCopy => 1,
            _ => 0,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl<E: Emit> Tailer<E> {
    /// Tells how the file `file`, not tracked by inode, relates to the tracked files whose head
    /// it starts with: compared with what was read of each (its head, and the marks of its last
    /// reads: see [`compare`]). `skip` is the file's own index when it is tracked already (held).
    /// `index` (of `files` by head), when given, names the files worth comparing with.
    /// `head`: the file's head when it was just read (a file found by this scan), else it is
    /// read here.
    pub(super) fn lineage(
        &self,
        file: &File,
        head: Option<&[u8]>,
        skip: Option<usize>,
        index: Option<&HeadIndex>,
    ) -> std::io::Result<(Lineage, Option<CopyProof>)> {
        let known = skip.and_then(|i| self.files[i].copy_proof().copied());
        let md = file.metadata()?;
        let size = md.len();
        let settled = !is_young(&md, Duration::from_millis(self.ctx.config.rotate_wait_ms));
        let read;
        let head = match head {
            Some(head) => head,
            None => {
                read = read_head(file, self.ctx.config.fingerprint_bytes)?;
                &read[..]
            }
        };
        // The head's hash per fingerprint length (indexed by it), computed once rather than
        // once per tracked file: with thousands of files found at once, hashing made each scan
        // quadratic.
        let mut hashes: Vec<Option<u64>> = vec![None; head.len() + 1];
        let mut matches = |fingerprint: &Fingerprint| {
            let len = fingerprint.len as usize;
            len <= head.len()
                && *hashes[len].get_or_insert_with(|| xxhash_rust::xxh3::xxh3_64(&head[..len]))
                    == fingerprint.hash
        };
        let comparable = |(i, tracked): &(usize, &TrackedFile)| {
            Some(*i) != skip
                && !tracked.is_finished()
                && !tracked.is_held()
                && (tracked.fingerprint.len > 0 || tracked.is_unheaded())
                && !tracked.is_compressed()
        };
        if head.is_empty() {
            // A copy being written starts empty: it may be the copy of any file.
            let any = self.files.iter().enumerate().any(|f| comparable(&f));
            let lineage = if any {
                Lineage::PossibleCopy
            } else {
                Lineage::New
            };
            return Ok((lineage, None));
        }
        let candidates: Box<dyn Iterator<Item = usize>> = match index {
            Some(index) => Box::new(index.related(head, |i| &self.files[i].head).into_iter()),
            None => Box::new(0..self.files.len()),
        };
        let mut found = Lineage::New;
        let mut proof = None;
        let mut continues: Option<(usize, u64)> = None;
        for i in candidates {
            let tracked = &self.files[i];
            if !comparable(&(i, tracked)) {
                continue;
            }
            let same_start = if head.len() < tracked.fingerprint.len as usize {
                // Unknown (its whole head out of reach) but alike as far as kept: compared
                // further (and held rather than read at once) as if it started alike.
                tracked.head_starts_with(head).unwrap_or(true)
            } else {
                matches(&tracked.fingerprint)
            };
            if !same_start {
                continue;
            }
            let proven = known.is_some_and(|k| k.of == tracked.meta.key && k.size == size);
            let (relation, shown) = self.relation(file, size, settled, tracked, proven)?;
            if shown {
                proof = Some(CopyProof {
                    of: tracked.meta.key,
                    size,
                });
            }
            // Of the files it may be a copy of, the one it holds least beyond: a copy of what
            // was read of one file (nothing new) over one that another file carries on past.
            let offset = tracked.framer.read_offset();
            match relation {
                Lineage::ReadAlready(_) => return Ok((Lineage::ReadAlready(i), proof)),
                Lineage::Continues(_) => {
                    if continues.is_none_or(|(_, at)| offset > at) {
                        continues = Some((i, offset));
                    }
                }
                other => found = found.longer_hold(other),
            }
        }
        if let Some((i, _)) = continues {
            return Ok((Lineage::Continues(i), proof));
        }
        Ok((found, proof))
    }

    /// How `file` (`size` bytes, `settled`: not written for `rotate_wait_ms`), which starts with
    /// the head of `tracked`, relates to it, and whether it was shown now to hold what was read
    /// of it up to near its end (`proven`: it was, earlier, at this size); the index in a
    /// decided relation is left to the caller. Robust to files that merely start alike: it is
    /// a copy only where its bytes were compared with what was read (up to within
    /// [`PROOF_GAP`] of its end, or at the read offset where it is read on), and a copy of a
    /// live file's prefix is decided only once no longer written.
    fn relation(
        &self,
        file: &File,
        size: u64,
        settled: bool,
        tracked: &TrackedFile,
        proven: bool,
    ) -> std::io::Result<(Lineage, bool)> {
        let offset = tracked.framer.read_offset();
        // The head's bytes tell all of a file shorter than the fingerprint (see `compare`): read
        // again for it when not kept in memory.
        let reread = match tracked.whole_head() {
            None if size < u64::from(tracked.fingerprint.len) => tracked.head_bytes(),
            _ => None,
        };
        let stream = StreamHead {
            fingerprint: tracked.fingerprint,
            bytes: tracked.whole_head().or(reread.as_deref()),
        };
        let Holds::ProvenTo(mut to) = compare(file, size, stream, tracked.framer.marks().all())?
        else {
            return Ok((Lineage::New, false));
        };
        let fingerprint_len = u64::from(tracked.fingerprint.len);
        let close = |to: u64| to == size || (to > fingerprint_len && size - to <= PROOF_GAP);
        let needs_more = if size >= offset {
            to < offset
        } else {
            !proven && !close(to)
        };
        if needs_more
            && !tracked.is_retired()
            && let Some(original) = &tracked.file
        {
            // The original is still there, holding what was read of it: compare with it, byte
            // for byte, rather than with what the marks remember.
            let upto = size.min(offset);
            if !same_bytes(file, original, upto)? {
                return Ok((Lineage::New, false));
            }
            to = upto;
        }
        if size >= offset && to >= offset {
            // It holds everything read of that file, at the same offsets.
            let relation = if tracked.is_retired() {
                Lineage::Continues(0)
            } else if size == offset && settled {
                Lineage::ReadAlready(0)
            } else if has_unread(tracked) {
                Lineage::Behind
            } else if size == offset {
                Lineage::Copying
            } else if settled && is_settled(tracked, self.ctx.config.rotate_wait_ms) {
                // A copy no longer written, read to its end, and a longer copy of the same
                // stream (logrotate's `copy`, then copytruncate): the stream goes on in it.
                Lineage::Continues(0)
            } else {
                // More than the file holds now: a copy about to be followed by a truncation
                // of its original, or a file of its own that starts alike.
                Lineage::PossibleCopy
            };
            return Ok((relation, size == offset));
        }
        // Shorter than what was read: copytruncate under a live writer, or `copy`. Taken for a
        // copy when compared up to near its end (or whole), never by its head alone.
        let shown = size < offset && (proven || close(to));
        let relation = match (shown, settled) {
            (true, true) => Lineage::ReadAlready(0),
            (true, false) => Lineage::Copying,
            (false, _) => Lineage::PossibleCopy,
        };
        Ok((relation, shown))
    }

    /// A file that resumes the record of a file that another file resumes already (two copies
    /// of one file made while the agent was down, compressed or not): compared with that one,
    /// it holds a part of it (nothing new: taken as read to its end), or more (it goes on from
    /// where that one ends), or something else (it resumes at the record).
    /// A file that resumes no record is compared the same way with a file that resumed one and
    /// starts like it (the record went to that one, found first): a compressed file at any
    /// scan, a plain one at the first scan only, where the two copies were made while the agent
    /// was down (running, a plain copy is compared with the file it copies as it is written).
    /// `continuing`: the indices of the files that resumed another file's record. True when it
    /// was decided.
    pub(super) fn another_copy_of_the_same(
        &self,
        file: &mut TrackedFile,
        continuing: &[usize],
    ) -> bool {
        let same_record = |f: &TrackedFile| match file.continues {
            Some(_) => f.continues == file.continues,
            None => {
                f.continues.is_some() && f.fingerprint.len > 0 && f.fingerprint.matches(&file.head)
            }
        };
        let Some(first) = continuing
            .iter()
            .map(|&i| &self.files[i])
            .find(|f| !f.is_finished() && same_record(f))
        else {
            return false;
        };
        let Some(handle) = &file.file else {
            return false;
        };
        let Ok(theirs) = File::open(&*first.meta.path) else {
            return false;
        };
        match prefix_relation(handle, file.codec(), &theirs, first.codec()) {
            Ok(Some((Shorter::This, length))) if file.is_compressed() => {
                self.ctx.compressed_read_already(file, length);
                true
            }
            Ok(Some((Shorter::This, _))) => {
                let other = Arc::clone(&first.meta.path);
                self.ctx.read_already(file, &other);
                true
            }
            Ok(Some((Shorter::Other, length))) if length > file.framer.read_offset() => {
                // A plain file is read on from `length` by its descriptor, after the bytes
                // before it; a compressed one is decoded from its start and skips to it.
                let tail = match (file.is_compressed(), file.file.as_mut()) {
                    (true, _) => None,
                    (false, Some(handle)) => {
                        let Ok(tail) = tail_before(handle, length)
                            .and_then(|tail| handle.seek(SeekFrom::Start(length)).map(|_| tail))
                        else {
                            return false;
                        };
                        Some(tail)
                    }
                    (false, None) => return false,
                };
                file.framer = Framer::new(length, self.ctx.config.max_line_bytes);
                if let Some(tail) = tail {
                    file.framer.set_tail(&tail, &[]);
                }
                tracing::info!(source = %self.ctx.name, file = %file.meta.path, other = %first.meta.path, offset = length, "copy of the same file as another, holding more: read on from where that one ends");
                file.emitted = length;
                self.ctx.register(file, Vec::new(), false);
                true
            }
            _ => false,
        }
    }

    /// Decides about files held as possible copies: the copy of a retired generation continues
    /// it; a file that no longer looks like a copy, or was held for `rotate_wait_ms`, is
    /// released and read from its start.
    pub(super) fn review_held_files(&mut self) {
        let rotate_wait = Duration::from_millis(self.ctx.config.rotate_wait_ms);
        for held in 0..self.files.len() {
            let file = &self.files[held];
            let Some(since) = file.held_since() else {
                continue;
            };
            if file.is_compressed() {
                // Held while the file it is a copy of is still read; then it continues it. One
                // whose whole content is less than that file's head and was read already
                // (a compressed copy of a prefix) holds nothing new.
                match self.compressed_original(file, Some(held)) {
                    None => self.ctx.resume_compressed(&mut self.files[held]),
                    Some(original) => {
                        if let Some(length) = self.compressed_prefix(held, original) {
                            self.ctx
                                .compressed_read_already(&mut self.files[held], length);
                        }
                    }
                }
                continue;
            }
            // Held for `rotate_wait_ms`, and a whole read pass (which notices a truncated
            // original) started after that: a tailer held up by backpressure has not looked yet.
            let waited = since.elapsed() >= rotate_wait
                && self
                    .pass_started
                    .is_some_and(|at| at >= since + rotate_wait);
            // A held file deleted meanwhile (a copy compressed, say) is still read through its
            // descriptor: it may still be the copy of a truncated original.
            let (lineage, proof) = match &file.file {
                Some(handle) => self
                    .lineage(handle, None, Some(held), None)
                    .unwrap_or((Lineage::New, None)),
                None => (Lineage::New, None),
            };
            self.files[held].prove(proof);
            match lineage {
                Lineage::PossibleCopy if waited => self.ctx.release(&mut self.files[held]),
                Lineage::PossibleCopy | Lineage::Copying | Lineage::Behind => {}
                Lineage::New => self.ctx.release(&mut self.files[held]),
                Lineage::ReadAlready(original) => {
                    let original = Arc::clone(&self.files[original].meta.path);
                    let copy = &mut self.files[held];
                    copy.release();
                    self.ctx.read_already(copy, &original);
                }
                Lineage::Continues(original) => {
                    let copy = &mut self.files[held];
                    // It goes on as its original: its descriptor is handed to it.
                    copy.finish();
                    self.ctx.store.forget(copy.meta.key);
                    let (handle, path, id) = (
                        copy.file.take(),
                        Arc::clone(&copy.meta.path),
                        (copy.dev, copy.ino),
                    );
                    if let Some(handle) = handle {
                        self.ctx
                            .adopt_copy(&mut self.files[original], handle, &path, id);
                    }
                }
            }
        }
    }

    /// Ships what parsing holds back for files that `release` lets go: multiline groups whose
    /// timeout passed, or everything.
    pub(super) fn release_held(&mut self, release: Release) -> Result<(), Stopped> {
        if self.ctx.held.is_empty() {
            return Ok(());
        }
        let timeout = self.ctx.parser.group_timeout().unwrap_or_default();
        for file in &mut self.files {
            let Some(state) = self.ctx.held.get(&file.meta.key) else {
                continue;
            };
            let due = match release {
                Release::All => true,
                Release::Due(now) => state.deadline(timeout).is_some_and(|at| at <= now),
            };
            if due && !file.is_finished() {
                self.ctx.emit_parsed(file, false, release)?;
            }
        }
        Ok(())
    }
}

impl<E: Emit> Context<E> {
    /// Takes a file found to be a copy of what was read already from `original` (see
    /// [`Lineage::ReadAlready`]) as read to its current end, under a record of its own: nothing
    /// in it is shipped, what may be appended to it later is.
    pub(super) fn read_already(&self, tracked: &mut TrackedFile, original: &str) {
        let Some(file) = &mut tracked.file else {
            return;
        };
        let size = match file.metadata() {
            Ok(md) => md.len(),
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot stat file");
                return;
            }
        };
        let tail = match tail_before(file, size).and_then(|tail| {
            file.seek(SeekFrom::Start(size))?;
            Ok(tail)
        }) {
            Ok(tail) => tail,
            Err(e) => {
                add(&self.metrics.read_errors, 1);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot read file");
                return;
            }
        };
        tracing::info!(
            source = %self.name, file = %tracked.meta.path, original = %original, size,
            "copy of lines already read from another file (copytruncate under a writer, or copy): nothing shipped from it"
        );
        add(&self.metrics.copies_skipped, 1);
        self.own_generation_from(tracked, size);
        tracked.framer.set_tail(&tail, &[]);
        tracked.seen_size = size;
        tracked.eof_since = None;
        self.register(tracked, Vec::new(), true);
    }

    /// A compressed file resumed where the file it was taken for the compressed copy of was left
    /// holds other bytes before that point: it is read whole, as a file of its own.
    pub(super) fn not_a_copy_after_all(&self, tracked: &mut TrackedFile) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, offset = tracked.framer.read_offset(), "compressed file starts like a file read before but holds other lines: read whole");
        self.own_generation_from(tracked, 0);
        self.register(tracked, Vec::new(), false);
    }

    /// Gives `tracked` up as the continuation of another file's record: it forgets that record
    /// and becomes a generation of its own (a key of its own), read from `offset`.
    fn own_generation_from(&self, tracked: &mut TrackedFile, offset: u64) {
        self.store.forget(tracked.meta.key);
        let key = new_key(tracked.dev, tracked.ino);
        tracked.meta = FileId::new(key, Arc::clone(&tracked.meta.path));
        tracked.framer = Framer::new(offset, self.config.max_line_bytes);
        tracked.emitted = offset;
    }

    /// Continues a retired generation in its copy, from where the original was left.
    pub(super) fn adopt_copy(
        &mut self,
        tracked: &mut TrackedFile,
        mut copy: File,
        path_text: &str,
        (dev, ino): (u64, u64),
    ) {
        tracing::info!(
            source = %self.name, original = %tracked.meta.path, copy = %path_text,
            offset = tracked.framer.read_offset(),
            "the truncated file was copied first (copytruncate): reading the rest of it from the copy"
        );
        if let Err(e) = copy.seek(SeekFrom::Start(tracked.framer.read_offset())) {
            tracing::warn!(source = %self.name, file = %path_text, error = %e, "cannot seek file");
            return;
        }
        tracked.dev = dev;
        tracked.ino = ino;
        tracked.file = Some(copy);
        tracked.adopt();
        tracked.gone_since = None;
        tracked.eof_since = None;
        tracked.opened_at = Moment::now();
        tracked.meta = FileId::new(tracked.meta.key, path_text);
        self.store.relocate(
            tracked.meta.key,
            &tracked.meta.path,
            tracked.dev,
            tracked.ino,
        );
    }
}
