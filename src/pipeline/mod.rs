//! The pipeline between sources and sinks: routing, bounded buffers, batching, retries, acks.
//!
//! Each source gets a [`Router`] holding the buffer of every sink that takes the source as an
//! input; a chunk is shared (`Arc`) by all of them. Each sink runs a [`sink_task::SinkTask`]
//! that batches, delivers with retries and acks per file towards the checkpoints.

pub mod batcher;
pub mod buffer;
pub mod retry;
pub mod sink_task;

use std::sync::Arc;

use buffer::{BufferSender, Closed};

use crate::event::Chunk;

/// Hands a source's chunks to each of its sinks.
#[derive(Debug, Clone)]
pub struct Router {
    outputs: Vec<BufferSender>,
}

impl Router {
    /// A router to the given sink buffers.
    pub fn new(outputs: Vec<BufferSender>) -> Self {
        Router { outputs }
    }

    /// Sends a chunk to every sink, waiting while a blocking buffer is full.
    pub async fn send(&self, chunk: Chunk) -> Result<(), Closed> {
        let chunk = Arc::new(chunk);
        for output in &self.outputs {
            output.send(Arc::clone(&chunk)).await?;
        }
        Ok(())
    }
}
