//! The bounded buffer in front of each sink.
//!
//! Capacity is counted twice, in events and in bytes: a chunk takes one event permit per event
//! and one byte permit per KiB of the read data it holds when it enters (a chunk larger than the
//! whole buffer takes all of them), and the sink task gives them back once the chunk's last event
//! is delivered. So the bound covers everything between the tailer and the sink's destination,
//! including the batch in flight. When the buffer is full, `block` makes the tailer wait (the file
//! on disk is the buffer), and `drop_newest` drops the chunk for this sink and counts its events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{Semaphore, mpsc};

use crate::event::Batch;
use crate::event::{Chunk, FileKey};
use crate::metrics::{SinkMetrics, add};
use crate::sink::delivery::{BYTES_PER_PERMIT, BufferConfig, WhenFull};

/// The buffer is closed: its sink is gone or the agent is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sink buffer closed")]
pub struct Closed;

/// Offset markers of dropped chunks that found the channel full, by file and lane (each lane
/// acks on its own): the receiver takes them once it has emptied the channel, so they still
/// follow what was sent before them.
type Overflow = Arc<Mutex<HashMap<(FileKey, u32), Arc<Chunk>>>>;

/// The sending side, held by the router of every source that feeds the sink.
#[derive(Debug, Clone)]
pub struct BufferSender {
    tx: mpsc::Sender<Arc<Chunk>>,
    events: Arc<Semaphore>,
    kib: Arc<Semaphore>,
    config: BufferConfig,
    metrics: Arc<SinkMetrics>,
    overflow: Overflow,
}

/// The receiving side, held by the sink task.
#[derive(Debug)]
pub struct BufferReceiver {
    rx: mpsc::Receiver<Arc<Chunk>>,
    events: Arc<Semaphore>,
    kib: Arc<Semaphore>,
    config: BufferConfig,
    metrics: Arc<SinkMetrics>,
    overflow: Overflow,
}

/// A buffer of `config.max_events` events and `config.max_bytes` bytes.
pub fn channel(config: BufferConfig, metrics: Arc<SinkMetrics>) -> (BufferSender, BufferReceiver) {
    // Chunks without events (acks of skipped or dropped bytes) take a slot but no event permit;
    // the channel's own bound keeps those bounded too.
    let (tx, rx) = mpsc::channel(config.max_events.clamp(16, 4096));
    let events = Arc::new(Semaphore::new(config.max_events));
    let kib = Arc::new(Semaphore::new(config.max_kib()));
    let overflow = Overflow::default();
    let sender = BufferSender {
        tx,
        events: Arc::clone(&events),
        kib: Arc::clone(&kib),
        config,
        metrics: Arc::clone(&metrics),
        overflow: Arc::clone(&overflow),
    };
    let receiver = BufferReceiver {
        rx,
        events,
        kib,
        config,
        metrics,
        overflow,
    };
    (sender, receiver)
}

/// The (event, KiB) permits a chunk takes in a buffer of `config`.
fn permits_for(chunk: &Chunk, config: &BufferConfig) -> (u32, u32) {
    let events = chunk.events.len().min(config.max_events);
    let kib = chunk
        .data
        .len()
        .div_ceil(BYTES_PER_PERMIT)
        .min(config.max_kib());
    (
        u32::try_from(events).unwrap_or(u32::MAX),
        u32::try_from(kib).unwrap_or(u32::MAX),
    )
}

impl BufferSender {
    /// Hands a chunk to the sink, waiting for room (`block`) or dropping it (`drop_newest`).
    pub async fn send(&self, chunk: Arc<Chunk>) -> Result<(), Closed> {
        let (events, kib) = permits_for(&chunk, &self.config);
        match self.config.when_full {
            WhenFull::Block => {
                let e = self.events.acquire_many(events).await.map_err(|_| Closed)?;
                let k = self.kib.acquire_many(kib).await.map_err(|_| Closed)?;
                e.forget();
                k.forget();
                add(&self.metrics.buffered_events, chunk.events.len() as u64);
                self.tx.send(chunk).await.map_err(|_| Closed)
            }
            WhenFull::DropNewest => self.try_send(chunk, events, kib),
        }
    }

