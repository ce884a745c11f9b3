//! The task that drives one sink: buffer -> batcher -> delivery with retries -> acks.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::time::{Instant, sleep, sleep_until};

use super::batcher::{Batch, Batcher};
use super::buffer::BufferReceiver;
use super::retry::{Backoff, RetryConfig};
use crate::event::Chunk;
use crate::health::SinkHealth;
use crate::metrics::{SinkMetrics, add};
use crate::sink::encoding::encode_json;
use crate::sink::{BoxFuture, Rejected, Sink, SinkError};
use crate::source::checkpoint::{CheckpointStore, SinkId};

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
    pub batcher: Batcher,
    /// How long a batch that is not full may wait.
    pub batch_timeout: Duration,
    /// How failures are retried.
    pub retry: RetryConfig,
    /// Where acks go.
    pub store: Arc<CheckpointStore>,
    /// The sink's counters.
    pub metrics: Arc<SinkMetrics>,
    /// Whether its deliveries go through, for `/readyz`.
    pub health: Arc<SinkHealth>,
    /// File that receives events the sink failed on for good.
    pub dead_letter_path: PathBuf,
}

/// How often an unhealthy sink with nothing in flight asks its destination whether it is back.
const HEALTH_RECHECK: Duration = Duration::from_secs(5);

/// A batch on its way, with the sink instance delivering it; both come back when it is done.
type Delivery = BoxFuture<'static, (Box<dyn Sink>, Batch)>;

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
            mut buffer,
            mut batcher,
            batch_timeout,
            retry,
            store,
            metrics,
            health,
            dead_letter_path,
        } = self;
        match sink.healthcheck().await {
            Ok(()) => tracing::info!(sink = %name, "healthcheck passed"),
            Err(e) => {
                // Not ready until a delivery goes through.
                health.failed(&format!("healthcheck failed: {e}"));
                tracing::warn!(sink = %name, error = %e, "healthcheck failed; delivering anyway")
            }
        }
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
            oldest_in_flight: VecDeque::new(),
        };
        let mut flush_at: Option<Instant> = None;
        loop {
            let received = tokio::select! {
                Some((sink, batch)) = lanes.in_flight.next(), if !lanes.in_flight.is_empty() => {
                    lanes.finish(sink, &batch, &buffer);
                    lanes.note_oldest_unshipped(batcher.oldest_chunk().map(|c| &**c));
                    continue;
                }
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    let batch = batcher.take();
                    lanes.dispatch(batch, &buffer).await;
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
                chunk = buffer.recv() => chunk,
            };
            let Some(chunk) = received else { break };
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
                lanes.dispatch(batch, &buffer).await;
                delivered_full = true;
            }
            if batcher.is_empty() {
                flush_at = None;
            } else if flush_at.is_none() || delivered_full {
                flush_at = Some(Instant::now() + batch_timeout);
            }
        }
        if !batcher.is_empty() {
            let batch = batcher.take();
            lanes.dispatch(batch, &buffer).await;
        }
        while let Some((sink, batch)) = lanes.in_flight.next().await {
            lanes.finish(sink, &batch, &buffer);
        }
        lanes.note_oldest_unshipped(None);
        for sink in &mut lanes.idle {
            if let Err(e) = sink.close().await {
                tracing::error!(sink = %lanes.deliverer.name, error = %e, "closing sink failed");
            }
        }
    }
}

/// The sink instances of one sink task: idle ones, and the deliveries in flight in the order
/// their batches were made.
struct Lanes {
    id: SinkId,
    idle: Vec<Box<dyn Sink>>,
    in_flight: FuturesOrdered<Delivery>,
    deliverer: Arc<Deliverer>,
    store: Arc<CheckpointStore>,
    /// The first chunk of each batch in flight, in the same order (for the age of the oldest
    /// unshipped line).
    oldest_in_flight: VecDeque<Option<Arc<Chunk>>>,
}

impl Lanes {
    /// Starts delivering `batch` on an idle instance, first waiting for the oldest delivery to
    /// finish when none is idle.
    async fn dispatch(&mut self, batch: Batch, buffer: &BufferReceiver) {
        let sink = loop {
            if let Some(sink) = self.idle.pop() {
                break sink;
            }
            match self.in_flight.next().await {
                Some((sink, done)) => self.finish(sink, &done, buffer),
                // Every instance is idle or in flight, so this is unreachable; keep the batch
                // unacked rather than panic.
                None => {
                    tracing::error!(sink = %self.deliverer.name, "no sink instance left; batch not delivered");
                    return;
                }
            }
        };
        self.oldest_in_flight
            .push_back(batch.parts.first().map(|part| Arc::clone(&part.chunk)));
        let deliverer = Arc::clone(&self.deliverer);
        self.in_flight.push_back(Box::pin(async move {
            let mut sink = sink;
            deliverer.deliver(sink.as_mut(), &batch).await;
            (sink, batch)
        }));
    }

