//! Delivery-driven retention of tailed files (`retention: { max_bytes }` on a `file` source):
//! in a sidecar the shared `emptyDir` has a `sizeLimit` past which the pod is evicted, so the
//! agent deletes rotated files under the source's globs, oldest first, once every line in them
//! is delivered, until the files fit under `max_bytes` again.
//!
//! Invariant: a file is deleted only if its name is a rotated generation's (never the file a
//! writer appends to, see [`super::rotation`]), it has not changed for a while, and the
//! checkpoint store says every sink delivered all of its content; when that is not enough to
//! get under the limit, the agent says so (a gauge and a log line) and deletes nothing more.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::compression::{Decoded, codec_of, decompressed_head};
use super::fingerprint::read_head;
use super::rotation::is_rotated;
use crate::checkpoint::{CheckpointStore, FilePosition};
use crate::metrics::{SourceMetrics, add};

/// `retention:` of a `file` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The most bytes the files under the source's globs should take.
    pub max_bytes: u64,
}

/// A rotated file modified more recently than this is left alone (a compressor may still be
/// writing it).
const QUIET: Duration = Duration::from_secs(5);

/// How often the files are measured.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One file under the globs.
struct Found {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    modified: SystemTime,
}

/// The retention of one source.
pub struct Retention {
    source: Arc<str>,
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    max_bytes: u64,
    store: Arc<CheckpointStore>,
    metrics: Arc<SourceMetrics>,
    /// Decompressed lengths of compressed files, by device, inode, size and mtime.
    lengths: HashMap<(u64, u64, u64, SystemTime), u64>,
    /// Whether the last sweep could not get under the limit (logged once per episode).
    over: bool,
}

impl Retention {
    /// The retention of source `source` over `include` minus `exclude`.
    pub fn new(
        source: &str,
        include: &[String],
        exclude: &[String],
        config: RetentionConfig,
        store: Arc<CheckpointStore>,
        metrics: Arc<SourceMetrics>,
    ) -> Self {
        Retention {
            source: Arc::from(source),
            include: include.to_vec(),
            exclude: exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
            max_bytes: config.max_bytes,
            store,
            metrics,
            lengths: HashMap::new(),
            over: false,
        }
    }

