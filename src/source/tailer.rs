//! The file tailer of one source: discover, open, read, frame, hand on, let go.
//!
//! It runs on a thread of its own with plain blocking I/O (large reads, no per-line syscall)
//! and hands every chunk of framed lines to an `emit` callback, which blocks while the pipeline
//! is full; that is how backpressure stops reading. Files are read in turns of at most
//! [`TURN_BYTES`] each, round-robin, so a fast-growing file cannot starve the others.
//!
//! Identity and its corner cases:
//! - A file is its (device, inode), checked against a fingerprint of its head: a head that no
//!   longer matches, or a size below the read offset, means the file was truncated or rewritten
//!   in place (copytruncate, `> file`), and it is read again from offset 0 as a new generation.
//! - A tracked file no longer found at any included path (renamed away, deleted) is still read
//!   through its open descriptor until it has not grown for `rotate_wait_ms`; then its
//!   unterminated last line, if any, is emitted and the file is let go once its lines are acked.
//! - At most `max_open_files` are open; when more files have data, the longest-idle open ones are
//!   closed for a turn and reopened later by path, checked by inode and fingerprint.
//! - A gzip file (by its magic bytes) is read through a decompressor once it has not changed for
//!   `rotate_wait_ms`, to its end, once: it never grows. Its offsets and fingerprint are those of
//!   its uncompressed content, so the compressed rotation of a file that was being read
//!   (`app.log` -> `app.log.1.gz`) is recognised by its head and continued where that file was
//!   left, with the same event ids: at a restart, from the file's checkpoint; while running, once
//!   the file itself is let go (until then the compressed copy is held).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::FileSourceConfig;
use super::ReadFrom;
use super::checkpoint::{CheckpointStore, FileRecord, SinkId};
use super::compression::{Codec, Decoded, SNIFF_BYTES, Sniffed, decompressed_head, sniff};
use super::discovery::{Globs, SkipReason};
use super::fingerprint::{Fingerprint, read_head};
use super::framing::{Framed, Framer, ReadMark, TAIL_BYTES};
use super::head_index::HeadIndex;
use super::marks::{Holds, PROOF_GAP, StreamHead, compare, skip_comparing};
use super::open::{OpenError, open_regular, stat};
use super::watcher::Watcher;
use crate::event::{Chunk, FileKey, FileMeta};
use crate::health::Heartbeat;
use crate::metrics::{SourceMetrics, add};
use crate::parse::SourceParser;
use crate::parse::assemble::{FileState, Release};

/// Bytes asked of the kernel per read.
pub const READ_SIZE: usize = 256 * 1024;
/// Bytes read from one file before the next file gets its turn.
pub const TURN_BYTES: usize = 1024 * 1024;
/// How far back from the end `read_from: end` looks for the start of the current line.
const TAIL_ALIGN_BYTES: u64 = 64 * 1024;
/// Longest sleep while a file let go is waiting for `rotate_wait_ms`.
const GONE_POLL: Duration = Duration::from_millis(100);
/// A tailer that has not turned for this long (or ten scan intervals, if longer) is stuck.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// New problems (unreadable paths, links not followed, FIFOs...) logged one by one per scan;
/// beyond that a scan logs how many more there were, so a hostile directory cannot flood the
/// agent's log.
const REPORTS_PER_SCAN: usize = 20;

/// The pipeline no longer takes chunks: the tailer stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Stopped;

/// How the agent steers a running tailer.
#[derive(Debug)]
pub struct Control {
    draining: AtomicBool,
    wake: SyncSender<()>,
    heartbeat: Arc<Heartbeat>,
}

impl Control {
    /// Asks the tailer to stop discovering, read every file to its current end, and return.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The tailer's sign of life: it beats once per loop and per chunk handed on, and has
    /// turned once its first scan is done.
    pub fn heartbeat(&self) -> &Arc<Heartbeat> {
        &self.heartbeat
    }
}

/// One file being read.
#[derive(Debug)]
struct TrackedFile {
    meta: Arc<FileMeta>,
    dev: u64,
    ino: u64,
    fingerprint: Fingerprint,
    /// The bytes the fingerprint was taken of, to recognise a copy still being written.
    head: Vec<u8>,
    /// Open descriptor; `None` while closed to respect `max_open_files`, or once let go.
    file: Option<File>,
    framer: Framer,
    /// End offset of the last chunk handed on.
    emitted: u64,
    /// When the file was first found at no included path (renamed away or deleted).
    gone_since: Option<Instant>,
    /// When a read last found nothing new.
    eof_since: Option<Instant>,
    opened_at: Instant,
    /// Read to its end and let go; waiting for its last acks.
    finished: bool,
    /// Looks like a copy of a tracked file (since then): not read until it is known whether it
    /// continues a retired generation (see [`Lineage`]).
    held_since: Option<Instant>,
    /// A generation whose file was truncated or rewritten under it: kept for `rotate_wait_ms`
    /// in case a copy of it appears (copytruncate), from which it is then read to its end.
    retired: bool,
    /// A compressed file's codec: read through `decoder`, checked by nothing but its path (it
    /// never changes).
    codec: Option<Codec>,
    /// The decompressing reader of a compressed file, at `framer.read_offset()`; made at its
    /// first read.
    decoder: Option<Decoded>,
    /// A compressed file read to its end (or to damage): closed, kept only to be known by its
    /// inode.
    compressed_done: bool,
    /// Its size when last seen (by a scan or before a read): what a truncation took away
    /// unread, when no copy holds it, is counted from it.
    seen_size: u64,
    /// Size and modification time of a gzip file when it was taken (it never changes): once it
    /// is closed its inode can be freed and reused, and a file found there that differs is
    /// another file.
    stamp: Option<Stamp>,
    /// A held file shown to be a copy of what was read of a tracked file (see [`CopyProof`]).
    copy_proof: Option<CopyProof>,
    /// A compressed file that resumed where the record of another file (its device and inode)
    /// says: another compressed copy of that file may follow, which is compared with it.
    continues: Option<(u64, u64)>,
}

/// A held file was shown to hold what was read of the file of generation `of`, up to within
/// [`PROOF_GAP`] of its end, when it was `size` bytes long. Kept because that file's marks move
/// on as it is read further: a copy made by logrotate's `copy` is compared while it is written,
/// when the marks around its end are still at hand, and decided once it is no longer written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopyProof {
    of: FileKey,
    size: u64,
}

impl TrackedFile {
    fn is_compressed(&self) -> bool {
        self.codec.is_some()
    }

    /// A generation that began empty (at a truncation) and has bytes its fingerprint does not
    /// cover yet: a copy of it is compared with its bytes, while it is open.
    fn is_unheaded(&self) -> bool {
        self.fingerprint.len == 0 && self.file.is_some() && !self.retired && self.seen_size > 0
    }
}

/// True when a live file has more to read than what was read of it (as its descriptor says, or
/// as it was last seen when closed for its turn).
fn has_unread(f: &TrackedFile) -> bool {
    let offset = f.framer.read_offset();
    let size = f
        .file
        .as_ref()
        .and_then(|handle| handle.metadata().ok())
        .map_or(f.seen_size, |md| md.len());
    !f.finished && size > offset
}

/// The file a compressor made `path` from (`app.log.1` for `app.log.1.gz`), if its name says.
fn plain_name(path: &str) -> Option<&str> {
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

/// Size and modification time of a file.
type Stamp = (u64, Option<SystemTime>);

/// True for a file modified within `wait`: a compressor or a copy may still be writing it.
fn is_young(md: &fs::Metadata, wait: Duration) -> bool {
    md.modified()
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age < wait)
}

fn stamp(md: &fs::Metadata) -> Stamp {
    (md.len(), md.modified().ok())
}

