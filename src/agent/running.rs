//! The sources and sinks of a running agent, started, reconfigured and stopped one by one.
//!
//! - A sink keeps one task, one id and one buffer (or, after a `buffer:` change, one buffer at
//!   a time) for as long as it is configured: a reload that changes it gives its task a new
//!   instance, so acks stay in the order its batches were made. Ids are never reused.
//! - A source has one tailer thread and one [`Router`]. The router's tree (its sinks and the
//!   transforms on the way) and the checkpoint store's routes follow
//!   `config.branches_of(source)` ([`Running::reroute`]), so sinks and transforms added to or
//!   removed from a running source never restart its tailer.
//! - Transforms are built before anything of a reload changes; one whose settings did not
//!   change keeps its instance (a throttle its window, a `log_to_metric` its series).
//! - A source is stopped by draining its tailer (it reads its files to their current end),
//!   waiting for what it handed on to be delivered, then handing its files back to the store
//!   ([`CheckpointStore::release`]): the next tailer of that name resumes at the checkpoints,
//!   so nothing delivered is read again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::RunError;
use crate::api::metrics::BufferGauges;
use crate::checkpoint::{CheckpointStore, SinkId};
use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::buffer::{self, BufferSender};
use crate::pipeline::sink_task::Reconfigure;
use crate::pipeline::tap::TapHub;
use crate::pipeline::{BuiltSink, Router, Stage, spawn_sink};
use crate::sink::{BuildError, SinkConfig};
use crate::source::SourceKind;
use crate::source::network::{Listening, journal_dir};
use crate::source::retention::Retention;
use crate::source::tailer::{Control, Stopped, Tailer};
use crate::transform::{Transform, TransformError, TransformKind, register_derived};

/// How often a source being stopped is checked for the delivery of what it handed on.
const ACK_POLL: Duration = Duration::from_millis(20);

/// One running sink.
struct RunningSink {
    id: SinkId,
    sender: BufferSender,
    control: mpsc::Sender<Reconfigure>,
    task: JoinHandle<()>,
    health: Arc<crate::health::SinkHealth>,
}

/// One running source.
pub(super) struct RunningSource {
    router: Router,
    control: Arc<Control>,
    thread: JoinHandle<()>,
    /// A network source's listeners and journal, stopped before its tailer drains.
    listening: Option<Listening>,
    /// A file source's `retention` task, aborted when the source stops.
    retention: Option<JoinHandle<()>>,
}

/// Everything that runs, and the configuration it runs.
pub(super) struct Running {
    /// The configuration running now.
    pub(super) config: Config,
    store: Arc<CheckpointStore>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    gauges: BufferGauges,
    runtime: Handle,
    next_sink_id: SinkId,
    sinks: BTreeMap<String, RunningSink>,
    sources: BTreeMap<String, RunningSource>,
    transforms: BTreeMap<String, Arc<dyn Transform>>,
    /// The taps every router offers its chunks to.
    taps: Arc<TapHub>,
    /// Tasks of sinks a reload removed, delivering what they held until a deadline.
    retired: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts every sink, then every source, of `config`.
    pub(super) fn start(
        config: Config,
        store: Arc<CheckpointStore>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        gauges: BufferGauges,
        taps: Arc<TapHub>,
    ) -> Result<Running, RunError> {
        let mut running = Running {
            config,
            store,
            metrics,
            health,
            gauges,
            runtime: Handle::current(),
            next_sink_id: 0,
            sinks: BTreeMap::new(),
            sources: BTreeMap::new(),
            transforms: BTreeMap::new(),
            taps,
            retired: Vec::new(),
        };
        let transforms = running
            .build_transforms(None, &running.config)
            .map_err(RunError::Transform)?;
        running.set_transforms(transforms);
        let sinks = running.config.sinks.clone();
        for (name, sink_config) in &sinks {
            let built = crate::pipeline::build_sink(name, sink_config, None)?;
            running.start_sink(name, sink_config, built);
        }
        let sources: Vec<String> = running.config.sources.keys().cloned().collect();
        for name in &sources {
            running.start_source(name)?;
        }
        Ok(running)
    }

