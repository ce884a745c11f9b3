//! Metrics the user derives from events (`log_to_metric`): counters, gauges and histograms
//! whose labels come from event fields, served on `/metrics` beside the agent's own.
//!
//! Invariant: a metric holds at most `max_series` label sets, whatever the events say; a new
//! label set past the cap is not recorded but counted (`overflow`), so a field with unbounded
//! values (a request id used as a label by mistake) cannot grow the agent's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// What kind of metric, and how it takes a value.
#[derive(Debug, Clone, PartialEq)]
pub enum DerivedKind {
    /// A total that only grows.
    Counter,
    /// The last value seen.
    Gauge,
    /// Counts of values under each upper bound (ascending), their sum and count.
    Histogram(Vec<f64>),
}

/// One series' state.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    /// A counter's total or a gauge's value.
    Single(f64),
    /// A histogram's count per bucket (not cumulative), sum and count.
    Histogram {
        /// Values at or under each bound, and not under the one before.
        buckets: Vec<u64>,
        /// Sum of the values.
        sum: f64,
        /// How many values.
        count: u64,
    },
}

/// A metric derived from events: a name, its label names and its series.
#[derive(Debug)]
pub struct DerivedMetric {
    /// Its Prometheus name.
    pub name: String,
    /// Its help text.
    pub help: String,
    /// Its kind.
    pub kind: DerivedKind,
    /// Its label names, in order.
    pub labels: Vec<String>,
    max_series: usize,
    series: Mutex<HashMap<Box<[String]>, SeriesValue>>,
    /// Label sets not recorded because the metric had `max_series` already.
    pub overflow: AtomicU64,
}

impl DerivedMetric {
    /// A metric with no series yet.
    pub fn new(
        name: String,
        help: String,
        kind: DerivedKind,
        labels: Vec<String>,
        max_series: usize,
    ) -> Self {
        DerivedMetric {
            name,
            help,
            kind,
            labels,
            max_series,
            series: Mutex::new(HashMap::new()),
            overflow: AtomicU64::new(0),
        }
    }

    /// Records `value` for the series of `label_values` (one per label name); false when the
    /// series is new and the metric has `max_series` already (counted, not recorded).
    pub fn record(&self, label_values: &[String], value: f64) -> bool {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let entry = match series.get_mut(label_values) {
            Some(entry) => entry,
            None => {
                if series.len() >= self.max_series {
                    self.overflow.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                let fresh = match &self.kind {
                    DerivedKind::Counter | DerivedKind::Gauge => SeriesValue::Single(0.0),
                    DerivedKind::Histogram(bounds) => SeriesValue::Histogram {
                        buckets: vec![0; bounds.len()],
                        sum: 0.0,
                        count: 0,
                    },
                };
                series.entry(label_values.into()).or_insert(fresh)
            }
        };
        match (entry, &self.kind) {
            (SeriesValue::Single(total), DerivedKind::Counter) => *total += value,
            (SeriesValue::Single(last), _) => *last = value,
            (
                SeriesValue::Histogram {
                    buckets,
                    sum,
                    count,
                },
                DerivedKind::Histogram(bounds),
            ) => {
                if let Some(at) = bounds.iter().position(|bound| value <= *bound) {
                    buckets[at] += 1;
                }
                *sum += value;
                *count += 1;
            }
            (SeriesValue::Histogram { .. }, _) => {}
        }
        true
    }

    /// Every series, by its label values, in label order.
    pub fn snapshot(&self) -> BTreeMap<Vec<String>, SeriesValue> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .iter()
            .map(|(labels, value)| (labels.to_vec(), value.clone()))
            .collect()
    }
}

/// The derived metrics of the running transforms, for `/metrics`. A transform keeps its
/// metrics alive; the registry holds them weakly, so a transform a reload removed takes its
/// metrics with it.
#[derive(Debug, Default)]
pub struct DerivedRegistry {
    metrics: RwLock<Vec<(String, Weak<DerivedMetric>)>>,
}

impl DerivedRegistry {
    /// Adds the metrics of transform `transform` (replacing those it had before a reload).
    pub fn register(&self, transform: &str, metrics: &[Arc<DerivedMetric>]) {
        let mut all = self.metrics.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|(owner, metric)| owner != transform && metric.strong_count() > 0);
        for metric in metrics {
            all.push((transform.to_owned(), Arc::downgrade(metric)));
        }
    }

    /// Every live metric with the transform that records it.
    pub fn live(&self) -> Vec<(String, Arc<DerivedMetric>)> {
        let all = self.metrics.read().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .filter_map(|(owner, metric)| Some((owner.clone(), metric.upgrade()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn counters_add_gauges_keep_the_last_and_histograms_bucket() {
        let cases: &[(DerivedKind, &[f64], SeriesValue)] = &[
            (
                DerivedKind::Counter,
                &[1.0, 2.0, 3.5],
                SeriesValue::Single(6.5),
            ),
            (
                DerivedKind::Gauge,
                &[1.0, 7.0, 3.0],
                SeriesValue::Single(3.0),
            ),
            (
                DerivedKind::Histogram(vec![0.1, 1.0]),
                &[0.05, 0.1, 0.5, 4.0],
                SeriesValue::Histogram {
                    buckets: vec![2, 1],
                    sum: 4.65,
                    count: 4,
                },
            ),
        ];
        for (kind, values, want) in cases {
            let metric =
                DerivedMetric::new("m".into(), "h".into(), kind.clone(), labels(&["a"]), 10);
            for value in *values {
                assert!(metric.record(&labels(&["x"]), *value));
            }
            let got = metric.snapshot().remove(&labels(&["x"])).unwrap();
            match (&got, want) {
                (
                    SeriesValue::Histogram {
                        buckets,
                        sum,
                        count,
                    },
                    SeriesValue::Histogram {
                        buckets: b,
                        sum: s,
                        count: c,
                    },
                ) => assert!(
                    buckets == b && (sum - s).abs() < 1e-9 && count == c,
                    "{got:?}"
                ),
                _ => assert_eq!(&got, want, "{kind:?}"),
            }
        }
    }

    #[test]
    fn series_past_the_cap_are_counted_not_kept() {
        let metric = DerivedMetric::new(
            "m".into(),
            "h".into(),
            DerivedKind::Counter,
            labels(&["id"]),
            2,
        );
        for id in ["a", "b", "c", "d", "a"] {
            metric.record(&labels(&[id]), 1.0);
        }
        let snapshot = metric.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot[&labels(&["a"])], SeriesValue::Single(2.0));
        assert_eq!(metric.overflow.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_registry_forgets_metrics_whose_transform_is_gone() {
        let registry = DerivedRegistry::default();
        let kept = Arc::new(DerivedMetric::new(
            "a".into(),
            "h".into(),
            DerivedKind::Counter,
            vec![],
            1,
        ));
        let dropped = Arc::new(DerivedMetric::new(
            "b".into(),
            "h".into(),
            DerivedKind::Counter,
            vec![],
            1,
        ));
        registry.register("t1", &[Arc::clone(&kept)]);
        registry.register("t2", &[Arc::clone(&dropped)]);
        drop(dropped);
        let live: Vec<String> = registry
            .live()
            .into_iter()
            .map(|(_, m)| m.name.clone())
            .collect();
        assert_eq!(live, ["a"]);
        registry.register("t1", &[]);
        assert!(
            registry.live().is_empty(),
            "a reload replaces a transform's metrics"
        );
    }
}
