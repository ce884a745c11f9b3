//! The task that drives one sink: buffer -> batcher -> delivery with retries -> acks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};

use super::batcher::{Batch, Batcher};
use super::buffer::BufferReceiver;
use super::retry::{Backoff, RetryConfig};
use crate::event::Chunk;
use crate::health::SinkHealth;
use crate::metrics::{SinkMetrics, add};
use crate::sink::encoding::encode_json;
use crate::sink::{Sink, SinkError};
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

impl SinkTask {
    /// Runs until every source is done sending, then delivers what is left and returns.
    pub async fn run(mut self) {
        let mut flush_at: Option<Instant> = None;
        loop {
            let received = match flush_at {
                Some(at) => tokio::select! {
                    chunk = self.buffer.recv() => chunk,
                    () = sleep_until(at) => {
                        let batch = self.batcher.take();
                        self.deliver(batch).await;
                        flush_at = None;
                        continue;
                    }
                },
                None => self.buffer.recv().await,
            };
            let Some(chunk) = received else { break };
            if self.metrics.oldest_unshipped_micros.load(Ordering::Relaxed) == 0 {
                self.note_oldest_unshipped(Some(&chunk));
            }
            self.batcher.push(chunk);
            let mut delivered_full = false;
            while let Some(batch) = self.batcher.next_full() {
                self.deliver(batch).await;
                delivered_full = true;
            }
            if self.batcher.is_empty() {
                flush_at = None;
            } else if flush_at.is_none() || delivered_full {
                flush_at = Some(Instant::now() + self.batch_timeout);
            }
        }
        if !self.batcher.is_empty() {
            let batch = self.batcher.take();
            self.deliver(batch).await;
        }
        if let Err(e) = self.sink.close().await {
            tracing::error!(sink = %self.name, error = %e, "closing sink failed");
        }
    }

    /// Delivers a batch, retrying as configured, dead-lettering it when it cannot be; then acks
    /// it and frees its room in the buffer.
    async fn deliver(&mut self, batch: Batch) {
        if batch.events > 0 {
            let mut backoff = Backoff::new(self.retry);
            loop {
                let error = match self.sink.deliver(&batch).await {
                    Ok(bytes) => {
                        self.health.delivered();
                        add(&self.metrics.events_out, batch.events as u64);
                        add(&self.metrics.bytes_out, bytes);
                        add(&self.metrics.batches, 1);
                        if backoff.attempts() > 0 {
                            tracing::info!(sink = %self.name, attempts = backoff.attempts() + 1, "delivered after retrying");
                        }
                        break;
                    }
                    Err(error) => error,
                };
                add(&self.metrics.errors, 1);
                self.health.failed(&error.to_string());
                let wait = match &error {
                    SinkError::Retriable(_) => backoff.next_wait(),
                    SinkError::Permanent(_) => None,
                };
                match wait {
                    Some(wait) => {
                        tracing::warn!(
                            sink = %self.name, error = %error, attempt = backoff.attempts(),
                            retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry"
                        );
                        sleep(wait).await;
                        add(&self.metrics.retries, 1);
                    }
                    None => {
                        self.dead_letter(&batch, &error).await;
                        break;
                    }
                }
            }
        }
        for part in &batch.parts {
            let offset = part.chunk.ack_offset(part.range.end);
            self.store.ack(self.id, part.chunk.file.key, offset);
        }
        self.buffer.release(&batch);
        let oldest = self.batcher.oldest_chunk().cloned();
        self.note_oldest_unshipped(oldest.as_deref());
    }

    /// Records the read time of the oldest event the sink now holds (`None`: it holds none).
    fn note_oldest_unshipped(&self, oldest: Option<&Chunk>) {
        let micros = oldest
            .filter(|chunk| !chunk.events.is_empty())
            .and_then(|chunk| chrono::DateTime::parse_from_rfc3339(&chunk.read_time).ok())
            .and_then(|read| u64::try_from(read.timestamp_micros()).ok())
            .unwrap_or(0);
        self.metrics
            .oldest_unshipped_micros
            .store(micros, Ordering::Relaxed);
    }

    /// Appends the batch's events to the dead-letter file, retrying until that works: an event
    /// is acked only once it is either delivered or kept there.
    async fn dead_letter(&mut self, batch: &Batch, error: &SinkError) {
        tracing::error!(
            sink = %self.name, error = %error, events = batch.events,
            path = %self.dead_letter_path.display(), "delivery failed for good; dead-lettering the batch"
        );
        let mut encoded = Vec::with_capacity(batch.bytes + batch.events * 128);
        for (chunk, event) in batch.iter() {
            encode_json(chunk, event, &mut encoded);
        }
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
                    add(&self.metrics.dead_lettered, batch.events as u64);
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
