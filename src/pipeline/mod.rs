//! The pipeline between sources and sinks: transforms, routing, bounded buffers, batching,
//! retries, acks.
//!
//! Each source gets a [`Router`] holding its [`Stage`] tree: the buffer of every sink that
//! takes the source as an input, and the transforms on the way to the others. A chunk is shared
//! (`Arc`) by all the sinks of a stage; transforms run on the source's own thread, so a slow
//! sink holds back the source the same way through them. A config reload changes a router's
//! tree in place, so the source's tailer goes on as it was. Each sink runs a
//! [`sink_task::SinkTask`] that batches, delivers with retries and acks per file (and lane)
//! towards the checkpoints.

pub mod batcher;
pub mod buffer;
mod deliver;
pub mod retry;
pub mod sink_task;
pub mod stage;
pub mod tap;

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
use crate::transform::Transform;
use crate::transform::topology::Branch;
pub use stage::Stage;
use tap::TapHub;

/// Hands a source's chunks to each of its sinks, through the transforms on the way. Clones
/// share their tree and their stop.
#[derive(Debug, Clone)]
pub struct Router {
    root: Arc<RwLock<Arc<Stage>>>,
    stop: Arc<watch::Sender<bool>>,
    taps: Arc<TapHub>,
}

impl Router {
    /// A router along the tree `root`, whose points `taps` may copy.
    pub fn new(root: Stage, taps: Arc<TapHub>) -> Self {
        Router {
            root: Arc::new(RwLock::new(Arc::new(root))),
            stop: Arc::new(watch::Sender::new(false)),
            taps,
        }
    }

    fn current(&self) -> Arc<Stage> {
        // The guarded value is replaced whole, so a poisoned lock still holds a valid one.
        let root = self.root.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&root)
    }

    /// The ack ids the router's tree hands chunks to now.
    pub fn ack_ids(&self) -> Vec<SinkId> {
        self.current().ack_ids()
    }

    /// Routes along `root` from the next chunk on (a chunk being sent goes where it started).
    pub fn set_root(&self, root: Stage) {
        let mut current = self.root.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(root);
    }

    /// Refuses every chunk from now on, one waiting for room included: the source is being
    /// stopped and must not wait for its sinks.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Sends a chunk to every sink, through the transforms on the way, waiting while a
    /// blocking buffer is full. A sink that is closed is skipped when a reload has taken it out
    /// of the routes meanwhile.
    pub async fn send(&self, chunk: Chunk) -> Result<(), Closed> {
        let root = self.current();
        let mut stopped = self.stop.subscribe();
        let mut work: Vec<(&Stage, Arc<Chunk>)> = vec![(&root, Arc::new(chunk))];
        let mut produced = Vec::new();
        while let Some((stage, chunk)) = work.pop() {
            let tapped = self.taps.is_active();
            if tapped {
                self.taps.offer(&stage.point, &chunk);
            }
            for sink in &stage.sinks {
                if *stopped.borrow_and_update() {
                    return Err(Closed);
                }
                if tapped {
                    self.taps.offer(&sink.point, &chunk);
                }
                let sent = tokio::select! {
                    sent = sink.sender.send(Arc::clone(&chunk)) => sent,
                    _ = stopped.wait_for(|stopped| *stopped) => return Err(Closed),
                };
                if sent.is_err() && self.current().has_sink(sink.id) {
                    return Err(Closed);
                }
            }
            for (transform, outputs) in &stage.transforms {
                produced.clear();
                transform.apply(&chunk, &mut produced);
                for (next, mut output) in outputs.iter().zip(produced.drain(..)) {
                    output.lane = next.lane;
                    work.push((next, Arc::new(output)));
                }
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

    /// A router along `branch` to these sinks, through `transforms`, and its ack ids.
    pub fn route_to(
        &self,
        branch: &Branch,
        transforms: &BTreeMap<String, Arc<dyn Transform>>,
    ) -> (Router, Vec<SinkId>) {
        let sinks: BTreeMap<String, (SinkId, BufferSender)> = self
            .ids
            .iter()
            .filter_map(|(name, id)| Some((name.clone(), (*id, self.senders.get(name)?.clone()))))
            .collect();
        let root = Stage::build(branch, &sinks, transforms);
        let ids = root.ack_ids();
        (Router::new(root, Arc::default()), ids)
    }
}
