//! The task that drives one sink: buffer -> batcher -> delivery with retries -> acks.
//!
//! Acks of one sink must follow the order its batches were made in (a file's checkpoint may
//! never pass a batch still on its way), so one task owns the sink's buffer for the agent's
//! whole life, and a config reload that changes the sink does not replace the task: it hands
//! the task a new sink instance ([`Reconfigure`]). The task then lets the deliveries in flight
//! finish for a moment, sends the ones that did not again with the new instance, in their
//! order, and goes on; a new `buffer:` setting comes as a new buffer, read once the old one is
//! empty. The task never waits inside a step for a delivery (a batch that finds every instance
//! busy waits in a queue, and the buffer is not read meanwhile), so a reconfiguration is taken
//! even while the destination is down.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};

use super::batcher::Batcher;
use super::buffer::BufferReceiver;
use super::deliver::Deliverer;
use crate::checkpoint::{CheckpointStore, SinkId, ack_id};
use crate::event::Batch;
use crate::event::Chunk;
use crate::health::SinkHealth;
use crate::metrics::SinkMetrics;
use crate::sink::delivery::{BatchConfig, RetryConfig};
use crate::sink::{BoxFuture, Healthcheck, Sink};

/// Everything one sink task needs.
pub struct SinkTask {
    /// Index of the sink, for acks.
    pub id: SinkId,
    /// Name of the sink, for logs.
    pub name: String,
    /// The sink itself.
    pub sink: Box<dyn Sink>,
    /// Where its events wait.
    pub buffer: BufferReceiver,
    /// How they are grouped.
    pub batch: BatchConfig,
    /// How failures are retried.
    pub retry: RetryConfig,
    /// Where acks go.
    pub store: Arc<CheckpointStore>,
    /// The sink's counters.
    pub metrics: Arc<SinkMetrics>,
    /// Whether its deliveries go through, for `/readyz/sinks`.
    pub health: Arc<SinkHealth>,
    /// File that receives events the sink failed on for good.
    pub dead_letter_path: PathBuf,
    /// Where reconfigurations come from; `None` for a task that is never reconfigured.
    pub control: Option<mpsc::Receiver<Reconfigure>>,
}

/// A new configuration of a running sink (a config reload changed it).
pub struct Reconfigure {
    /// The new instance, built from the new settings.
    pub sink: Box<dyn Sink>,
    /// The new `batch:` settings.
    pub batch: BatchConfig,
    /// The new `retry:` settings.
    pub retry: RetryConfig,
    /// A new buffer when `buffer:` changed: the sources send there from now on, and the task
    /// reads it once the old one is empty.
    pub buffer: Option<BufferReceiver>,
}

/// How often an unhealthy sink with nothing in flight asks its destination whether it is back.
const HEALTH_RECHECK: Duration = Duration::from_secs(5);

/// How long a reconfiguration waits for the deliveries in flight before it sends them again
/// with the new instance (a destination that is down would keep them forever).
const HANDOVER_GRACE: Duration = Duration::from_secs(2);

/// How long the instances a reconfiguration replaces may take to close (flush).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A batch on its way, with the sink instance delivering it; both come back when it is done.
type Delivery = BoxFuture<'static, (Box<dyn Sink>, Arc<Batch>)>;

/// The buffers the task reads, oldest first: more than one only after a reconfiguration gave a
/// new one, until the old ones are empty. Batches are made from one buffer at a time (the
/// batcher is flushed between two), and each goes back to the buffer it came from.
struct Inputs {
    buffers: Vec<BufferReceiver>,
    /// The buffer read now; the ones before it are closed and empty.
    current: usize,
}

/// What reading the inputs gave.
enum Received {
    Chunk(Arc<Chunk>),
    /// The buffer read so far is done and a newer one follows: flush the batcher first.
    Switched,
    /// Every buffer is closed and empty.
    Closed,
}

impl Inputs {
    async fn recv(&mut self) -> Received {
        let Some(buffer) = self.buffers.get_mut(self.current) else {
            return Received::Closed;
        };
        match buffer.recv().await {
            Some(chunk) => Received::Chunk(chunk),
            None if self.current + 1 < self.buffers.len() => {
                self.current += 1;
                Received::Switched
            }
            None => Received::Closed,
        }
    }

