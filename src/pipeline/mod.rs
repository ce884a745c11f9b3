//! The pipeline between sources and sinks: routing, bounded buffers, batching, retries, acks.
//!
//! Each source gets a [`Router`] holding the buffer of every sink that takes the source as an
//! input; a chunk is shared (`Arc`) by all of them. A config reload changes a router's sinks in
//! place, so the source's tailer goes on as it was. Each sink runs a [`sink_task::SinkTask`]
//! that batches, delivers with retries and acks per file towards the checkpoints.

pub mod batcher;
pub mod buffer;
mod deliver;
pub mod retry;
pub mod sink_task;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use buffer::{BufferSender, Closed};
use sink_task::{Reconfigure, SinkTask};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::{CheckpointStore, SinkId};
use crate::event::Chunk;
use crate::health::SinkHealth;
use crate::metrics::Metrics;
use crate::sink::{BuildError, Sink, SinkConfig};

/// The buffers a source's chunks go to, with the sink each belongs to.
type Outputs = Arc<Vec<(SinkId, BufferSender)>>;

/// Hands a source's chunks to each of its sinks. Clones share their outputs and their stop.
#[derive(Debug, Clone)]
pub struct Router {
    outputs: Arc<RwLock<Outputs>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Router {
    /// A router to the given sinks' buffers.
    pub fn new(outputs: Vec<(SinkId, BufferSender)>) -> Self {
        Router {
            outputs: Arc::new(RwLock::new(Arc::new(outputs))),
            stop: Arc::new(watch::Sender::new(false)),
        }
    }

    fn current(&self) -> Outputs {
        // The guarded value is replaced whole, so a poisoned lock still holds a valid one.
        let outputs = self.outputs.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&outputs)
    }

    /// The sinks the router hands chunks to now.
    pub fn sinks(&self) -> Vec<SinkId> {
        self.current().iter().map(|(id, _)| *id).collect()
    }

    /// Routes to `outputs` from the next chunk on (a chunk being sent goes where it started).
    pub fn set_outputs(&self, outputs: Vec<(SinkId, BufferSender)>) {
        let mut current = self.outputs.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(outputs);
    }

    /// Refuses every chunk from now on, one waiting for room included: the source is being
    /// stopped and must not wait for its sinks.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Sends a chunk to every sink, waiting while a blocking buffer is full. A sink that is
    /// closed is skipped when a reload has taken it out of the routes meanwhile.
    pub async fn send(&self, chunk: Chunk) -> Result<(), Closed> {
        let chunk = Arc::new(chunk);
        let mut stopped = self.stop.subscribe();
        for (id, output) in self.current().iter() {
            if *stopped.borrow_and_update() {
                return Err(Closed);
            }
            let sent = tokio::select! {
                sent = output.send(Arc::clone(&chunk)) => sent,
                _ = stopped.wait_for(|stopped| *stopped) => return Err(Closed),
            };
            if sent.is_err() && self.current().iter().any(|(routed, _)| routed == id) {
                return Err(Closed);
            }
        }
        Ok(())
    }
}

/// A sink instance built from its settings, not running yet.
pub struct BuiltSink {
    /// The instance.
    pub sink: Box<dyn Sink>,
    /// Its health, which the instance may set too (Kafka: every broker down).
    pub health: Arc<SinkHealth>,
}

/// Builds sink `name` from its settings, reporting to `health` (a fresh one when `None`).
pub fn build_sink(
    name: &str,
    sink_config: &SinkConfig,
    health: Option<Arc<SinkHealth>>,
) -> Result<BuiltSink, BuildError> {
    let health = health.unwrap_or_default();
    let sink = sink_config.kind.build(name, &sink_config.common, &health)?;
    Ok(BuiltSink { sink, health })
}

/// One running sink, as [`spawn_sink`] starts it.
pub struct SpawnedSink {
    /// The sender of the sink's buffer.
    pub sender: BufferSender,
    /// Whether its deliveries go through.
    pub health: Arc<SinkHealth>,
    /// Where reconfigurations of the running sink go.
    pub control: mpsc::Sender<Reconfigure>,
    /// The task; it ends once its buffer is closed and everything in it delivered.
    pub task: JoinHandle<()>,
}

/// Spawns the task of sink `name` with id `id`; dead letters go under `data_dir`.
pub fn spawn_sink(
    id: SinkId,
    name: &str,
    sink_config: &SinkConfig,
    built: BuiltSink,
    data_dir: &Path,
    store: &Arc<CheckpointStore>,
    metrics: &Metrics,
) -> SpawnedSink {
    let sink_metrics = metrics.sink(name);
    let (sender, buffer) = buffer::channel(sink_config.common.buffer, Arc::clone(&sink_metrics));
    let (control, requests) = mpsc::channel(1);
    let task = SinkTask {
        id,
        name: name.to_owned(),
        sink: built.sink,
        buffer,
        batch: sink_config.common.batch,
        retry: sink_config.common.retry,
        store: Arc::clone(store),
        metrics: sink_metrics,
        health: Arc::clone(&built.health),
        dead_letter_path: dead_letter_path(data_dir, name),
        control: Some(requests),
    };
    SpawnedSink {
        sender,
        health: built.health,
        control,
        task: tokio::spawn(task.run()),
    }
}

/// Where sink `name` keeps the events it failed on for good.
pub fn dead_letter_path(data_dir: &Path, name: &str) -> std::path::PathBuf {
    data_dir.join("dead_letter").join(format!("{name}.ndjson"))
}

/// The running sinks of a configuration that never changes (`replay`): their buffers' senders
/// and ids by name, and their tasks.
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
            let built = build_sink(name, sink_config, None)?;
            let spawned = spawn_sink(id, name, sink_config, built, data_dir, store, metrics);
            // Never reconfigured: the task's control ends with this sender.
            drop(spawned.control);
            set.tasks.push(spawned.task);
            set.senders.insert(name.clone(), spawned.sender);
            set.ids.insert(name.clone(), id);
            set.health.insert(name.clone(), spawned.health);
        }
        Ok(set)
    }

    /// A router to the named sinks, and their ids.
    pub fn route_to(&self, sink_names: &[&str]) -> (Router, Vec<SinkId>) {
        let outputs: Vec<(SinkId, BufferSender)> = sink_names
            .iter()
            .filter_map(|s| Some((*self.ids.get(*s)?, self.senders.get(*s)?.clone())))
            .collect();
        let ids = outputs.iter().map(|(id, _)| *id).collect();
        (Router::new(outputs), ids)
    }
}