    /// Builds a new instance of sink `name` with `sink_config`; a sink that runs already
    /// keeps its health.
    pub(super) fn build(
        &self,
        name: &str,
        sink_config: &SinkConfig,
    ) -> Result<BuiltSink, BuildError> {
        let health = self.sinks.get(name).map(|s| Arc::clone(&s.health));
        crate::pipeline::build_sink(name, sink_config, health)
    }

    /// Starts sink `name` with its built instance.
    pub(super) fn start_sink(&mut self, name: &str, sink_config: &SinkConfig, built: BuiltSink) {
        let id = self.next_sink_id;
        self.next_sink_id += 1;
        let spawned = spawn_sink(
            id,
            name,
            sink_config,
            built,
            &self.config.data_dir,
            &self.store,
            &self.metrics,
        );
        self.health
            .add_sink(name.to_owned(), Arc::clone(&spawned.health));
        self.set_gauge(name, &spawned.sender);
        self.sinks.insert(
            name.to_owned(),
            RunningSink {
                id,
                sender: spawned.sender,
                control: spawned.control,
                task: spawned.task,
                health: spawned.health,
            },
        );
    }

    fn set_gauge(&self, name: &str, sender: &BufferSender) {
        let mut gauges = self.gauges.write().unwrap_or_else(|p| p.into_inner());
        gauges.insert(name.to_owned(), sender.gauge());
    }

    /// Hands sink `name` its new instance and settings; a new `buffer:` setting gives it a new
    /// buffer, which the sources send to from the next [`Running::reroute`].
    pub(super) async fn reconfigure_sink(
        &mut self,
        name: &str,
        old: &SinkConfig,
        new: &SinkConfig,
        built: BuiltSink,
    ) {
        let new_buffer = if old.common.buffer == new.common.buffer {
            None
        } else {
            let (sender, receiver) = buffer::channel(new.common.buffer, self.metrics.sink(name));
            self.set_gauge(name, &sender);
            Some((sender, receiver))
        };
        let Some(running) = self.sinks.get_mut(name) else {
            return;
        };
        let (sender, buffer) = match new_buffer {
            Some((sender, receiver)) => (Some(sender), Some(receiver)),
            None => (None, None),
        };
        if let Some(sender) = sender {
            running.sender = sender;
        }
        let request = Reconfigure {
            sink: built.sink,
            batch: new.common.batch,
            retry: new.common.retry,
            buffer,
        };
        if running.control.send(request).await.is_err() {
            tracing::error!(sink = %name, "the sink's task has ended; the new settings are not applied");
        }
    }

    /// Takes sink `name` out: the sources stop sending to it at the next
    /// [`Running::reroute`]; its task delivers what it holds until `deadline`, then is stopped.
    pub(super) fn remove_sink(&mut self, name: &str, deadline: Instant) {
        let Some(sink) = self.sinks.remove(name) else {
            return;
        };
        self.health.remove_sink(name);
        self.gauges
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let closer = sink.sender.closer();
        let mut task = sink.task;
        self.retired.retain(|reaper| !reaper.is_finished());
        self.retired.push(tokio::spawn(async move {
            if timeout_at(deadline, &mut task).await.is_err() {
                // A source still waiting for room in it is let go, then the rest is dropped.
                closer.close();
                task.abort();
            }
        }));
    }

    /// The transforms of `config`, built; those whose settings are as in `old` (the running
    /// config) keep their instance.
    pub(super) fn build_transforms(
        &self,
        old: Option<&Config>,
        config: &Config,
    ) -> Result<BTreeMap<String, Arc<dyn Transform>>, TransformError> {
        let mut built = BTreeMap::new();
        for (name, transform) in &config.transforms {
            // A program read from a file may have changed with the same settings: compiled
            // again at every reload, as the text given inline is when it changes.
            let from_file = matches!(&transform.kind, TransformKind::Remap(r) if r.file.is_some());
            let same =
                old.and_then(|old| old.transforms.get(name)) == Some(transform) && !from_file;
            let instance = match self.transforms.get(name) {
                Some(running) if same => Arc::clone(running),
                _ => transform
                    .kind
                    .build(&format!("transforms.{name}"), name, &self.metrics)?,
            };
            built.insert(name.clone(), instance);
        }
        Ok(built)
    }