    fn release(&self, generation: usize, batch: &Batch) {
        if let Some(buffer) = self.buffers.get(generation) {
            buffer.release(batch);
        }
    }
}

impl SinkTask {
    /// Runs until every source is done sending, then delivers what is left and returns.
    ///
    /// Up to one batch per sink instance (the sink and its [`Sink::replicas`]) is in flight at
    /// once. Finished deliveries are acked in the order their batches were made, so a file's
    /// checkpoint never passes a batch that is still on its way.
    pub async fn run(self) {
        let SinkTask {
            id,
            name,
            mut sink,
            buffer,
            batch,
            retry,
            store,
            metrics,
            health,
            dead_letter_path,
            mut control,
        } = self;
        first_healthcheck(&name, sink.as_mut(), &health).await;
        let mut inputs = Inputs {
            buffers: vec![buffer],
            current: 0,
        };
        let mut batcher = Batcher::new(batch);
        let mut batch_timeout = Duration::from_millis(batch.timeout_ms);
        let mut idle = sink.replicas();
        idle.push(sink);
        let mut lanes = Lanes {
            id,
            idle,
            in_flight: FuturesOrdered::new(),
            deliverer: Arc::new(Deliverer {
                name,
                retry,
                metrics,
                health,
                dead_letter_path,
            }),
            store,
            on_the_way: VecDeque::new(),
            waiting: VecDeque::new(),
        };
        let mut flush_at: Option<Instant> = None;
        loop {
            let received = tokio::select! {
                // Reconfigurations first: one sent with a new buffer comes before the old
                // buffer closes, and must be taken before that close ends the task.
                biased;
                request = next_request(&mut control) => {
                    match request {
                        Some(request) => {
                            batch_timeout = Duration::from_millis(request.batch.timeout_ms);
                            let generation = inputs.current;
                            lanes.reconfigure(request, &mut batcher, generation, &mut inputs).await;
                            flush_at = None;
                        }
                        // The agent let go of the control: no more reconfigurations.
                        None => control = None,
                    }
                    continue;
                }
                Some((sink, batch)) = lanes.in_flight.next(), if !lanes.in_flight.is_empty() => {
                    lanes.finish(sink, &batch, &inputs);
                    lanes.start_waiting();
                    lanes.note_oldest_unshipped(batcher.oldest_chunk().map(|c| &**c));
                    continue;
                }
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    lanes.enqueue(batcher.take(), inputs.current);
                    flush_at = None;
                    continue;
                }
                // Armed whenever nothing is in flight, the failure checked when it fires: a
                // failure reported while the loop waits (librdkafka saying every broker is down,
                // with nothing to deliver) would otherwise never be rechecked, as the guards of
                // a `select!` are read only on entering it.
                () = sleep(HEALTH_RECHECK), if lanes.in_flight.is_empty() => {
                    if lanes.deliverer.health.failure().is_some() {
                        lanes.recheck_health().await;
                    }
                    continue;
                }
                // Not read while batches wait for a free instance: that is backpressure.
                received = inputs.recv(), if lanes.waiting.is_empty() => received,
            };
            let chunk = match received {
                Received::Chunk(chunk) => chunk,
                Received::Switched => {
                    // Batches come from one buffer each: what the old one gave goes first.
                    if !batcher.is_empty() {
                        lanes.enqueue(batcher.take(), inputs.current - 1);
                    }
                    flush_at = None;
                    continue;
                }
                Received::Closed => {
                    // A reconfiguration sent before the agent let go of the old buffer comes
                    // with the buffer to read next: take it before ending.
                    match control.as_mut().map(mpsc::Receiver::try_recv) {
                        Some(Ok(request)) => {
                            batch_timeout = Duration::from_millis(request.batch.timeout_ms);
                            let generation = inputs.current;
                            lanes
                                .reconfigure(request, &mut batcher, generation, &mut inputs)
                                .await;
                            flush_at = None;
                            continue;
                        }
                        _ => break,
                    }
                }
            };
            if lanes
                .deliverer
                .metrics
                .oldest_unshipped_micros
                .load(Ordering::Relaxed)
                == 0
            {
                lanes.note_oldest_unshipped(Some(&chunk));
            }
            batcher.push(chunk);
            let mut delivered_full = false;
            while let Some(batch) = batcher.next_full() {
                lanes.enqueue(batch, inputs.current);
                delivered_full = true;
            }
            if batcher.is_empty() {
                flush_at = None;
            } else if flush_at.is_none() || delivered_full {
                flush_at = Some(Instant::now() + batch_timeout);
            }
        }
        if !batcher.is_empty() {
            lanes.enqueue(batcher.take(), inputs.current);
        }
        while let Some((sink, batch)) = lanes.in_flight.next().await {
            lanes.finish(sink, &batch, &inputs);
            lanes.start_waiting();
        }
        lanes.note_oldest_unshipped(None);
        for sink in &mut lanes.idle {
            if let Err(e) = sink.close().await {
                tracing::error!(sink = %lanes.deliverer.name, error = %e, "closing sink failed");
            }
        }
    }
}

