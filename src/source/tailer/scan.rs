//! Scanning: the globs listed at `scan_interval_ms` (and when the watcher asks), new files
//! started, files no longer found noted.
//!
//! Invariant: scans take at most a fifth of the time (each is spaced by its own cost,
//! [`crate::spacing`]), and a problem a scan meets is logged once, not at every scan.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::compressed::plain_name;
use super::inode_index::InodeIndex;
use super::lineage::Lineage;
use super::moment::Moment;
use super::slots::UNSEEN;
use super::tracked::stamp;
use super::{Emit, Tailer};
use crate::metrics::add;
use crate::source::discovery::SkipReason;
use crate::source::head_index::HeadIndex;
use crate::source::open::{OpenError, stat};
use crate::spacing;

/// New problems (unreadable paths, links not followed, FIFOs...) logged one by one per scan;
/// beyond that a scan logs how many more there were, so a hostile directory cannot flood the
/// agent's log.
const REPORTS_PER_SCAN: usize = 20;

/// Files taken from a scan's list between checks of whether the list can be made smaller.
const SHRINK_EVERY: usize = 8 * 1024;

/// What a scan keeps of a listed file's metadata.
#[derive(Debug, Clone, Copy)]
struct Listed {
    /// Device and inode.
    id: (u64, u64),
    /// Size and modification time (see [`stamp`]).
    stamp: (u64, Option<std::time::SystemTime>),
}

impl Listed {
    fn of(md: &fs::Metadata) -> Self {
        Listed {
            id: (md.dev(), md.ino()),
            stamp: stamp(md),
        }
    }
}

/// Where a scan saw a tracked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sighting {
    NotSeen,
    /// At the path it is known by (and maybe at others: hard links).
    AtItsPath,
    /// Only at other paths: renamed.
    Elsewhere,
}

/// What a scan found of the tracked files, by index.
#[derive(Debug)]
struct Sightings {
    seen: Vec<Sighting>,
    /// The first other path a file was seen at, kept only for files not (yet) seen at their
    /// own: a scan of 100,000 files does not hold a second copy of every path.
    elsewhere: HashMap<usize, PathBuf>,
    /// Its size as this scan found it ([`UNSEEN`] if it did not), so that sharing the open
    /// slots need not stat every closed file again.
    sizes: Vec<u64>,
}

impl Sightings {
    fn new(files: usize) -> Self {
        Sightings {
            seen: vec![Sighting::NotSeen; files],
            elsewhere: HashMap::new(),
            sizes: vec![UNSEEN; files],
        }
    }
}

/// When the tailer scans: every `scan_interval_ms`, and as soon as `notify` reports a name
/// change; but a scan (a walk of the globs and a stat per file: a good part of a second with
/// 100,000 files in a debug build) is spaced by its own cost ([`crate::spacing`]), so that files
/// created in a tight loop cannot keep the tailer scanning instead of reading.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScanSchedule {
    every: Duration,
    /// When the last scan started and how long it took; `None` before the first.
    last: Option<(Instant, Duration)>,
}

impl ScanSchedule {
    pub(super) fn new(every: Duration) -> Self {
        ScanSchedule { every, last: None }
    }

    pub(super) fn is_first(&self) -> bool {
        self.last.is_none()
    }

    /// Notes a scan that started at `started` and took `took`.
    pub(super) fn scanned(&mut self, started: Instant, took: Duration) {
        self.last = Some((started, took));
    }

    /// When the next scan is due (`requested`: a name change was reported since the last one);
    /// `None`: now.
    pub(super) fn next_at(&self, requested: bool) -> Option<Instant> {
        let (started, took) = self.last?;
        let every = if requested {
            Duration::ZERO
        } else {
            self.every
        };
        Some(started + spacing::gap(every, took))
    }
}