    /// Acks a delivered (or dead-lettered) batch, frees its room in the buffer and makes its
    /// sink instance idle again.
    fn finish(&mut self, sink: Box<dyn Sink>, batch: &Batch, buffer: &BufferReceiver) {
        for part in &batch.parts {
            let offset = part.chunk.ack_offset(part.range.end);
            self.store.ack(self.id, part.chunk.file.key, offset);
        }
        buffer.release(batch);
        self.idle.push(sink);
        self.oldest_in_flight.pop_front();
    }

    /// Asks an idle sink instance's destination whether it is back (while nothing is being
    /// delivered, nothing else would tell).
    async fn recheck_health(&mut self) {
        let Some(sink) = self.idle.last_mut() else {
            return;
        };
        if sink.healthcheck().await.is_ok() {
            tracing::info!(sink = %self.deliverer.name, "healthcheck passed: ready again");
            self.deliverer.health.delivered();
        }
    }

    /// Records the read time of the oldest event the sink now holds: in the oldest batch in
    /// flight, else the oldest of `waiting` (the batcher's); zero when it holds none.
    fn note_oldest_unshipped(&self, waiting: Option<&Chunk>) {
        let oldest = match self.oldest_in_flight.front() {
            Some(first) => first.as_deref(),
            None => waiting,
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

/// How a sink task delivers one batch: retries, dead letters, metrics.
struct Deliverer {
    name: String,
    retry: RetryConfig,
    metrics: Arc<SinkMetrics>,
    /// Whether deliveries go through, for `/readyz`.
    health: Arc<SinkHealth>,
    dead_letter_path: PathBuf,
}

impl Deliverer {
    /// Delivers a batch, retrying as configured, dead-lettering what cannot be delivered; when
    /// it returns, every event of the batch is delivered or dead-lettered.
    async fn deliver(&self, sink: &mut dyn Sink, batch: &Batch) {
        if batch.events == 0 {
            return;
        }
        let mut backoff = Backoff::new(self.retry);
        loop {
            let error = match sink.deliver(batch).await {
                Ok(bytes) => {
                    self.health.delivered();
                    self.count_delivered(batch.events, bytes, backoff.attempts());
                    return;
                }
                Err(SinkError::Partial { bytes, rejected }) => {
                    // The destination answers: the sink is healthy, some events were refused.
                    self.health.delivered();
                    self.count_delivered(batch.events - rejected.len(), bytes, backoff.attempts());
                    self.dead_letter_rejected(batch, &rejected).await;
                    return;
                }
                Err(error) => error,
            };
            add(&self.metrics.errors, 1);
            self.health.failed(&error.to_string());
            match retry_wait(&error, &mut backoff, &self.retry) {
                Some(wait) => {
                    tracing::warn!(
                        sink = %self.name, error = %error, attempt = backoff.attempts(),
                        retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry"
                    );
                    sleep(wait).await;
                    add(&self.metrics.retries, 1);
                }
                None => {
                    tracing::error!(
                        sink = %self.name, error = %error, events = batch.events,
                        path = %self.dead_letter_path.display(), "delivery failed for good; dead-lettering the batch"
                    );
                    let mut encoded = Vec::with_capacity(batch.bytes + batch.events * 128);
                    for (chunk, event) in batch.iter() {
                        encode_json(chunk, event, &mut encoded);
                    }
                    self.dead_letter(encoded, batch.events).await;
                    return;
                }
            }
        }
    }

    fn count_delivered(&self, events: usize, bytes: u64, failed_attempts: u32) {
        add(&self.metrics.events_out, events as u64);
        add(&self.metrics.bytes_out, bytes);
        add(&self.metrics.batches, 1);
        if failed_attempts > 0 {
            tracing::info!(sink = %self.name, attempts = failed_attempts + 1, "delivered after retrying");
        }
    }

    /// Dead-letters the events of `batch` that the destination refused, logging the first
    /// reasons.
    async fn dead_letter_rejected(&self, batch: &Batch, rejected: &[Rejected]) {
        if rejected.is_empty() {
            return;
        }
        add(&self.metrics.errors, 1);
        let reasons: Vec<&str> = rejected
            .iter()
            .take(LOGGED_REASONS)
            .map(|r| r.reason.as_str())
            .collect();
        tracing::error!(
            sink = %self.name, events = rejected.len(), reasons = ?reasons,
            path = %self.dead_letter_path.display(), "events rejected for good; dead-lettering them"
        );
        let (encoded, count) = encode_rejected(batch, rejected);
        self.dead_letter(encoded, count).await;
    }

    /// Appends encoded events to the dead-letter file, retrying until that works: an event is
    /// acked only once it is either delivered or kept there.
    async fn dead_letter(&self, encoded: Vec<u8>, events: usize) {
        let encoded = Arc::new(encoded);
        let mut backoff = Backoff::new(RetryConfig::default());
        loop {
            let path = self.dead_letter_path.clone();
            let bytes = Arc::clone(&encoded);
            let result = tokio::task::spawn_blocking(move || append_dead_letter(&path, &bytes))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            match result {
                Ok(()) => {
                    add(&self.metrics.dead_lettered, events as u64);
                    return;
                }
                Err(e) => {
                    let wait = backoff.next_wait().unwrap_or(Duration::from_secs(30));
                    tracing::error!(
                        sink = %self.name, error = %e, path = %self.dead_letter_path.display(),
                        "cannot write the dead-letter file; holding the batch"
                    );
                    sleep(wait).await;
                }
            }
        }
    }
}

/// The events of `batch` at the positions `rejected` names (ascending), as NDJSON, and how
/// many they are.
fn encode_rejected(batch: &Batch, rejected: &[Rejected]) -> (Vec<u8>, usize) {
    let mut wanted = rejected.iter().map(|r| r.index).peekable();
    let mut encoded = Vec::new();
    let mut count = 0;
    for (index, (chunk, event)) in batch.iter().enumerate() {
        // Skip positions repeated or out of order: each event goes in once.
        while wanted.peek().is_some_and(|&w| w < index) {
            wanted.next();
        }
        if wanted.peek() == Some(&index) {
            encode_json(chunk, event, &mut encoded);
            count += 1;
        }
    }
    (encoded, count)
}

/// How many rejection reasons one log line shows.
const LOGGED_REASONS: usize = 3;

/// How long to wait before retrying after `error`, or `None` to give up. A destination's own
/// `Retry-After` lengthens the backoff's wait, up to `max_backoff_ms`.
fn retry_wait(error: &SinkError, backoff: &mut Backoff, retry: &RetryConfig) -> Option<Duration> {
    match error {
        SinkError::Retriable(_) => backoff.next_wait(),
        SinkError::RetriableAfter { after, .. } => {
            let cap = Duration::from_millis(retry.max_backoff_ms);
            backoff.next_wait().map(|wait| wait.max((*after).min(cap)))
        }
        SinkError::Permanent(_) | SinkError::Partial { .. } => None,
    }
}

fn append_dead_letter(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_cap() {
        let retry = RetryConfig {
            initial_backoff_ms: 10,
            max_backoff_ms: 2_000,
            max_attempts: Some(5),
        };
        let after = |ms| SinkError::RetriableAfter {
            message: "429".into(),
            after: Duration::from_millis(ms),
        };
        // (error, lowest wait, highest wait) in ms; None: give up.
        let cases = [
            (SinkError::Retriable("x".into()), Some((5, 10))),
            (after(1_000), Some((1_000, 1_000))),
            (after(0), Some((5, 10))),
            (after(60_000), Some((2_000, 2_000))),
            (SinkError::Permanent("400".into()), None),
            (
                SinkError::Partial {
                    bytes: 1,
                    rejected: vec![],
                },
                None,
            ),
        ];
        for (error, want) in cases {
            let mut backoff = Backoff::new(retry);
            let got = retry_wait(&error, &mut backoff, &retry).map(|d| d.as_millis() as u64);
            match want {
                Some((low, high)) => {
                    let got = got.unwrap_or_else(|| panic!("{error:?}: gave up"));
                    assert!((low..=high).contains(&got), "{error:?}: {got}ms");
                }
                None => assert_eq!(got, None, "{error:?}"),
            }
        }
        let mut spent = Backoff::new(RetryConfig {
            max_attempts: Some(1),
            ..retry
        });
        assert_eq!(
            retry_wait(&after(10), &mut spent, &retry),
            None,
            "attempts used up"
        );
    }
}