/// What the tailer needs besides its files.
struct Context<E> {
    name: Arc<str>,
    config: FileSourceConfig,
    sinks: Vec<SinkId>,
    store: Arc<CheckpointStore>,
    metrics: Arc<SourceMetrics>,
    emit: E,
    heartbeat: Arc<Heartbeat>,
    /// Events per chunk last time, to size the next chunk's vector.
    chunk_hint: usize,
    /// Generations retired by truncation since the files were last gathered.
    retired: Vec<TrackedFile>,
    /// The source's parsing stages.
    parser: SourceParser,
    /// Per file generation, what parsing holds back between chunks (unfinished multiline
    /// groups, partial container lines); only files that hold something have an entry.
    held: HashMap<FileKey, FileState>,
    /// The source's globs; their watch roots are trusted when files are opened.
    globs: Globs,
    /// Asks for a scan: a file found to be compressed after it was taken for text is taken
    /// again by one.
    rescan: Arc<AtomicBool>,
}

/// How a file found by a scan relates to the files already tracked (see [`Tailer::lineage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lineage {
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

/// Tails the files of one source.
pub struct Tailer<E> {
    ctx: Context<E>,
    files: Vec<TrackedFile>,
    watcher: Watcher,
    rescan: Arc<AtomicBool>,
    wake: Receiver<()>,
    control: Arc<Control>,
    /// Index of the file that reads first in the next pass.
    next_first: usize,
    /// When the last scan started: a retired generation waits for a scan after its
    /// `rotate_wait_ms` to look for its copy.
    scanned_at: Option<Instant>,
    /// When the last read pass started: a file held as a possible copy waits for one after its
    /// `rotate_wait_ms`.
    pass_started: Option<Instant>,
    /// Files with unread data that found no free slot at the last sharing of slots (index and
    /// key, checked when taken: indices move when files are forgotten): they take the slots of
    /// files read to their end between scans, so that thousands of files waiting do not take a
    /// scan interval per `max_open_files` of them.
    turn_queue: VecDeque<(usize, FileKey)>,
    reports: Reports,
}

/// When the tailer scans: every `scan_interval_ms`, and as soon as `notify` reports a name
/// change; but a scan (a walk of the globs and a stat per file: a good part of a second with
/// 100,000 files in a debug build) is followed by at least [`SCAN_GAP_PER_COST`] times its own
/// duration without one, so that files created in a tight loop cannot keep the tailer scanning
/// instead of reading.
#[derive(Debug, Clone, Copy)]
struct ScanSchedule {
    every: Duration,
    /// When the last scan started and how long it took; `None` before the first.
    last: Option<(Instant, Duration)>,
}

/// A scan is followed by at least this many times its duration without another.
const SCAN_GAP_PER_COST: u32 = 4;

impl ScanSchedule {
    fn new(every: Duration) -> Self {
        ScanSchedule { every, last: None }
    }

    fn is_first(&self) -> bool {
        self.last.is_none()
    }

    /// Notes a scan that started at `started` and took `took`.
    fn scanned(&mut self, started: Instant, took: Duration) {
        self.last = Some((started, took));
    }

    /// When the next scan is due (`requested`: a name change was reported since the last one);
    /// `None`: now.
    fn next_at(&self, requested: bool) -> Option<Instant> {
        let (started, took) = self.last?;
        let ended = started + took;
        let due = if requested {
            ended
        } else {
            started + self.every
        };
        Some(due.max(ended + took * SCAN_GAP_PER_COST))
    }
}

/// Files waiting for a slot that take their turn per call of `pass_turns`.
const QUEUED_TURNS_PER_PASS: usize = 1024;

/// An open file that has had its turn (read to its end) and can make room for one waiting: a
/// gzip file keeps its slot to its end (it cannot be resumed without reading it again from its
/// start), a held one until it is decided, one gone or finished until it is let go.
fn done_with_turn(f: &TrackedFile) -> bool {
    f.file.is_some()
        && f.eof_since.is_some()
        && f.gone_since.is_none()
        && !f.finished
        && !f.is_compressed()
        && f.held_since.is_none()
}

/// Problems with paths, each reported (logged, and counted by the caller) once while it lasts.
///
/// Only the problems of the last scan are remembered, as hashes: memory follows what is on disk
/// now, and a problem that goes away and comes back is reported again.
#[derive(Debug, Default)]
struct Reports {
    /// Problems seen at the previous scan.
    known: HashSet<u64>,
    /// Problems seen so far at this scan.
    current: HashSet<u64>,
    /// New problems logged one by one at this scan.
    logged: usize,
    /// New problems at this scan beyond [`REPORTS_PER_SCAN`].
    unlogged: usize,
}

impl Reports {
    /// Notes a problem; true when it is new (not seen at the previous scan nor yet at this one).
    fn note(&mut self, problem: &str) -> bool {
        let hash = xxhash_rust::xxh3::xxh3_64(problem.as_bytes());
        self.current.insert(hash) && !self.known.contains(&hash)
    }

    /// True when one more new problem may be logged at this scan; counts those that may not.
    fn may_log(&mut self) -> bool {
        if self.logged < REPORTS_PER_SCAN {
            self.logged += 1;
            true
        } else {
            self.unlogged += 1;
            false
        }
    }

    /// Ends a scan; returns how many new problems were not logged one by one.
    fn end_scan(&mut self) -> usize {
        self.known = std::mem::take(&mut self.current);
        self.logged = 0;
        std::mem::take(&mut self.unlogged)
    }
}

