//! Live taps: copies of the events that pass a point of the topology (a source, a transform's
//! output, a sink's input), for `log-agent tap`.
//!
//! Invariant: a tap never slows or changes the pipeline. With nothing tapped, a point costs one
//! atomic load per chunk; a tapped point encodes its events into a bounded channel per
//! subscriber and drops (and counts) what a slow reader has no room for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::Chunk;
use crate::sink::encoding::encode_json;

/// Lines a subscriber may be behind by before events are dropped for it.
pub const TAP_QUEUE: usize = 1024;
/// Subscribers at once at most.
pub const MAX_TAPS: usize = 16;

/// One reader of a tap.
struct Subscriber {
    pattern: glob::Pattern,
    lines: mpsc::Sender<Bytes>,
    /// Events dropped for it since its last line went through.
    dropped: AtomicU64,
}

/// Why a tap could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The filter is not a glob pattern.
    #[error("the filter is not a glob pattern: {0}")]
    Pattern(#[from] glob::PatternError),
    /// [`MAX_TAPS`] readers are tapping already.
    #[error("{MAX_TAPS} taps are open already")]
    Busy,
}

/// The subscribers of every point, shared by every router of the agent.
#[derive(Default)]
pub struct TapHub {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    active: AtomicUsize,
}

impl std::fmt::Debug for TapHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapHub")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish()
    }
}

impl TapHub {
    /// Taps the points whose names match `filter` (a glob: `app`, `route.*`, `sink:*`): their
    /// events come as NDJSON lines (`{"point": …, "event": …}`) until the receiver is dropped.
    pub fn subscribe(&self, filter: &str) -> Result<mpsc::Receiver<Bytes>, TapError> {
        let pattern = glob::Pattern::new(filter)?;
        let mut subscribers = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| !s.lines.is_closed());
        if subscribers.len() >= MAX_TAPS {
            return Err(TapError::Busy);
        }
        let (lines, receiver) = mpsc::channel(TAP_QUEUE);
        subscribers.push(Arc::new(Subscriber {
            pattern,
            lines,
            dropped: AtomicU64::new(0),
        }));
        self.active.store(subscribers.len(), Ordering::Relaxed);
        Ok(receiver)
    }

    /// True when someone may be tapping (the cheap check before [`TapHub::offer`]).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Copies the events of `chunk`, passing `point`, to the subscribers tapping it: encoded
    /// once for all of them, and not at all for a reader whose queue is full.
    pub fn offer(&self, point: &str, chunk: &Chunk) {
        let subscribers: Vec<Arc<Subscriber>> = {
            let all = self.subscribers.read().unwrap_or_else(|p| p.into_inner());
            all.iter()
                .filter(|s| s.pattern.matches(point))
                .cloned()
                .collect()
        };
        if subscribers.is_empty() {
            return;
        }
        let n = chunk.events.len() as u64;
        let room = subscribers
            .iter()
            .map(|s| s.lines.capacity())
            .max()
            .unwrap_or(0);
        let mut lines = Vec::new();
        let mut event = Vec::new();
        for e in chunk.events.iter().take(room) {
            let mut line = Vec::with_capacity(64 + e.len as usize);
            line.extend_from_slice(b"{\"point\":");
            crate::event::json::write_json_str(&mut line, point.as_bytes());
            line.extend_from_slice(b",\"event\":");
            event.clear();
            encode_json(chunk, e, &mut event);
            event.pop(); // its newline
            line.extend_from_slice(&event);
            line.extend_from_slice(b"}\n");
            lines.push(Bytes::from(line));
        }
        let mut gone = false;
        for subscriber in subscribers {
            let dropped = subscriber.dropped.load(Ordering::Relaxed);
            if dropped > 0 && subscriber.lines.capacity() > 1 {
                let notice = format!("{{\"tap_dropped\":{dropped}}}\n");
                if subscriber.lines.try_send(Bytes::from(notice)).is_ok() {
                    subscriber.dropped.store(0, Ordering::Relaxed);
                }
            }
            let mut sent = 0;
            for line in &lines {
                match subscriber.lines.try_send(line.clone()) {
                    Ok(()) => sent += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => break,
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        gone = true;
                        break;
                    }
                }
            }
            subscriber.dropped.fetch_add(n - sent, Ordering::Relaxed);
        }
        if gone {
            let mut all = self.subscribers.write().unwrap_or_else(|p| p.into_inner());
            all.retain(|s| !s.lines.is_closed());
            self.active.store(all.len(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};

    fn chunk(n: usize) -> Chunk {
        let lines: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
        let pairs: Vec<(&[u8], u64)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_bytes(), i as u64 * 10))
            .collect();
        testing::chunk(FileMeta::new(1, "app", "/l/a.log"), &pairs, n as u64 * 10)
    }

    #[test]
    fn only_matching_points_are_copied_and_a_slow_reader_loses_lines_counted() {
        let hub = TapHub::default();
        assert!(!hub.is_active());
        let mut route = hub.subscribe("split.*").unwrap();
        assert!(hub.is_active());
        hub.offer("app", &chunk(3));
        hub.offer("split.errors", &chunk(2));
        let first: serde_json::Value = serde_json::from_slice(&route.try_recv().unwrap()).unwrap();
        assert_eq!(first["point"], "split.errors");
        assert_eq!(first["event"]["message"], "line 0");
        assert!(
            route.try_recv().is_ok() && route.try_recv().is_err(),
            "two lines, none of app"
        );
        hub.offer("split.errors", &chunk(TAP_QUEUE + 10));
        let mut got = 0;
        while route.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, TAP_QUEUE);
        hub.offer("split.errors", &chunk(1));
        let notice: serde_json::Value = serde_json::from_slice(&route.try_recv().unwrap()).unwrap();
        assert_eq!(notice["tap_dropped"], 10);
        drop(route);
        hub.offer("split.errors", &chunk(1));
        assert!(!hub.is_active(), "a reader gone is forgotten");
    }

    #[test]
    fn taps_are_capped_and_filters_checked() {
        let hub = TapHub::default();
        assert!(matches!(hub.subscribe("[x"), Err(TapError::Pattern(_))));
        let open: Vec<_> = (0..MAX_TAPS).map(|_| hub.subscribe("*").unwrap()).collect();
        assert!(matches!(hub.subscribe("*"), Err(TapError::Busy)));
        drop(open);
        assert!(hub.subscribe("*").is_ok(), "closed taps make room");
    }
}
