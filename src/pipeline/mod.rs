//! The pipeline between sources and sinks: routing, bounded buffers, batching, retries, acks.
//!
//! Each source gets a [`Router`] holding the buffer of every sink that takes the source as an
//! input; a chunk is shared (`Arc`) by all of them. Each sink runs a [`sink_task::SinkTask`]
//! that batches, delivers with retries and acks per file towards the checkpoints.

pub mod batcher;
pub mod buffer;
pub mod retry;
pub mod sink_task;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batcher::Batcher;
use buffer::{BufferSender, Closed};
use sink_task::SinkTask;
use tokio::task::JoinHandle;

use crate::event::Chunk;
use crate::health::SinkHealth;
use crate::metrics::Metrics;
use crate::sink::{BuildError, SinkConfig};
use crate::source::checkpoint::{CheckpointStore, SinkId};

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

/// The running sinks of a configuration: their buffers' senders and ids by name, and their
/// tasks.
pub struct SinkSet {
    /// The sender of each sink's buffer, by sink name.
    pub senders: BTreeMap<String, BufferSender>,
    /// Each sink's id (its index), by name, for acks.
    pub ids: BTreeMap<String, SinkId>,
    /// Whether each sink's deliveries go through, by name (for readiness).
    pub health: BTreeMap<String, Arc<SinkHealth>>,
    /// One task per sink; each ends once its buffer is closed and everything in it delivered.
    pub tasks: Vec<JoinHandle<()>>,
}

impl SinkSet {
    /// Builds every sink and spawns its task; dead letters go under `data_dir`.
    pub fn spawn(
        sinks: &BTreeMap<String, SinkConfig>,
        data_dir: &Path,
        store: &Arc<CheckpointStore>,
        metrics: &Metrics,
    ) -> Result<SinkSet, BuildError> {
        let mut set = SinkSet {
            senders: BTreeMap::new(),
            ids: BTreeMap::new(),
            health: BTreeMap::new(),
            tasks: Vec::new(),
        };
        for (id, (name, sink_config)) in sinks.iter().enumerate() {
            let sink_health = Arc::new(SinkHealth::default());
            let sink = sink_config
                .kind
                .build(name, &sink_config.common, &sink_health)?;
            let sink_metrics = metrics.sink(name);
            let (tx, rx) = buffer::channel(sink_config.common.buffer, Arc::clone(&sink_metrics));
            let task = SinkTask {
                id,
                name: name.clone(),
                sink,
                buffer: rx,
                batcher: Batcher::new(sink_config.common.batch),
                batch_timeout: Duration::from_millis(sink_config.common.batch.timeout_ms),
                retry: sink_config.common.retry,
                store: Arc::clone(store),
                metrics: sink_metrics,
                health: Arc::clone(&sink_health),
                dead_letter_path: data_dir.join("dead_letter").join(format!("{name}.ndjson")),
            };
            set.tasks.push(tokio::spawn(task.run()));
            set.senders.insert(name.clone(), tx);
            set.ids.insert(name.clone(), id);
            set.health.insert(name.clone(), sink_health);
        }
        Ok(set)
    }

    /// A router to the named sinks, and their ids.
    pub fn route_to(&self, sink_names: &[&str]) -> (Router, Vec<SinkId>) {
        let router = Router::new(
            sink_names
                .iter()
                .filter_map(|s| self.senders.get(*s).cloned())
                .collect(),
        );
        let ids = sink_names
            .iter()
            .filter_map(|s| self.ids.get(*s).copied())
            .collect();
        (router, ids)
    }
}