/// The next reconfiguration; never, once there can be none.
async fn next_request(control: &mut Option<mpsc::Receiver<Reconfigure>>) -> Option<Reconfigure> {
    match control {
        Some(control) => control.recv().await,
        None => std::future::pending().await,
    }
}

/// Asks a new sink instance's destination whether it is ready, and says what came of it: only
/// a check that ran is reported as passed.
async fn first_healthcheck(name: &str, sink: &mut dyn Sink, health: &SinkHealth) {
    match sink.healthcheck().await {
        Ok(Healthcheck::Passed) => tracing::info!(sink = %name, "healthcheck passed"),
        Ok(Healthcheck::NotChecked) => tracing::debug!(
            sink = %name,
            "no healthcheck for this sink: its health follows its deliveries"
        ),
        Err(e) => {
            // Not healthy until a delivery goes through.
            health.failed(&format!("healthcheck failed: {e}"));
            tracing::warn!(sink = %name, error = %e, "healthcheck failed; delivering anyway");
        }
    }
}

/// A batch made and not acked yet, with the buffer it came from.
struct Made {
    batch: Arc<Batch>,
    generation: usize,
}

/// The sink instances of one sink task: idle ones, the deliveries in flight in the order their
/// batches were made, and the batches waiting for an instance.
struct Lanes {
    id: SinkId,
    idle: Vec<Box<dyn Sink>>,
    in_flight: FuturesOrdered<Delivery>,
    deliverer: Arc<Deliverer>,
    store: Arc<CheckpointStore>,
    /// The batches in flight, in the same order as `in_flight`.
    on_the_way: VecDeque<Made>,
    /// Batches made while every instance was busy, in order; they go before anything newer.
    waiting: VecDeque<Made>,
}

impl Lanes {
    /// Queues a batch (from buffer `generation`) and starts it when an instance is idle.
    fn enqueue(&mut self, batch: Batch, generation: usize) {
        if batch.is_empty() {
            return;
        }
        self.waiting.push_back(Made {
            batch: Arc::new(batch),
            generation,
        });
        self.start_waiting();
    }

    /// Starts the waiting batches, oldest first, on the idle instances.
    fn start_waiting(&mut self) {
        while !self.waiting.is_empty() {
            let Some(sink) = self.idle.pop() else { return };
            let Some(made) = self.waiting.pop_front() else {
                self.idle.push(sink);
                return;
            };
            let batch = Arc::clone(&made.batch);
            self.on_the_way.push_back(made);
            let deliverer = Arc::clone(&self.deliverer);
            self.in_flight.push_back(Box::pin(async move {
                let mut sink = sink;
                deliverer.deliver(sink.as_mut(), &batch).await;
                (sink, batch)
            }));
        }
    }