    /// Runs `transforms` from the next [`Running::reroute`] on, their metrics served.
    pub(super) fn set_transforms(&mut self, transforms: BTreeMap<String, Arc<dyn Transform>>) {
        register_derived(&self.metrics, &transforms);
        self.transforms = transforms;
    }

    /// The tree `source` sends along under the running config.
    fn stage_of(&self, source: &str) -> Stage {
        let sinks = self
            .sinks
            .iter()
            .map(|(name, sink)| (name.clone(), (sink.id, sink.sender.clone())))
            .collect();
        Stage::build(&self.config.branches_of(source), &sinks, &self.transforms)
    }

    /// Points every running source's router, and its files' checkpoints, at the sinks and
    /// transforms the running config routes it to.
    pub(super) fn reroute(&self) {
        for (name, source) in &self.sources {
            let root = self.stage_of(name);
            let ids = root.ack_ids();
            // The store first: acks of chunks sent along the new tree must find their lanes.
            self.store.route(name, &ids);
            source.router.set_root(root);
        }
    }

    /// Starts the tailer of source `name` of the running config.
    pub(super) fn start_source(&mut self, name: &str) -> Result<(), RunError> {
        let Some(source_config) = self.config.sources.get(name) else {
            return Ok(());
        };
        let Some(file_config) = source_config.tailed() else {
            return Err(RunError::Spawn {
                source_name: name.to_owned(),
                error: std::io::Error::other("the source's configuration was not resolved"),
            });
        };
        // A network source's journal is opened (and repaired) before its tailer reads it.
        let listening = Listening::start(
            name,
            &source_config.kind,
            &journal_dir(&self.config.data_dir, name),
            &self.store,
            &self.metrics.source(name),
        )
        .map_err(|e| RunError::Network {
            source_name: name.to_owned(),
            error: e,
        })?;
        let retention = match (&source_config.kind, file_config.retention) {
            (SourceKind::File(_), Some(config)) => Some(tokio::spawn(
                Retention::new(
                    name,
                    &file_config.include,
                    &file_config.exclude,
                    config,
                    Arc::clone(&self.store),
                    self.metrics.source(name),
                )
                .run(),
            )),
            _ => None,
        };
        let root = self.stage_of(name);
        let ids: Vec<SinkId> = root.ack_ids();
        self.store.route(name, &ids);
        let router = Router::new(root, Arc::clone(&self.taps));
        let emit_router = router.clone();
        let handle = self.runtime.clone();
        let emit = move |chunk| {
            handle
                .block_on(emit_router.send(chunk))
                .map_err(|_| Stopped)
        };
        let (tailer, control) = Tailer::new(
            name,
            file_config.clone(),
            ids,
            Arc::clone(&self.store),
            self.metrics.source(name),
            emit,
        );
        self.health
            .add_loop(loop_name(name), Arc::clone(control.heartbeat()));
        let thread = std::thread::Builder::new()
            .name(format!("tail-{name}"))
            .spawn(move || tailer.run())
            .map_err(|error| RunError::Spawn {
                source_name: name.to_owned(),
                error,
            })?;
        let thread = tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        });
        self.sources.insert(
            name.to_owned(),
            RunningSource {
                router,
                control,
                thread,
                listening,
                retention,
            },
        );
        Ok(())
    }

    /// Takes source `name` out of the running ones, to be stopped with [`stop_source`].
    pub(super) fn take_source(&mut self, name: &str) -> Option<RunningSource> {
        let source = self.sources.remove(name)?;
        self.health.remove_loop(&loop_name(name));
        Some(source)
    }

    /// Forgets the counters of what the running config no longer has.
    pub(super) fn forget_removed_metrics(&self) {
        let sources: Vec<&str> = self.config.sources.keys().map(String::as_str).collect();
        let sinks: Vec<&str> = self.config.sinks.keys().map(String::as_str).collect();
        self.metrics.retain(&sources, &sinks);
        let transforms: Vec<&str> = self.config.transforms.keys().map(String::as_str).collect();
        self.metrics.retain_transforms(&transforms);
    }

    /// The checkpoint store.
    pub(super) fn store(&self) -> &Arc<CheckpointStore> {
        &self.store
    }

    /// Drains everything within `deadline`: sources read their files to their current end,
    /// sinks deliver what they hold. True when all of it was done in time.
    pub(super) async fn shutdown(mut self, deadline: Instant) -> bool {
        let mut sources = std::mem::take(&mut self.sources);
        // Senders are turned away first; what they were answered is in the journals, which
        // the tailers then read to their end.
        for source in sources.values_mut() {
            if let Some(retention) = source.retention.take() {
                retention.abort();
            }
            if let Some(listening) = source.listening.take() {
                listening.stop().await;
            }
        }
        for source in sources.values() {
            source.control.drain();
        }
        let (routers, threads): (Vec<Router>, Vec<JoinHandle<()>>) = sources
            .into_values()
            .map(|source| (source.router, source.thread))
            .unzip();
        let mut drained = timeout_at(deadline, join_all(threads)).await.is_ok();
        if !drained {
            // Wake tailers blocked on full buffers: they stop with what they handed on so far.
            for router in &routers {
                router.stop();
            }
        }
        drop(routers);
        let sinks = std::mem::take(&mut self.sinks);
        let mut tasks = Vec::new();
        for sink in sinks.into_values() {
            // Only the tailers' routers held senders besides this one: the buffers close once
            // they are gone, and each task ends after delivering what it holds.
            tasks.push(sink.task);
        }
        if drained {
            drained = timeout_at(deadline, join_all(tasks.iter_mut()))
                .await
                .is_ok();
        }
        if !drained {
            tracing::warn!(
                "shutdown timeout reached; undelivered lines stay behind the checkpoints and are read again at the next start"
            );
            for task in &tasks {
                task.abort();
            }
        }
        for task in std::mem::take(&mut self.retired) {
            task.abort();
        }
        drained
    }
}