/// Problems with paths, each reported (logged, and counted by the caller) once while it lasts.
///
/// Only the problems of the last scan are remembered, as hashes: memory follows what is on disk
/// now, and a problem that goes away and comes back is reported again.
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// Problems seen at the previous scan.
    known: HashSet<u64>,
    /// Problems seen so far at this scan.
    current: HashSet<u64>,
    /// New problems logged one by one at this scan.
    logged: usize,
    /// New problems at this scan beyond [`REPORTS_PER_SCAN`].
    unlogged: usize,
}

impl Reports {
    /// Notes a problem; true when it is new (not seen at the previous scan nor yet at this one).
    fn note(&mut self, problem: &str) -> bool {
        let hash = xxhash_rust::xxh3::xxh3_64(problem.as_bytes());
        self.current.insert(hash) && !self.known.contains(&hash)
    }

    /// True when one more new problem may be logged at this scan; counts those that may not.
    fn may_log(&mut self) -> bool {
        if self.logged < REPORTS_PER_SCAN {
            self.logged += 1;
            true
        } else {
            self.unlogged += 1;
            false
        }
    }

    /// Ends a scan; returns how many new problems were not logged one by one.
    fn end_scan(&mut self) -> usize {
        self.known = std::mem::take(&mut self.current);
        self.logged = 0;
        std::mem::take(&mut self.unlogged)
    }
}

