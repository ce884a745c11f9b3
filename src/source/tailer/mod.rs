//! The file tailer of one source: discover, open, read, frame, hand on, let go.
//!
//! # Layout
//! One file per concern, each guarding one invariant (said in its opening doc):
//! - here, the loop and letting files go: a drain reads every file to its end before the
//!   tailer stops, and a file is let go only once every line of it is acknowledged;
//! - `scan`: scanning the globs, at most a fifth of the time, each problem logged once;
//! - `slots`: open slots, never more than `max_open_files` descriptors, every file its turn;
//! - `tracking`: starting to track a file, which resumes from the right record;
//! - `lifecycle`: a tracked file's phase (reading, held as a possible copy, retired, exhausted,
//!   finished), changed only by the transitions there;
//! - `tracked`: the tracked file and its reads, only while its phase lets it, at most a turn;
//! - `generation`: truncations and rewrites, an offset belonging to one generation;
//! - `head`: what a tracked file keeps of its head, the whole of it while it may grow;
//! - `lineage`: copies, which continue their original and are never read twice;
//! - `compressed`: gzip files, read once, continuing the file they are the rotation of;
//! - `emit`: parsing and handing on, a checkpoint never passing a line held back.
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

mod compressed;
mod emit;
mod generation;
mod head;
mod inode_index;
mod lifecycle;
mod lineage;
mod moment;
mod scan;
mod slots;
mod tracked;
mod tracking;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use self::moment::Moment;
use super::FileSourceConfig;
use super::discovery::Globs;
use super::watcher::Watcher;
use crate::checkpoint::{CheckpointStore, SinkId};
use crate::event::{Chunk, FileKey};
use crate::health::Heartbeat;
use crate::metrics::SourceMetrics;
use crate::parse::SourceParser;
use crate::parse::assemble::{FileState, Release};
use scan::{Reports, ScanSchedule};
use tracked::TrackedFile;

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

/// What a tailer hands its chunks to: it blocks while the pipeline is full (that is how
/// backpressure stops reading) and says [`Stopped`] once the pipeline takes no more.
pub trait Emit: FnMut(Chunk) -> Result<(), Stopped> {}

impl<F: FnMut(Chunk) -> Result<(), Stopped>> Emit for F {}

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
    scanned_at: Option<Moment>,
    /// When the last read pass started: a file held as a possible copy waits for one after its
    /// `rotate_wait_ms`.
    pass_started: Option<Moment>,
    /// Files with unread data that found no free slot at the last sharing of slots (index and
    /// key, checked when taken: indices move when files are forgotten): they take the slots of
    /// files read to their end between scans, so that thousands of files waiting do not take a
    /// scan interval per `max_open_files` of them.
    turn_queue: VecDeque<(usize, FileKey)>,
    reports: Reports,
}

impl<E: Emit> Tailer<E> {
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
        let parser = SourceParser::new(config.parsing());
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

    /// Gives every open file one turn; true if anything was read.
    fn read_pass(&mut self) -> Result<bool, Stopped> {
        let n = self.files.len();
        if n == 0 {
            return Ok(false);
        }
        self.review_held_files();
        self.pass_started = Some(Moment::now());
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
        let copy_pending = self.files.iter().any(|f| f.is_held() && !f.is_compressed());
        for file in &mut self.files {
            // Gone for that long, and (if it can still be read) not grown for that long either;
            // one that cannot be read (retired, closed for the open-file cap) waits as long for
            // a copy of it to show up.
            let waited = |at: Option<Moment>| at.is_some_and(|at| at.elapsed() >= rotate_wait);
            let mut idle_enough =
                waited(file.gone_since) && (file.file.is_none() || waited(file.eof_since));
            if file.is_retired() {
                // Its copy is looked for by scans, which a tailer held up by backpressure may
                // not have run for a while: it waits for one that started after the wait, and
                // for the files held as possible copies (one may be it) to be decided.
                idle_enough &= !copy_pending
                    && file
                        .gone_since
                        .zip(scanned_at)
                        .is_some_and(|(gone, scan)| scan >= gone + rotate_wait);
            }
            if !file.is_finished() && idle_enough {
                self.ctx.finish(file)?;
            }
        }
        let store = &self.ctx.store;
        self.files.retain(|f| {
            let done = f.is_finished() && store.is_fully_acked(f.meta.key);
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
