//! `throttle`: at most `threshold` events per window and key; the rest dropped and counted.
//!
//! Invariant: the state is bounded whatever the events say: at most `max_keys` keys are told
//! apart in a window (by a 64-bit hash, whatever their length; events of further keys share one
//! budget, and are counted as such), and every window starts from nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::vrl_program::VrlProgram;
use super::{ErrorLog, Exclude, Transform, TransformError, compile_exclude, keep_counted};
use crate::event::Chunk;
use crate::metrics::{TransformMetrics, add};
use crate::sink::template::push_field;

/// A `throttle` transform's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Events let through per window (and key).
    pub threshold: u64,
    /// The window's length in seconds.
    #[serde(default = "one_second")]
    pub window_secs: f64,
    /// The field whose value each has its own budget (one budget for all without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    /// A VRL condition: the events matching it are never throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Keys told apart in one window at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn one_second() -> f64 {
    1.0
}

fn default_max_keys() -> usize {
    10_000
}

/// The counts of the current window.
struct Window {
    started: Instant,
    /// By a hash of the key: a key as long as a line costs no more than a short one.
    counts: HashMap<u64, u64>,
    /// Events of keys past `max_keys`, which share one budget.
    overflow: u64,
}

/// A running `throttle`.
pub struct Throttle {
    key: String,
    threshold: u64,
    window: Duration,
    key_field: Option<String>,
    exclude: Option<VrlProgram>,
    max_keys: usize,
    state: Mutex<Window>,
    metrics: Arc<TransformMetrics>,
    errors: ErrorLog,
}

impl Throttle {
    /// Checks the settings of transform `key`.
    pub fn new(
        key: &str,
        config: &ThrottleConfig,
        metrics: Arc<TransformMetrics>,
    ) -> Result<Throttle, TransformError> {
        let invalid = |field: &str, message: &str| TransformError::Invalid {
            key: format!("{key}.{field}"),
            message: message.to_owned(),
        };
        if config.threshold == 0 {
            return Err(invalid("threshold", "must be at least 1"));
        }
        let window = Duration::try_from_secs_f64(config.window_secs)
            .ok()
            .filter(|window| *window >= Duration::from_millis(1))
            .ok_or_else(|| invalid("window_secs", "must be a number of seconds, at least 0.001"))?;
        if config.max_keys == 0 {
            return Err(invalid("max_keys", "must be at least 1"));
        }
        Ok(Throttle {
            key: key.to_owned(),
            threshold: config.threshold,
            window,
            key_field: config.key_field.clone(),
            exclude: compile_exclude(key, config.exclude.as_deref())?,
            max_keys: config.max_keys,
            state: Mutex::new(Window {
                started: Instant::now(),
                counts: HashMap::new(),
                overflow: 0,
            }),
            metrics,
            errors: ErrorLog::default(),
        })
    }

    /// True when one more event of the key hashed to `key` fits the window's budget (and
    /// counts it).
    fn admit(&self, window: &mut Window, key: u64) -> bool {
        if !window.counts.contains_key(&key) {
            if window.counts.len() >= self.max_keys {
                add(&self.metrics.keys_overflowed, 1);
                return take(&mut window.overflow, self.threshold);
            }
            window.counts.insert(key, 0);
        }
        window
            .counts
            .get_mut(&key)
            .is_some_and(|count| take(count, self.threshold))
    }
}

/// Counts one more event against `count` when it is under `threshold`.
fn take(count: &mut u64, threshold: u64) -> bool {
    if *count >= threshold {
        return false;
    }
    *count += 1;
    true
}

impl Transform for Throttle {
    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>) {
        let mut kept = Vec::with_capacity(chunk.events.len());
        let mut text = String::new();
        let mut exclude = Exclude::new(&self.key, self.exclude.as_ref(), &self.errors);
        // The conditions and keys first, without the window's lock: the sources sharing the
        // throttle wait for one another only while the counts are taken.
        let decisions: Vec<Option<u64>> = chunk
            .events
            .iter()
            .map(|event| {
                if exclude.matches(chunk, event) {
                    return None;
                }
                text.clear();
                if let Some(field) = &self.key_field {
                    push_field(chunk, event, field, &mut text);
                }
                Some(xxh3_64(text.as_bytes()))
            })
            .collect();
        let mut window = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(window.started) >= self.window {
            window.started = now;
            window.counts.clear();
            window.overflow = 0;
        }
        for (event, decision) in chunk.events.iter().zip(decisions) {
            let keep = match decision {
                None => true,
                Some(key) => self.admit(&mut window, key),
            };
            if keep {
                kept.push(event.clone());
            }
        }
        drop(window);
        keep_counted(&self.metrics, chunk, kept, exclude.failed, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};
    use std::sync::atomic::Ordering;

    fn chunk(pods: &[&str]) -> Chunk {
        let owned: Vec<String> = pods.iter().map(|p| format!(r#"{{"pod":"{p}"}}"#)).collect();
        let lines: Vec<(&[u8], u64)> = owned
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_bytes(), i as u64 * 20))
            .collect();
        let mut chunk = testing::chunk(FileMeta::new(1, "app", "/l/a.log"), &lines, 1000);
        for (i, line) in owned.iter().enumerate() {
            testing::set_fields(&mut chunk, i, &serde_json::from_str(line).unwrap());
        }
        chunk
    }

    fn throttle(threshold: u64, max_keys: usize, exclude: Option<&str>) -> Throttle {
        let config = ThrottleConfig {
            threshold,
            window_secs: 3600.0,
            key_field: Some("pod".into()),
            exclude: exclude.map(str::to_owned),
            max_keys,
        };
        Throttle::new("transforms.t", &config, Arc::default()).unwrap()
    }

    fn kept(throttle: &Throttle, chunk: &Chunk) -> Vec<u64> {
        let mut out = Vec::new();
        throttle.apply(chunk, &mut out);
        out[0].events.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn each_key_gets_its_budget_per_window_across_chunks() {
        let throttle = throttle(2, 100, None);
        let input = chunk(&["a", "a", "b", "a", "b", "b", "c"]);
        assert_eq!(kept(&throttle, &input), [0, 20, 40, 80, 120]);
        assert_eq!(
            kept(&throttle, &chunk(&["a", "c", "c"])),
            [20],
            "the window goes on"
        );
        assert_eq!(throttle.metrics.events_dropped.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn keys_past_max_keys_share_one_budget_and_are_counted() {
        let throttle = throttle(1, 2, None);
        let input = chunk(&["a", "b", "c", "d", "e"]);
        assert_eq!(
            kept(&throttle, &input),
            [0, 20, 40],
            "a, b, then one for the rest"
        );
        assert_eq!(throttle.metrics.keys_overflowed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn excluded_events_pass_and_bad_settings_are_refused() {
        let throttle = throttle(1, 10, Some(".pod == \"vip\""));
        assert_eq!(
            kept(&throttle, &chunk(&["vip", "vip", "x", "x"])),
            [0, 20, 40]
        );
        for (threshold, window_secs, max_keys) in
            [(0, 1.0, 1), (1, 0.0, 1), (1, f64::NAN, 1), (1, 1.0, 0)]
        {
            let config = ThrottleConfig {
                threshold,
                window_secs,
                key_field: None,
                exclude: None,
                max_keys,
            };
            assert!(Throttle::new("t", &config, Arc::default()).is_err());
        }
    }
}