impl<E> Tailer<E>
where
    E: FnMut(Chunk) -> Result<(), Stopped>,
{
    /// A tailer for source `name`, whose lines go to `sinks` through `emit`.
    pub fn new(
        name: &str,
        config: FileSourceConfig,
        sinks: Vec<SinkId>,
        store: Arc<CheckpointStore>,
        metrics: Arc<SourceMetrics>,
        emit: E,
    ) -> (Self, Arc<Control>) {
        let (wake_tx, wake) = sync_channel(1);
        let rescan = Arc::new(AtomicBool::new(false));
        let globs = Globs::new(&config.include, &config.exclude, config.follow_symlinks);
        let watcher = Watcher::new(
            globs.watch_roots(),
            config.follow_symlinks,
            wake_tx.clone(),
            Arc::clone(&rescan),
        );
        let stale_after = STALE_AFTER.max(Duration::from_millis(config.scan_interval_ms) * 10);
        let heartbeat = Arc::new(Heartbeat::new(stale_after));
        let control = Arc::new(Control {
            draining: AtomicBool::new(false),
            wake: wake_tx,
            heartbeat: Arc::clone(&heartbeat),
        });
        let parser = SourceParser::new(&config);
        let tailer = Tailer {
            ctx: Context {
                name: name.into(),
                parser,
                held: HashMap::new(),
                config,
                sinks,
                store,
                metrics,
                emit,
                heartbeat,
                chunk_hint: 64,
                retired: Vec::new(),
                globs,
                rescan: Arc::clone(&rescan),
            },
            files: Vec::new(),
            watcher,
            rescan,
            wake,
            control: Arc::clone(&control),
            next_first: 0,
            scanned_at: None,
            pass_started: None,
            turn_queue: VecDeque::new(),
            reports: Reports::default(),
        };
        (tailer, control)
    }

    /// Runs until drained (or the pipeline closes).
    pub fn run(mut self) {
        let scan_every = Duration::from_millis(self.ctx.config.scan_interval_ms);
        let mut schedule = ScanSchedule::new(scan_every);
        loop {
            let draining = self.control.is_draining();
            let now = Instant::now();
            let requested = self.rescan.load(Ordering::Acquire);
            if !draining && schedule.next_at(requested).is_none_or(|at| now >= at) {
                // Cleared first: names changed during the scan ask for the next one.
                self.rescan.store(false, Ordering::Release);
                self.scan(schedule.is_first());
                schedule.scanned(now, now.elapsed());
            }
            self.ctx.heartbeat.beat();
            if draining {
                // No scans while draining, but files closed for the open-file cap still take
                // their turns, so that they too are read to their end.
                self.share_open_slots(true, &[]);
            }
            let mut progressed = match self.read_pass() {
                Ok(progressed) => progressed,
                Err(Stopped) => break,
            };
            if !draining {
                match self.pass_turns() {
                    Ok(read) => progressed |= read,
                    Err(Stopped) => break,
                }
            }
            if draining {
                if progressed {
                    continue;
                }
                // What parsing holds back (an open multiline group) ships with the drain.
                let _ = self.release_held(Release::All);
                break;
            }
            if self.let_go_of_gone_files().is_err()
                || self.release_held(Release::Due(Instant::now())).is_err()
            {
                break;
            }
            if !progressed {
                let now = Instant::now();
                let rescan = self.rescan.load(Ordering::Acquire);
                let mut timeout = schedule
                    .next_at(rescan)
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
                if self.files.iter().any(|f| f.gone_since.is_some()) {
                    timeout = timeout.min(GONE_POLL);
                }
                if let Some(due) = self.ctx.next_group_deadline() {
                    timeout = timeout.min(due.saturating_duration_since(Instant::now()));
                }
                let _ = self.wake.recv_timeout(timeout);
            }
        }
        self.ctx.heartbeat.finish();
        // Its files close with it.
        self.files.clear();
        self.ctx.metrics.open_files.store(0, Ordering::Relaxed);
        tracing::debug!(source = %self.ctx.name, "tailer stopped");
    }

    /// Expands the globs, starts tracking new files, notices files gone, truncated or
    /// rewritten, and shares the open-file slots.
    fn scan(&mut self, first: bool) {
        self.scanned_at = Some(Instant::now());
        self.watcher.refresh();
        let found = self.ctx.globs.expand();
        for error in found.errors {
            self.report(&error);
        }
        for skipped in &found.skipped {
            self.report_skipped(&skipped.path, skipped.reason, None);
        }
        // Truncations and rewrites first: a copy found by this scan is compared with the
        // generation the file holds now, and with the one truncated away (copytruncate).
        for file in &mut self.files {
            if !file.finished && file.file.is_some() {
                self.ctx.check_identity(file);
            }
        }
        self.files.append(&mut self.ctx.retired);
        let cap = self.ctx.config.max_open_files;
        let follow = self.ctx.config.follow_symlinks;
        let mut open = self.open_count();
        let mut by_inode: HashMap<(u64, u64), usize> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.finished && !f.retired)
            .map(|(i, f)| ((f.dev, f.ino), i))
            .collect();
        // Made at the first new file that needs it: most scans find none.
        let mut head_index: Option<HeadIndex> = None;
        // Per file: the first path seen this scan, and whether its current path was seen.
        let mut seen: Vec<Option<PathBuf>> = vec![None; self.files.len()];
        let mut at_current_path = vec![false; self.files.len()];
        // Per file: its size as this scan found it, so that sharing the open slots below need
        // not stat every closed file again.
        let mut sizes: Vec<Option<u64>> = vec![None; self.files.len()];
        let mut listed: Vec<(PathBuf, fs::Metadata)> = found
            .files
            .into_iter()
            .filter_map(|path| {
                let md = stat(&path, follow).ok()?;
                md.is_file().then_some((path, md))
            })
            .collect();
        // Files that resume from a checkpoint of their own go first, so that a copy of one (made
        // by logrotate's `copy` while the agent was down) is compared with what was read of it.
        // And plain files before compressed ones (by their names), so that a compressed copy
        // of a plain file found in the same scan is compared with it.
        let resuming = self.ctx.store.dormant_ids(&self.ctx.name);
        listed.sort_by_cached_key(|(path, md)| {
            (
                !resuming.contains(&(md.dev(), md.ino())),
                plain_name(&path.to_string_lossy()).is_some(),
            )
        });
        // The files that resumed another file's record (copies made while the agent was down):
        // a new file is compared with those (see `another_copy_of_the_same`), not with every
        // file, which made a first scan of 100,000 files quadratic.
        let mut continuing: Vec<usize> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.continues.is_some() && !f.finished)
            .map(|(i, _)| i)
            .collect();
        for (path, md) in listed {
            let id = (md.dev(), md.ino());
            if let Some(&i) = by_inode.get(&id) {
                // A compressed file read to its end is closed: deleted, its inode may now be
                // another file's (a copy being written, say), which must be read, not taken for
                // it. A changed time alone does not say so (logrotate sets the times of the
                // compressed file after gzip wrote it): its content does.
                let changed = self.files[i].file.is_none()
                    && self.files[i].stamp.is_some_and(|taken| taken != stamp(&md));
                let reused = changed && !self.ctx.holds_the_same(&self.files[i], &path);
                let tracked = &mut self.files[i];
                if changed && !reused {
                    tracked.stamp = Some(stamp(&md));
                }
                if !reused {
                    at_current_path[i] |= *tracked.meta.path == *path.to_string_lossy();
                    seen[i].get_or_insert(path);
                    sizes[i] = Some(md.len());
                    continue;
                }
                tracing::debug!(source = %self.ctx.name, file = %path.display(), was = %tracked.meta.path, "inode of a compressed file read and deleted reused by a new file");
                by_inode.remove(&id);
            }
            match self.ctx.start_tracking(&path, first) {
                Ok(None) => {}
                Ok(Some((file, _)))
                    if (file.dev, file.ino) != id
                        && by_inode.contains_key(&(file.dev, file.ino)) =>
                {
                    // Replaced by a file already tracked between listing and opening.
                    self.ctx.store.untrack(file.meta.key);
                }
                Ok(Some((mut file, resumed))) => {
                    let id = (file.dev, file.ino);
                    // Decided against another copy of the same file: known, as if resumed.
                    let decided = (file.continues.is_some()
                        || (!resumed && (file.is_compressed() || first)))
                        && self.another_copy_of_the_same(&mut file, &continuing);
                    let resumed = resumed || decided;
                    let lineage = match &file.file {
                        // A file that resumes a record is known: no copy of anything.
                        _ if resumed => Ok((Lineage::New, None)),
                        Some(_) if file.is_compressed() => {
                            let lineage = if self.compressed_original(&file, None).is_some() {
                                Lineage::PossibleCopy
                            } else {
                                Lineage::New
                            };
                            Ok((lineage, None))
                        }
                        Some(handle) => {
                            let index = head_index.get_or_insert_with(|| {
                                let mut index = HeadIndex::default();
                                for (i, f) in self.files.iter().enumerate() {
                                    if f.is_compressed() {
                                        continue;
                                    }
                                    if f.is_unheaded() {
                                        index.insert_unheaded(i);
                                    } else {
                                        index.insert(i, &f.head);
                                    }
                                }
                                index
                            });
                            self.lineage(handle, None, Some(index))
                        }
                        None => Ok((Lineage::New, None)),
                    };
                    let lineage = lineage.map(|(lineage, proof)| {
                        file.copy_proof = proof;
                        lineage
                    });
                    match lineage {
                        Ok(Lineage::New) if !resumed => {
                            self.ctx.register(&file, Vec::new(), false);
                        }
                        Ok(Lineage::New) => {}
                        Ok(held @ (Lineage::PossibleCopy | Lineage::Copying | Lineage::Behind)) => {
                            // Held files have no record (not registered): a restart decides
                            // about them anew rather than reading them from offset 0.
                            tracing::debug!(source = %self.ctx.name, file = %file.meta.path, as_ = ?held, "held until it is known whether it is a copy");
                            file.held_since = Some(Instant::now());
                        }
                        Ok(Lineage::ReadAlready(i)) => {
                            let original = Arc::clone(&self.files[i].meta.path);
                            self.ctx.read_already(&mut file, &original);
                        }
                        Ok(Lineage::Continues(i)) => {
                            self.ctx.store.forget(file.meta.key);
                            if let Some(handle) = file.file.take() {
                                self.ctx.adopt_copy(
                                    &mut self.files[i],
                                    handle,
                                    &file.meta.path,
                                    id,
                                );
                            }
                            open += usize::from(self.files[i].file.is_some());
                            by_inode.insert(id, i);
                            seen[i] = Some(path);
                            at_current_path[i] = true;
                            continue;
                        }
                        Err(e) => {
                            add(&self.ctx.metrics.read_errors, 1);
                            self.report(&format!("{}: {e}", path.display()));
                            self.ctx.register(&file, Vec::new(), false);
                        }
                    }
                    if file.file.is_some() {
                        // Files found at once (thousands created in the watched directory) must
                        // not all hold a descriptor until the end of the scan.
                        if open < cap {
                            open += 1;
                        } else if !self.make_room_for(&mut file) {
                            // A gzip file that found no free slot is taken at a later scan (its
                            // record, if it resumed one, goes back for it).
                            self.ctx.store.untrack(file.meta.key);
                            continue;
                        }
                    }
                    by_inode.insert(id, self.files.len());
                    if let Some(index) = &mut head_index
                        && !file.is_compressed()
                    {
                        index.insert(self.files.len(), &file.head);
                    }
                    if file.continues.is_some() {
                        continuing.push(self.files.len());
                    }
                    self.files.push(file);
                    seen.push(Some(path));
                    at_current_path.push(true);
                    sizes.push(None);
                }
                Err(OpenError::Io(e)) => {
                    add(&self.ctx.metrics.read_errors, 1);
                    self.report(&format!("{}: {e}", path.display()));
                }
                Err(e) => {
                    let reason = e.skip_reason().unwrap_or(SkipReason::Symlink);
                    self.report_skipped(&path, reason, Some(&e));
                }
            }
        }
        let unlogged = self.reports.end_scan();
        if unlogged > 0 {
            tracing::warn!(source = %self.ctx.name, more = unlogged, "more paths cannot be read or are skipped (not logged one by one)");
        }
        let now = Instant::now();
        for (i, file) in self.files.iter_mut().enumerate() {
            if file.finished {
                continue;
            }
            match &seen[i] {
                Some(path) if !at_current_path[i] => self.ctx.renamed(file, path),
                Some(_) => {}
                None => {
                    if file.gone_since.is_none() {
                        tracing::debug!(source = %self.ctx.name, file = %file.meta.path, "file renamed away or deleted; reading it to its end");
                        file.gone_since = Some(now);
                    }
                }
            }
            if seen[i].is_some() {
                file.gone_since = None;
            }
            if let Some(size) = sizes[i] {
                file.seen_size = size;
            }
        }
        self.share_open_slots(false, &sizes);
        let open = self.open_count() as u64;
        self.ctx.metrics.open_files.store(open, Ordering::Relaxed);
    }

    /// Tells how the file `file`, not tracked by inode, relates to the tracked files whose head
    /// it starts with: compared with what was read of each (its head, and the marks of its last
    /// reads: see [`compare`]). `skip` is the file's own index when it is tracked already (held).
    /// `index` (of `files` by head), when given, names the files worth comparing with.
    fn lineage(
        &self,
        file: &File,
        skip: Option<usize>,
        index: Option<&HeadIndex>,
    ) -> std::io::Result<(Lineage, Option<CopyProof>)> {
        let known = skip.and_then(|i| self.files[i].copy_proof);
        let md = file.metadata()?;
        let size = md.len();
        let settled = !is_young(&md, Duration::from_millis(self.ctx.config.rotate_wait_ms));
        let head = read_head(file, self.ctx.config.fingerprint_bytes)?;
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
                && !tracked.finished
                && tracked.held_since.is_none()
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
            Some(index) => Box::new(index.related(&head).into_iter()),
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
            let same_start = if head.len() < tracked.head.len() {
                tracked.head.starts_with(&head)
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
        let stream = StreamHead {
            fingerprint: tracked.fingerprint,
            bytes: Some(&tracked.head),
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
            && !tracked.retired
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
            let relation = if tracked.retired {
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

    /// The tracked plain file that the gzip file `compressed` is the compressed copy of: same
    /// uncompressed head (`skip`: the gzip file's own index when it is tracked). The original's
    /// fingerprint may not cover its head yet (a file not read since it was found, while the
    /// pipeline was full), so its head is read again when it is open.
    fn compressed_original(&self, compressed: &TrackedFile, skip: Option<usize>) -> Option<usize> {
        let same_head = |f: &TrackedFile| {
            if !compressed.head.is_empty() && compressed.head.len() < f.fingerprint.len as usize {
                // All it holds is less than that file's head: a copy of its beginning.
                return f.head.starts_with(&compressed.head);
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
            .filter(|(_, f)| !f.retired && f.fingerprint.len > 0)
            .find(|(_, f)| {
                f.file.as_ref().is_some_and(|handle| {
                    let len = f.fingerprint.len as usize;
                    compressed.head.len() >= len
                        && read_head(handle, len).is_ok_and(|head| head == compressed.head[..len])
                })
            })
            .map(|(i, _)| i)
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
    fn another_copy_of_the_same(&self, file: &mut TrackedFile, continuing: &[usize]) -> bool {
        let same_record = |f: &TrackedFile| match file.continues {
            Some(_) => f.continues == file.continues,
            None => {
                f.continues.is_some() && f.fingerprint.len > 0 && f.fingerprint.matches(&file.head)
            }
        };
        let Some(first) = continuing
            .iter()
            .map(|&i| &self.files[i])
            .find(|f| !f.finished && same_record(f))
        else {
            return false;
        };
        let Some(handle) = &file.file else {
            return false;
        };
        let Ok(theirs) = File::open(&*first.meta.path) else {
            return false;
        };
        match prefix_relation(handle, file.codec, &theirs, first.codec) {
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

    /// The length of what the held compressed file `held` holds when that is a prefix of what
    /// was read of the plain file `original` (a compressed copy of it, made before the file went
    /// on): it holds nothing new. Found by decompressing it and comparing it with that file,
    /// once per offset that file has reached, when that file has nothing more to read.
    fn compressed_prefix(&mut self, held: usize, original: usize) -> Option<u64> {
        let (copy, of) = (&self.files[held], &self.files[original]);
        let offset = of.framer.read_offset();
        if of.is_compressed() || has_unread(of) {
            return None;
        }
        if copy.head.len() < self.ctx.config.fingerprint_bytes {
            // All it holds is its head, known already.
            return of
                .head
                .starts_with(&copy.head)
                .then_some(copy.head.len() as u64)
                .filter(|&length| length <= offset);
        }
        let tried = CopyProof {
            of: of.meta.key,
            size: offset,
        };
        if copy.copy_proof == Some(tried) {
            return None;
        }
        let found = match (&copy.file, &of.file, copy.codec) {
            (Some(compressed), Some(plain), Some(codec)) => {
                compressed_prefix_of(compressed, codec, plain, offset)
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        self.files[held].copy_proof = Some(tried);
        found
    }

    fn open_count(&self) -> usize {
        self.files.iter().filter(|f| f.file.is_some()).count()
    }

    /// Logs an error with a path, once while it lasts: an unreadable directory would otherwise
    /// be reported at every scan.
    fn report(&mut self, error: &str) {
        if self.reports.note(error) && self.reports.may_log() {
            tracing::warn!(source = %self.ctx.name, error = %error, "cannot read");
        }
    }

    /// Counts and logs a match that is not read, once while it stays.
    fn report_skipped(&mut self, path: &Path, reason: SkipReason, error: Option<&OpenError>) {
        let problem = format!("{}\0{}", path.display(), reason.as_str());
        if !self.reports.note(&problem) {
            return;
        }
        let m = &self.ctx.metrics;
        add(
            match reason {
                SkipReason::Symlink => &m.skipped_symlinks,
                SkipReason::Directory => &m.skipped_directories,
                SkipReason::Fifo | SkipReason::Socket | SkipReason::Device => {
                    &m.skipped_special_files
                }
            },
            1,
        );
        if self.reports.may_log() {
            let detail = error.map(ToString::to_string).unwrap_or_default();
            tracing::warn!(source = %self.ctx.name, file = %path.display(), reason = reason.as_str(), detail = %detail, "matched but not read");
        }
    }

    /// Called with a file just found while `max_open_files` are open already: closes it (it
    /// waits its turn like any file closed for the cap), or, for a file that cannot wait
    /// closed (gzip, possible copy), closes an idle file instead. False when no room was made
    /// for a gzip file, which is then left for a later scan.
    fn make_room_for(&mut self, file: &mut TrackedFile) -> bool {
        if !file.is_compressed() && file.held_since.is_none() {
            file.file = None;
            return true;
        }
        let victim = (0..self.files.len())
            .filter(|&i| {
                let f = &self.files[i];
                f.file.is_some()
                    && f.gone_since.is_none()
                    && !f.finished
                    && !f.is_compressed()
                    && f.held_since.is_none()
            })
            .min_by_key(|&i| (self.files[i].eof_since.is_none(), self.files[i].opened_at));
        match victim {
            Some(i) => {
                self.files[i].file = None;
                true
            }
            None if file.is_compressed() => false,
            None => {
                // A possible copy closed is released as a file of its own when reviewed: read
                // from its start (duplicates, never loss).
                file.file = None;
                true
            }
        }
    }

    /// Opens waiting files with data while slots are free, closing open files that have had
    /// their turn when more files wait than slots are free.
    /// While `draining`, an open file makes room as soon as it has been read. `sizes` holds
    /// the files' sizes where a scan just found them (by index); the others are looked up.
    fn share_open_slots(&mut self, draining: bool, sizes: &[Option<u64>]) {
        let cap = self.ctx.config.max_open_files;
        let waiting: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                let f = &self.files[i];
                let unread = if f.is_compressed() {
                    // Never grows: it waits for a slot only until it has been read.
                    !f.compressed_done && f.held_since.is_none()
                } else {
                    let size = sizes.get(i).copied().flatten().or_else(|| {
                        stat(Path::new(&*f.meta.path), self.ctx.config.follow_symlinks)
                            .ok()
                            .map(|md| md.len())
                    });
                    size.is_some_and(|size| size != f.framer.read_offset())
                };
                f.file.is_none() && !f.finished && f.gone_since.is_none() && unread
            })
            .collect();
        let open = self.open_count();
        // New files are opened as they are found; past the cap, the excess closes right away.
        let excess = open.saturating_sub(cap);
        let mut free = cap.saturating_sub(open);
        let wanted = excess + waiting.len().saturating_sub(free);
        if wanted > 0 {
            let min_turn = if draining {
                Duration::ZERO
            } else {
                Duration::from_millis(self.ctx.config.scan_interval_ms)
            };
            // Files that can be reopened by path: live, not held, not finished.
            let mut candidates: Vec<usize> = (0..self.files.len())
                .filter(|&i| {
                    let f = &self.files[i];
                    f.file.is_some()
                        && f.gone_since.is_none()
                        && !f.finished
                        // A gzip file being decompressed cannot be resumed without reading it
                        // again from its start: it keeps its slot until its end.
                        && f.decoder.is_none()
                        && f.held_since.is_none()
                })
                .collect();
            // Idle files first, then those open the longest.
            candidates
                .sort_by_key(|&i| (self.files[i].eof_since.is_none(), self.files[i].opened_at));
            let mut closed = 0;
            for i in candidates {
                if closed >= wanted {
                    break;
                }
                // Beyond the excess, only files that had a turn make room for waiting ones.
                if closed >= excess && self.files[i].opened_at.elapsed() < min_turn {
                    continue;
                }
                self.files[i].file = None;
                closed += 1;
                if closed > excess {
                    free += 1;
                }
            }
        }
        let mut waiting = waiting.into_iter();
        for i in waiting.by_ref().take(free) {
            self.ctx.reopen(&mut self.files[i]);
        }
        self.turn_queue = waiting.map(|i| (i, self.files[i].meta.key)).collect();
    }

    /// Between scans, gives the slots of files read to their end to files waiting for one (see
    /// `turn_queue`), and has each take its turn at once: one read to its end in its turn hands
    /// its slot straight on, so that thousands of small files waiting go through in one call,
    /// not in one loop (with its passes over every tracked file) per `max_open_files` of them.
    /// At most [`QUEUED_TURNS_PER_PASS`] files, and as many bytes as a read pass of the open
    /// files may read, take their turn per call. True when anything was read.
    fn pass_turns(&mut self) -> Result<bool, Stopped> {
        if self.turn_queue.is_empty() {
            return Ok(false);
        }
        let cap = self.ctx.config.max_open_files;
        let mut open = self.open_count();
        let mut to_close = self
            .turn_queue
            .len()
            .saturating_sub(cap.saturating_sub(open));
        for f in &mut self.files {
            if to_close == 0 {
                break;
            }
            if done_with_turn(f) {
                f.file = None;
                open -= 1;
                to_close -= 1;
            }
        }
        let byte_budget = (cap as u64).saturating_mul(TURN_BYTES as u64);
        let (mut turns, mut bytes, mut progressed) = (0, 0u64, false);
        while open < cap && turns < QUEUED_TURNS_PER_PASS && bytes < byte_budget {
            let Some((i, key)) = self.turn_queue.pop_front() else {
                break;
            };
            let Some(f) = self.files.get_mut(i) else {
                continue;
            };
            if f.meta.key != key || f.file.is_some() || f.finished || f.gone_since.is_some() {
                continue;
            }
            self.ctx.reopen(f);
            if f.file.is_none() {
                continue;
            }
            turns += 1;
            let before = f.framer.read_offset();
            progressed |= self.ctx.read_turn(f)?;
            bytes += f.framer.read_offset().saturating_sub(before);
            if done_with_turn(f) {
                f.file = None;
            } else {
                open += 1;
            }
        }
        // Generations a turn found truncated join the files (after the indices queued).
        self.files.append(&mut self.ctx.retired);
        self.ctx
            .metrics
            .open_files
            .store(self.open_count() as u64, Ordering::Relaxed);
        // Out of budget with files still waiting: the loop goes on without sleeping.
        Ok(progressed || (!self.turn_queue.is_empty() && open < cap))
    }

    /// Decides about files held as possible copies: the copy of a retired generation continues
    /// it; a file that no longer looks like a copy, or was held for `rotate_wait_ms`, is
    /// released and read from its start.
    fn review_held_files(&mut self) {
        let rotate_wait = Duration::from_millis(self.ctx.config.rotate_wait_ms);
        for held in 0..self.files.len() {
            let file = &self.files[held];
            let Some(since) = file.held_since else {
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
                    .lineage(handle, Some(held), None)
                    .unwrap_or((Lineage::New, None)),
                None => (Lineage::New, None),
            };
            self.files[held].copy_proof = proof;
            match lineage {
                Lineage::PossibleCopy if waited => self.ctx.release(&mut self.files[held]),
                Lineage::PossibleCopy | Lineage::Copying | Lineage::Behind => {}
                Lineage::New => self.ctx.release(&mut self.files[held]),
                Lineage::ReadAlready(original) => {
                    let original = Arc::clone(&self.files[original].meta.path);
                    let copy = &mut self.files[held];
                    copy.held_since = None;
                    self.ctx.read_already(copy, &original);
                }
                Lineage::Continues(original) => {
                    let copy = &mut self.files[held];
                    copy.held_since = None;
                    copy.finished = true;
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
    fn release_held(&mut self, release: Release) -> Result<(), Stopped> {
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
            if due && !file.finished {
                self.ctx.emit_parsed(file, false, release)?;
            }
        }
        Ok(())
    }

    /// Gives every open file one turn; true if anything was read.
    fn read_pass(&mut self) -> Result<bool, Stopped> {
        let n = self.files.len();
        if n == 0 {
            return Ok(false);
        }
        self.review_held_files();
        self.pass_started = Some(Instant::now());
        let mut progressed = false;
        for step in 0..n {
            let i = (self.next_first + step) % n;
            progressed |= self.ctx.read_turn(&mut self.files[i])?;
        }
        self.files.append(&mut self.ctx.retired);
        self.next_first = (self.next_first + 1) % n;
        Ok(progressed)
    }

    /// Finishes files that are gone and idle for `rotate_wait_ms`, and forgets finished files
    /// once their lines are all acked.
    fn let_go_of_gone_files(&mut self) -> Result<(), Stopped> {
        let rotate_wait = Duration::from_millis(self.ctx.config.rotate_wait_ms);
        let scanned_at = self.scanned_at;
        let copy_pending = self
            .files
            .iter()
            .any(|f| f.held_since.is_some() && !f.is_compressed());
        for file in &mut self.files {
            // Gone for that long, and (if it can still be read) not grown for that long either;
            // one that cannot be read (retired, closed for the open-file cap) waits as long for
            // a copy of it to show up.
            let waited = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() >= rotate_wait);
            let mut idle_enough =
                waited(file.gone_since) && (file.file.is_none() || waited(file.eof_since));
            if file.retired {
                // Its copy is looked for by scans, which a tailer held up by backpressure may
                // not have run for a while: it waits for one that started after the wait, and
                // for the files held as possible copies (one may be it) to be decided.
                idle_enough &= !copy_pending
                    && file
                        .gone_since
                        .zip(scanned_at)
                        .is_some_and(|(gone, scan)| scan >= gone + rotate_wait);
            }
            if !file.finished && idle_enough {
                self.ctx.finish(file)?;
            }
        }
        let store = &self.ctx.store;
        self.files.retain(|f| {
            let done = f.finished && store.is_fully_acked(f.meta.key);
            if done {
                // Kept as finished: a compressed copy of it may show up and continue it.
                store.retire(f.meta.key);
            }
            !done
        });
        // Files let go are closed: the gauge follows now, not at the next scan.
        let open = self.open_count() as u64;
        self.ctx.metrics.open_files.store(open, Ordering::Relaxed);
        Ok(())
    }
}

impl<E> Context<E>
where
    E: FnMut(Chunk) -> Result<(), Stopped>,
{
    /// Opens the file at `path` and starts tracking it. Its identity is taken from the open
    /// descriptor: the path may have been replaced since it was listed. `None` for a compressed
    /// file still being written (changed within `rotate_wait_ms`): it is taken at a later scan.
    fn start_tracking(
        &self,
        path: &Path,
        first: bool,
    ) -> Result<Option<(TrackedFile, bool)>, OpenError> {
        let mut file = open_regular(path, self.globs.root_of(path), self.config.follow_symlinks)?;
        let md = file.metadata()?;
        // An empty or too short file is taken for text for now: its first read looks again
        // (see `ready_to_read`), so a compressed file created empty is never read as text.
        let sniffed = sniff(&read_head(&file, SNIFF_BYTES)?);
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
            None => read_head(&file, self.config.fingerprint_bytes)?,
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
        let meta = Arc::new(FileMeta::new(key, Arc::clone(&self.name), &*path_text));
        let tracked = TrackedFile {
            meta,
            dev,
            ino,
            fingerprint,
            head,
            file: Some(file),
            framer,
            emitted: offset,
            gone_since: None,
            eof_since: None,
            opened_at: Instant::now(),
            finished: false,
            retired: false,
            held_since: None,
            codec,
            decoder: None,
            compressed_done: false,
            stamp: codec.is_some().then(|| stamp(&md)),
            seen_size: size,
            copy_proof: None,
            continues,
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
    fn register(
        &self,
        tracked: &TrackedFile,
        marks: Vec<crate::source::marks::StreamMark>,
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
    fn holds_the_same(&self, tracked: &TrackedFile, path: &Path) -> bool {
        let Some(codec) = tracked.codec else {
            return false;
        };
        let Ok(file) = open_regular(path, self.globs.root_of(path), self.config.follow_symlinks)
        else {
            return false;
        };
        let sniffed = read_head(&file, SNIFF_BYTES).map(|head| sniff(&head));
        sniffed.is_ok_and(|sniffed| sniffed == Sniffed::Compressed(codec))
            && decompressed_head(&file, codec, self.config.fingerprint_bytes)
                .is_ok_and(|head| head == tracked.head)
    }

    /// Takes a held compressed file whose whole content (`length` bytes) was read from the file
    /// it is a copy of as read to its end, under a record of its own at that end.
    fn compressed_read_already(&self, tracked: &mut TrackedFile, length: u64) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, length, "compressed copy of lines already read from another file: nothing shipped from it");
        add(&self.metrics.copies_skipped, 1);
        tracked.framer = Framer::new(length, self.config.max_line_bytes);
        tracked.emitted = length;
        tracked.held_since = None;
        tracked.copy_proof = None;
        self.register(tracked, Vec::new(), true);
        tracked.compressed_done = true;
        tracked.decoder = None;
        tracked.file = None;
        tracked.eof_since = Some(Instant::now());
    }

    /// Lets a held file be read as a file of its own, from where it stands, under a record of
    /// its own (held files have none).
    fn release(&self, tracked: &mut TrackedFile) {
        tracing::debug!(source = %self.name, file = %tracked.meta.path, "no copy: read as a file of its own");
        tracked.held_since = None;
        tracked.copy_proof = None;
        self.register(tracked, Vec::new(), false);
    }

    /// Takes a file found to be a copy of what was read already from `original` (see
    /// [`Lineage::ReadAlready`]) as read to its current end, under a record of its own: nothing
    /// in it is shipped, what may be appended to it later is.
    fn read_already(&self, tracked: &mut TrackedFile, original: &str) {
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
        self.store.forget(tracked.meta.key);
        let key = new_key(tracked.dev, tracked.ino);
        tracked.meta = Arc::new(FileMeta::new(
            key,
            Arc::clone(&self.name),
            Arc::clone(&tracked.meta.path),
        ));
        tracked.framer = Framer::new(size, self.config.max_line_bytes);
        tracked.framer.set_tail(&tail, &[]);
        tracked.emitted = size;
        tracked.seen_size = size;
        tracked.eof_since = None;
        self.register(tracked, Vec::new(), true);
    }

    /// Continues a held gzip file where the file it is the compressed copy of was let go (that
    /// file's record), with that file's key, or from its start if there is no such record.
    fn resume_compressed(&self, tracked: &mut TrackedFile) {
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
        tracked.held_since = None;
        tracing::info!(
            source = %self.name, file = %tracked.meta.path, original = %record.path,
            offset = record.offset, "compressed copy of a file let go: continuing where it ended"
        );
        self.store.forget(tracked.meta.key);
        tracked.meta = Arc::new(FileMeta::new(
            record.key,
            Arc::clone(&self.name),
            Arc::clone(&tracked.meta.path),
        ));
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

    /// A compressed file resumed where the file it was taken for the compressed copy of was left
    /// holds other bytes before that point: it is read whole, as a file of its own.
    fn not_a_copy_after_all(&self, tracked: &mut TrackedFile) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, offset = tracked.framer.read_offset(), "compressed file starts like a file read before but holds other lines: read whole");
        self.store.forget(tracked.meta.key);
        let key = new_key(tracked.dev, tracked.ino);
        tracked.meta = Arc::new(FileMeta::new(
            key,
            Arc::clone(&self.name),
            Arc::clone(&tracked.meta.path),
        ));
        tracked.framer = Framer::new(0, self.config.max_line_bytes);
        tracked.emitted = 0;
        self.register(tracked, Vec::new(), false);
    }

    /// Reads one turn of a gzip file; true if anything was read. Its end (or damage) is final:
    /// the unterminated last line is emitted and the file closed.
    fn read_compressed_turn(&mut self, tracked: &mut TrackedFile) -> Result<bool, Stopped> {
        if tracked.compressed_done || tracked.finished || tracked.held_since.is_some() {
            return Ok(false);
        }
        let Some(file) = &tracked.file else {
            return Ok(false);
        };
        if tracked.decoder.is_none() {
            let offset = tracked.framer.read_offset();
            let codec = tracked.codec;
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
                Ok((decoder, skipped)) if skipped == offset => tracked.decoder = Some(decoder),
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
            let Some(decoder) = tracked.decoder.as_mut() else {
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
        tracked.compressed_done = true;
        tracked.decoder = None;
        tracked.file = None;
        tracked.eof_since = Some(Instant::now());
        if whole {
            self.emit_framed(tracked, true)?;
        } else {
            // The line the damage cut is never shipped, not even when the file is let go.
            let at = tracked.framer.commit_offset();
            tracked.framer = Framer::new(at, self.config.max_line_bytes);
        }
        Ok(false)
    }

    fn renamed(&self, file: &mut TrackedFile, path: &Path) {
        let path = path.to_string_lossy();
        tracing::debug!(source = %self.name, from = %file.meta.path, to = %path, "file renamed");
        file.meta = Arc::new(FileMeta::new(file.meta.key, Arc::clone(&self.name), &*path));
        self.store
            .update_identity(file.meta.key, &file.meta.path, file.fingerprint);
    }

    /// Notices deletion, truncation and in-place rewrites of an open file, and lets its
    /// fingerprint grow with it.
    fn check_identity(&mut self, tracked: &mut TrackedFile) {
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
            tracked.gone_since = Some(Instant::now());
        }
        if md.len() < tracked.framer.read_offset() || !tracked.fingerprint.matches(&head) {
            self.restart_from_zero(tracked, &head);
        } else if head.len() > tracked.fingerprint.len as usize {
            tracked.fingerprint = Fingerprint::of(&head);
            tracked.head = head;
            self.store
                .update_identity(tracked.meta.key, &tracked.meta.path, tracked.fingerprint);
        }
    }

    /// The file was truncated or rewritten: its lines from offset 0 are a new generation.
    fn restart_from_zero(&mut self, tracked: &mut TrackedFile, head: &[u8]) {
        tracing::info!(source = %self.name, file = %tracked.meta.path, "file truncated or rewritten; reading it again from the start");
        add(&self.metrics.truncations, 1);
        let key = new_key(tracked.dev, tracked.ino);
        let new_meta = Arc::new(FileMeta::new(
            key,
            Arc::clone(&self.name),
            Arc::clone(&tracked.meta.path),
        ));
        let old = TrackedFile {
            meta: std::mem::replace(&mut tracked.meta, new_meta),
            dev: tracked.dev,
            ino: tracked.ino,
            fingerprint: std::mem::replace(&mut tracked.fingerprint, Fingerprint::of(head)),
            head: std::mem::replace(&mut tracked.head, head.to_vec()),
            file: None,
            framer: std::mem::replace(
                &mut tracked.framer,
                Framer::new(0, self.config.max_line_bytes),
            ),
            emitted: std::mem::replace(&mut tracked.emitted, 0),
            gone_since: Some(Instant::now()),
            eof_since: None,
            opened_at: tracked.opened_at,
            finished: false,
            retired: true,
            held_since: None,
            codec: None,
            decoder: None,
            compressed_done: false,
            stamp: None,
            seen_size: tracked.seen_size,
            copy_proof: None,
            continues: None,
        };
        tracked.eof_since = None;
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

    /// Continues a retired generation in its copy, from where the original was left.
    fn adopt_copy(
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
        tracked.retired = false;
        tracked.gone_since = None;
        tracked.eof_since = None;
        tracked.opened_at = Instant::now();
        tracked.meta = Arc::new(FileMeta::new(
            tracked.meta.key,
            Arc::clone(&self.name),
            path_text,
        ));
        self.store.relocate(
            tracked.meta.key,
            &tracked.meta.path,
            tracked.dev,
            tracked.ino,
        );
    }

    /// Reopens a file closed for the open-file cap, checking it is still the same file.
    fn reopen(&mut self, tracked: &mut TrackedFile) {
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
                tracked.gone_since = Some(Instant::now());
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
            tracked.gone_since = Some(Instant::now());
            return;
        }
        tracked.opened_at = Instant::now();
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
            Ok(_) => tracked.file = Some(file),
            Err(e) => {
                tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "cannot seek file")
            }
        }
    }

    /// Reads one turn of a file; true if anything was read.
    fn read_turn(&mut self, tracked: &mut TrackedFile) -> Result<bool, Stopped> {
        if tracked.is_compressed() {
            return self.read_compressed_turn(tracked);
        }
        if tracked.finished || tracked.held_since.is_some() || tracked.file.is_none() {
            return Ok(false);
        }
        let (mut total, mut asked) = (0, false);
        // Identity is checked before every read, not once per turn: an emit may have waited
        // on backpressure for long, and the file may have been rewritten meanwhile.
        while total < TURN_BYTES && self.ready_to_read(tracked) {
            let Some(file) = tracked.file.as_mut() else {
                break;
            };
            let mark = tracked.framer.mark();
            asked = true;
            let got = match tracked.framer.read_from(file, READ_SIZE) {
                Ok(got) => got,
                Err(e) => {
                    add(&self.metrics.read_errors, 1);
                    tracing::warn!(source = %self.name, file = %tracked.meta.path, error = %e, "read failed");
                    break;
                }
            };
            if got == 0 {
                tracked.eof_since.get_or_insert_with(Instant::now);
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

    /// Takes back a read that may have returned another generation's bytes (see
    /// [`read_raced_a_rewrite`]) and reads the file again from its start; the old generation goes
    /// on from where it was (in its copy, if one shows up). True when it did.
    fn took_back_a_newer_generation(&mut self, tracked: &mut TrackedFile, mark: &ReadMark) -> bool {
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
    fn cover_what_was_read(&mut self, tracked: &mut TrackedFile, mark: &ReadMark) {
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
            let mut head = std::mem::take(&mut tracked.head);
            head.extend_from_slice(&read[..(want - have).min(read.len())]);
            tracked.fingerprint = Fingerprint::of(&head);
            tracked.head = head;
            self.store
                .update_identity(tracked.meta.key, &tracked.meta.path, tracked.fingerprint);
            return;
        }
        let Some(file) = &tracked.file else { return };
        match read_head(file, want) {
            Ok(head) if tracked.fingerprint.matches(&head) => {
                tracked.fingerprint = Fingerprint::of(&head);
                tracked.head = head;
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
        let offset = tracked.framer.read_offset();
        if size == offset {
            tracked.eof_since.get_or_insert_with(Instant::now);
            tracked.seen_size = size;
            return false;
        }
        let rewritten = size < offset
            || (tracked.fingerprint.len > 0
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
                tracked.finished = true;
                self.rescan.store(true, Ordering::Release);
                false
            }
        }
    }

    /// Emits what is left of a file that is let go, and closes it.
    fn finish(&mut self, tracked: &mut TrackedFile) -> Result<(), Stopped> {
        if tracked.retired {
            // A generation truncated or rewritten under the agent, with no copy of it: the rest
            // of the line it was reading was destroyed with its content, so that piece is not
            // shipped as if it were a line (what parsing held still goes out).
            self.emit_parsed(tracked, false, Release::All)?;
            let partial = tracked.framer.pending_bytes() as u64;
            let unread = tracked
                .seen_size
                .saturating_sub(tracked.framer.read_offset());
            if partial + unread > 0 {
                // copytruncate's own loss: what the writer added after the agent's last read
                // and before the truncation, with no copy holding it.
                add(&self.metrics.truncation_lost_bytes, partial + unread);
                tracing::warn!(source = %self.name, file = %tracked.meta.path, partial_line_bytes = partial, unread_bytes = unread, "file truncated before the agent read all of it, with no copy of the rest: those bytes are lost");
            }
        } else {
            self.emit_framed(tracked, true)?;
        }
        tracing::debug!(source = %self.name, file = %tracked.meta.path, "file let go");
        tracked.file = None;
        tracked.finished = true;
        Ok(())
    }

    /// Frames what was read and hands it on as one chunk.
    fn emit_framed(&mut self, tracked: &mut TrackedFile, at_end: bool) -> Result<(), Stopped> {
        let release = if at_end {
            Release::All
        } else {
            Release::Due(Instant::now())
        };
        self.emit_parsed(tracked, at_end, release)
    }

    /// Frames what was read, parses it, and hands it on as one chunk; `release` says what
    /// parsing may stop holding back. The chunk's checkpoint stops at the first line held.
    fn emit_parsed(
        &mut self,
        tracked: &mut TrackedFile,
        at_end: bool,
        release: Release,
    ) -> Result<(), Stopped> {
        let mut events = Vec::with_capacity(self.chunk_hint);
        let Framed { data, stats } = if at_end {
            tracked.framer.finish(&mut events)
        } else {
            tracked.framer.frame(&mut events)
        };
        let lines = events.len();
        let key = tracked.meta.key;
        let mut state = self.held.remove(&key).unwrap_or_default();
        let parsed = self.parser.process(&mut state, data, events, release);
        if !state.is_idle() {
            self.held.insert(key, state);
        }
        let mut end_offset = tracked.framer.commit_offset();
        if let Some(hold) = parsed.hold_from {
            end_offset = end_offset.min(hold);
        }
        if parsed.events.is_empty() && end_offset == tracked.emitted {
            return Ok(());
        }
        self.chunk_hint = lines.clamp(16, 1 << 16);
        let m = &self.metrics;
        let counts = parsed.counts;
        add(&m.events_in, lines as u64);
        add(&m.truncated_lines, stats.truncated);
        add(&m.invalid_utf8_lines, stats.invalid_utf8);
        add(&m.parse_errors, counts.parse_errors);
        add(&m.filtered_events, counts.filtered);
        add(&m.multiline_groups, counts.multiline_groups);
        add(&m.multiline_cut, counts.multiline_cut);
        add(&m.timestamp_failures, counts.timestamp_failures);
        self.store
            .emitted_after(key, end_offset, tracked.framer.marks().all());
        tracked.emitted = end_offset;
        // FileMeta is built wherever a file is found, renamed or rewritten; the source's
        // enrichment is attached here, once per FileMeta, rather than at each of those places.
        let enrichment = self.parser.enrichment();
        let attached = Arc::ptr_eq(&tracked.meta.enrichment, enrichment)
            || (enrichment.is_empty() && tracked.meta.enrichment.is_empty());
        if !attached {
            tracked.meta = Arc::new(tracked.meta.with_enrichment(Arc::clone(enrichment)));
        }
        let chunk = Chunk {
            file: Arc::clone(&tracked.meta),
            read_time: now_rfc3339().into(),
            data: parsed.data,
            events: parsed.events,
            fields: parsed.fields,
            end_offset,
        };
        let emit = &mut self.emit;
        self.heartbeat.waiting_on(|| emit(chunk))
    }

    /// When the earliest open multiline group is due.
    fn next_group_deadline(&self) -> Option<Instant> {
        let timeout = self.parser.group_timeout()?;
        self.held.values().filter_map(|s| s.deadline(timeout)).min()
    }
}

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
    let head = read_head(file, head_bytes).ok()?;
    if fingerprint.matches(&head) {
        return None;
    }
    let mut there = vec![0; read.len()];
    file.read_exact_at(&mut there, offset).ok()?;
    (there == read).then_some(head)
}

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
fn original_gone(record: &FileRecord) -> bool {
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

/// The last bytes (at most [`TAIL_BYTES`]) of `file` before `offset`.
fn tail_before(file: &File, offset: u64) -> std::io::Result<Vec<u8>> {
    let from = offset.saturating_sub(TAIL_BYTES as u64);
    let mut tail = vec![0; (offset - from) as usize];
    file.read_exact_at(&mut tail, from)?;
    Ok(tail)
}

/// The offset after the last newline within the last [`TAIL_ALIGN_BYTES`] of the file, so that
/// `read_from: end` starts at a line's start; the size itself if there is none.
fn start_of_last_line(file: &File, size: u64) -> std::io::Result<u64> {
    let start = size.saturating_sub(TAIL_ALIGN_BYTES);
    let mut tail = vec![0; (size - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    Ok(match memchr::memrchr(b'\n', &tail) {
        Some(newline) => start + newline as u64 + 1,
        None => size,
    })
}

/// A key no other file generation has: ids stay unique across truncations and inode reuse.
fn new_key(dev: u64, ino: u64) -> FileKey {
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

/// The current time in RFC 3339 with microseconds, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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

    #[test]
    fn scans_follow_the_interval_and_requests_but_never_take_most_of_the_time() {
        let ms = Duration::from_millis;
        // (scan_interval, last scan's duration, requested, next scan due after its start)
        let cases = [
            (ms(1_000), ms(1), false, ms(1_000)),
            (ms(1_000), ms(1), true, ms(5)),
            (ms(1_000), ms(0), true, ms(0)),
            // Slow scans space themselves out, requested or not.
            (ms(1_000), ms(250), false, ms(1_250)),
            (ms(1_000), ms(250), true, ms(1_250)),
            (ms(1_000), ms(100), true, ms(500)),
            (ms(100), ms(100), false, ms(500)),
        ];
        let start = Instant::now();
        for (every, took, requested, want) in cases {
            let mut schedule = ScanSchedule::new(every);
            assert!(schedule.is_first());
            assert_eq!(
                schedule.next_at(requested),
                None,
                "the first scan is due at once"
            );
            schedule.scanned(start, took);
            assert!(!schedule.is_first());
            assert_eq!(
                schedule.next_at(requested),
                Some(start + want),
                "every {every:?}, took {took:?}, requested {requested}"
            );
        }
    }

    #[test]
    fn keys_differ_for_the_same_inode() {
        assert_ne!(new_key(1, 2), new_key(1, 2));
    }
}
