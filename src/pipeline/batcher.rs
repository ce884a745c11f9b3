//! Batching: chunks in, batches of at most `max_events` events and `max_bytes` message bytes out.
//!
//! A batch refers to ranges of shared chunks (no event is copied); a chunk larger than what a
//! batch has room for is spread over several batches. A batch that is not full is closed by
//! `timeout_ms` counted from its first event, which the sink task enforces.

use std::sync::Arc;

use crate::event::{Batch, BatchPart, Chunk};
use crate::sink::delivery::BatchConfig;

/// Cuts a stream of chunks into batches.
#[derive(Debug)]
pub struct Batcher {
    config: BatchConfig,
    current: Batch,
    /// A chunk being spread over batches, and the index of its first event not yet batched.
    pending: Option<(Arc<Chunk>, usize)>,
}

impl Batcher {
    /// A batcher with the given limits.
    pub fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            current: Batch::default(),
            pending: None,
        }
    }

    /// True when a chunk is still being spread: call [`Batcher::next_full`] before pushing.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes in a chunk. Call [`Batcher::next_full`] until it returns `None` before the next
    /// push.
    pub fn push(&mut self, chunk: Arc<Chunk>) {
        debug_assert!(self.pending.is_none());
        self.pending = Some((chunk, 0));
    }

    /// Moves pending events into the current batch and returns it when it is full.
    pub fn next_full(&mut self) -> Option<Batch> {
        let (chunk, start) = self.pending.take()?;
        let total = chunk.events.len();
        let room_events = self.config.max_events - self.current.events;
        let mut end = start;
        let mut bytes = 0;
        while end < total && end - start < room_events {
            let len = chunk.events[end].len as usize;
            if self.current.bytes + bytes + len > self.config.max_bytes
                && self.current.events + (end - start) > 0
            {
                break;
            }
            bytes += len;
            end += 1;
        }
        if end > start || total == 0 {
            self.current.parts.push(BatchPart {
                chunk: Arc::clone(&chunk),
                range: start..end,
            });
            self.current.events += end - start;
            self.current.bytes += bytes;
        }
        let full = end < total
            || self.current.events >= self.config.max_events
            || self.current.bytes >= self.config.max_bytes;
        if end < total {
            self.pending = Some((chunk, end));
        }
        full.then(|| self.take())
    }

    /// True when nothing at all waits in the current batch.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// The oldest chunk with events not yet handed out in a batch.
    pub fn oldest_chunk(&self) -> Option<&Arc<Chunk>> {
        self.current
            .parts
            .first()
            .map(|part| &part.chunk)
            .or(self.pending.as_ref().map(|(chunk, _)| chunk))
    }

    /// Takes the current batch, full or not.
    pub fn take(&mut self) -> Batch {
        std::mem::take(&mut self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};

    fn chunk(sizes: &[usize]) -> Arc<Chunk> {
        let messages: Vec<Vec<u8>> = sizes.iter().map(|&size| vec![b'x'; size]).collect();
        let lines: Vec<(&[u8], u64)> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (&m[..], i as u64 * 100))
            .collect();
        let file = FileMeta::new(1, "s", "/p");
        Arc::new(testing::chunk(file, &lines, sizes.len() as u64 * 100))
    }

    /// Feeds the chunks, then takes the last batch; returns each batch's event count.
    fn batch_sizes(config: BatchConfig, chunks: &[&[usize]]) -> Vec<usize> {
        let mut batcher = Batcher::new(config);
        let mut sizes = Vec::new();
        for sizes_of_chunk in chunks {
            batcher.push(chunk(sizes_of_chunk));
            while let Some(batch) = batcher.next_full() {
                sizes.push(batch.events);
            }
            assert!(!batcher.has_pending());
        }
        if !batcher.is_empty() {
            sizes.push(batcher.take().events);
        }
        sizes
    }

    #[test]
    fn batches_table() {
        let config = |max_events, max_bytes| BatchConfig {
            max_events,
            max_bytes,
            timeout_ms: 10,
        };
        // (config, chunks as message sizes, expected events per batch)
        type Case = (BatchConfig, &'static [&'static [usize]], &'static [usize]);
        let cases: &[Case] = &[
            (config(3, 1000), &[&[1, 1, 1, 1, 1, 1, 1]], &[3, 3, 1]),
            (config(3, 1000), &[&[1], &[1], &[1], &[1]], &[3, 1]),
            (config(10, 5), &[&[2, 2, 2, 2]], &[2, 2]),
            // One event larger than max_bytes still goes, alone.
            (config(10, 5), &[&[9, 1]], &[1, 1]),
            (config(10, 5), &[&[1, 9]], &[1, 1]),
            (config(10, 1000), &[&[1, 1], &[], &[1]], &[3]),
            (config(1, 1000), &[&[1, 1, 1]], &[1, 1, 1]),
        ];
        for (config, chunks, want) in cases {
            assert_eq!(&batch_sizes(*config, chunks), want, "{config:?} {chunks:?}");
        }
    }

    #[test]
    fn events_keep_their_order_and_empty_chunks_are_carried_for_acks() {
        let mut batcher = Batcher::new(BatchConfig {
            max_events: 2,
            max_bytes: 1000,
            timeout_ms: 10,
        });
        let mut offsets = Vec::new();
        let mut parts = 0;
        for sizes in [&[1usize, 1, 1][..], &[][..], &[1][..]] {
            batcher.push(chunk(sizes));
            while let Some(batch) = batcher.next_full() {
                offsets.extend(batch.iter().map(|(_, e)| e.offset));
                parts += batch.parts.len();
            }
        }
        let last = batcher.take();
        offsets.extend(last.iter().map(|(_, e)| e.offset));
        parts += last.parts.len();
        assert_eq!(offsets, vec![0, 100, 200, 0]);
        assert_eq!(parts, 4, "the empty chunk is a part of its own");
    }
}
