//! How a sink task delivers one batch: attempts with backoff, dead letters for what fails for
//! good, and the sink's counters. When [`Deliverer::deliver`] returns, every event of the batch
//! is delivered or kept in the dead-letter file, so the batch may be acked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep;

use super::retry::Backoff;
use crate::event::Batch;
use crate::health::SinkHealth;
use crate::metrics::{SinkMetrics, add};
use crate::sink::delivery::RetryConfig;
use crate::sink::encoding::encode_json;
use crate::sink::{Rejected, Sink, SinkError};

/// How a sink task delivers one batch: retries, dead letters, metrics.
pub(super) struct Deliverer {
    pub(super) name: String,
    pub(super) retry: RetryConfig,
    pub(super) metrics: Arc<SinkMetrics>,
    /// Whether deliveries go through, for `/readyz`.
    pub(super) health: Arc<SinkHealth>,
    pub(super) dead_letter_path: PathBuf,
}

impl Deliverer {
    /// Delivers a batch, retrying as configured, dead-lettering what cannot be delivered; when
    /// it returns, every event of the batch is delivered or dead-lettered.
    pub(super) async fn deliver(&self, sink: &mut dyn Sink, batch: &Batch) {
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
