//! `notify` as a wake-up signal for the tailer.
//!
//! Events are not trusted for correctness (they can be missed, coalesced or unsupported on the
//! filesystem); they only cut the latency between a write and its read. Any event wakes the
//! tailer; events that change names (create, remove, rename) also ask for a rescan. Directories
//! that do not exist yet are watched once they appear, at the next rescan.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;

use notify::{EventKind, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::discovery::WatchRoot;

/// Watches the roots of one source's globs.
pub struct Watcher {
    inner: Option<RecommendedWatcher>,
    pending: BTreeSet<WatchRoot>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("active", &self.inner.is_some())
            .field("pending", &self.pending)
            .finish()
    }
}

impl Watcher {
    /// Starts watching; on every event `wake` gets a (coalesced) message and, for name changes,
    /// `rescan` is set. Without a working `notify` backend the tailer just polls. Recursive
    /// watches follow symbolic links only with `follow_symlinks`: a link to `/` in the watched
    /// directory would otherwise put a watch on every directory of the filesystem.
    pub fn new(
        roots: Vec<WatchRoot>,
        follow_symlinks: bool,
        wake: SyncSender<()>,
        rescan: Arc<AtomicBool>,
    ) -> Self {
        let handler = move |event: notify::Result<notify::Event>| {
            let names_changed = match event {
                Ok(event) => matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(notify::event::ModifyKind::Name(_))
                        | EventKind::Any
                        | EventKind::Other
                ),
                Err(_) => true,
            };
            if names_changed {
                rescan.store(true, Ordering::Release);
            }
            // A full channel means a wake-up is already pending: nothing is lost.
            let _ = wake.try_send(());
        };
        // Not the access events (opens, closes after reading) that notify reports by default:
        // the agent's own reads would make one per file it opens, and 100,000 files read by
        // turns made the kernel's queueing and the watcher thread an eighth of the agent's CPU.
        let config = notify::Config::default()
            .with_follow_symlinks(follow_symlinks)
            .with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE);
        let inner = match RecommendedWatcher::new(handler, config) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!(error = %e, "file notifications unavailable; polling only");
                None
            }
        };
        let mut watcher = Watcher {
            inner,
            pending: roots.into_iter().collect(),
        };
        watcher.refresh();
        watcher
    }

    /// Tries again to watch the roots that could not be watched yet.
    pub fn refresh(&mut self) {
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        self.pending.retain(|root| {
            let mode = if root.recursive {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            inner.watch(&root.dir, mode).is_err()
        });
    }
}