    /// Acks a delivered (or dead-lettered) batch, frees its room in its buffer and makes its
    /// sink instance idle again.
    fn finish(&mut self, sink: Box<dyn Sink>, batch: &Batch, inputs: &Inputs) {
        for part in &batch.parts {
            let offset = part.chunk.ack_offset(part.range.end);
            self.store.ack(
                ack_id(self.id, part.chunk.lane),
                part.chunk.file.key,
                offset,
            );
        }
        let generation = self
            .on_the_way
            .pop_front()
            .map_or(inputs.current, |made| made.generation);
        inputs.release(generation, batch);
        self.idle.push(sink);
    }

    /// Swaps in the instance of `request`: the deliveries in flight may finish for
    /// [`HANDOVER_GRACE`]; the others, the batches waiting, then what the batcher holds go out
    /// again with the new instance, in the order they were made, before anything newer.
    async fn reconfigure(
        &mut self,
        request: Reconfigure,
        batcher: &mut Batcher,
        generation: usize,
        inputs: &mut Inputs,
    ) {
        let name = self.deliverer.name.clone();
        let deadline = Instant::now() + HANDOVER_GRACE;
        while !self.in_flight.is_empty() {
            match timeout_at(deadline, self.in_flight.next()).await {
                Ok(Some((sink, batch))) => self.finish(sink, &batch, inputs),
                Ok(None) | Err(_) => break,
            }
        }
        // Dropping the deliveries drops the old instances that were making them.
        self.in_flight = FuturesOrdered::new();
        let mut again: VecDeque<Made> = self.on_the_way.drain(..).collect();
        again.append(&mut self.waiting);
        for mut old in self.idle.drain(..) {
            if timeout(CLOSE_GRACE, old.close()).await.is_err() {
                tracing::warn!(sink = %name, "the replaced sink did not close in time");
            }
        }
        let Reconfigure {
            mut sink,
            batch,
            retry,
            buffer,
        } = request;
        tracing::info!(
            sink = %name,
            batches_sent_again = again.len(),
            new_buffer = buffer.is_some(),
            "sink reconfigured; batches that were on their way go out first"
        );
        // The old settings' failure says nothing about the new ones.
        self.deliverer.health.delivered();
        first_healthcheck(&name, sink.as_mut(), &self.deliverer.health).await;
        self.idle = sink.replicas();
        self.idle.push(sink);
        self.deliverer = Arc::new(Deliverer {
            name,
            retry,
            metrics: Arc::clone(&self.deliverer.metrics),
            health: Arc::clone(&self.deliverer.health),
            dead_letter_path: self.deliverer.dead_letter_path.clone(),
        });
        if let Some(buffer) = buffer {
            inputs.buffers.push(buffer);
        }
        let mut held = std::mem::replace(batcher, Batcher::new(batch));
        if !held.is_empty() {
            again.push_back(Made {
                batch: Arc::new(held.take()),
                generation,
            });
        }
        self.waiting = again;
        self.start_waiting();
    }

    /// Asks an idle sink instance's destination whether it is back (while nothing is being
    /// delivered, nothing else would tell).
    async fn recheck_health(&mut self) {
        let Some(sink) = self.idle.last_mut() else {
            return;
        };
        if let Ok(Healthcheck::Passed) = sink.healthcheck().await {
            tracing::info!(sink = %self.deliverer.name, "healthcheck passed: healthy again");
            self.deliverer.health.delivered();
        }
    }

    /// Records the read time of the oldest event the sink now holds: in the oldest batch in
    /// flight or waiting, else the oldest of `waiting` (the batcher's); zero when it holds none.
    fn note_oldest_unshipped(&self, batcher_oldest: Option<&Chunk>) {
        let made = self.on_the_way.front().or(self.waiting.front());
        let oldest = match made {
            Some(made) => made.batch.parts.first().map(|part| &*part.chunk),
            None => batcher_oldest,
        };
        let micros = oldest
            .filter(|chunk| !chunk.events.is_empty())
            .and_then(|chunk| chrono::DateTime::parse_from_rfc3339(&chunk.read_time).ok())
            .and_then(|read| u64::try_from(read.timestamp_micros()).ok())
            .unwrap_or(0);
        self.deliverer
            .metrics
            .oldest_unshipped_micros
            .store(micros, Ordering::Relaxed);
    }
}
