//! The journal of a network source: what senders hand over is appended to segment files under
//! `data_dir/journal/<source>/`, one JSON record a line, before the sender is told it arrived.
//! The source's tailer then ships the segments as it ships any file (offsets, acks,
//! checkpoints, dead letters), and [`retention`] deletes a segment once every sink delivered it.
//!
//! Invariant: an append is answered `Ok` only once its bytes are in a segment, and synced to
//! disk under `durability: fsync`; the bytes on disk and queued never pass `max_bytes`, so a
//! sink that is down turns into backpressure on the senders, never into unbounded growth.

pub mod retention;
mod segment;
mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::SourceMetrics;
pub use segment::{HEADER_MAX_BYTES, SEGMENT_SUFFIX};

/// `journal:` of a network source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// The most bytes the journal holds on disk; past it senders are pushed back.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size; a segment is deleted whole.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// When a sender hears success.
    #[serde(default)]
    pub durability: Durability,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            durability: Durability::default(),
        }
    }
}

fn default_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_segment_bytes() -> u64 {
    8 * 1024 * 1024
}

/// When an append is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Once written and synced to disk (`fsync`), shared by the appends that arrive meanwhile
    /// (group commit): what was answered survives a crash of the agent or of the machine.
    #[default]
    Fsync,
    /// Once written: what was answered survives a crash of the agent, not of the machine.
    None,
}

impl JournalConfig {
    /// Checks the sizes; the error says which key is wrong and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.segment_bytes < 4096 {
            return Err(("segment_bytes", "must be at least 4096".to_owned()));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err((
                "max_bytes",
                format!(
                    "must be at least twice segment_bytes ({})",
                    self.segment_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Why an append was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The journal holds `max_bytes`: the sinks are behind (or down).
    #[error("the journal is full ({max_bytes} bytes): the sinks are behind")]
    Full {
        /// The cap.
        max_bytes: u64,
    },
    /// One append larger than the journal could ever hold.
    #[error("{size} bytes is more than the journal holds ({max_bytes} bytes)")]
    TooLarge {
        /// The append's size.
        size: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// The source is stopping.
    #[error("the journal is closed: the source is stopping")]
    Closed,
    /// Writing or syncing a segment failed (the disk is full, say).
    #[error("writing the journal failed: {0}")]
    Write(String),
    /// The journal's directory could not be made ready.
    #[error("journal directory {path}: {reason}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl JournalError {
    fn open(path: &Path, error: io::Error) -> Self {
        JournalError::Open {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// How long a sender waiting for room sleeps at most between looks (room is also signalled).
const ROOM_POLL: Duration = Duration::from_millis(200);

/// Appends queued for the writer at most; with the byte cap this bounds what waits in memory.
const QUEUE: usize = 256;

/// What the writer and the senders share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes on disk plus bytes queued for the writer.
    used: AtomicU64,
    /// The segment being written (`u64::MAX` before the first): retention leaves it alone.
    writing: AtomicU64,
    /// Signalled when retention frees room.
    room: Notify,
    /// Signalled when a sender finds the journal full: retention looks at once.
    wanted: Notify,
}

impl Shared {
    /// Gives `size` bytes of room back (never below zero, whatever a disk error left).
    fn release(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(size))
            });
    }
}

/// One append handed to the writer.
struct Append {
    data: Vec<u8>,
    done: Option<oneshot::Sender<Result<(), JournalError>>>,
}

/// The sending side of a journal, cloned by every listener of the source. The writer thread
/// ends once every clone is dropped, after writing what was queued.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    appends: mpsc::Sender<Append>,
    metrics: Arc<SourceMetrics>,
}

/// The writer thread of a journal, and what retention needs of it.
pub struct JournalWriter {
    thread: std::thread::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Opens the journal in `dir` (made if missing): a last segment cut short by a crash loses
    /// its partial record (never answered), and a new segment is started at the first append.
    pub fn open(
        dir: &Path,
        source: &str,
        config: JournalConfig,
        metrics: Arc<SourceMetrics>,
    ) -> Result<(Journal, JournalWriter), JournalError> {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::open(dir, e))?;
        let found = segment::recover(dir).map_err(|e| JournalError::open(dir, e))?;
        metrics.journal_bytes.store(found.bytes, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            max_bytes: config.max_bytes,
            used: AtomicU64::new(found.bytes),
            writing: AtomicU64::new(u64::MAX),
            room: Notify::new(),
            wanted: Notify::new(),
        });
        let (appends, queue) = mpsc::channel(QUEUE);
        let writer = writer::Writer::new(Arc::clone(&shared), config, found.next_seq, &metrics);
        let thread = std::thread::Builder::new()
            .name(format!("journal-{source}"))
            .spawn(move || writer.run(queue))
            .map_err(|e| JournalError::open(dir, e))?;
        Ok((
            Journal {
                shared: Arc::clone(&shared),
                appends,
                metrics,
            },
            JournalWriter { thread, shared },
        ))
    }

