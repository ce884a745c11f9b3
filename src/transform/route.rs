//! `route`: named VRL conditions, each an output of its own, and `_unmatched`.
//!
//! Invariant: every event goes to each route whose condition it matches and, when it matches
//! none, to `_unmatched`, unchanged; a condition that fails on an event counts as not matched
//! (and as an error).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event_value::to_value;
use super::vrl_program::VrlProgram;
use super::{ErrorLog, Transform, TransformError, compile, keep_events};
use crate::event::{Chunk, Event};
use crate::metrics::{TransformMetrics, add};

/// A `route` transform's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Each output's name and VRL condition.
    pub route: BTreeMap<String, String>,
}

/// A running `route`.
pub struct Route {
    key: String,
    /// The conditions, in output order.
    conditions: Vec<VrlProgram>,
    metrics: Arc<TransformMetrics>,
    errors: ErrorLog,
}

impl Route {
    /// Compiles the conditions of transform `key`.
    pub fn new(
        key: &str,
        config: &RouteConfig,
        metrics: Arc<TransformMetrics>,
    ) -> Result<Route, TransformError> {
        if config.route.is_empty() {
            return Err(TransformError::Invalid {
                key: format!("{key}.route"),
                message: "at least one route is needed".to_owned(),
            });
        }
        let conditions = config
            .route
            .iter()
            .map(|(name, source)| {
                if name.is_empty() || name.contains('.') || name == super::UNMATCHED {
                    return Err(TransformError::Invalid {
                        key: format!("{key}.route.{name}"),
                        message: format!(
                            "a route's name is not empty, has no `.` and is not `{}`",
                            super::UNMATCHED
                        ),
                    });
                }
                compile(&format!("{key}.route.{name}"), source)
            })
            .collect::<Result<_, _>>()?;
        Ok(Route {
            key: key.to_owned(),
            conditions,
            metrics,
            errors: ErrorLog::default(),
        })
    }
}

impl Transform for Route {
    fn apply(&self, chunk: &Chunk, out: &mut Vec<Chunk>) {
        let ports = self.conditions.len() + 1;
        let mut routed: Vec<Vec<Event>> = vec![Vec::new(); ports];
        let mut scratch = Vec::new();
        let mut failed = 0;
        for event in &chunk.events {
            let mut value = to_value(chunk, event, &mut scratch);
            let mut matched = false;
            for (port, condition) in self.conditions.iter().enumerate() {
                let (back, result) = condition.check(value);
                value = back;
                match result {
                    Ok(true) => {
                        matched = true;
                        routed[port].push(event.clone());
                    }
                    Ok(false) => {}
                    Err(error) => {
                        failed += 1;
                        self.errors.warn(&self.key, &error);
                    }
                }
            }
            if !matched {
                routed[ports - 1].push(event.clone());
            }
        }
        add(&self.metrics.events_in, chunk.events.len() as u64);
        add(&self.metrics.errors, failed);
        for events in routed {
            add(&self.metrics.events_out, events.len() as u64);
            out.push(keep_events(chunk, events.into_iter()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FileMeta, testing};

    #[test]
    fn events_go_to_every_route_they_match_or_to_unmatched() {
        let config = RouteConfig {
            route: BTreeMap::from([
                (
                    "errors".to_owned(),
                    "contains(string!(.message), \"ERROR\")".to_owned(),
                ),
                (
                    "slow".to_owned(),
                    "contains(string!(.message), \"slow\")".to_owned(),
                ),
            ]),
        };
        let route = Route::new("transforms.r", &config, Arc::default()).unwrap();
        let input = testing::chunk(
            FileMeta::new(1, "app", "/l/a.log"),
            &[
                (b"ok", 0),
                (b"ERROR slow", 3),
                (b"ERROR", 14),
                (b"slow", 20),
            ],
            25,
        );
        let mut out = Vec::new();
        route.apply(&input, &mut out);
        let offsets: Vec<Vec<u64>> = out
            .iter()
            .map(|c| c.events.iter().map(|e| e.offset).collect())
            .collect();
        assert_eq!(
            offsets,
            [vec![3, 14], vec![3, 20], vec![0]],
            "errors, slow, _unmatched"
        );
        assert!(
            out.iter()
                .all(|c| c.end_offset == 25 && Arc::ptr_eq(&c.fields, &input.fields))
        );
        assert_eq!(
            out[2].message(&out[2].events[0]),
            b"ok",
            "unchanged, sharing the bytes"
        );
    }

    #[test]
    fn bad_routes_are_refused() {
        let cases = [
            (vec![], "at least one"),
            (vec![("_unmatched", "true")], "_unmatched"),
            (vec![("a.b", "true")], "`.`"),
            (vec![("e", ".level ==")], "does not compile"),
        ];
        for (routes, want) in cases {
            let config = RouteConfig {
                route: routes
                    .iter()
                    .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                    .collect(),
            };
            let error = Route::new("r", &config, Arc::default())
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(want), "{routes:?}: {error}");
        }
    }
}