    fn files(&self) -> Vec<Found> {
        let mut found: Vec<Found> = Vec::new();
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if self.exclude.iter().any(|p| p.matches_path(&path)) {
                    continue;
                }
                // Links are not followed: what they point at is not the volume's to delete.
                let Ok(md) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                if !md.file_type().is_file() || found.iter().any(|f| f.path == path) {
                    continue;
                }
                found.push(Found {
                    path,
                    dev: md.dev(),
                    ino: md.ino(),
                    size: md.len(),
                    modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        found
    }

    /// Whether every sink delivered all of `file`'s content (decompressed, for a compressed
    /// file, whose length is measured once per version of it) and its head is the one the
    /// store knows.
    fn delivered_whole(&mut self, file: &Found, position: &FilePosition) -> io::Result<bool> {
        let opened = std::fs::File::open(&file.path)?;
        let md = opened.metadata()?;
        if (md.dev(), md.ino()) != (file.dev, file.ino) {
            return Ok(false);
        }
        let fingerprint = &position.fingerprint;
        let Some(codec) = codec_of(&read_head(&opened, 8)?) else {
            return Ok(position.checkpoint >= file.size
                && fingerprint.len > 0
                && fingerprint.matches(&read_head(&opened, fingerprint.len as usize)?));
        };
        if fingerprint.len == 0
            || !fingerprint.matches(&decompressed_head(
                &opened,
                codec,
                fingerprint.len as usize,
            )?)
        {
            return Ok(false);
        }
        let key = (file.dev, file.ino, file.size, file.modified);
        let length = match self.lengths.get(&key) {
            Some(&length) => length,
            None => {
                let length =
                    Decoded::with_codec(opened, Some(codec), Arc::default())?.skip(u64::MAX)?;
                self.lengths.insert(key, length);
                length
            }
        };
        Ok(position.checkpoint >= length)
    }

    /// Deletes delivered rotated files, oldest first, while the files take more than
    /// `max_bytes`; returns how many it deleted. Blocking I/O.
    pub fn sweep(&mut self) -> usize {
        let mut files = self.files();
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        self.lengths
            .retain(|(dev, ino, _, _), _| files.iter().any(|f| (f.dev, f.ino) == (*dev, *ino)));
        let mut deleted = 0;
        if total > self.max_bytes {
            let positions = self.store.positions_of(&self.source);
            let now = SystemTime::now();
            files.retain(|f| {
                f.path
                    .file_name()
                    .is_some_and(|name| is_rotated(&name.to_string_lossy()))
                    && now.duration_since(f.modified).is_ok_and(|age| age >= QUIET)
            });
            files.sort_by_key(|f| f.modified);
            for file in &files {
                if total <= self.max_bytes {
                    break;
                }
                let Some(position) = positions.get(file.path.to_string_lossy().as_ref()) else {
                    continue;
                };
                // The tracked file must be this one, not an earlier file whose inode was reused.
                if (position.dev, position.ino) != (file.dev, file.ino) {
                    continue;
                }
                match self.delivered_whole(file, position) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::debug!(file = %file.path.display(), error = %e, "retention: cannot measure");
                        continue;
                    }
                }
                // Looked at again just before: logrotate may have moved another file here while
                // this one was measured (a compressed file is read whole).
                let still = std::fs::symlink_metadata(&file.path).is_ok_and(|md| {
                    (md.dev(), md.ino(), md.len()) == (file.dev, file.ino, file.size)
                });
                if !still {
                    continue;
                }
                match std::fs::remove_file(&file.path) {
                    Ok(()) => {
                        total -= file.size;
                        deleted += 1;
                        add(&self.metrics.retention_deleted_files, 1);
                        add(&self.metrics.retention_deleted_bytes, file.size);
                        tracing::info!(source = %self.source, file = %file.path.display(), bytes = file.size, "retention: delivered rotated file deleted");
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.source, file = %file.path.display(), error = %e, "retention: cannot delete (is the volume mounted writable?)");
                    }
                }
            }
        }
        let over = total.saturating_sub(self.max_bytes);
        self.metrics
            .retention_over_limit_bytes
            .store(over, Ordering::Relaxed);
        if over > 0 && !self.over {
            tracing::warn!(
                source = %self.source, bytes = total, max_bytes = self.max_bytes,
                "retention: the files exceed max_bytes and nothing more can be deleted (undelivered lines, or live files)"
            );
        }
        self.over = over > 0;
        deleted
    }

    /// Sweeps every [`SWEEP_EVERY`] until the task is aborted (with its source).
    pub async fn run(self) {
        let mut retention = self;
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let swept = tokio::task::spawn_blocking(move || {
                retention.sweep();
                retention
            })
            .await;
            match swept {
                Ok(back) => retention = back,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::checkpoint::{FileRecord, Fingerprint};

    fn track(store: &CheckpointStore, path: &std::path::Path, key: u64, offset: u64) {
        let md = std::fs::metadata(path).unwrap();
        let file = std::fs::File::open(path).unwrap();
        let head = match codec_of(&read_head(&file, 8).unwrap()) {
            Some(codec) => decompressed_head(&file, codec, 1024).unwrap(),
            None => read_head(&file, 1024).unwrap(),
        };
        store.track(
            FileRecord {
                source: Arc::from("app"),
                path: Arc::from(path.to_string_lossy().as_ref()),
                dev: md.dev(),
                ino: md.ino(),
                fingerprint: Fingerprint::of(&head),
                key,
                offset,
                updated_unix: 0,
                finished: false,
                marks: Vec::new(),
                copy: false,
            },
            &[0],
        );
    }

    fn age(path: &std::path::Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(old).unwrap();
    }

    #[test]
    fn deletes_only_delivered_rotated_files_oldest_first_until_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; bytes]).unwrap();
            path
        };
        let live = write("app.log", 1000);
        let one = write("app.log.1", 1000);
        let two = write("app.log.2", 1000);
        let three = write("app.log.3", 1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'y'; 5000]).unwrap();
        let four = dir.path().join("app.log.4.gz");
        std::fs::write(&four, gz.finish().unwrap()).unwrap();
        for (i, path) in [&four, &three, &two, &one, &live].into_iter().enumerate() {
            age(path);
            // Oldest first by modification time: 4, 3, 2, 1, then the live file.
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(100 - i as u64))
                .unwrap();
        }
        let store = Arc::new(CheckpointStore::ephemeral());
        let metrics = Arc::new(SourceMetrics::default());
        let include = vec![format!("{}/app.log*", dir.path().display())];
        let mut retention = Retention::new(
            "app",
            &include,
            &[],
            RetentionConfig { max_bytes: 3500 },
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        // Nothing tracked: nothing known delivered, nothing deleted, and it says so.
        assert_eq!(retention.sweep(), 0);
        assert!(metrics.retention_over_limit_bytes.load(Ordering::Relaxed) > 0);
        // The compressed file delivered to its decompressed end, `.3` one byte short, `.2`
        // and `.1` whole, the live file whole too.
        track(&store, &four, 4, 5000);
        track(&store, &three, 3, 999);
        track(&store, &two, 2, 1000);
        track(&store, &one, 1, 1000);
        track(&store, &live, 5, 1000);
        assert_eq!(retention.sweep(), 2);
        assert!(!four.exists(), "delivered, oldest");
        assert!(three.exists(), "one byte undelivered");
        assert!(!two.exists(), "delivered, next oldest");
        assert!(one.exists(), "under the limit once 2 went");
        assert!(live.exists());
        assert_eq!(
            metrics.retention_over_limit_bytes.load(Ordering::Relaxed),
            0
        );
        assert_eq!(metrics.retention_deleted_files.load(Ordering::Relaxed), 2);
        // Under a limit no deletion can keep, the live file stays.
        let mut strict = Retention::new(
            "app",
            &include,
            &[],
            RetentionConfig { max_bytes: 10 },
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        assert_eq!(strict.sweep(), 1);
        assert!(!one.exists());
        assert!(live.exists() && three.exists());
        assert_eq!(
            metrics.retention_over_limit_bytes.load(Ordering::Relaxed),
            1990
        );
    }

    #[test]
    fn a_recently_modified_rotated_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log.1");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        let store = Arc::new(CheckpointStore::ephemeral());
        track(&store, &path, 1, 100);
        let mut retention = Retention::new(
            "app",
            &[format!("{}/*", dir.path().display())],
            &[],
            RetentionConfig { max_bytes: 10 },
            store,
            Arc::new(SourceMetrics::default()),
        );
        assert_eq!(retention.sweep(), 0);
        age(&path);
        assert_eq!(retention.sweep(), 1);
    }
}
