//! `log_to_metric`: counters, gauges and histograms from event fields, served on `/metrics`
//! (the adapter pattern: the agent turns logs into the metrics the platform scrapes).
//!
//! Invariant: the events pass through unchanged (the transform may also end a path: the
//! events are then handled once counted), and each metric keeps at most `max_series` label
//! sets ([`crate::metrics::derived`]) of values of at most [`MAX_LABEL_BYTES`], the overflow
//! counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Transform, TransformError, keep_events};
use crate::event::Chunk;
use crate::metrics::derived::{DerivedKind, DerivedMetric};
use crate::metrics::{TransformMetrics, add};
use crate::sink::template::{Template, push_field};

/// Prometheus' default histogram buckets (seconds).
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A `log_to_metric` transform's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogToMetricConfig {
    /// The metrics.
    pub metrics: Vec<MetricConfig>,
    /// Label sets kept per metric at most.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
}

fn default_max_series() -> usize {
    1000
}

/// A metric's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    /// Counts events (or adds the field's value, with `increment_by_value`).
    Counter,
    /// The field's last value.
    Gauge,
    /// The distribution of the field's values.
    Histogram,
}

/// One metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: MetricType,
    /// The field it is made from: events without it are not counted.
    pub field: String,
    /// Its name (the field's by default), prefixed by `namespace_` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A prefix for the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, each a template over the event (`status: "{{ status }}"`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// A counter adds the field's value rather than 1.
    #[serde(default)]
    pub increment_by_value: bool,
    /// A histogram's upper bounds (Prometheus' defaults when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
}

/// One metric as built.
struct Built {
    field: String,
    needs_value: bool,
    tags: Vec<Template>,
    metric: Arc<DerivedMetric>,
}

/// A running `log_to_metric`.
pub struct LogToMetric {
    built: Vec<Built>,
    metrics: Vec<Arc<DerivedMetric>>,
    counters: Arc<TransformMetrics>,
}

/// True for a Prometheus metric or label name.
fn is_prometheus_name(name: &str, colons: bool) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

impl LogToMetric {
    /// Checks the settings of transform `key` (named `name`).
    pub fn new(
        key: &str,
        name: &str,
        config: &LogToMetricConfig,
        counters: Arc<TransformMetrics>,
    ) -> Result<LogToMetric, TransformError> {
        let invalid = |at: String, message: String| TransformError::Invalid { key: at, message };
        if config.metrics.is_empty() {
            return Err(invalid(
                format!("{key}.metrics"),
                "at least one metric is needed".into(),
            ));
        }
        if config.max_series == 0 {
            return Err(invalid(
                format!("{key}.max_series"),
                "must be at least 1".into(),
            ));
        }
        let mut built = Vec::new();
        for (i, metric) in config.metrics.iter().enumerate() {
            let at = format!("{key}.metrics[{i}]");
            let full = full_name(metric);
            if !is_prometheus_name(&full, true) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!(
                        "`{full}` is not a Prometheus metric name (letters, digits, `_`, `:`, not starting with a digit)"
                    ),
                ));
            }
            if built.iter().any(|b: &Built| b.metric.name == full) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("`{full}` is given twice"),
                ));
            }
            let mut tags = Vec::new();
            for (label, text) in &metric.tags {
                if !is_prometheus_name(label, false) || label.starts_with("__") {
                    return Err(invalid(
                        format!("{at}.tags.{label}"),
                        "not a Prometheus label name".into(),
                    ));
                }
                tags.push(
                    Template::parse(text)
                        .map_err(|e| invalid(format!("{at}.tags.{label}"), e.to_string()))?,
                );
            }
            let kind = match metric.kind {
                MetricType::Counter => DerivedKind::Counter,
                MetricType::Gauge => DerivedKind::Gauge,
                MetricType::Histogram => {
                    let bounds = metric
                        .buckets
                        .clone()
                        .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
                    let ascending = bounds.windows(2).all(|w| w[0] < w[1]);
                    if bounds.is_empty() || !ascending || bounds.iter().any(|b| !b.is_finite()) {
                        return Err(invalid(
                            format!("{at}.buckets"),
                            "must be finite numbers in ascending order".into(),
                        ));
                    }
                    DerivedKind::Histogram(bounds)
                }
            };
            if metric.buckets.is_some() && metric.kind != MetricType::Histogram {
                return Err(invalid(
                    format!("{at}.buckets"),
                    "only a histogram has buckets".into(),
                ));
            }
            let help = format!(
                "`{}` of events, by the log_to_metric transform `{name}`",
                metric.field
            );
            built.push(Built {
                field: metric.field.clone(),
                needs_value: metric.kind != MetricType::Counter || metric.increment_by_value,
                tags,
                metric: Arc::new(DerivedMetric::new(
                    full,
                    help,
                    kind,
                    metric.tags.keys().cloned().collect(),
                    config.max_series,
                )),
            });
        }
        let metrics = built.iter().map(|b| Arc::clone(&b.metric)).collect();
        Ok(LogToMetric {
            built,
            metrics,
            counters,
        })
    }

    /// Its metrics, for `/metrics`.
    pub fn metrics(&self) -> &[Arc<DerivedMetric>] {
        &self.metrics
    }
}

/// The full names of the metrics of `config` (as served), for the checks across transforms.
pub fn metric_names(config: &LogToMetricConfig) -> Vec<String> {
    config.metrics.iter().map(full_name).collect()
}