/// How the health checks name a source's tailer.
fn loop_name(source: &str) -> String {
    format!("source `{source}`")
}

impl Drop for Running {
    /// A run cancelled (its task dropped, a test failing) still ends its tailer threads: their
    /// pipeline is gone, so they stop at their next chunk instead of keeping the runtime up.
    fn drop(&mut self) {
        for source in self.sources.values() {
            source.control.drain();
            source.router.stop();
            if let Some(retention) = &source.retention {
                retention.abort();
            }
        }
    }
}

/// Stops a source taken out by [`Running::take_source`]: a removed one at once, a changed one
/// after it read its files to their end and (until `deadline`) what it handed on is
/// delivered; then its files go back to the store for the next tailer of that name. Cut short
/// when `shutdown` turns true. False when the tailer did not end (the agent is shutting down).
pub(super) async fn stop_source(
    store: &CheckpointStore,
    name: &str,
    source: RunningSource,
    removed: bool,
    deadline: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let RunningSource {
        router,
        control,
        mut thread,
        listening,
        retention,
    } = source;
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(listening) = listening {
        listening.stop().await;
    }
    if removed {
        router.stop();
    }
    control.drain();
    let ended = tokio::select! {
        ended = timeout_at(deadline, &mut thread) => ended.is_ok(),
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    };
    if !ended {
        // Waiting for room in a sink's buffer: it stops at once when refused.
        router.stop();
        tokio::select! {
            _ = &mut thread => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return false,
        }
    }
    if !removed {
        while !store.is_source_fully_acked(name) && Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(ACK_POLL) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }
        if !store.is_source_fully_acked(name) {
            tracing::warn!(
                source = %name,
                "lines of the source were not delivered before the reload's deadline; they are read again"
            );
        }
    }
    store.release(name);
    true
}

async fn join_all<T>(handles: impl IntoIterator<Item = T>)
where
    T: std::future::Future,
{
    for handle in handles {
        handle.await;
    }
}
