//! Checkpoints: how far each file is delivered, tracked from acks and kept on disk.
//!
//! The tailer registers every file it reads ([`CheckpointStore::track`]) and says how far it has
//! handed lines on ([`CheckpointStore::emitted`]); each sink acks, per file, the offset its
//! deliveries reached ([`CheckpointStore::ack`]). A file's checkpoint is the least offset among
//! the sinks its source routes to, so it never passes a line some sink has not delivered.
//!
//! On disk the store is one JSON file in `data_dir`, written to a temporary file, fsynced and
//! renamed over the old one, so a crash leaves either the old or the new version. A file that
//! cannot be read or parsed is moved aside and reported; the agent then starts without
//! checkpoints (reading files from their start: duplicates, never loss) instead of crash-looping.
//!
//! # Layout
//! - `record`: what is remembered of a file (its record, fingerprint and stream marks);
//! - `store`: the store every source, sink task, the API and replay share, in memory;
//! - `tracked`: a tracked file's entry in the store, and `tracked_map` the entries by key;
//! - `disk`: the checkpoint file, read at start and written atomically;
//! - `snapshot`: what a write reads of the store, a chunk of records at a time;
//! - [`writer`]: the loop that writes it soon after deliveries.
//!
//! It sits below sources, the pipeline, the API and replay, and imports nothing from them.

mod disk;
mod record;
mod snapshot;
mod store;
mod tracked;
mod tracked_map;
pub mod writer;

use std::io;
use std::path::PathBuf;

pub use record::{FilePosition, FileRecord, Fingerprint, MARK_BYTES, MARKS_PERSISTED, StreamMark};
pub use store::{
    CheckpointStore, DORMANT_EXPIRY_SECS, LoadOutcome, MAX_DORMANT, MAX_RETIRED, WriteCost,
};

/// Index of a sink in the running pipeline; as the store counts acks, a sink reached along
/// one branch of a source's transforms ([`ack_id`]).
pub type SinkId = usize;

/// The id under which sink `sink` acks the chunks that reached it on `lane` of their
/// source's transforms (lane 0, the source as read: the sink's own id). The store waits for
/// every such pair, so a sink that gets a source's events along two paths holds the
/// checkpoint back until it delivered both.
pub fn ack_id(sink: SinkId, lane: u32) -> SinkId {
    sink | (lane as usize) << LANE_SHIFT
}

/// Where an ack id keeps its lane: sink ids stay below it.
const LANE_SHIFT: u32 = 32;

// Ack ids keep the lane above the sink's id: a target with a narrower `usize` would merge lanes.
const _: () = assert!(usize::BITS >= 64);

/// True when two ack ids are lanes of the same sink.
pub(crate) fn same_sink(a: SinkId, b: SinkId) -> bool {
    let sink_bits = (1usize << LANE_SHIFT) - 1;
    a & sink_bits == b & sink_bits
}

/// Errors of the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// `data_dir` could not be created.
    #[error("data_dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the checkpoint file failed.
    #[error("writing checkpoints to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

#[cfg(test)]
mod tests;