    /// The largest append taken: half the journal, so that one append never waits for room
    /// the journal cannot make.
    pub fn max_append(&self) -> usize {
        usize::try_from(self.shared.max_bytes / 2).unwrap_or(usize::MAX)
    }

    /// Takes room for `size` bytes, or says why not.
    fn reserve(&self, size: u64) -> Result<(), JournalError> {
        let max_bytes = self.shared.max_bytes;
        if size > self.max_append() as u64 {
            return Err(JournalError::TooLarge { size, max_bytes });
        }
        let before = self.shared.used.fetch_add(size, Ordering::AcqRel);
        // Room is left for the header of the next segment, which the writer adds unasked.
        if before + size > max_bytes.saturating_sub(HEADER_MAX_BYTES) {
            self.shared.release(size);
            self.shared.wanted.notify_one();
            return Err(JournalError::Full { max_bytes });
        }
        Ok(())
    }

    /// Appends `data` (whole records, each ending in a newline) and returns once it is durable;
    /// `Full` at once when there is no room.
    pub async fn append(&self, data: Vec<u8>) -> Result<(), JournalError> {
        let (done, answer) = oneshot::channel();
        self.put(data, Some(done), false).await?;
        answer.await.unwrap_or(Err(JournalError::Closed))
    }

    /// Appends `data` once there is room, without waiting for it to be durable: for senders
    /// that are never answered (syslog over TCP and Unix sockets), whom waiting pushes back.
    pub async fn append_when_room(&self, data: Vec<u8>) -> Result<(), JournalError> {
        self.put(data, None, true).await
    }

    /// Appends `data` if there is room now, without waiting for it to be durable: for
    /// datagrams, which are dropped (and counted by the caller) when there is none.
    pub async fn append_if_room(&self, data: Vec<u8>) -> Result<(), JournalError> {
        self.put(data, None, false).await
    }

    /// Hands `data` to the writer once it has a place in the queue and room in the journal
    /// (waiting for room with `wait`). The place is taken first and the room then handed over
    /// at once: a sender that gives up while it waits holds neither.
    async fn put(
        &self,
        data: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), JournalError>>>,
        wait: bool,
    ) -> Result<(), JournalError> {
        let size = data.len() as u64;
        loop {
            let place = self
                .appends
                .reserve()
                .await
                .map_err(|_| JournalError::Closed)?;
            let room = self.shared.room.notified();
            match self.reserve(size) {
                Ok(()) => {
                    place.send(Append { data, done });
                    return Ok(());
                }
                Err(JournalError::Full { .. }) if wait => {
                    drop(place);
                    let _ = tokio::time::timeout(ROOM_POLL, room).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The counters of the journal's source.
    pub fn metrics(&self) -> &Arc<SourceMetrics> {
        &self.metrics
    }
}

impl JournalWriter {
    /// Waits (blocking) for the writer to write what was queued; every [`Journal`] must be
    /// dropped first.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests;
