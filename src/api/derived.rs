//! The transforms' part of `/metrics`: their own counters (`log_agent_transform_*`) and the
//! metrics `log_to_metric` derives from events, under the names the user gave.
//!
//! Invariant: everything here is read at scrape time from what the transforms keep anyway;
//! nothing of it runs on the hot path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::metrics::Counters;
use crate::metrics::Metrics;
use crate::metrics::derived::{DerivedKind, SeriesValue};

/// The transforms' counters, named under the agent's prefix.
#[derive(Debug)]
pub struct TransformCollector {
    /// Where the counters are.
    pub metrics: Arc<Metrics>,
}

impl Collector for TransformCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let transforms = self.metrics.transforms();
        let mut families = [
            Counters::new(
                "transform_events_in",
                "Events that came into the transform.",
            ),
            Counters::new(
                "transform_events_out",
                "Events the transform handed on (once per output they went to).",
            ),
            Counters::new(
                "transform_events_dropped",
                "Events the transform dropped on purpose (abort, sampled or throttled out, drop_on_error); each counts as delivered.",
            ),
            Counters::new(
                "transform_errors",
                "Events on which a VRL program (or condition) failed.",
            ),
            Counters::new(
                "transform_throttle_keys_overflowed",
                "Events of a throttle whose key could not be told apart (past max_keys).",
            ),
        ];
        for (name, m) in &transforms {
            let values = [
                &m.events_in,
                &m.events_out,
                &m.events_dropped,
                &m.errors,
                &m.keys_overflowed,
            ];
            for (family, value) in families.iter_mut().zip(values) {
                family.sample(
                    vec![("transform", name.as_str())],
                    ConstCounter::new(value.load(Ordering::Relaxed)),
                );
            }
        }
        for family in &families {
            family.encode(&mut encoder)?;
        }
        let live = self.metrics.derived.live();
        let mut overflow = Counters::new(
            "transform_metric_series_overflow",
            "Events whose label set a log_to_metric metric did not record: it had max_series already.",
        );
        for (transform, metric) in &live {
            overflow.sample(
                vec![
                    ("transform", transform.as_str()),
                    ("metric", metric.name.as_str()),
                ],
                ConstCounter::new(metric.overflow.load(Ordering::Relaxed)),
            );
        }
        overflow.encode(&mut encoder)
    }
}

/// The metrics `log_to_metric` transforms derive, under their own names.
#[derive(Debug)]
pub struct DerivedCollector {
    /// Where the metrics are registered.
    pub metrics: Arc<Metrics>,
}

impl Collector for DerivedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for (_, metric) in self.metrics.derived.live() {
            let series = metric.snapshot();
            if series.is_empty() {
                continue;
            }
            let (name, kind) = match &metric.kind {
                // The text format adds `_total` to a counter's name itself.
                DerivedKind::Counter => (
                    metric.name.strip_suffix("_total").unwrap_or(&metric.name),
                    MetricType::Counter,
                ),
                DerivedKind::Gauge => (metric.name.as_str(), MetricType::Gauge),
                DerivedKind::Histogram(_) => (metric.name.as_str(), MetricType::Histogram),
            };
            let mut family = encoder.encode_descriptor(name, &metric.help, None, kind)?;
            for (values, value) in &series {
                let labels: Vec<(&str, &str)> = metric
                    .labels
                    .iter()
                    .map(String::as_str)
                    .zip(values.iter().map(String::as_str))
                    .collect();
                let mut sample = family.encode_family(&labels)?;
                match (value, &metric.kind) {
                    (SeriesValue::Single(total), DerivedKind::Counter) => {
                        sample.encode_counter::<NoLabelSet, _, f64>(total, None)?
                    }
                    (SeriesValue::Single(last), _) => sample.encode_gauge(last)?,
                    (
                        SeriesValue::Histogram {
                            buckets,
                            sum,
                            count,
                        },
                        DerivedKind::Histogram(bounds),
                    ) => {
                        let pairs: Vec<(f64, u64)> = bounds
                            .iter()
                            .copied()
                            .zip(buckets.iter().copied())
                            .collect();
                        sample.encode_histogram::<NoLabelSet>(*sum, *count, &pairs, None)?
                    }
                    (SeriesValue::Histogram { .. }, _) => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::derived::DerivedMetric;
    use prometheus_client::registry::Registry;

    #[test]
    fn derived_metrics_are_written_under_their_own_names() {
        let metrics = Arc::new(Metrics::default());
        let requests = Arc::new(DerivedMetric::new(
            "http_requests_total".into(),
            "requests".into(),
            DerivedKind::Counter,
            vec!["status".into()],
            10,
        ));
        let durations = Arc::new(DerivedMetric::new(
            "http_request_duration_seconds".into(),
            "durations".into(),
            DerivedKind::Histogram(vec![0.1, 1.0]),
            vec!["status".into()],
            10,
        ));
        requests.record(&["200".into()], 1.0);
        requests.record(&["200".into()], 1.0);
        durations.record(&["200".into()], 0.05);
        durations.record(&["200".into()], 3.0);
        metrics
            .derived
            .register("m", &[Arc::clone(&requests), Arc::clone(&durations)]);
        metrics.transform("m");
        let mut registry = Registry::default();
        registry.register_collector(Box::new(DerivedCollector {
            metrics: Arc::clone(&metrics),
        }));
        registry
            .sub_registry_with_prefix("log_agent")
            .register_collector(Box::new(TransformCollector { metrics }));
        let text = super::super::metrics::render(&registry).unwrap();
        for want in [
            "http_requests_total{status=\"200\"} 2.0",
            "http_request_duration_seconds_bucket{status=\"200\",le=\"0.1\"} 1",
            "http_request_duration_seconds_bucket{status=\"200\",le=\"+Inf\"} 2",
            "http_request_duration_seconds_count{status=\"200\"} 2",
            "log_agent_transform_events_in_total{transform=\"m\"} 0",
            "log_agent_transform_metric_series_overflow_total{transform=\"m\",metric=\"http_requests_total\"} 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
