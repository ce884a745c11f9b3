//! `sample`: keeps one event in `rate`.
//!
//! Invariant: with a `key_field`, whether an event that has the key is kept depends on its key
//! only, so the events of one request (one trace, one user) are kept or dropped together;
//! events without it are kept one in `rate`; events matching `exclude` (errors, say) are always
//! kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::vrl_program::VrlProgram;
use super::{ErrorLog, Exclude, Transform, TransformError, compile_exclude, keep_counted};
use crate::event::Chunk;
use crate::metrics::TransformMetrics;
use crate::sink::template::push_field;

/// A `sample` transform's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one event in this many.
    pub rate: u64,
    /// The field whose value decides, so that events with the same value are kept together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    /// A VRL condition: the events matching it are always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
}

/// A running `sample`.
pub struct Sample {
    key: String,
    rate: u64,
    key_field: Option<String>,
    exclude: Option<VrlProgram>,
    seen: AtomicU64,
    metrics: Arc<TransformMetrics>,
    errors: ErrorLog,
}

impl Sample {
    /// Checks the settings of transform `key`.
    pub fn new(
        key: &str,
        config: &SampleConfig,
        metrics: Arc<TransformMetrics>,
    ) -> Result<Sample, TransformError> {
        if config.rate == 0 {
            return Err(TransformError::Invalid {
                key: format!("{key}.rate"),
                message: "must be at least 1".to_owned(),
            });
        }
        Ok(Sample {
            key: key.to_owned(),
            rate: config.rate,
            key_field: config.key_field.clone(),
            exclude: compile_exclude(key, config.exclude.as_deref())?,
            seen: AtomicU64::new(0),
            metrics,
            errors: ErrorLog::default(),
        })
    }
}

impl Transform for Sample {
    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>) {
        let mut kept = Vec::with_capacity(chunk.events.len() / self.rate as usize + 1);
        let mut text = String::new();
        let mut exclude = Exclude::new(&self.key, self.exclude.as_ref(), &self.errors);
        for event in &chunk.events {
            if exclude.matches(chunk, event) {
                kept.push(event.clone());
                continue;
            }
            text.clear();
            if let Some(field) = &self.key_field {
                push_field(chunk, event, field, &mut text);
            }
            // An event without the key is sampled on its own, one in `rate` as without a key:
            // hashing the missing key would keep all such events or none.
            let keep = if text.is_empty() {
                self.seen
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(self.rate)
            } else {
                xxh3_64(text.as_bytes()).is_multiple_of(self.rate)
            };
            if keep {
                kept.push(event.clone());
            }
        }
        keep_counted(&self.metrics, chunk, kept, exclude.failed, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};

    fn lines(n: usize, line: impl Fn(usize) -> String) -> Chunk {
        let owned: Vec<(String, u64)> = (0..n).map(|i| (line(i), i as u64 * 100)).collect();
        let lines: Vec<(&[u8], u64)> = owned.iter().map(|(l, o)| (l.as_bytes(), *o)).collect();
        let mut chunk = testing::chunk(FileMeta::new(1, "app", "/l/a.log"), &lines, n as u64 * 100);
        for (i, (line, _)) in owned.iter().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            testing::set_fields(&mut chunk, i, &value);
        }
        chunk
    }

    fn sample(rate: u64, key_field: Option<&str>, exclude: Option<&str>) -> Sample {
        let config = SampleConfig {
            rate,
            key_field: key_field.map(str::to_owned),
            exclude: exclude.map(str::to_owned),
        };
        Sample::new("transforms.s", &config, Arc::default()).unwrap()
    }

    fn kept(sample: &Sample, chunk: &Chunk) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        sample.apply(chunk, &mut out);
        let [output] = &out[..] else { panic!() };
        assert_eq!(output.end_offset, chunk.end_offset);
        output
            .events
            .iter()
            .map(|e| {
                let fields = output.fields(e).unwrap();
                serde_json::Value::Object(
                    fields
                        .iter()
                        .map(|f| (f.name().into_owned(), f.to_value()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn keeps_one_in_rate_and_always_the_excluded() {
        let chunk = lines(100, |i| {
            let level = if i % 25 == 0 { "error" } else { "debug" };
            format!(r#"{{"i":{i},"level":"{level}"}}"#)
        });
        assert_eq!(kept(&sample(10, None, None), &chunk).len(), 10);
        let with_errors = kept(&sample(10, None, Some(".level == \"error\"")), &chunk);
        let errors = with_errors.iter().filter(|v| v["level"] == "error").count();
        assert_eq!(errors, 4, "every error kept");
        assert!(with_errors.len() < 20);
    }

    #[test]
    fn a_key_keeps_or_drops_its_events_together() {
        let chunk = lines(400, |i| format!(r#"{{"trace":"t{}","i":{i}}}"#, i % 40));
        let kept = kept(&sample(4, Some("trace"), None), &chunk);
        let mut per_trace = std::collections::BTreeMap::<String, usize>::new();
        for event in &kept {
            *per_trace
                .entry(event["trace"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert!(
            !per_trace.is_empty() && per_trace.len() < 40,
            "{per_trace:?}"
        );
        assert!(
            per_trace.values().all(|n| *n == 10),
            "all ten events of a kept trace: {per_trace:?}"
        );
    }

    #[test]
    fn events_without_the_key_are_kept_one_in_rate() {
        let keyless = lines(100, |i| format!(r#"{{"i":{i}}}"#));
        assert_eq!(kept(&sample(4, Some("trace"), None), &keyless).len(), 25);
    }

    #[test]
    fn a_rate_of_zero_is_refused() {
        let config = SampleConfig {
            rate: 0,
            key_field: None,
            exclude: None,
        };
        assert!(Sample::new("s", &config, Arc::default()).is_err());
    }
}
