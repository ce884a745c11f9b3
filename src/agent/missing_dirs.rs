//! Include directories that do not exist: a source reads nothing from them until they do,
//! which would otherwise go unnoticed. Each is warned about at start, again once a minute while
//! it is missing, and told when it appears; the source's `missing_directories` gauge counts
//! them. The config followed is the running one, reloads included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::config::host::missing_include_dirs;
use crate::metrics::Metrics;

/// How often the directories are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often a directory still missing is warned about again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What is missing, and when it was last said.
#[derive(Debug, Default)]
struct Missing {
    warned: BTreeMap<(String, PathBuf), Instant>,
}

impl Missing {
    /// Logs what is newly missing, still missing (once a minute) or back; returns how many
    /// directories each source misses.
    fn update(
        &mut self,
        found: BTreeMap<String, Vec<PathBuf>>,
        now: Instant,
    ) -> BTreeMap<String, u64> {
        let current: BTreeSet<(String, PathBuf)> = found
            .iter()
            .flat_map(|(source, dirs)| dirs.iter().map(move |d| (source.clone(), d.clone())))
            .collect();
        self.warned.retain(|(source, dir), _| {
            let still = current.contains(&(source.clone(), dir.clone()));
            if !still {
                tracing::info!(source = %source, dir = %dir.display(), "include directory exists now: reading it");
            }
            still
        });
        for key in current {
            let due = self
                .warned
                .get(&key)
                .is_none_or(|at| now.saturating_duration_since(*at) >= WARN_EVERY);
            if due {
                tracing::warn!(
                    source = %key.0, dir = %key.1.display(),
                    "include directory does not exist; nothing is read from it until it does"
                );
                self.warned.insert(key, now);
            }
        }
        found
            .into_iter()
            .map(|(source, dirs)| (source, dirs.len() as u64))
            .collect()
    }
}

/// Watches the include directories of the config `config` holds.
pub(super) fn spawn(config: watch::Receiver<Arc<Config>>, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut config = config;
        let mut missing = Missing::default();
        loop {
            let current = Arc::clone(&config.borrow_and_update());
            let found = tokio::task::spawn_blocking(move || {
                let found = missing_include_dirs(&current);
                (current, found)
            })
            .await;
            if let Ok((current, found)) = found {
                let counts = missing.update(found, Instant::now());
                for source in current.sources.keys() {
                    let count = counts.get(source).copied().unwrap_or(0);
                    metrics
                        .source(source)
                        .missing_directories
                        .store(count, Ordering::Relaxed);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(CHECK_EVERY) => {}
                changed = config.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warned_at_once_again_each_minute_and_forgotten_once_back() {
        let start = Instant::now();
        let dir = |d: &str| BTreeMap::from([("app".to_owned(), vec![PathBuf::from(d)])]);
        let mut missing = Missing::default();
        // (seconds since start, what is missing, expected warned-at time of /a, in seconds)
        let steps: &[(u64, Option<&str>, Option<u64>)] = &[
            (0, Some("/a"), Some(0)),
            (30, Some("/a"), Some(0)),
            (61, Some("/a"), Some(61)),
            (70, None, None),
            (75, Some("/a"), Some(75)),
        ];
        for (at, found, warned_at) in steps {
            let now = start + Duration::from_secs(*at);
            let counts = missing.update(found.map(dir).unwrap_or_default(), now);
            assert_eq!(counts.get("app").copied(), found.map(|_| 1), "at {at}");
            let warned = missing
                .warned
                .get(&("app".to_owned(), PathBuf::from("/a")))
                .map(|t| t.saturating_duration_since(start).as_secs());
            assert_eq!(warned, *warned_at, "at {at}");
        }
    }
}