    fn try_send(&self, chunk: Arc<Chunk>, events: u32, kib: u32) -> Result<(), Closed> {
        use tokio::sync::TryAcquireError;
        let acquired = match (
            self.events.try_acquire_many(events),
            self.kib.try_acquire_many(kib),
        ) {
            (Ok(e), Ok(k)) => Some((e, k)),
            (Err(TryAcquireError::Closed), _) | (_, Err(TryAcquireError::Closed)) => {
                return Err(Closed);
            }
            _ => None,
        };
        if let Some((e, k)) = acquired {
            let n = chunk.events.len() as u64;
            match self.tx.try_send(chunk) {
                Ok(()) => {
                    e.forget();
                    k.forget();
                    add(&self.metrics.buffered_events, n);
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(Closed),
                // Room in the permits but not in the channel: dropped all the same (the
                // permits go back as `e` and `k` drop).
                Err(TrySendError::Full(chunk)) => return self.drop_chunk(&chunk),
            }
        }
        self.drop_chunk(&chunk)
    }

    /// Counts a dropped chunk's events and sends on the offset it covered, so the checkpoint
    /// passes the dropped lines once what came before them is delivered.
    fn drop_chunk(&self, chunk: &Chunk) -> Result<(), Closed> {
        add(&self.metrics.dropped_buffer_full, chunk.events.len() as u64);
        let marker = Arc::new(Chunk {
            file: Arc::clone(&chunk.file),
            read_time: Arc::clone(&chunk.read_time),
            data: bytes::Bytes::new(),
            events: Vec::new(),
            fields: Arc::default(),
            end_offset: chunk.end_offset,
            lane: chunk.lane,
        });
        match self.tx.try_send(marker) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Closed),
            Err(TrySendError::Full(marker)) => {
                let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
                let slot = overflow
                    .entry((marker.file.key, marker.lane))
                    .or_insert_with(|| Arc::clone(&marker));
                if slot.end_offset < marker.end_offset {
                    *slot = marker;
                }
                Ok(())
            }
        }
    }

    /// A read-only view of how full the buffer is, for metrics. It holds no sender, so the
    /// buffer still closes when the sources are done.
    pub fn gauge(&self) -> BufferGauge {
        BufferGauge {
            kib: Arc::clone(&self.kib),
            config: self.config,
        }
    }

    /// Wakes every sender waiting for room with [`Closed`]: the agent is giving up.
    pub fn close(&self) {
        self.closer().close();
    }

    /// What closes the buffer, without holding it open as a sender does.
    pub fn closer(&self) -> BufferCloser {
        BufferCloser {
            events: Arc::clone(&self.events),
            kib: Arc::clone(&self.kib),
        }
    }
}

/// Closes a buffer ([`BufferSender::close`]) without being one of its senders, so the buffer
/// still ends once its senders are gone.
#[derive(Debug, Clone)]
pub struct BufferCloser {
    events: Arc<Semaphore>,
    kib: Arc<Semaphore>,
}

impl BufferCloser {
    /// Wakes every sender waiting for room with [`Closed`].
    pub fn close(&self) {
        self.events.close();
        self.kib.close();
    }
}

/// How full a sink's buffer is, read at scrape time.
#[derive(Debug, Clone)]
pub struct BufferGauge {
    kib: Arc<Semaphore>,
    config: BufferConfig,
}

impl BufferGauge {
    /// The buffer's limits.
    pub fn config(&self) -> BufferConfig {
        self.config
    }

    /// Bytes of read data held (counted in whole KiB, as the buffer counts them).
    pub fn used_bytes(&self) -> u64 {
        let used_kib = self
            .config
            .max_kib()
            .saturating_sub(self.kib.available_permits());
        (used_kib * BYTES_PER_PERMIT) as u64
    }
}