/// The name `metric` is served under: its name (the field's by default), after `namespace_`.
fn full_name(metric: &MetricConfig) -> String {
    let base = metric.name.clone().unwrap_or_else(|| metric.field.clone());
    match &metric.namespace {
        Some(namespace) => format!("{namespace}_{base}"),
        None => base,
    }
}

/// Longest label value kept: past it the value is cut (on a character boundary), so that a
/// field as long as a line cannot make a series as long.
pub const MAX_LABEL_BYTES: usize = 256;

impl Transform for LogToMetric {
    fn derived_metrics(&self) -> &[Arc<DerivedMetric>] {
        &self.metrics
    }

    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>) {
        let mut text = String::new();
        let mut labels = Vec::new();
        for event in &chunk.events {
            for metric in &self.built {
                text.clear();
                push_field(chunk, event, &metric.field, &mut text);
                if text.is_empty() {
                    continue;
                }
                let value = if metric.needs_value {
                    match text.trim().parse::<f64>() {
                        Ok(value) if value.is_finite() => value,
                        _ => continue,
                    }
                } else {
                    1.0
                };
                labels.clear();
                for tag in &metric.tags {
                    let mut label = String::new();
                    tag.render(chunk, event, DateTime::<Utc>::default(), &mut label);
                    if label.len() > MAX_LABEL_BYTES {
                        let mut cut = MAX_LABEL_BYTES;
                        while !label.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        label.truncate(cut);
                    }
                    labels.push(label);
                }
                metric.metric.record(&labels, value);
            }
        }
        let n = chunk.events.len() as u64;
        add(&self.counters.events_in, n);
        add(&self.counters.events_out, n);
        out.push(keep_events(chunk, chunk.events.iter().cloned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};
    use crate::metrics::derived::SeriesValue;
    use std::sync::atomic::Ordering;

    fn access_chunk(lines: &[&str]) -> Chunk {
        let pairs: Vec<(&[u8], u64)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_bytes(), i as u64 * 100))
            .collect();
        let mut chunk = testing::chunk(FileMeta::new(1, "web", "/l/access.log"), &pairs, 999);
        for (i, line) in lines.iter().enumerate() {
            testing::set_fields(&mut chunk, i, &serde_json::from_str(line).unwrap());
        }
        chunk
    }

    fn config(yaml: &str) -> LogToMetricConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn counts_by_status_and_bins_durations_passing_events_through() {
        let transform = LogToMetric::new(
            "transforms.m",
            "m",
            &config(
                "metrics:\n- {type: counter, field: status, name: http_requests_total, tags: {status: '{{ status }}'}}\n- {type: histogram, field: request_time, name: http_request_duration_seconds, buckets: [0.1, 1], tags: {status: '{{ status }}'}}\n- {type: gauge, field: queue, namespace: web}\n",
            ),
            Arc::default(),
        )
        .unwrap();
        let input = access_chunk(&[
            r#"{"status":200,"request_time":"0.05","queue":3}"#,
            r#"{"status":200,"request_time":0.5}"#,
            r#"{"status":500,"request_time":2.0,"queue":1}"#,
            r#"{"status":404}"#,
        ]);
        let mut out = Vec::new();
        transform.apply(&input, &mut out);
        assert_eq!(out[0].events.len(), 4, "events pass through");
        let [requests, durations, queue] = transform.metrics() else {
            panic!()
        };
        let label = |s: &str| vec![s.to_owned()];
        let requests = requests.snapshot();
        assert_eq!(requests[&label("200")], SeriesValue::Single(2.0));
        assert_eq!(requests[&label("404")], SeriesValue::Single(1.0));
        assert_eq!(
            durations.snapshot()[&label("200")],
            SeriesValue::Histogram {
                buckets: vec![1, 1],
                sum: 0.55,
                count: 2
            }
        );
        assert_eq!(queue.name, "web_queue");
        assert_eq!(
            queue.snapshot()[&Vec::<String>::new()],
            SeriesValue::Single(1.0)
        );
    }

    #[test]
    fn labels_past_max_series_are_counted_as_overflow() {
        let transform = LogToMetric::new(
            "t",
            "t",
            &config(
                "max_series: 2\nmetrics:\n- {type: counter, field: id, tags: {id: '{{ id }}'}}\n",
            ),
            Arc::default(),
        )
        .unwrap();
        let lines: Vec<String> = (0..10).map(|i| format!(r#"{{"id":"r{i}"}}"#)).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        transform.apply(&access_chunk(&refs), &mut Vec::new());
        let metric = &transform.metrics()[0];
        assert_eq!(metric.snapshot().len(), 2);
        assert_eq!(metric.overflow.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn bad_metrics_are_refused() {
        let cases = [
            ("metrics: []", "at least one"),
            (
                "metrics:\n- {type: counter, field: a, name: 'bad name'}",
                "Prometheus metric name",
            ),
            (
                "metrics:\n- {type: counter, field: a, tags: {'__x': '{{ a }}'}}",
                "label",
            ),
            (
                "metrics:\n- {type: histogram, field: a, buckets: [2, 1]}",
                "ascending",
            ),
            (
                "metrics:\n- {type: counter, field: a, buckets: [1]}",
                "only a histogram",
            ),
            (
                "metrics:\n- {type: counter, field: a}\n- {type: gauge, field: a}",
                "twice",
            ),
            (
                "max_series: 0\nmetrics:\n- {type: counter, field: a}",
                "at least 1",
            ),
        ];
        for (yaml, want) in cases {
            let error = LogToMetric::new("t", "t", &config(yaml), Arc::default())
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(want), "{yaml}: {error}");
        }
    }
}
