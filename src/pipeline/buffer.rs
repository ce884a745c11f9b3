//! The bounded buffer in front of each sink.
//!
//! Capacity is counted in events: a semaphore holds `max_events` permits, a chunk takes one per
//! event when it enters (a chunk larger than the whole buffer takes all of them) and the sink
//! task gives them back once the events are delivered. So the bound covers everything between
//! the tailer and the sink's destination, including the batch in flight. When the buffer is full,
//! `block` makes the tailer wait (the file on disk is the buffer), and `drop_newest` drops the
//! chunk for this sink and counts its events.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use super::batcher::Batch;
use crate::config::ConfigError;
use crate::event::Chunk;
use crate::metrics::{SinkMetrics, add};

/// What to do with new events when a sink's buffer is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading until there is room: nothing is lost.
    #[default]
    Block,
    /// Drop the new events for this sink, counted in `dropped_buffer_full`.
    DropNewest,
}

/// `buffer:` settings of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Events held at most between the sources and the sink's destination.
    pub max_events: usize,
    /// What happens when that many are held.
    pub when_full: WhenFull,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_events: 10_000,
            when_full: WhenFull::Block,
        }
    }
}

impl BufferConfig {
    /// Checks the values; `key` is the sink's.
    pub fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.max_events == 0 || self.max_events > Semaphore::MAX_PERMITS {
            return Err(ConfigError::invalid(
                format!("{key}.buffer.max_events"),
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            ));
        }
        Ok(())
    }
}

/// The buffer is closed: its sink is gone or the agent is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sink buffer closed")]
pub struct Closed;

/// The sending side, held by the router of every source that feeds the sink.
#[derive(Debug, Clone)]
pub struct BufferSender {
    tx: mpsc::Sender<Arc<Chunk>>,
    permits: Arc<Semaphore>,
    config: BufferConfig,
    metrics: Arc<SinkMetrics>,
}

/// The receiving side, held by the sink task.
#[derive(Debug)]
pub struct BufferReceiver {
    rx: mpsc::Receiver<Arc<Chunk>>,
    permits: Arc<Semaphore>,
    max_events: usize,
    metrics: Arc<SinkMetrics>,
}

/// A buffer of `config.max_events` events.
pub fn channel(config: BufferConfig, metrics: Arc<SinkMetrics>) -> (BufferSender, BufferReceiver) {
    // Chunks without events (acks of skipped bytes) take a slot but no permit; the channel's own
    // bound keeps those bounded too.
    let (tx, rx) = mpsc::channel(config.max_events.clamp(16, 4096));
    let permits = Arc::new(Semaphore::new(config.max_events));
    let sender = BufferSender {
        tx,
        permits: Arc::clone(&permits),
        config,
        metrics: Arc::clone(&metrics),
    };
    let receiver = BufferReceiver {
        rx,
        permits,
        max_events: config.max_events,
        metrics,
    };
    (sender, receiver)
}

/// Permits a chunk of `events` events takes in a buffer of `max_events`.
fn permits_for(events: usize, max_events: usize) -> u32 {
    u32::try_from(events.min(max_events)).unwrap_or(u32::MAX)
}

impl BufferSender {
    /// Hands a chunk to the sink, waiting for room (`block`) or dropping it (`drop_newest`).
    pub async fn send(&self, chunk: Arc<Chunk>) -> Result<(), Closed> {
        let n = permits_for(chunk.events.len(), self.config.max_events);
        match self.config.when_full {
            WhenFull::Block => self
                .permits
                .acquire_many(n)
                .await
                .map_err(|_| Closed)?
                .forget(),
            WhenFull::DropNewest => match self.permits.try_acquire_many(n) {
                Ok(permit) => permit.forget(),
                Err(tokio::sync::TryAcquireError::Closed) => return Err(Closed),
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    add(&self.metrics.dropped_buffer_full, chunk.events.len() as u64);
                    // The dropped events still move the checkpoint once what came before them
                    // is delivered: send an empty chunk that carries only the offset. If even
                    // that finds no room, a later chunk of the file carries it instead.
                    let _ = self.tx.try_send(Arc::new(Chunk {
                        file: Arc::clone(&chunk.file),
                        read_time: Arc::clone(&chunk.read_time),
                        data: bytes::Bytes::new(),
                        events: Vec::new(),
                        end_offset: chunk.end_offset,
                    }));
                    return Ok(());
                }
            },
        }
        add(&self.metrics.buffered_events, chunk.events.len() as u64);
        self.tx.send(chunk).await.map_err(|_| Closed)
    }

    /// Wakes every sender waiting for room with [`Closed`]: the agent is giving up.
    pub fn close(&self) {
        self.permits.close();
    }
}

impl BufferReceiver {
    /// The next chunk, or `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Arc<Chunk>> {
        self.rx.recv().await
    }

    /// Gives back the room of the events of `batch`, delivered or given up on. A chunk's
    /// permits come back with its last event, so one spread over batches is counted once.
    pub fn release(&self, batch: &Batch) {
        for part in &batch.parts {
            self.metrics
                .buffered_events
                .fetch_sub(part.range.len() as u64, Ordering::Relaxed);
            let events = part.chunk.events.len();
            if part.range.end == events {
                self.permits
                    .add_permits(permits_for(events, self.max_events) as usize);
            }
        }
    }
}