impl BufferReceiver {
    /// The next chunk, or `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<Arc<Chunk>> {
        match self.rx.try_recv() {
            Ok(chunk) => return Some(chunk),
            Err(TryRecvError::Empty) => {
                if let Some(marker) = self.take_overflow() {
                    return Some(marker);
                }
            }
            Err(TryRecvError::Disconnected) => return self.take_overflow(),
        }
        match self.rx.recv().await {
            Some(chunk) => Some(chunk),
            None => self.take_overflow(),
        }
    }

    fn take_overflow(&self) -> Option<Arc<Chunk>> {
        let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
        let key = *overflow.keys().next()?;
        overflow.remove(&key)
    }

    /// Gives back the room of the events of `batch`, delivered or given up on. A chunk's
    /// permits come back with its last event, so one spread over batches is counted once.
    pub fn release(&self, batch: &Batch) {
        for part in &batch.parts {
            self.metrics
                .buffered_events
                .fetch_sub(part.range.len() as u64, Ordering::Relaxed);
            if part.range.end == part.chunk.events.len() {
                let (events, kib) = permits_for(&part.chunk, &self.config);
                self.events.add_permits(events as usize);
                self.kib.add_permits(kib as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, FileMeta};

    fn chunk(events: usize, bytes: usize, end_offset: u64) -> Arc<Chunk> {
        Arc::new(Chunk {
            file: Arc::new(FileMeta::new(1, "s", "/p")),
            read_time: "t".into(),
            data: bytes::Bytes::from(vec![b'x'; bytes]),
            events: (0..events).map(|i| Event::new(0, 1, i as u64)).collect(),
            fields: Arc::default(),
            end_offset,
            lane: 0,
        })
    }

    fn drop_newest(
        max_events: usize,
        max_bytes: usize,
    ) -> (BufferSender, BufferReceiver, Arc<SinkMetrics>) {
        let metrics = Arc::new(SinkMetrics::default());
        let config = BufferConfig {
            max_events,
            max_bytes,
            when_full: WhenFull::DropNewest,
        };
        let (tx, rx) = channel(config, Arc::clone(&metrics));
        (tx, rx, metrics)
    }

    #[tokio::test]
    async fn drop_newest_counts_events_and_bytes_and_keeps_the_offsets_flowing() {
        // (events, bytes) per chunk sent, and whether it is kept, in a buffer of 10 events, 4 KiB
        let (tx, mut rx, metrics) = drop_newest(10, 4096);
        let steps = [
            (4, 1000, true),
            (4, 2000, true),
            (4, 10, false),
            (1, 2000, false),
            (1, 100, true),
        ];
        for (i, (events, bytes, _)) in steps.iter().enumerate() {
            tx.send(chunk(*events, *bytes, i as u64 * 10 + 10))
                .await
                .unwrap();
        }
        let mut received = Vec::new();
        while let Ok(c) =
            tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await
        {
            let Some(c) = c else { break };
            received.push((c.events.len(), c.end_offset));
        }
        let want: Vec<(usize, u64)> = steps
            .iter()
            .enumerate()
            .map(|(i, (events, _, kept))| (if *kept { *events } else { 0 }, i as u64 * 10 + 10))
            .collect();
        assert_eq!(
            received, want,
            "dropped chunks leave an empty marker with their offset"
        );
        assert_eq!(metrics.dropped_buffer_full.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn the_gauge_follows_the_bytes_held() {
        let metrics = Arc::new(SinkMetrics::default());
        let config = BufferConfig {
            max_events: 100,
            max_bytes: 64 * 1024,
            when_full: WhenFull::Block,
        };
        let (tx, mut rx) = channel(config, metrics);
        let gauge = tx.gauge();
        // (bytes of the chunk sent, bytes held after)
        let steps = [(1, 1024), (1024, 2048), (3000, 5120)];
        for (bytes, held) in steps {
            tx.send(chunk(1, bytes, 0)).await.unwrap();
            assert_eq!(gauge.used_bytes(), held, "after a chunk of {bytes} bytes");
        }
        let mut batcher = super::super::batcher::Batcher::new(Default::default());
        for _ in steps {
            batcher.push(rx.recv().await.unwrap());
            while batcher.next_full().is_some() {}
        }
        rx.release(&batcher.take());
        assert_eq!(gauge.used_bytes(), 0);
        assert_eq!(gauge.config(), config);
    }

    #[tokio::test]
    async fn markers_that_find_the_channel_full_wait_on_the_side_and_still_arrive() {
        // A channel of 16 slots, full of one-event chunks; the 17th chunk finds no event permit.
        let (tx, mut rx, _) = drop_newest(16, 1 << 20);
        for i in 0..16 {
            tx.send(chunk(1, 10, i)).await.unwrap();
        }
        tx.send(chunk(1, 10, 99)).await.unwrap();
        drop(tx);
        let mut offsets = Vec::new();
        while let Some(c) = rx.recv().await {
            offsets.push(c.end_offset);
        }
        assert_eq!(offsets.len(), 17);
        assert_eq!(offsets.last(), Some(&99));
    }
}
