//! A batch: what a sink delivers at once, as ranges of shared chunks in the order they were
//! read. It sits beside the event so that sinks, which deliver batches, need nothing of the
//! pipeline that makes them.
//!
//! Invariant: a batch refers to events, never copies them; its parts are in read order, which
//! is the order their acks advance checkpoints.

use std::ops::Range;
use std::sync::Arc;

use super::{Chunk, Event};

/// Events of one chunk that belong to a batch.
#[derive(Debug, Clone)]
pub struct BatchPart {
    /// The chunk.
    pub chunk: Arc<Chunk>,
    /// Which of its events.
    pub range: Range<usize>,
}

/// What a sink delivers at once: ranges of chunks, in the order they were read.
#[derive(Debug, Default)]
pub struct Batch {
    /// The parts, in order.
    pub parts: Vec<BatchPart>,
    /// Number of events.
    pub events: usize,
    /// Bytes of messages.
    pub bytes: usize,
}

impl Batch {
    /// Every event with the chunk it belongs to, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Chunk, &Event)> {
        self.parts.iter().flat_map(|part| {
            part.chunk.events[part.range.clone()]
                .iter()
                .map(move |event| (&*part.chunk, event))
        })
    }

    /// True when the batch holds no part at all (not even an empty chunk to ack).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}