impl<E: Emit> Tailer<E> {
    /// Expands the globs, starts tracking new files, notices files gone, truncated or
    /// rewritten, and shares the open-file slots.
    pub(super) fn scan(&mut self, first: bool) {
        self.scanned_at = Some(Moment::now());
        self.watcher.refresh();
        let found = self.ctx.globs.expand();
        for error in found.errors {
            self.report(&error);
        }
        for skipped in &found.skipped {
            self.report_skipped(&skipped.path, skipped.reason, None);
        }
        // Truncations and rewrites first: a copy found by this scan is compared with the
        // generation the file holds now, and with the one truncated away (copytruncate).
        let idle_after = Duration::from_millis(self.ctx.config.scan_interval_ms);
        for file in &mut self.files {
            if !file.is_finished() && file.file.is_some() {
                self.ctx.check_identity(file);
            }
            if file.eof_since.is_some_and(|at| at.elapsed() >= idle_after) {
                file.release_idle_memory();
            }
        }
        self.files.append(&mut self.ctx.retired);
        let cap = self.ctx.config.max_open_files;
        let follow = self.ctx.config.follow_symlinks;
        let mut open = self.open_count();
        let mut by_inode = InodeIndex::new(
            self.files
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.is_finished() && !f.is_retired())
                .map(|(i, f)| ((f.dev, f.ino), i)),
        );
        // Made at the first new file that needs it: most scans find none.
        let mut head_index: Option<HeadIndex> = None;
        let mut sightings = Sightings::new(self.files.len());
        // Files tracked already are noted as they are listed; only the others are kept, with
        // what is needed of their metadata, to be taken in order below: a scan of 100,000 known
        // files keeps no list of them.
        let mut listed: Vec<(PathBuf, Listed)> = Vec::new();
        for path in found.files.iter() {
            let md = match stat(&path, follow) {
                Ok(md) if md.is_file() => Listed::of(&md),
                _ => continue,
            };
            if let Some(i) = by_inode.get(md.id) {
                if self.saw_tracked(i, &path, md, &mut sightings) {
                    continue;
                }
                by_inode.remove(md.id);
            }
            listed.push((path, md));
        }
        // The paths to take are in `listed` now: the listing goes before the files are opened,
        // when the scan's memory peaks (2 MB with 100,000 new files in one directory).
        drop(found.files);
        if listed.len() > 1024 {
            // Thousands of files found at once: room for them all, not twice as much.
            self.files.reserve_exact(listed.len());
            self.ctx.store.reserve(listed.len());
        }
        // Files that resume from a checkpoint of their own go first, so that a copy of one (made
        // by logrotate's `copy` while the agent was down) is compared with what was read of it.
        // And plain files before compressed ones (by their names), so that a compressed copy
        // of a plain file found in the same scan is compared with it.
        let resuming = self.ctx.store.dormant_ids(&self.ctx.name);
        listed.sort_by_cached_key(|(path, md)| {
            (
                !resuming.contains(&md.id),
                plain_name(&path.to_string_lossy()).is_some(),
            )
        });
        // The files that resumed another file's record (copies made while the agent was down):
        // a new file is compared with those (see `another_copy_of_the_same`), not with every
        // file, which made a first scan of 100,000 files quadratic.
        let mut continuing: Vec<usize> = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.continues.is_some() && !f.is_finished())
            .map(|(i, _)| i)
            .collect();
        // Taken from the end, the list given back as it empties: at the end of a first scan of
        // 100,000 files, when every file is tracked, it no longer takes room beside them.
        listed.reverse();
        while let Some((path, md)) = listed.pop() {
            if listed.len().is_multiple_of(SHRINK_EVERY) && listed.capacity() > 2 * listed.len() {
                listed.shrink_to_fit();
            }
            let id = md.id;
            if let Some(i) = by_inode.get(id) {
                // Another name of a file this scan started tracking (hard links).
                if self.saw_tracked(i, &path, md, &mut sightings) {
                    continue;
                }
                by_inode.remove(id);
            }
            match self.ctx.start_tracking(&path, first) {
                Ok(None) => {}
                Ok(Some((file, _)))
                    if (file.dev, file.ino) != id && by_inode.contains((file.dev, file.ino)) =>
                {
                    // Replaced by a file already tracked between listing and opening.
                    self.ctx.store.untrack(file.meta.key);
                }
                Ok(Some((mut file, resumed))) => {
                    let id = (file.dev, file.ino);
                    // Decided against another copy of the same file: known, as if resumed.
                    let decided = (file.continues.is_some()
                        || (!resumed && (file.is_compressed() || first)))
                        && self.another_copy_of_the_same(&mut file, &continuing);
                    // A compressed file that took the record of another file not let go (a file
                    // rewritten since, whose record no copy claimed) while a file this tailer
                    // reads starts alike: rather the compressed copy of that file, held until it
                    // is let go and then continued from its end, than read again from the
                    // record's offset beside it.
                    let copy_of_a_read_file = resumed
                        && !decided
                        && file.is_compressed()
                        && file.continues.is_some()
                        && file.file.is_some()
                        && self.compressed_original(&file, None).is_some();
                    if copy_of_a_read_file {
                        self.ctx.store.forget(file.meta.key);
                        file.continues = None;
                    }
                    let resumed = (resumed || decided) && !copy_of_a_read_file;
                    let lineage = match &file.file {
                        _ if copy_of_a_read_file => Ok((Lineage::PossibleCopy, None)),
                        // A file that resumes a record is known: no copy of anything.
                        _ if resumed => Ok((Lineage::New, None)),
                        Some(_) if file.is_compressed() => {
                            let lineage = if self.compressed_original(&file, None).is_some() {
                                Lineage::PossibleCopy
                            } else {
                                Lineage::New
                            };
                            Ok((lineage, None))
                        }
                        Some(handle) => {
                            let index = head_index.get_or_insert_with(|| {
                                let files = &self.files;
                                let plain = |i: &usize| !files[*i].is_compressed();
                                let (unheaded, headed): (Vec<usize>, Vec<usize>) = (0..files.len())
                                    .filter(plain)
                                    .partition(|&i| files[i].is_unheaded());
                                let mut index =
                                    HeadIndex::of(headed.into_iter(), |i| &files[i].head);
                                for i in unheaded {
                                    index.insert_unheaded(i);
                                }
                                index
                            });
                            self.lineage(handle, Some(&file.head), None, Some(index))
                        }
                        None => Ok((Lineage::New, None)),
                    };
                    // What it was shown to be a copy of matters only while it is held.
                    let (lineage, proof) = match lineage {
                        Ok((lineage, proof)) => (Ok(lineage), proof),
                        Err(e) => (Err(e), None),
                    };
                    match lineage {
                        Ok(Lineage::New) if !resumed => {
                            self.ctx.register(&file, Vec::new(), false);
                        }
                        Ok(Lineage::New) => {}
                        Ok(held @ (Lineage::PossibleCopy | Lineage::Copying | Lineage::Behind)) => {
                            // Held files have no record (not registered): a restart decides
                            // about them anew rather than reading them from offset 0.
                            tracing::debug!(source = %self.ctx.name, file = %file.meta.path, as_ = ?held, "held until it is known whether it is a copy");
                            file.hold(Moment::now(), proof);
                        }
                        Ok(Lineage::ReadAlready(i)) => {
                            let original = Arc::clone(&self.files[i].meta.path);
                            self.ctx.read_already(&mut file, &original);
                        }
                        Ok(Lineage::Continues(i)) => {
                            self.ctx.store.forget(file.meta.key);
                            if let Some(handle) = file.file.take() {
                                self.ctx.adopt_copy(
                                    &mut self.files[i],
                                    handle,
                                    &file.meta.path,
                                    id,
                                );
                            }
                            open += usize::from(self.files[i].file.is_some());
                            by_inode.insert(id, i);
                            // At the copy's path, which it was just given.
                            sightings.seen[i] = Sighting::AtItsPath;
                            continue;
                        }
                        Err(e) => {
                            add(&self.ctx.metrics.read_errors, 1);
                            self.report(&format!("{}: {e}", path.display()));
                            self.ctx.register(&file, Vec::new(), false);
                        }
                    }
                    if file.file.is_some() {
                        // Files found at once (thousands created in the watched directory) must
                        // not all hold a descriptor until the end of the scan.
                        if open < cap {
                            open += 1;
                        } else if !self.make_room_for(&mut file) {
                            // A gzip file that found no free slot is taken at a later scan (its
                            // record, if it resumed one, goes back for it).
                            self.ctx.store.untrack(file.meta.key);
                            continue;
                        }
                    }
                    // Decided: from now on the head is compared with what it holds on disk.
                    file.compact_head(self.ctx.config.fingerprint_bytes);
                    let at = self.files.len();
                    by_inode.insert(id, at);
                    if file.continues.is_some() {
                        continuing.push(at);
                    }
                    let size = file.seen_size;
                    let plain = !file.is_compressed();
                    self.files.push(file);
                    if let Some(index) = &mut head_index
                        && plain
                    {
                        let files = &self.files;
                        index.insert(at, |i| &files[i].head);
                    }
                    sightings.seen.push(Sighting::AtItsPath);
                    // As its descriptor said a moment ago: sharing the slots need not stat it.
                    sightings.sizes.push(size);
                }
                Err(OpenError::Io(e)) => {
                    add(&self.ctx.metrics.read_errors, 1);
                    self.report(&format!("{}: {e}", path.display()));
                }
                Err(e) => {
                    let reason = e.skip_reason().unwrap_or(SkipReason::Symlink);
                    self.report_skipped(&path, reason, Some(&e));
                }
            }
        }
        let unlogged = self.reports.end_scan();
        if unlogged > 0 {
            tracing::warn!(source = %self.ctx.name, more = unlogged, "more paths cannot be read or are skipped (not logged one by one)");
        }
        let now = Moment::now();
        for (i, file) in self.files.iter_mut().enumerate() {
            if file.is_finished() {
                continue;
            }
            match sightings.seen[i] {
                Sighting::Elsewhere => {
                    if let Some(path) = sightings.elsewhere.get(&i) {
                        self.ctx.renamed(file, path);
                    }
                }
                Sighting::AtItsPath => {}
                Sighting::NotSeen => {
                    if file.gone_since.is_none() {
                        tracing::debug!(source = %self.ctx.name, file = %file.meta.path, "file renamed away or deleted; reading it to its end");
                        file.gone_since = Some(now);
                    }
                }
            }
            if sightings.seen[i] != Sighting::NotSeen {
                file.gone_since = None;
            }
            if sightings.sizes[i] != UNSEEN {
                file.seen_size = sightings.sizes[i];
            }
        }
        self.share_open_slots(false, &sightings.sizes);
        let open = self.open_count() as u64;
        self.ctx.metrics.open_files.store(open, Ordering::Relaxed);
    }

    /// Notes file `i`, tracked, seen at `path`; false when its inode is now another file's
    /// (to be tracked as a new one).
    fn saw_tracked(
        &mut self,
        i: usize,
        path: &Path,
        md: Listed,
        sightings: &mut Sightings,
    ) -> bool {
        // A compressed file read to its end is closed: deleted, its inode may now be another
        // file's (a copy being written, say), which must be read, not taken for it. A changed
        // time alone does not say so (logrotate sets the times of the compressed file after
        // gzip wrote it): its content does.
        let changed = self.files[i].file.is_none()
            && self.files[i]
                .compressed
                .as_ref()
                .is_some_and(|taken| taken.stamp != md.stamp);
        let reused = changed && !self.ctx.holds_the_same(&self.files[i], path);
        let tracked = &mut self.files[i];
        if reused {
            tracing::debug!(source = %self.ctx.name, file = %path.display(), was = %tracked.meta.path, "inode of a compressed file read and deleted reused by a new file");
            return false;
        }
        if changed && let Some(compressed) = &mut tracked.compressed {
            compressed.stamp = md.stamp;
        }
        if *tracked.meta.path == *path.to_string_lossy() {
            sightings.seen[i] = Sighting::AtItsPath;
        } else if sightings.seen[i] == Sighting::NotSeen {
            sightings.seen[i] = Sighting::Elsewhere;
            sightings.elsewhere.insert(i, path.to_owned());
        }
        sightings.sizes[i] = md.stamp.0;
        true
    }

    /// Logs an error with a path, once while it lasts: an unreadable directory would otherwise
    /// be reported at every scan.
    fn report(&mut self, error: &str) {
        if self.reports.note(error) && self.reports.may_log() {
            tracing::warn!(source = %self.ctx.name, error = %error, "cannot read");
        }
    }

    /// Counts and logs a match that is not read, once while it stays.
    fn report_skipped(&mut self, path: &Path, reason: SkipReason, error: Option<&OpenError>) {
        let problem = format!("{}\0{}", path.display(), reason.as_str());
        if !self.reports.note(&problem) {
            return;
        }
        let m = &self.ctx.metrics;
        add(
            match reason {
                SkipReason::Symlink => &m.skipped_symlinks,
                SkipReason::Directory => &m.skipped_directories,
                SkipReason::Fifo | SkipReason::Socket | SkipReason::Device => {
                    &m.skipped_special_files
                }
            },
            1,
        );
        if self.reports.may_log() {
            let detail = error.map(ToString::to_string).unwrap_or_default();
            tracing::warn!(source = %self.ctx.name, file = %path.display(), reason = reason.as_str(), detail = %detail, "matched but not read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_follow_the_interval_and_requests_but_never_take_most_of_the_time() {
        let ms = Duration::from_millis;
        // (scan_interval, last scan's duration, requested, next scan due after its start)
        let cases = [
            (ms(1_000), ms(1), false, ms(1_000)),
            (ms(1_000), ms(1), true, ms(5)),
            (ms(1_000), ms(0), true, ms(0)),
            // Slow scans space themselves out, requested or not.
            (ms(1_000), ms(250), false, ms(1_250)),
            (ms(1_000), ms(250), true, ms(1_250)),
            (ms(1_000), ms(100), true, ms(500)),
            (ms(100), ms(100), false, ms(500)),
        ];
        let start = Instant::now();
        for (every, took, requested, want) in cases {
            let mut schedule = ScanSchedule::new(every);
            assert!(schedule.is_first());
            assert_eq!(
                schedule.next_at(requested),
                None,
                "the first scan is due at once"
            );
            schedule.scanned(start, took);
            assert!(!schedule.is_first());
            assert_eq!(
                schedule.next_at(requested),
                Some(start + want),
                "every {every:?}, took {took:?}, requested {requested}"
            );
        }
    }
}
